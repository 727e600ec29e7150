"""Per-head scores of attention maps, vectorised over batch and heads.

Every function takes weights ``(B, H, Tq, Tk)`` (a recorded map, ``rec.weights[i]``) and
returns ``(H,)`` float64. Each is a ratio of two sums over the counted query rows (valid,
with weights summing to more than 0), computed by
:class:`~multihead.analysis.summary.HeadSummary`, which is also what ``mode="summary"``
accumulates block by block; so a score from a map equals the score from the summary of the
same inputs. Notation: ``w[q, k]`` the weight of query row ``q`` on key ``k``, ``p(q)``,
``p(k)`` their positions, ``t(p)`` the token at position ``p``, ``R`` the counted rows,
``M = sum_{q in R} sum_k w[q, k]`` the head's attention mass (the number of rows, unless a
head mask scales it).

Common arguments:
    tokens: ``(B, P)`` token ids by position (for a map of the whole input, the input tokens).
    positions: ``(q_pos, k_pos)``, ``(Tq,)`` or ``(B, Tq)`` and ``(Tk,)`` or ``(B, Tk)``
        (-1 = an empty cache slot); default keys ``0 .. Tk-1`` and queries at the bottom
        right (``0 .. T-1`` for self-attention).
    query_mask: ``(B, Tq)`` bool, True = a real query (padded queries do not count).
    allowed: ``(B|1, H|1, Tq, Tk)`` bool, True = the mask lets the query see the key; needed
        only by the scores that look at keys a head could have attended (normalized entropy,
        rare-token); default every key.

The pattern scores (offset, previous/next token, duplicate, induction) are TransformerLens's
``"mul"`` score (``head_detector.py``): the share of the head's attention on the expected
query-key pairs, ``sum_{q, k} w[q, k] * pattern[q, k] / M``, pooled over every counted row of
every sequence. With ``exclude_first=True`` the first token (key position 0) is left out of
both sums, like its ``exclude_bos``.

Example:
    >>> import torch
    >>> w = torch.eye(4)[[0, 0, 1, 2]].view(1, 1, 4, 4)     # each query reads the one before
    >>> float(previous_token_score(w)[0]), float(sink_score(w)[0])
    (0.75, 0.5)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from multihead import _checks
from multihead.analysis.summary import HeadSummary, Rows

Positions = tuple[torch.Tensor, torch.Tensor]


def summarize(
    weights: torch.Tensor,
    *,
    tokens: torch.Tensor | None = None,
    positions: Positions | None = None,
    query_mask: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
    **options,
) -> HeadSummary:
    """A :class:`HeadSummary` of one map ``(B, H, Tq, Tk)``; ``options`` go to it."""
    _checks.require_tensor("weights", weights)
    _checks.require_rank("weights", weights, 4, "(B, H, Tq, Tk)")
    _checks.require_floating("weights", weights)
    b, h, tq, tk = weights.shape
    if positions is None:
        rows = Rows.plain(tq, tk)
        rows.q_pos, rows.k_pos = rows.q_pos.to(weights.device), rows.k_pos.to(weights.device)
    else:
        q_pos, k_pos = (torch.as_tensor(p, device=weights.device).long() for p in positions)
        q_pos = q_pos.view(1, -1) if q_pos.dim() == 1 else q_pos  # (1|B, Tq)
        k_pos = k_pos.view(1, -1) if k_pos.dim() == 1 else k_pos  # (1|B, Tk)
        if q_pos.shape[-1] != tq or k_pos.shape[-1] != tk:
            raise ValueError(
                f"positions have {q_pos.shape[-1]} queries and {k_pos.shape[-1]} keys but "
                f"weights {tuple(weights.shape)} expect {tq} and {tk}"
            )
        rows = Rows(q_pos, k_pos)
    if tokens is not None:
        _checks.require_tensor("tokens", tokens)
        _checks.require_rank("tokens", tokens, 2, "(B, P) token ids by position")
        if tokens.shape[0] not in (1, b) or tokens.is_floating_point():
            raise ValueError(
                f"tokens must be integer ids (B={b}, P), got {tuple(tokens.shape)} {tokens.dtype}"
            )
        rows.tokens = tokens.long()
    if query_mask is not None:
        if tuple(query_mask.shape) not in ((b, tq), (1, tq)) or query_mask.dtype != torch.bool:
            raise ValueError(
                f"query_mask must be bool (B, Tq) = ({b}, {tq}) with True = real query, got "
                f"{tuple(query_mask.shape)} {query_mask.dtype}"
            )
        rows.valid = query_mask
    rows.allowed = allowed
    summary = HeadSummary(h, **options)
    summary.update(weights, rows)
    return summary


def entropy(weights: torch.Tensor, **kw) -> torch.Tensor:
    """Mean entropy (nats) of a head's rows, ``1/|R| sum_q -sum_k w log w`` (Clark et al.
    2019, "What Does BERT Look At?", section 3.3)."""
    return summarize(weights, **kw).scores()["entropy"]


def normalized_entropy(weights: torch.Tensor, **kw) -> torch.Tensor:
    """Mean of each row's entropy over the log of the number of keys it may see, over rows
    that see at least 2 keys: 1 = uniform, 0 = one key. Pass ``allowed`` for masked maps."""
    return summarize(weights, **kw).scores()["normalized_entropy"]


def confidence(weights: torch.Tensor, **kw) -> torch.Tensor:
    """Mean max weight, ``1/|R| sum_q max_k w[q, k]`` (Voita et al. 2019, "Analyzing
    Multi-Head Self-Attention", section 4.1)."""
    return summarize(weights, **kw).scores()["confidence"]


def mean_distance(weights: torch.Tensor, **kw) -> torch.Tensor:
    """Mean attention distance in positions, ``1/M sum_{q,k} w[q, k] |p(q) - p(k)|`` (the
    "attention distance" of Vig and Belinkov 2019 and of ViT, Dosovitskiy et al. 2021)."""
    return summarize(weights, **kw).scores()["mean_distance"]


def sink_score(weights: torch.Tensor, **kw) -> torch.Tensor:
    """Share of attention on the first token, ``1/M sum_q w[q, k: p(k) = 0]`` (the attention
    sink of Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks")."""
    return summarize(weights, **kw).scores()["sink"]


def special_token_score(
    weights: torch.Tensor, tokens: torch.Tensor, special_tokens: Iterable[int], **kw
) -> torch.Tensor:
    """Share of attention on keys holding one of ``special_tokens`` (e.g. [CLS], [SEP]),
    ``1/M sum_{q,k} w[q, k] [t(p(k)) in S]`` (Clark et al. 2019, section 3.2)."""
    kw["special_tokens"] = list(special_tokens)
    return summarize(weights, tokens=tokens, **kw).scores()["special_token"]


def offset_score(weights: torch.Tensor, k: int, **kw) -> torch.Tensor:
    """Share of attention on the key ``k`` positions back, ``1/M sum_q w[q, p(key) = p(q) -
    k]``: ``k = 1`` the previous token, ``k = -1`` the next, ``k = 0`` the token itself (a
    "mul" score with the pattern ``p(k) = p(q) - k``; positional heads of Voita et al.
    2019)."""
    _checks.require_int("k", k)
    summary = summarize(weights, max_offset=abs(k), **kw)
    return summary.scores()["offset_scores"][:, summary.offsets.index(k)]


def previous_token_score(weights: torch.Tensor, **kw) -> torch.Tensor:
    """:func:`offset_score` with ``k = 1`` (the query reads the key just before it)."""
    return offset_score(weights, 1, **kw)


def next_token_score(weights: torch.Tensor, **kw) -> torch.Tensor:
    """:func:`offset_score` with ``k = -1`` (the query reads the key just after it)."""
    return offset_score(weights, -1, **kw)


def duplicate_token_score(weights: torch.Tensor, tokens: torch.Tensor, **kw) -> torch.Tensor:
    """Share of attention on earlier occurrences of the query's own token, pattern
    ``p(k) < p(q) and t(p(k)) = t(p(q))`` (TransformerLens's duplicate-token detector,
    "mul")."""
    return summarize(weights, tokens=tokens, **kw).scores()["duplicate_token"]


def induction_score(weights: torch.Tensor, tokens: torch.Tensor, **kw) -> torch.Tensor:
    """Prefix matching (Olsson et al. 2022, "In-context Learning and Induction Heads"): share
    of attention on keys whose *previous* token equals the query's token, pattern ``1 <= p(k)
    <= p(q) and t(p(k) - 1) = t(p(q))`` (TransformerLens's induction detector, "mul"). On a
    random sequence repeated twice this is the key one after the query's earlier copy."""
    return summarize(weights, tokens=tokens, **kw).scores()["induction"]


def rare_token_score(
    weights: torch.Tensor, tokens: torch.Tensor, frequencies: torch.Tensor, **kw
) -> torch.Tensor:
    """Share of counted rows whose most-attended key holds the rarest token the query may see
    (lowest ``frequencies[token]``, ties count) (Voita et al. 2019, section 4.3: "the head
    points to the least frequent tokens"). ``frequencies`` ``(V,)``; pass ``allowed``."""
    kw["frequencies"] = frequencies
    return summarize(weights, tokens=tokens, **kw).scores()["rare_token"]


def token_frequencies(batches: Iterable[torch.Tensor], vocab_size: int) -> torch.Tensor:
    """Token counts ``(V,)`` float64 over ``batches`` of ids (for :func:`rare_token_score`)."""
    _checks.require_positive_int("vocab_size", vocab_size)
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for t in batches:
        t = t.reshape(-1).long().cpu()  # (N,)
        counts += torch.bincount(t[(t >= 0) & (t < vocab_size)], minlength=vocab_size)
    return counts
