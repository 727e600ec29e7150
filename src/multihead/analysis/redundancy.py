"""Redundant heads: Jensen-Shannon divergence between heads' attention on the same inputs.

For two heads with rows ``a[q]``, ``b[q]`` (distributions over the same keys) the divergence is
the mean over the query rows both count (valid, weights summing to more than 0) of

    JSD(a, b) = 1/2 KL(a || m) + 1/2 KL(b || m),   m = (a + b) / 2,

in nats, from 0 (same distributions) to ln 2 (disjoint supports). Heads whose divergence is
below a threshold are near-duplicates; :func:`redundant_clusters` groups them by single
linkage (connected components of the "closer than threshold" graph). Comparing the heads of
one model on one input is what Clark et al. 2019 (section 6, "Clustering attention heads")
do with this divergence; Michel et al. 2019 found such heads prunable.

Example:
    >>> import torch
    >>> w = torch.softmax(torch.randn(1, 3, 4, 4), dim=-1)
    >>> w = torch.cat([w, w[:, :1]], dim=1)                  # head 3 copies head 0
    >>> ids, d = pairwise_js([w])
    >>> redundant_clusters(ids, d, threshold=1e-6)
    [[(0, 0), (0, 3)]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from multihead import _checks


def _js_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """JSD of matching rows: ``a`` ``(..., Tk)``, ``b`` ``(..., Tk)`` -> ``(...)``."""
    m = (a + b) / 2
    kl_a = torch.special.xlogy(a, a) - torch.special.xlogy(a, m)
    kl_b = torch.special.xlogy(b, b) - torch.special.xlogy(b, m)
    return (0.5 * (kl_a + kl_b)).sum(-1).clamp(min=0.0)


def js_sums(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    query_mask: torch.Tensor | None = None,
    max_elements: int = 1 << 24,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of row JSDs and number of rows counted by both, for every head of ``a``
    ``(B, Ha, Tq, Tk)`` against every head of ``b`` ``(B, Hb, Tq, Tk)``: two ``(Ha, Hb)``
    float64 tensors (what accumulates over blocks and batches)."""
    _checks.require_rank("a", a, 4, "(B, Ha, Tq, Tk)")
    _checks.require_rank("b", b, 4, "(B, Hb, Tq, Tk)")
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"a {tuple(a.shape)} and b {tuple(b.shape)} must be maps of the same inputs: "
            "same B, Tq and Tk"
        )
    bsz, ha, tq, tk = a.shape
    hb = b.shape[1]
    total = torch.zeros(ha, hb, dtype=torch.float64)
    count = torch.zeros(ha, hb, dtype=torch.float64)
    step = max(1, max_elements // max(1, bsz * ha * hb * tk))
    for q0 in range(0, tq, step):
        pa = a[:, :, q0 : q0 + step].unsqueeze(2)  # (B, Ha, 1, r, Tk)
        pb = b[:, :, q0 : q0 + step].unsqueeze(1)  # (B, 1, Hb, r, Tk)
        both = (pa.sum(-1) > 0) & (pb.sum(-1) > 0)  # (B, Ha, Hb, r)
        if query_mask is not None:
            both = both & query_mask[:, None, None, q0 : q0 + step]
        d = torch.where(both, _js_rows(pa, pb), 0.0)
        total += d.double().sum(dim=(0, 3)).cpu()
        count += both.sum(dim=(0, 3)).cpu()
    return total, count


def js_divergence(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    query_mask: torch.Tensor | None = None,
    max_elements: int = 1 << 24,
) -> torch.Tensor:
    """Mean row JSD between every head of ``a`` ``(B, Ha, Tq, Tk)`` and every head of ``b``
    ``(B, Hb, Tq, Tk)`` (maps of the same inputs): ``(Ha, Hb)`` float64, NaN for a pair with
    no row counted by both. ``query_mask`` ``(B, Tq)`` bool, True = real query. Rows go
    ``max_elements`` at a time (memory O(max_elements)); float64 maps stay float64."""
    total, count = js_sums(a, b, query_mask=query_mask, max_elements=max_elements)
    return torch.where(count > 0, total / count.clamp(min=1), math.nan)


def pairwise_js(
    weights: Sequence[torch.Tensor | None], *, query_mask: torch.Tensor | None = None
) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """JSD between every pair of recorded heads of every layer: ``weights`` is
    ``rec.weights`` (per layer ``(B, H_l, Tq, Tk)`` or None). Returns the heads as
    ``[(layer, index in the recorded map), ...]`` and their ``(N, N)`` matrix (float64)."""
    maps = [(i, w) for i, w in enumerate(weights) if w is not None]
    ids = [(i, h) for i, w in maps for h in range(w.shape[1])]
    out = torch.zeros(len(ids), len(ids), dtype=torch.float64)
    starts, n = [], 0
    for _, w in maps:
        starts.append(n)
        n += w.shape[1]
    for x, (_, wa) in enumerate(maps):
        for y in range(x, len(maps)):
            wb = maps[y][1]
            d = js_divergence(wa, wb, query_mask=query_mask)  # (Ha, Hb)
            sa, sb = starts[x], starts[y]
            out[sa : sa + wa.shape[1], sb : sb + wb.shape[1]] = d
            out[sb : sb + wb.shape[1], sa : sa + wa.shape[1]] = d.T
    return ids, out


def redundant_clusters(
    ids: Sequence[tuple[int, int]], divergence: torch.Tensor, *, threshold: float = 0.05
) -> list[list[tuple[int, int]]]:
    """Groups of at least two heads linked by divergences below ``threshold`` (nats; single
    linkage), each sorted, sorted by their first head. ``divergence`` ``(N, N)`` for ``ids``."""
    _checks.require_number("threshold", threshold, minimum=0.0)
    n = len(ids)
    if tuple(divergence.shape) != (n, n):
        raise ValueError(f"divergence has shape {tuple(divergence.shape)}; expected ({n}, {n})")
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = (divergence < threshold).nonzero().tolist()  # NaN compares False
    for i, j in close:
        if i != j:
            parent[root(i)] = root(j)
    groups: dict[int, list[tuple[int, int]]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(tuple(ids[i]))
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)
