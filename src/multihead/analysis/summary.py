"""Per-head summary statistics: sums over query rows that accumulate over blocks and batches.

Every score of :mod:`multihead.analysis.scores` is a ratio of two sums over query rows (see
:meth:`HeadSummary.scores`), so a :class:`HeadSummary` can be fed one block of rows at a time
(``mode="summary"`` of :func:`~multihead.analysis.record`, memory O(H * block * Tk)) or whole
maps (``mode="weights"``, or the score functions on a given map) and gives the same numbers.
Each row's own reduction over the keys is the same in both; only the order in which rows are
added (in float64) differs.

Legend: B batch, H heads, tq rows of the block, Tk keys, P positions. Mask polarity: True =
may attend. A query row counts when it is valid (not padding) and its weights sum to more
than 0 (a row with no key to attend to, or a head masked to 0, has weight 0 everywhere).

Example:
    >>> import torch
    >>> w = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])      # (B=1, H=1, Tq=2, Tk=2)
    >>> s = HeadSummary(1)
    >>> s.update(w, Rows.plain(2, 2))
    >>> round(float(s.scores()["confidence"][0]), 3)        # mean max weight: (1 + 0.5) / 2
    0.75
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from multihead import _checks
from multihead.analysis.redundancy import js_sums
from multihead.analysis.token_pairs import matching_pairs, pair_row_sums


@dataclass
class Rows:
    """A block of query rows: what the statistics need besides the weights.

    Attributes:
        q_pos: positions of the rows' queries ``(1 | B, tq)`` int64.
        k_pos: positions of the keys ``(1 | B, Tk)`` int64; -1 = an empty cache slot.
        valid: ``(1 | B, tq)`` bool, False = a padded query that does not count; None = all.
        allowed: ``(B|1, H|1, tq, Tk)`` bool, True = the query may attend the key (what the
            mask allows); None = every key with a position >= 0.
        tokens: ``(1 | B, P)`` int64, the token at each position (-1 = unknown); None when
            the tokens are unknown (the token scores are then NaN).
    """

    q_pos: torch.Tensor
    k_pos: torch.Tensor
    valid: torch.Tensor | None = None
    allowed: torch.Tensor | None = None
    tokens: torch.Tensor | None = None

    @staticmethod
    def plain(tq: int, tk: int, *, tokens: torch.Tensor | None = None) -> Rows:
        """Self-attention rows without a cache: keys at ``0 .. Tk-1``, queries aligned at the
        bottom right (``Tk - Tq .. Tk - 1``, i.e. ``0 .. T-1`` when ``Tq == Tk``)."""
        q_pos = torch.arange(tk - tq, tk).unsqueeze(0)  # (1, tq)
        return Rows(q_pos, torch.arange(tk).unsqueeze(0), tokens=tokens)

    def block(
        self,
        q0: int,
        q1: int,
        allowed: torch.Tensor | None = None,
        keys: tuple[int, int] | None = None,
    ) -> Rows:
        """Rows ``[q0, q1)`` of these rows, with the block's own ``allowed``; ``keys =
        (k0, k1)`` keeps only those keys (the weights of the block cover only them)."""
        valid = None if self.valid is None else self.valid[:, q0:q1]
        k_pos = self.k_pos if keys is None else self.k_pos[:, keys[0] : keys[1]]
        return Rows(self.q_pos[:, q0:q1], k_pos, valid, allowed, self.tokens)


def tokens_at(table: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The tokens of ``table`` ``(1|B, P)`` at positions ``pos`` ``(1|B, n)``: ``(B, n)``,
    -1 where the position is negative or past the table."""
    b = max(table.shape[0], pos.shape[0])
    inside = (pos >= 0) & (pos < table.shape[1])
    got = table.expand(b, -1).gather(1, pos.clamp(0, table.shape[1] - 1).expand(b, -1))
    return torch.where(inside, got, -1)  # (B, n)


