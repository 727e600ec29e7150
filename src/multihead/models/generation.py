"""Generation for :class:`~multihead.models.DecoderLM`: the sampling options as one validated
dataclass, the token choice, and the decoding loop (KV cache or recomputed prefix).

Legend: B batch, Tp longest prompt, V vocabulary size.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM, Sampling
    >>> _ = torch.manual_seed(0)
    >>> model = DecoderLM(DecoderConfig(vocab_size=32, d_model=32, num_layers=1, num_heads=2))
    >>> nucleus = Sampling(temperature=0.8, top_p=0.9, stop_tokens=[0])
    >>> out = model.generate([[1, 2, 3]], max_new_tokens=5, sampling=nucleus,
    ...                      generator=torch.Generator().manual_seed(0))
    >>> out == model.generate([[1, 2, 3]], max_new_tokens=5, temperature=0.8, top_p=0.9,
    ...                       stop_tokens=[0], generator=torch.Generator().manual_seed(0))
    True
    >>> Sampling(top_k=0)
    Traceback (most recent call last):
      ...
    ValueError: top_k must be an integer >= 1, got 0
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from multihead import _checks, packed_weights
from multihead.models import compiled_decode
from multihead.models.embeddings import check_tokens

if TYPE_CHECKING:
    from multihead.models.decoder import DecoderLM

Prompts = torch.Tensor | Sequence[Sequence[int] | torch.Tensor]


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen, and when a row stops.

    Attributes:
        temperature: 0 for greedy (argmax), else sample from ``softmax(logits / T)``.
        top_k: sample among the k most likely tokens only (None = all).
        top_p: sample from the smallest set whose probability reaches p (nucleus sampling,
            Holtzman et al. 2020), in (0, 1]; None = no nucleus filter.
        stop_tokens: a row stops after producing one of these (it is included).
    """

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    stop_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _checks.require_number("temperature", self.temperature, minimum=0.0)
        if self.top_k is not None:
            _checks.require_int("top_k", self.top_k, minimum=1)
        if self.top_p is not None:
            _checks.require_number("top_p", self.top_p, above=0, maximum=1)
        if isinstance(self.stop_tokens, (str, bytes, torch.Tensor)) or not isinstance(
            self.stop_tokens, Sequence
        ):
            kind = type(self.stop_tokens).__name__
            raise TypeError(f"stop_tokens must be a sequence of token ids, got {kind}")
        for t in self.stop_tokens:
            _checks.require_int("stop_tokens entries", t, minimum=0)
        object.__setattr__(self, "stop_tokens", tuple(self.stop_tokens))

    @classmethod
    def build(cls, sampling: Sampling | None, options: dict[str, Any]) -> Sampling:
        """``sampling`` or one built from keyword ``options`` (not both); unknown option
        names are an error that lists the known ones."""
        if sampling is not None:
            if options:
                raise ValueError(
                    f"pass sampling=Sampling(...) or sampling keywords, not both (got sampling "
                    f"and {sorted(options)})"
                )
            if not isinstance(sampling, Sampling):
                raise TypeError(f"sampling must be a Sampling, got {type(sampling).__name__}")
            return sampling
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown sampling options {unknown}; the options are {known}")
        return cls(**options)


