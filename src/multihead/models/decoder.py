"""DecoderLM: the shared stack with a causal mask and a (tied) language-model head.

Legend: B batch, T sequence length, E model width, V vocabulary size, S cache slots,
L attention layers, H heads per layer.

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
    >>> mask = torch.ones(2, 4, requires_grad=True)     # (L, H): 1 keeps a head
    >>> model(tokens, head_mask=mask).sum().backward()
    >>> mask.grad.shape                                  # d loss / d head_mask scores heads
    torch.Size([2, 4])
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from multihead import masks
from multihead.cache import KVCache
from multihead.checkpoint import load_checkpoint
from multihead.linear import Linear
from multihead.models import generation, scoring
from multihead.models.config import DecoderConfig
from multihead.models.embeddings import check_tokens
from multihead.models.generation import Prompts, Sampling
from multihead.models.head_mask import HeadMask
from multihead.models.stack import TransformerStack, init_weights
from multihead.roles import OUTPUT, Role


class DecoderLM(TransformerStack):
    """A causal (GPT-style) language model.

    ``tokens (B, T) -> embedding (+ learned/sinusoidal positions) -> blocks (RoPE/ALiBi inside
    attention, causal mask, optional sliding window) -> final norm -> head -> logits (B, T, V)``.
    The head shares the embedding matrix when ``config.tie_embeddings``.

    Args:
        config: a :class:`~multihead.models.config.DecoderConfig`; with ``layer_heads`` set,
            each layer has its own heads (a pruned model).
    """

    def __init__(self, config: DecoderConfig) -> None:
        if not isinstance(config, DecoderConfig):
            raise TypeError(f"config must be a DecoderConfig, got {type(config).__name__}")
        mask = masks.causal()  # True = may attend
        if config.window is not None:
            mask = mask & masks.sliding_window(config.window)
        super().__init__(config, mask=mask)
        self.head = Linear(config.d_model, config.vocab_size, bias=False)
        init_weights(self, config.num_layers)
        if config.tie_embeddings:
            self.head.weight = self.embed.tokens.weight

    def parameter_roles(self) -> list[tuple[nn.Parameter, Role]]:
        """The head is the output matrix, unless it is the (tied) embedding."""
        if self.head.weight is self.embed.tokens.weight:
            return []
        return [(self.head.weight, OUTPUT)]

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike) -> DecoderLM:
        """Load a model saved by :func:`multihead.checkpoint.save_checkpoint` (e.g. by
        ``multihead train``): the config from JSON, the weights from safetensors (no pickle).
        A pruned model's config holds its per-layer heads, so it loads the same way.

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
        head_mask: HeadMask | None = None,
    ) -> torch.Tensor:
        """Logits for every position.

        Args:
            tokens: ``(B, T)`` token ids in ``[0, vocab_size)``.
            positions: ``(T,)`` or ``(B, T)`` positions of the tokens; default ``0 .. T-1``,
                or with a cache each row's next positions (``cache.next_positions(T)``).
            cache: a :class:`~multihead.cache.KVCache`; keys/values of these tokens are
                written to it and the tokens attend to everything cached before them.
            head_mask: per-layer head masks: ``(L, H)``, ``(B, L, H)``, a sequence of L
                entries (None, ``(H_l,)`` or ``(B, H_l)``) or ``{layer: mask}``; 1 keeps a
                head, 0 removes it; differentiable
                (:func:`~multihead.models.head_mask.split_head_mask`).

        Returns:
            logits ``(B, T, V)``.
        """
        return self.head(self._hidden(tokens, positions, cache, head_mask))  # (B, T, V)

    def _hidden(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None,
        cache: KVCache | None,
        head_mask: HeadMask | None,
    ) -> torch.Tensor:
        check_tokens("tokens", tokens, self.config.vocab_size)
        t = tokens.shape[1]
        if positions is None:
            if cache is not None:
                positions = cache.next_positions(t)  # (B, T)
            else:
                self.check_length(t)
                positions = torch.arange(t, device=tokens.device)  # (T,)
        if cache is not None:
            return self.transform_cached(tokens, positions, cache, head_mask=head_mask)
        return self.transform(tokens, positions, head_mask=head_mask)

    def transform_cached(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        *,
        head_mask: HeadMask | None = None,
    ) -> torch.Tensor:
        """Hidden states ``(B, T, E)`` of ``tokens`` ``(B, T)`` at ``positions`` ``(T,)`` or
        ``(B, T)``, written to ``cache`` and attending to everything cached before them.
        The tokens are not range-checked (:meth:`forward` checks them): generation feeds
        tokens it picked from the vocabulary itself."""
        cache.begin(positions)  # each layer's attention masks at the cache's key positions
        return self.transform(tokens, positions, cache=cache, head_mask=head_mask)

    def hidden_states(
        self,
        tokens: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        head_mask: HeadMask | None = None,
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
        return self._hidden(tokens, None, None, head_mask)  # (B, T, E)

    # ------------------------------------------------------------------ scoring
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
        return scoring.token_nll(
            self, tokens, context=context, stride=stride, batch_size=batch_size
        )

    # ------------------------------------------------------------------ generation
    def new_cache(self, batch_size: int, max_len: int, *, ring: bool | None = None) -> KVCache:
        """A KV cache sized for this model (each layer's own KV head count); ``ring``
        defaults to True when the model has a sliding window (memory O(window))."""
        p = next(self.parameters())
        cfg = self.config
        return KVCache(
            num_layers=cfg.num_layers,
            batch_size=batch_size,
            max_len=max_len,
            num_kv_heads=[block.attn.num_kv_heads for block in self.blocks],
            head_dim=cfg.head_size,
            window=cfg.window,
            ring=cfg.window is not None if ring is None else ring,
            dtype=p.dtype,
            device=p.device,
        )

    def stream(
        self,
        prompts: Prompts,
        *,
        max_new_tokens: int,
        sampling: Sampling | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        compile: bool = False,
        **options: Any,
    ) -> Iterator[torch.Tensor]:
        """Generate token by token: yields ``(B,)`` new tokens per step, ``-1`` for rows that
        have already stopped. Arguments as :meth:`generate`."""
        return generation.stream(
            self,
            prompts,
            max_new_tokens=max_new_tokens,
            sampling=Sampling.build(sampling, options),
            use_cache=use_cache,
            generator=generator,
            compile=compile,
        )

    def generate(
        self,
        prompts: Prompts,
        *,
        max_new_tokens: int,
        sampling: Sampling | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        compile: bool = False,
        **options: Any,
    ) -> list[list[int]]:
        """Continue each prompt; returns the new tokens of each (a stop token ends a row and
        is included).

        Args:
            prompts: a ``(B, T)`` tensor, or a list of token sequences of any lengths (they
                are batched right-padded; each row continues at its own position, so the
                result equals generating one prompt at a time).
            max_new_tokens: tokens to generate per prompt at most.
            sampling: a :class:`~multihead.models.generation.Sampling` (greedy by default),
                or its fields as keywords: ``temperature`` (0 = greedy), ``top_k``,
                ``top_p`` (nucleus, Holtzman et al. 2020) and ``stop_tokens``.
            use_cache: decode with a KV cache (default) or recompute the whole prefix each
                step; greedy results are the same.
            generator: a ``torch.Generator`` for reproducible sampling.
            compile: decode with one compiled graph per step
                (:mod:`~multihead.models.compiled_decode`: faster steps after a compile of
                seconds to minutes, weights copied while the compiled step lives); needs
                ``use_cache``. Logits agree with eager decoding to rounding.
        """
        return generation.generate(
            self,
            prompts,
            max_new_tokens=max_new_tokens,
            sampling=Sampling.build(sampling, options),
            use_cache=use_cache,
            generator=generator,
            compile=compile,
        )