def key_index(k_pos: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """Index into the keys of the key at position ``wanted`` ``(1|B, n)``, or -1 when no key
    sits there; ``k_pos`` ``(1|B, Tk)``. Returns ``(1|B, n)`` int64."""
    tk = k_pos.shape[1]
    k0 = int(k_pos[0, 0]) if tk else 0
    contiguous = torch.arange(k0, k0 + tk, device=k_pos.device)  # keys k0 .. k0 + Tk - 1
    if k_pos.shape[0] == 1 and k0 >= 0 and torch.equal(k_pos[0], contiguous):
        idx = wanted - k0
        return torch.where((idx >= 0) & (idx < tk), idx, -1)
    top = int(k_pos.max().clamp(min=0)) + 1
    # inverse[b, p] = index of the key at position p; column `top` collects empty slots.
    inverse = torch.full((k_pos.shape[0], top + 1), -1, dtype=torch.long, device=k_pos.device)
    slots = torch.where(k_pos >= 0, k_pos, top)  # (1|B, Tk)
    inverse.scatter_(1, slots, torch.arange(tk, device=k_pos.device).expand_as(slots))
    inverse[:, top] = -1
    return tokens_at(inverse, wanted.clamp(max=top))


class HeadSummary:
    """Per-head sums over query rows (float64), for ``num_heads`` heads.

    Args:
        num_heads: H.
        max_offset: offsets ``-max_offset .. max_offset`` get a positional score.
        special_tokens: token ids whose attention :func:`special_token_score` measures.
        frequencies: ``(V,)`` token counts (or frequencies) for the rare-token score.
        exclude_first: leave the first token (key position 0) out of the pattern scores
            (offsets, duplicate, induction): TransformerLens's ``exclude_bos``.
        pairs: also sum the Jensen-Shannon divergence between every two heads' rows
            (:func:`~multihead.analysis.redundancy.js_sums`; costs about H times the rest),
            read with :meth:`divergence`.
    """

    def __init__(
        self,
        num_heads: int,
        *,
        max_offset: int = 8,
        special_tokens: Iterable[int] | None = None,
        frequencies: torch.Tensor | None = None,
        exclude_first: bool = False,
        pairs: bool = False,
    ) -> None:
        self.num_heads = _checks.require_nonnegative_int("num_heads", num_heads)
        self.max_offset = _checks.require_nonnegative_int("max_offset", max_offset)
        self.special_tokens = None if special_tokens is None else sorted(set(special_tokens))
        if frequencies is not None:
            _checks.require_tensor("frequencies", frequencies)
            _checks.require_rank("frequencies", frequencies, 1, "(V,) token counts")
            frequencies = frequencies.detach().to(torch.float64)
        self.frequencies = frequencies
        self.exclude_first = _checks.require_bool("exclude_first", exclude_first)
        self.offsets = list(range(-self.max_offset, self.max_offset + 1))
        h = num_heads
        names = ("rows", "mass", "first", "entropy", "nent", "nent_rows", "max", "distance")
        names += ("special", "tmass", "tfirst", "duplicate", "induction", "rare", "rare_rows")
        self.sums: dict[str, torch.Tensor] = {n: torch.zeros(h, dtype=torch.float64) for n in names}
        self.sums["offsets"] = torch.zeros(h, len(self.offsets), dtype=torch.float64)
        self.pairs = _checks.require_bool("pairs", pairs)
        if pairs:
            self.sums["js"] = torch.zeros(h, h, dtype=torch.float64)
            self.sums["js_rows"] = torch.zeros(h, h, dtype=torch.float64)

    def divergence(self) -> torch.Tensor:
        """Mean row Jensen-Shannon divergence between every two heads, ``(H, H)`` float64
        (NaN where no row counted for both); needs ``pairs=True``."""
        if not self.pairs:
            raise ValueError("this summary was made with pairs=False; it has no divergences")
        return _ratio(self.sums["js"], self.sums["js_rows"])

    def merge(self, other: HeadSummary) -> None:
        """Add ``other``'s sums (same heads and options) to these."""
        if (other.num_heads, other.offsets, other.pairs) != (
            self.num_heads,
            self.offsets,
            self.pairs,
        ):
            raise ValueError(
                f"cannot merge a summary of {other.num_heads} heads and offsets up to "
                f"{other.max_offset} into one of {self.num_heads} heads and {self.max_offset}"
            )
        for name, value in other.sums.items():
            self.sums[name] += value

    def update(
        self,
        w: torch.Tensor,
        rows: Rows,
        *,
        entropy: torch.Tensor | None = None,
        top: torch.Tensor | None = None,
        mass: torch.Tensor | None = None,
    ) -> None:
        """Add the rows of ``w`` ``(B, H, tq, Tk)`` (weights of the query rows ``rows``).
        What the caller already has from its softmax saves a pass over ``w`` each, ``(B, H,
        tq)``: ``entropy`` each row's ``-sum w log w``, ``top`` its largest weight, ``mass``
        its sum (each computed here otherwise)."""
        _checks.require_rank("weights", w, 4, "(B, H, Tq, Tk)")
        if w.shape[1] != self.num_heads:
            raise ValueError(
                f"weights have {w.shape[1]} heads ({tuple(w.shape)}) but the summary has "
                f"{self.num_heads}"
            )
        if w.shape[2] == 0 or w.shape[0] == 0:
            return
        # Rows reduce in float32 (float64 maps stay float64); rows add up in float64.
        w = w.detach()
        w = w if w.dtype in (torch.float32, torch.float64) else w.float()
        known = {"entropy": entropy, "top": top, "mass": mass}
        for name, value in _row_sums(w, rows, self, known).items():
            self.sums[name] += value.to(self.sums[name].device)

    def scores(self) -> dict[str, torch.Tensor]:
        """Every score, ``{name: (H,) float64}`` (NaN where nothing was counted). Named as
        :mod:`multihead.analysis.scores` documents them; ``offset_scores`` is ``(H, 2K+1)``
        for the offsets ``-K .. K`` and ``positional_offset`` the best offset other than
        +-1 (whose score is ``positional``)."""
        s = self.sums
        den = s["mass"] - s["first"] if self.exclude_first else s["mass"]
        tden = s["tmass"] - s["tfirst"] if self.exclude_first else s["tmass"]
        off = _ratio(s["offsets"], den.unsqueeze(1))  # (H, 2K+1)
        out = {
            "entropy": _ratio(s["entropy"], s["rows"]),
            "normalized_entropy": _ratio(s["nent"], s["nent_rows"]),
            "confidence": _ratio(s["max"], s["rows"]),
            "mean_distance": _ratio(s["distance"], s["mass"]),
            "sink": _ratio(s["first"], s["mass"]),
            "previous_token": off[:, self.offsets.index(1)] if self.max_offset else _nan(s),
            "next_token": off[:, self.offsets.index(-1)] if self.max_offset else _nan(s),
            "duplicate_token": _ratio(s["duplicate"], tden),
            "induction": _ratio(s["induction"], tden),
            "offset_scores": off,
        }
        others = [i for i, k in enumerate(self.offsets) if k not in (1, -1)]
        best = off[:, others].nan_to_num(-1.0).max(dim=1)
        out["positional"] = torch.where(best.values < 0, math.nan, best.values)
        ks = torch.tensor([self.offsets[i] for i in others], dtype=torch.float64)
        out["positional_offset"] = ks[best.indices]
        if self.special_tokens is not None:
            out["special_token"] = _ratio(s["special"], s["tmass"])
        if self.frequencies is not None:
            out["rare_token"] = _ratio(s["rare"], s["rare_rows"])
        return out


def _nan(s: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.full_like(s["rows"], math.nan)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-300), math.nan)