def sample_next(
    logits: torch.Tensor,
    sampling: Sampling | None = None,
    *,
    generator: torch.Generator | None = None,
    **options: Any,
) -> torch.Tensor:
    """Pick the next token from logits ``(B, V)``: argmax when the temperature is 0, else a
    sample after top-k and top-p filtering. Options as :class:`Sampling` (an instance or its
    fields as keywords). Returns ``(B,)`` int64."""
    s = Sampling.build(sampling, options)
    if s.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / s.temperature
    if s.top_k is not None and s.top_k < logits.shape[-1]:
        kth = torch.topk(logits, s.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if s.top_p is not None and s.top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first stays.
        drop = (probs.cumsum(dim=-1) - probs) >= s.top_p
        sorted_logits = sorted_logits.masked_fill(drop, -torch.inf)
        logits = torch.full_like(logits, -torch.inf).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def pad_prompts(
    prompts: Prompts, device: torch.device, vocab_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check prompts (token ids in ``[0, vocab_size)``, none empty), right-pad them into
    ``(B, Tp)`` (pad 0) and return it with their lengths ``(B,)``."""
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() == 1:
            prompts = prompts.unsqueeze(0)  # (1, Tp)
        check_tokens("prompts", prompts, vocab_size)
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
        check_tokens(f"prompt {i}", r[None], vocab_size)
        tokens[i, : len(r)] = r
    return tokens.to(device), lengths.to(device)


@torch.no_grad()
def stream(
    model: DecoderLM,
    prompts: Prompts,
    *,
    max_new_tokens: int,
    sampling: Sampling,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield ``(B,)`` new tokens per step, ``-1`` for rows that have already stopped (see
    :meth:`DecoderLM.generate`). The model runs in eval mode and gets its mode back.

    Every argument is checked here, when ``stream`` is called, not at the first ``next()``:
    a bad argument fails at the call that gave it."""
    _checks.require_int("max_new_tokens", max_new_tokens, minimum=0)
    _checks.require_bool("use_cache", use_cache)
    _checks.require_bool("compile", compile)
    if compile and not use_cache:
        raise ValueError("compile=True compiles the cached decode step; it needs use_cache=True")
    vocab = model.config.vocab_size
    bad = [t for t in sampling.stop_tokens if t >= vocab]
    if bad:
        raise ValueError(f"stop_tokens {bad} are outside the vocabulary [0, {vocab})")
    device = next(model.parameters()).device
    tokens, lengths = pad_prompts(prompts, device, vocab)  # (B, Tp), (B,)
    total = int(lengths.max()) + max_new_tokens
    if model.config.position == "learned" and total > model.config.max_seq_len:
        raise ValueError(
            f"prompt ({int(lengths.max())}) + max_new_tokens ({max_new_tokens}) = {total} "
            f"exceeds max_seq_len={model.config.max_seq_len} of the learned positions"
        )
    return _steps(
        model, tokens, lengths, total, max_new_tokens, sampling, use_cache, generator, compile
    )


# A generator function's body runs at each next(), outside the no_grad of the call that made
# it: it needs its own (torch's decorator enters it around every resumption).
@torch.no_grad()
def _steps(
    model: DecoderLM,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    total: int,
    max_new_tokens: int,
    sampling: Sampling,
    use_cache: bool,
    generator: torch.Generator | None,
    compile: bool = False,
) -> Iterator[torch.Tensor]:
    """The decoding loop of :func:`stream` on checked, padded ``tokens`` ``(B, Tp)`` with
    ``lengths`` ``(B,)``."""
    device, b = tokens.device, tokens.shape[0]
    stops = torch.tensor(sampling.stop_tokens, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    rows = torch.arange(b, device=device)
    was_training = model.training
    model.eval()
    # Decode steps multiply B rows by every weight: pack the weights for B rows (the
    # packed_weights module says when it pays).
    pack = (
        use_cache
        and not compile
        and device.type == "cpu"
        and packed_weights.worth_packing(model, b, b * max_new_tokens)
    )
    try:
        cache = compiled = None
        if use_cache:
            if compile:
                compiled = compiled_decode.step_for(model, b, total)
                cache = compiled.cache
                cache.reset()  # the compiled step's own cache (compiled_decode says why)
            else:
                cache = model.new_cache(b, total)
            cache.set_prompt_lengths(lengths)
            prefill = torch.arange(tokens.shape[1], device=device)  # (Tp,)
            hidden = model.transform_cached(tokens, prefill, cache)  # (B, Tp, E)
            # Only each row's last prompt position is read: the head runs on B rows, not B*Tp.
            last = model.head(hidden[rows, lengths - 1])  # (B, V)
        else:
            seq = torch.zeros(b, total, dtype=torch.long, device=device)
            seq[:, : tokens.shape[1]] = tokens
            last = model(tokens)[rows, lengths - 1]  # (B, V)
        for step in range(max_new_tokens):
            nxt = sample_next(last, sampling, generator=generator).masked_fill(done, -1)  # (B,)
            yield nxt
            done = done | torch.isin(nxt, stops)
            if bool(done.all()) or step == max_new_tokens - 1:
                return
            feed = nxt.clamp_min(0)
            if cache is not None:
                # The fed tokens come from the vocabulary by construction: no range check.
                step = cache.next_positions(1)  # (B, 1)
                if compiled is not None:
                    last = compiled(feed[:, None], step)  # (B, V)
                else:
                    with packed_weights.use(model, rows=b) if pack else contextlib.nullcontext():
                        hidden = model.transform_cached(feed[:, None], step, cache)  # (B, 1, E)
                        last = model.head(hidden[:, -1])  # (B, V)
            else:
                seq[rows, lengths] = feed
                lengths = lengths + 1
                last = model(seq[:, : int(lengths.max())])[rows, lengths - 1]  # (B, V)
    finally:
        model.train(was_training)


def generate(
    model: DecoderLM,
    prompts: Prompts,
    *,
    max_new_tokens: int,
    sampling: Sampling,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> list[list[int]]:
    """Collect :func:`stream`'s tokens: each prompt's new tokens (a stop token included)."""
    out: list[list[int]] = []
    steps = stream(
        model,
        prompts,
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        use_cache=use_cache,
        generator=generator,
        compile=compile,
    )
    for step_tokens in steps:
        if not out:
            out = [[] for _ in range(step_tokens.shape[0])]
        for row, tok in zip(out, step_tokens.tolist()):
            if tok >= 0:
                row.append(tok)
    return out
