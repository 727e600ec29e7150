"""DecoderLM: token embedding -> pre-norm blocks -> norm -> (tied) head; and generation.

Legend: B batch, T sequence length, E model width, V vocabulary size, S cache slots.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = DecoderLM(DecoderConfig(vocab_size=32, d_model=32, num_layers=2, num_heads=4))
    >>> tokens = torch.randint(0, 32, (2, 9))            # (B, T)
    >>> model(tokens).shape                              # logits (B, T, V)
    torch.Size([2, 9, 32])
    >>> out = model.generate([[1, 2, 3], [4, 5]], max_new_tokens=4)   # greedy, KV cache
    >>> [len(o) for o in out]
    [4, 4]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from multihead import masks
from multihead.cache import KVCache
from multihead.checkpoint import load_checkpoint
from multihead.masks import AttentionMask
from multihead.models.block import TransformerBlock, make_norm
from multihead.models.config import DecoderConfig, TransformerConfig
from multihead.positional import ALiBi, LearnedPositions, RotaryEmbedding, SinusoidalPositions

Prompts = torch.Tensor | Sequence[Sequence[int] | torch.Tensor]


def sliding_windows(
    tokens: torch.Tensor, context: int | None, stride: int | None, max_seq_len: int
) -> tuple[torch.Tensor, int, list[int]]:
    """Validate the arguments of :meth:`DecoderLM.token_nll` and lay out its windows.

    Returns ``(tokens as int64 (N,), width, starts)``: window ``k`` holds inputs
    ``tokens[starts[k] : starts[k] + width]`` and predicts the next token of each; the last
    window ends exactly at the text's end.
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    integer = not (tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool)
    if tokens.dim() != 1 or len(tokens) < 2 or not integer:
        raise ValueError(
            f"tokens must be a (N,) tensor of integer ids with N >= 2, got shape "
            f"{tuple(tokens.shape)} and dtype {tokens.dtype}"
        )
    context = max_seq_len if context is None else context
    stride = max(1, context // 4) if stride is None else stride
    if not 1 <= context <= max_seq_len:
        raise ValueError(f"context must be in [1, max_seq_len={max_seq_len}], got {context}")
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in [1, context={context}], got {stride}")
    n = len(tokens)
    width = min(context, n - 1)  # inputs per window; targets are shifted by one
    starts = list(range(0, n - 1 - width + 1, stride))
    if starts[-1] + width < n - 1:
        starts.append(n - 1 - width)  # a last window ending exactly at the text's end
    return tokens.long(), width, starts


class Embeddings(nn.Module):
    """Token embedding plus the absolute position scheme of a config (learned, sinusoidal),
    and the relative ones handed to attention (``rotary`` for RoPE, ``alibi``)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.absolute: nn.Module | None = None
        if config.position == "learned":
            self.absolute = LearnedPositions(config.max_seq_len, config.d_model)
        elif config.position == "sinusoidal":
            self.absolute = SinusoidalPositions(config.d_model)
        self.rotary = (
            RotaryEmbedding(
                config.head_size,
                base=config.rope_base,
                rotary_dim=config.rotary_dim,
                interleaved=config.rope_interleaved,
            )
            if config.position == "rope"
            else None
        )
        self.alibi = ALiBi(config.num_heads) if config.position == "alibi" else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.tokens(tokens)  # (B, T, E)
        if self.absolute is not None:
            x = x + self.absolute(positions).to(x.dtype)  # (T, E) or (B, T, E) broadcast
        return self.dropout(x)


def check_tokens(name: str, tokens: object, vocab_size: int) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(tokens).__name__}")
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"{name} has shape {tuple(tokens.shape)} and dtype {tokens.dtype} but (B, T) "
            "integer token ids are expected"
        )
    return tokens


def init_weights(model: nn.Module, num_layers: int) -> None:
    """GPT-2 initialization: N(0, 0.02) weights, zero biases, and the residual-stream output
    projections scaled by ``1 / sqrt(2 L)`` so the residual variance does not grow with depth
    (Radford et al. 2019)."""
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            std = 0.02
            if name.endswith("attn.out_proj.weight") or name.endswith("ffn.down.weight"):
                std = 0.02 / math.sqrt(2 * num_layers)
            nn.init.normal_(p, mean=0.0, std=std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)


class DecoderLM(nn.Module):
    """A causal (GPT-style) language model.

    ``tokens (B, T) -> embedding (+ learned/sinusoidal positions) -> blocks (RoPE/ALiBi inside
    attention, causal mask, optional sliding window) -> final norm -> head -> logits (B, T, V)``.
    The head shares the embedding matrix when ``config.tie_embeddings``.

    Args:
        config: a :class:`~multihead.models.config.DecoderConfig`.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        if not isinstance(config, DecoderConfig):
            raise TypeError(f"config must be a DecoderConfig, got {type(config).__name__}")
        self.config = config
        self.embed = Embeddings(config)
        self.blocks = nn.ModuleList(
            TransformerBlock(config, rotary=self.embed.rotary) for _ in range(config.num_layers)
        )
        self.norm = make_norm(config)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        init_weights(self, config.num_layers)
        if config.tie_embeddings:
            self.head.weight = self.embed.tokens.weight
        # The mask is a function of the config only: built once, so that a compiled forward
        # does not trace its construction. True = may attend.
        mask = masks.causal()
        if config.window is not None:
            mask = mask & masks.sliding_window(config.window)
        if self.embed.alibi is not None:
            mask = mask & masks.bias(self.embed.alibi)
        self.mask: AttentionMask = mask

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike) -> DecoderLM:
        """Load a model saved by :func:`multihead.checkpoint.save_checkpoint` (e.g. by
        ``multihead train``): the config from JSON, the weights from safetensors (no pickle).

        Raises:
            FileNotFoundError: the directory or one of its files is missing (named).
            ValueError: the config is invalid or does not match the weights (fields named).
        """
        ckpt = load_checkpoint(directory, kind=DecoderConfig.kind)
        raw = ckpt.config.get("model", ckpt.config)
        try:
            config = DecoderConfig.from_dict(raw)
        except (TypeError, ValueError) as err:
            raise ValueError(f"checkpoint {ckpt.path} has an invalid model config: {err}") from None
        model = cls(config)
        ckpt.load_into(model)
        return model.eval()

    def num_parameters(self) -> int:
        """Parameters counted once (a tied head is not counted twice)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits for every position.

        Args:
            tokens: ``(B, T)`` token ids.
            positions: ``(T,)`` or ``(B, T)`` positions of the tokens; default ``0 .. T-1``,
                or with a cache each row's next positions (``cache.next_positions(T)``).
            cache: a :class:`~multihead.cache.KVCache`; keys/values of these tokens are
                written to it and the tokens attend to everything cached before them.

        Returns:
            logits ``(B, T, V)``.
        """
        return self.head(self._hidden(tokens, positions, cache))  # (B, T, V)

    @torch.no_grad()
    def token_nll(
        self,
        tokens: torch.Tensor,
        *,
        context: int | None = None,
        stride: int | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Negative log-likelihood (nats) of every token of one long text after the first,
        scored with a sliding window (the usual way to score text longer than the context).

        Windows of ``context`` tokens start every ``stride`` tokens; the first window
        scores all its tokens, every later one only the tokens no earlier window scored,
        so each token after the first ``context`` is predicted from at least
        ``context - stride`` tokens before it. ``stride == context`` is plain
        non-overlapping windows; ``stride == 1`` gives each token the full context.

        Args:
            tokens: ``(N,)`` token ids, N >= 2.
            context: window length; default ``config.max_seq_len``.
            stride: default ``context // 4``.
            batch_size: windows per forward pass.

        Returns:
            ``(N - 1,)`` float32: entry i is ``-log p(tokens[i + 1] | tokens[..i])``. Call
            it in eval mode (dropout would make the scores random).
        """
        tokens, width, starts = sliding_windows(tokens, context, stride, self.config.max_seq_len)
        n = len(tokens)
        nll = torch.empty(n - 1)
        offsets = torch.arange(width + 1)
        scored = 0  # targets 0 .. scored-1 (target i is tokens[i + 1]) are done
        for b in range(0, len(starts), batch_size):
            first = torch.tensor(starts[b : b + batch_size])
            windows = tokens[first[:, None] + offsets]  # (b, width + 1)
            logits = self(windows[:, :-1]).float()  # (b, width, V)
            losses = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), windows[:, 1:], reduction="none"
            )  # (b, width)
            for row, s in enumerate(first.tolist()):
                lo = scored - s  # first target of this window not scored yet
                nll[scored : s + width] = losses[row, lo:]
                scored = s + width
        return nll

    def _hidden(
        self, tokens: torch.Tensor, positions: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor:
        check_tokens("tokens", tokens, self.config.vocab_size)
        t = tokens.shape[1]
        if positions is None:
            if cache is not None:
                positions = cache.next_positions(t)  # (B, T)
            else:
                if self.config.position == "learned" and t > self.config.max_seq_len:
                    raise ValueError(
                        f"tokens has {t} positions but learned positions stop at "
                        f"max_seq_len={self.config.max_seq_len}"
                    )
                positions = torch.arange(t, device=tokens.device)  # (T,)
        x = self.embed(tokens, positions)  # (B, T, E)
        if cache is not None:
            cache.begin(positions)  # each layer's attention masks at the cache's key positions
        for i, block in enumerate(self.blocks):
            layer_cache = None if cache is None else cache.layers[i]
            x = block(x, mask=self.mask, positions=positions, cache=layer_cache)
        return self.norm(x)  # (B, T, E)

    def hidden_states(
        self, tokens: torch.Tensor, *, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The final normalized hidden states ``(B, T, E)`` (what the LM head reads), e.g. as
        the trunk of a multi-task network.

        ``padding_mask`` ``(B, T)`` (True = real token) is accepted for a uniform trunk
        interface and only checked: with right padding a causal model's real tokens never see
        the padding after them.
        """
        check_tokens("tokens", tokens, self.config.vocab_size)
        b, t = tokens.shape
        if padding_mask is not None and tuple(padding_mask.shape) != (b, t):
            raise ValueError(
                f"padding_mask has shape {tuple(padding_mask.shape)} but (B, T) = ({b}, {t}) "
                "is expected (True = real token)"
            )
        return self._hidden(tokens, None, None)  # (B, T, E)

    # ------------------------------------------------------------------ generation
    def new_cache(self, batch_size: int, max_len: int, *, ring: bool | None = None) -> KVCache:
        """A KV cache sized for this model; ``ring`` defaults to True when the model has a
        sliding window (memory O(window))."""
        p = next(self.parameters())
        cfg = self.config
        return KVCache(
            num_layers=cfg.num_layers,
            batch_size=batch_size,
            max_len=max_len,
            num_kv_heads=cfg.kv_heads,
            head_dim=cfg.head_size,
            window=cfg.window,
            ring=cfg.window is not None if ring is None else ring,
            dtype=p.dtype,
            device=p.device,
        )

    @torch.no_grad()
    def stream(
        self,
        prompts: Prompts,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_tokens: Sequence[int] = (),
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Iterator[torch.Tensor]:
        """Generate token by token: yields ``(B,)`` new tokens per step, ``-1`` for rows that
        have already stopped. Arguments as :meth:`generate`."""
        _check_sampling(max_new_tokens, temperature, top_k, top_p)
        device = next(self.parameters()).device
        tokens, lengths = pad_prompts(prompts, device)  # (B, Tp), (B,)
        b = tokens.shape[0]
        total = int(lengths.max()) + max_new_tokens
        if self.config.position == "learned" and total > self.config.max_seq_len:
            raise ValueError(
                f"prompt ({int(lengths.max())}) + max_new_tokens ({max_new_tokens}) = {total} "
                f"exceeds max_seq_len={self.config.max_seq_len} of the learned positions"
            )
        stops = torch.tensor(list(stop_tokens), dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        rows = torch.arange(b, device=device)
        was_training = self.training
        self.eval()
        try:
            cache = None
            if use_cache:
                cache = self.new_cache(b, total)
                cache.set_prompt_lengths(lengths)
                prefill = torch.arange(tokens.shape[1], device=device)  # (Tp,)
                logits = self(tokens, positions=prefill, cache=cache)  # (B, Tp, V)
            else:
                seq = torch.zeros(b, total, dtype=torch.long, device=device)
                seq[:, : tokens.shape[1]] = tokens
                logits = self(tokens)
            last = logits[rows, lengths - 1]  # (B, V)
            for step in range(max_new_tokens):
                nxt = sample_next(
                    last, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
                )  # (B,)
                nxt = nxt.masked_fill(done, -1)
                yield nxt
                done = done | torch.isin(nxt, stops)
                if bool(done.all()) or step == max_new_tokens - 1:
                    return
                feed = nxt.clamp_min(0)
                if cache is not None:
                    last = self(feed[:, None], cache=cache)[:, -1]  # (B, V)
                else:
                    seq[rows, lengths] = feed
                    lengths = lengths + 1
                    last = self(seq[:, : int(lengths.max())])[rows, lengths - 1]  # (B, V)
        finally:
            self.train(was_training)

    def generate(
        self,
        prompts: Prompts,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_tokens: Sequence[int] = (),
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """Continue each prompt; returns the new tokens of each (a stop token ends a row and
        is included).

        Args:
            prompts: a ``(B, T)`` tensor, or a list of token sequences of any lengths (they
                are batched right-padded; each row continues at its own position, so the
                result equals generating one prompt at a time).
            max_new_tokens: tokens to generate per prompt at most.
            temperature: 0 for greedy (argmax), else sample from ``softmax(logits / T)``.
            top_k: sample among the k most likely tokens only.
            top_p: sample from the smallest set whose probability reaches p (nucleus,
                Holtzman et al. 2020).
            stop_tokens: a row stops after producing one of these.
            use_cache: decode with a KV cache (default) or recompute the whole prefix each
                step; greedy results are the same.
            generator: a ``torch.Generator`` for reproducible sampling.
        """
        out: list[list[int]] = []
        for step_tokens in self.stream(
            prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_tokens=stop_tokens,
            use_cache=use_cache,
            generator=generator,
        ):
            if not out:
                out = [[] for _ in range(step_tokens.shape[0])]
            for row, tok in zip(out, step_tokens.tolist()):
                if tok >= 0:
                    row.append(tok)
        return out


def pad_prompts(prompts: Prompts, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad prompts into ``(B, T)`` (pad 0) and their lengths ``(B,)``."""
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() == 1:
            prompts = prompts.unsqueeze(0)  # (1, T)
        check_tokens("prompts", prompts, 0)
        if prompts.shape[1] == 0:
            raise ValueError("prompts are empty; each prompt needs at least one token")
        lengths = torch.full((prompts.shape[0],), prompts.shape[1], dtype=torch.long)
        return prompts.to(device=device, dtype=torch.long), lengths.to(device)
    rows = [torch.as_tensor(p, dtype=torch.long).flatten() for p in prompts]  # (T_i,) each
    if not rows:
        raise ValueError("prompts is empty; expected at least one prompt")
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    if int(lengths.min()) == 0:
        raise ValueError(f"prompt {int(lengths.argmin())} is empty; each needs at least one token")
    tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    return tokens.to(device), lengths.to(device)


def _check_sampling(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 0
    ):
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from logits ``(B, V)``: argmax when ``temperature == 0``, else a
    sample after top-k and top-p filtering. Returns ``(B,)`` int64."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first stays.
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, -torch.inf)
        logits = torch.full_like(logits, -torch.inf).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