def _row_sums(
    w: torch.Tensor, rows: Rows, opt: HeadSummary, known: dict[str, torch.Tensor | None]
) -> dict[str, torch.Tensor]:
    """The block's contribution to every sum of :class:`HeadSummary`, each ``(H,)``;
    ``known`` holds the row values the caller has (entropy, top, mass; None = compute).

    Elementwise passes over ``(B, H, tq, Tk)`` dominate the cost, so each one is reduced at
    once (einsum, a matrix-vector product) and the log is taken once."""
    rowsum = w.sum(-1) if known["mass"] is None else known["mass"]  # (B, H, tq)
    top, top_idx = known["top"], None
    if opt.frequencies is not None:
        top, top_idx = w.max(-1)  # (B, H, tq) each: the rare-token score needs the argmax
    elif top is None:
        top = w.amax(-1)  # (B, H, tq)
    ent = known["entropy"]
    keep = top > 0
    if rows.valid is not None:
        keep = keep & rows.valid[:, None, :]  # (B, H, tq)

    def total(x: torch.Tensor) -> torch.Tensor:  # (B|1, H|1, tq) -> (H,) float64
        return torch.where(keep, x, 0.0).double().sum(dim=(0, 2))

    q_pos, k_pos = rows.q_pos, rows.k_pos
    visible = k_pos[:, None, None, :] >= 0  # (1|B, 1, 1, Tk)
    if rows.allowed is not None:
        visible = visible & rows.allowed
    # w log w with log(w + tiny): exact 0 for w = 0, and a relative change below 1e-20 for
    # any weight above 1e-10 (xlogy is several times slower).
    if ent is None:
        ent = -torch.einsum("bhqk,bhqk->bhq", w, torch.add(w, 1e-30).log_())  # (B, H, tq)
    nvis = visible.sum(-1)  # (B|1, H|1, tq)
    many = nvis > 1
    out = {
        "rows": total(torch.ones_like(rowsum)),
        "mass": total(rowsum),
        "entropy": total(ent),
        "nent": total(torch.where(many, ent / nvis.clamp(min=2).log(), 0.0)),
        "nent_rows": total(many.expand_as(keep).to(w.dtype)),
        "max": total(top),
        "distance": total(_distance(w, q_pos, k_pos, rowsum)),
    }
    first = _at_positions(w, k_pos, torch.zeros_like(q_pos).unsqueeze(-1))  # (B, H, tq, 1)
    out["first"] = total(first[..., 0])
    wanted = q_pos.unsqueeze(-1) - torch.tensor(opt.offsets, device=q_pos.device)  # (.., tq, n)
    at = _at_positions(w, k_pos, wanted)  # (B, H, tq, n)
    if opt.exclude_first:
        at = at.masked_fill(wanted.unsqueeze(1) == 0, 0.0)
    out["offsets"] = torch.where(keep.unsqueeze(-1), at, 0.0).double().sum(dim=(0, 2))
    if rows.tokens is not None:
        out.update(_token_sums(w, rows, opt, total, rowsum, first[..., 0], top_idx))
    if opt.pairs:
        out["js"], out["js_rows"] = js_sums(w, w, query_mask=rows.valid)
    return out


