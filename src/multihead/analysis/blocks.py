"""Attention weights one block of query rows at a time, over the keys each block may see.

:func:`visible_blocks` is what :func:`~multihead.analysis.record` builds on: it recomputes
the softmax beside the fast backend's output, tile by tile, skipping the key blocks the mask
forbids for a whole block of queries (past the causal diagonal, outside a sliding window), so
a causal map costs about half the full one. :func:`weight_map` assembles the kept map of
``mode="weights"`` from those tiles; summary mode feeds them, with the entropy and largest
weight its softmax already has, to :class:`~multihead.analysis.summary.HeadSummary`.

Legend: B batch, Hq query heads, Tq queries, Tk keys, D head width. Mask polarity: True =
may attend.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from multihead import _hugepages as hugepages
from multihead.backends import math as math_backend
from multihead.backends.blockwise import has_dense_parts, mask_tile
from multihead.observation import AttentionPoints

BLOCK_ELEMENTS = 1 << 22  # scores per block for summaries (16 MiB in float32)
# Scores per block for a kept map: tiles of 2 MiB in float32 stay in cache between the
# matmul, the softmax and the copy into the map (in a quick sweep on this project's machine,
# 2**19 was the fastest of 2**17 to 2**20, which were within about 20 % of each other; the
# whole-model cost is in benchmarks/RESULTS.md, "Attention capture cost").
MAP_ELEMENTS = 1 << 19


def weight_map(p: AttentionPoints, heads: list[int], block: int) -> torch.Tensor:
    """The weights of the query heads ``heads``, ``(B, H_sel, Tq, Tk)`` in q's dtype, equal
    to :meth:`AttentionPoints.weights` (head mask applied, 0 for keys a row may not see and
    for rows that see none). Only the keys each block of rows may see are scored, and the
    mask is applied as the blockwise backend applies it
    (:func:`~multihead.backends.blockwise.mask_tile`: structural parts only on the tiles'
    edges). The map lives on huge pages where the kernel offers them
    (:func:`multihead._hugepages.zeros`). Not differentiable (the map is kept)."""
    b, _, tq, _ = p.q.shape
    tk = p.k.shape[2]
    shape = (b, len(heads), tq, tk)
    out = hugepages.zeros(shape, dtype=p.q.dtype, device=p.q.device)  # (B, H_sel, Tq, Tk)
    dense = has_dense_parts(p.mask)
    for tile in score_tiles(p, block, MAP_ELEMENTS):
        (q0, q1), (k0, k1) = tile.rows, tile.keys
        seen = tile.mask_in_place(dense)  # (B|1, Hkv|1, G|1, tq, 1) or None: every row
        w = torch.softmax(tile.scores, dim=-1)  # (B, Hq, tq, tk)
        tile.scores = None
        if seen is not None:
            bb, hq, rows, cols = w.shape
            w5 = w.view(bb, tile.kv_heads, hq // tile.kv_heads, rows, cols)  # (B,Hkv,G,tq,tk)
            w5.masked_fill_(~seen, 0.0)  # a row that sees no key: 0, not softmax's NaN
        if p.head_mask is not None:
            w.mul_(_head_scale(p.head_mask, w.dtype, w.shape[1]).unsqueeze(-1))
        out[:, :, q0:q1, k0:k1] = select(w, heads)  # the rest of the map stays 0
        del w
    return out


def select(t: torch.Tensor | None, heads: list[int] | None) -> torch.Tensor | None:
    """Keep the query heads ``heads`` of ``t`` ``(B|1, H|1, ...)`` (a shared head stays)."""
    if t is None or t.shape[1] == 1 or heads == list(range(t.shape[1])):
        return t
    return t[:, heads]  # (B|1, H_sel, ...)


class Tile:
    """One block's scores ``(B, Hq, tq, tk)`` (queries ``rows``, keys ``keys``, the query
    heads in groups sharing ``kv_heads`` key heads) and how to apply its mask: ``edges``
    are the key ranges outside the block's fully visible ones (:meth:`QueryBlock.chunks`)."""

    def __init__(self, scores, rows, keys, edges, kv_heads, mask, q_pos, shift) -> None:
        self.scores, self.rows, self.keys, self.edges = scores, rows, keys, edges
        self.kv_heads, self.mask, self.q_pos, self.shift = kv_heads, mask, q_pos, shift

    def render(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The mask's ``(allowed, bias)`` on the whole tile (:meth:`AttentionMask.tile`)."""
        if self.mask.is_empty:
            return None, None
        (q0, q1), (k0, k1) = self.rows, self.keys
        return self.mask.tile(
            self.q_pos[:, q0:q1], k0, k1, q0, q1, dtype=self.scores.dtype, shift=self.shift
        )

    def mask_in_place(self, dense: bool) -> torch.Tensor | None:
        """Write ``-inf`` into the scores where the mask forbids a pair (and add its biases),
        as the blockwise backend does; ``dense``: the mask has parts to render on every
        tile (:func:`~multihead.backends.blockwise.has_dense_parts`). Returns which rows
        see some key, ``(B|1, Hkv|1, G|1, tq, 1)``, or None when every row does."""
        if not (self.edges or dense):
            return None
        b, hq, tq, tk = self.scores.shape
        (q0, q1), (k0, k1) = self.rows, self.keys
        groups = hq // self.kv_heads
        s = self.scores.view(b, self.kv_heads, groups * tq, tk)  # (B, Hkv, G*tq, tk)
        return mask_tile(
            s, self.mask, self.q_pos[:, q0:q1], q0, q1, k0, k1, groups, self.edges, dense,
            self.shift,
        )  # fmt: skip


def score_tiles(p: AttentionPoints, block: int, elements: int) -> Iterator[Tile]:
    """The scaled scores ``q k^T`` of ``p`` one block of query rows at a time, over the keys
    the block may see (:meth:`AttentionMask.plan_blocks`; blocks that see no key are
    skipped), at most ``elements`` scores (``B * Hq * rows * Tk``) and ``block`` rows per
    block, in the compute dtype."""
    b, hq, tq, d = p.q.shape
    k = p.k if p.kv_index is None else p.k.index_select(1, p.kv_index)  # (B, Hkv', Tk, D)
    tk, hkv = k.shape[2], k.shape[1]
    if hq == 0 or tq == 0 or tk == 0:
        return
    cdt = math_backend.compute_dtype(p.q.dtype)
    # One copy into the compute dtype and a dense layout (k is a strided view into the packed
    # projection): each tile's matmul then reads K in place.
    k = k.to(cdt).contiguous()  # (B, Hkv', Tk, D)
    # Long inputs take fewer rows at a time, so the block's few (B, Hq, rows, Tk)
    # temporaries stay small beside the forward's own memory.
    block = max(1, min(block, elements // (b * hq * tk)))
    mask = p.mask
    q_pos = mask.query_pos(tq, tk, p.q.device)  # (1|B, Tq)
    shift = mask.align_shift(tq, tk)
    plan = [(q0, min(q0 + block, tq), 0, tk, []) for q0 in range(0, tq, block)]
    if not mask.is_empty:  # each block's keys [lo, hi) as one chunk, with its edges
        plan = [
            (pb.q0, pb.q1, pb.lo, pb.hi, pb.chunks(pb.hi - pb.lo)[0][2] if pb.hi > pb.lo else [])
            for pb in mask.plan_blocks(tq, tk, block)
        ]
    groups = hq // hkv
    for q0, q1, k0, k1, edges in plan:
        if k1 <= k0:
            continue
        qb = (p.q[:, :, q0:q1].to(cdt) * p.scale).reshape(b, hkv, groups * (q1 - q0), d)
        kt = k[:, :, k0:k1].transpose(-1, -2)  # (B, Hkv', D, tk), a view
        s = torch.matmul(qb, kt).view(b, hq, q1 - q0, k1 - k0)  # (B, Hq, tq, tk)
        yield Tile(s, (q0, q1), (k0, k1), edges, hkv, mask, q_pos, shift)
        del s


def visible_blocks(
    p: AttentionPoints, block: int, *, elements: int = BLOCK_ELEMENTS
) -> Iterator[
    tuple[int, int, int, int, torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]
]:
    """:meth:`AttentionPoints.weights_by_rows` restricted to the keys each block of query rows
    may see: yields ``(q0, q1, k0, k1, w, allowed, known)`` with ``w`` ``(B, Hq, q1 - q0, k1 -
    k0)`` the weights of rows ``[q0, q1)`` on keys ``[k0, k1)`` (every other key of these rows
    has weight 0), ``allowed`` the mask's tile ``(B|1, Hq|1, q1 - q0, k1 - k0)`` or None and
    ``known`` what the softmax already gave, each ``(B, Hq, q1 - q0)``: ``entropy`` (each
    row's ``-sum w log w``), ``top`` (its largest weight) and ``mass`` (its sum), the keyword
    arguments of :meth:`HeadSummary.update`.
    The key range comes from :meth:`AttentionMask.plan_blocks`, so a causal map costs half
    the full one. Blocks whose rows see no key are skipped; ``elements`` caps the scores per
    block (:func:`score_tiles`)."""
    hq = p.q.shape[1]
    for tile in score_tiles(p, block, elements):
        (q0, q1), (k0, k1) = tile.rows, tile.keys
        allowed, bias = tile.render()
        w, ent, top = softmax_entropy(tile.scores, allowed, bias)
        tile.scores = None  # peak memory: two (B, Hq, block, Tk) tensors at most
        mass = (top > 0).to(w.dtype)  # (B, Hq, tq): a softmax row sums to 1, an empty one to 0
        if p.head_mask is not None:
            # Scaled rows c * w: -sum c w log(c w) = c H(w) - c log c.
            c = _head_scale(p.head_mask, w.dtype, hq)  # (B|1, Hq, 1)
            w = w * c.unsqueeze(-1)  # (B, Hq, tq, tk)
            ent = c * ent - torch.special.xlogy(c, c)
            top, mass = c * top, c * mass
        yield q0, q1, k0, k1, w, allowed, {"entropy": ent, "top": top, "mass": mass}
        del w


def _head_scale(head_mask: torch.Tensor, dtype: torch.dtype, hq: int) -> torch.Tensor:
    """The head mask ``(Hq,)`` or ``(B, Hq)`` as ``(B|1, Hq, 1)`` in ``dtype``."""
    c = head_mask.to(dtype)
    return c.view(-1 if c.dim() == 2 else 1, hq, 1)  # (B|1, Hq, 1)


def softmax_entropy(
    s: torch.Tensor, allowed: torch.Tensor | None, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax of scores ``s`` ``(B, H, tq, tk)`` over the allowed keys (``allowed``
    ``(B|1, H|1, tq, tk)`` bool, True = may attend; ``bias`` added first), each row's
    entropy ``-sum w log w`` ``(B, H, tq)``, from ``log w = (s - max) - log z`` so no log of
    the map is taken: ``H = log z - sum_k w (s - max)``, and each row's largest weight
    ``exp(0) / z = 1 / z`` ``(B, H, tq)``. ``s`` is overwritten. Rows with no allowed key get
    weights 0 (as the core gives them), entropy 0 and largest weight 0."""
    low = torch.finfo(s.dtype).min  # finite, so that w * (s - max) is 0, not NaN, off-mask
    if bias is not None:
        s = s + bias
        s.masked_fill_(torch.isneginf(s), low)
    empty = None  # rows with no key to attend, read from the mask as the core does
    if allowed is not None:
        blocked = ~allowed
        cols = blocked.flatten(0, 2).any(0).nonzero()  # key columns with a blocked pair
        if len(cols):  # fill only those columns (under causal: the block's own diagonal tile)
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            s[..., c0:c1].masked_fill_(blocked[..., c0:c1], low)
        empty = ~allowed.any(-1)  # (B|1, H|1, tq)
    if bias is not None:
        none = torch.isneginf(bias).all(-1)
        empty = none if empty is None else empty | none
    s.sub_(s.amax(-1, keepdim=True))  # s - max <= 0
    w = torch.exp(s)
    z = w.sum(-1, keepdim=True)  # (B, H, tq, 1)
    w.div_(z)
    ent = z[..., 0].log() - torch.einsum("bhqk,bhqk->bhq", w, s)  # (B, H, tq)
    top = z[..., 0].reciprocal()  # (B, H, tq): the row's max is exp(0) = 1 before dividing
    if empty is not None and bool(empty.any()):
        w.masked_fill_(empty.unsqueeze(-1), 0.0)
        ent = ent.masked_fill(empty, 0.0)
        top = top.masked_fill(empty, 0.0)
    return w, ent, top