def _distance(
    w: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor, rowsum: torch.Tensor
) -> torch.Tensor:
    """``sum_k w[b, h, q, k] |p(q) - p(k)|`` ``(B, H, tq)``, as ``p(q) sum_k w - sum_k w
    p(k)`` (one matrix-vector product) plus ``2 sum_k w (p(k) - p(q))`` over the keys after
    the query, taken only on the key columns where some key follows some query of the
    block (under a causal mask: the diagonal tile). Empty slots (``p(k) = -1``) have
    weight 0. Positions are taken relative to the block's first query, so the product
    does not cancel large numbers: the error is relative to the distance itself."""
    b, h, tq, tk = w.shape
    ref = q_pos.min()
    kp = (k_pos - ref).to(w.dtype).expand(b, tk)  # (B, Tk)
    qp = (q_pos - ref).to(w.dtype).expand(b, tq)  # (B, tq)
    below = torch.bmm(w.reshape(b, h * tq, tk), kp.unsqueeze(-1)).view(b, h, tq)  # (B, H, tq)
    dist = qp.unsqueeze(1) * rowsum - below  # (B, H, tq)
    after = (k_pos > ref).any(0).nonzero()  # key columns after some query
    if len(after):
        c0, c1 = int(after[0]), int(after[-1]) + 1
        ahead = (kp[:, None, c0:c1] - qp[:, :, None]).clamp(min=0)  # (B, tq, c1 - c0)
        dist = dist + 2 * _rowdot(w[..., c0:c1], ahead)
    return dist


def _rowdot(w: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``sum_k w[b, h, q, k] * f[b, q, k]``: ``w`` ``(B, H, tq, Tk)``, ``f`` ``(1|B, tq, Tk)``
    (shared by the heads) -> ``(B, H, tq)``."""
    return torch.einsum("bhqk,bqk->bhq", w, f.expand(w.shape[0], -1, -1))


def _at_positions(w: torch.Tensor, k_pos: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """``w`` ``(B, H, tq, Tk)`` at the keys at positions ``wanted`` ``(1|B, tq, n)``:
    ``(B, H, tq, n)``, 0 where no key sits at the wanted position."""
    b, h, tq, _ = w.shape
    n = wanted.shape[-1]
    idx = key_index(k_pos, wanted.reshape(wanted.shape[0], tq * n))  # (1|B, tq*n)
    idx = idx.view(-1, 1, tq, n).expand(b, h, tq, n)  # (B, H, tq, n)
    got = w.gather(3, idx.clamp(min=0))
    return torch.where(idx >= 0, got, 0.0)


def _matched(w: torch.Tensor, q_tok, k_tok, rows: Rows, where) -> torch.Tensor:
    """``sum_k w[b, h, q, k]`` over the keys whose token ``k_tok`` ``(B', Tk)`` equals the
    query's ``q_tok`` ``(B', tq)`` (both known) and whose positions pass ``where(q_pos,
    k_pos)`` (elementwise, broadcasting): ``(B, H, tq)``. Lists the matching pairs when they
    are few (:mod:`multihead.analysis.token_pairs`), else builds the dense pattern."""
    tq, tk = w.shape[2], w.shape[3]
    q_pos, k_pos = rows.q_pos, rows.k_pos
    rows_of_tokens = max(q_tok.shape[0], k_tok.shape[0])  # B'
    pairs = matching_pairs(q_tok, k_tok, limit=rows_of_tokens * tq * tk // 16)
    if pairs is None:  # many matches: a (B', tq, Tk) pattern and one pass over w
        same = (k_tok[:, None, :] == q_tok[:, :, None]) & (q_tok >= 0)[:, :, None]
        keep = same & where(q_pos[:, :, None], k_pos[:, None, :])  # (B', tq, Tk)
        return _rowdot(w, keep.to(w.dtype))
    b, q, k = pairs  # (M,) each
    qp = q_pos[b.clamp(max=q_pos.shape[0] - 1), q]  # (M,)
    kp = k_pos[b.clamp(max=k_pos.shape[0] - 1), k]  # (M,)
    ok = where(qp, kp).nonzero().squeeze(1)  # (M',)
    shared = max(q_tok.shape[0], k_tok.shape[0]) == 1 and w.shape[0] > 1
    return pair_row_sums(w, b[ok], q[ok], k[ok], shared=shared)


def _token_sums(w, rows: Rows, opt: HeadSummary, total, rowsum, first, top_idx) -> dict:
    """Sums that need the tokens: special, duplicate, induction and rare-token."""
    q_pos, k_pos = rows.q_pos, rows.k_pos
    q_tok = tokens_at(rows.tokens, q_pos)  # (B', tq)
    k_tok = tokens_at(rows.tokens, k_pos)  # (B', Tk)
    prev_tok = tokens_at(rows.tokens, k_pos - 1)  # (B', Tk): the token before each key

    def duplicate(qp: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
        return (kp < qp) & (kp != 0) if opt.exclude_first else kp < qp

    def induction(qp: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
        return (kp <= qp) & (kp >= 1)

    out = {
        "tmass": total(rowsum),
        "tfirst": total(first),
        "duplicate": total(_matched(w, q_tok, k_tok, rows, duplicate)),
        "induction": total(_matched(w, q_tok, prev_tok, rows, induction)),
    }
    if opt.special_tokens is not None:
        special = torch.tensor(opt.special_tokens, dtype=torch.long, device=k_tok.device)
        on = torch.isin(k_tok, special).to(w.dtype)  # (B', Tk)
        out["special"] = total(torch.matmul(w, on[:, None, :, None]).squeeze(-1))
    if opt.frequencies is not None:
        freq = opt.frequencies.to(w.device)
        kf = torch.where(k_tok >= 0, freq[k_tok.clamp(0, len(freq) - 1)], math.inf)  # (B', Tk)
        kf = kf.expand(w.shape[0], -1)  # (B, Tk)
        visible = k_pos[:, None, None, :] >= 0
        if rows.allowed is not None:
            visible = visible & rows.allowed  # (B|1, H|1, tq, Tk)
        fmin = torch.where(visible, kf[:, None, None, :], math.inf).amin(-1)  # (B, H|1, tq)
        f_top = kf.gather(1, top_idx.flatten(1)).view_as(top_idx)  # (B, H, tq)
        out["rare"] = total((f_top <= fmin).to(w.dtype))
        out["rare_rows"] = total(torch.ones_like(rowsum))
    return out
