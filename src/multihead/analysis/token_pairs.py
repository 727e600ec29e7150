"""Query-key pairs that hold the same token, found without a ``(Tq, Tk)`` map.

Legend: B batch, H heads, tq query rows of a block, Tk keys, M matching pairs.

The duplicate-token and induction scores sum each row's weights over the keys whose token (or
whose previous token) equals the query's. Written as a dense ``(tq, Tk)`` pattern that costs
several boolean passes and one full pass over the weights per block; but on most inputs few
keys match (random tokens: 1 / vocabulary of them), so the pairs are listed by sorting the
keys' tokens, and only their M weights per head are read. Inputs where many keys match (one
token repeated) are left to the dense pattern (``limit``).

Example:
    >>> import torch
    >>> b, q, k = matching_pairs(torch.tensor([[5, 7]]), torch.tensor([[7, 5, 5]]), limit=10)
    >>> list(zip(q.tolist(), k.tolist()))
    [(0, 1), (0, 2), (1, 0)]
"""

from __future__ import annotations

import torch


def matching_pairs(
    q_tok: torch.Tensor, k_tok: torch.Tensor, *, limit: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Every ``(b, q, k)`` with ``q_tok[b, q] == k_tok[b, k]``, tokens ``>= 0`` (-1 =
    unknown, matches nothing); ``q_tok`` ``(1|B, tq)``, ``k_tok`` ``(1|B, Tk)`` int64, a
    batch of 1 shared by all. Returns three ``(M,)`` int64 index tensors, ordered by ``(b,
    q)`` then ``k``, or None when ``M > limit`` (counted before anything is listed)."""
    b = max(q_tok.shape[0], k_tok.shape[0])
    q_tok, k_tok = q_tok.expand(b, -1), k_tok.expand(b, -1)  # (B, tq), (B, Tk)
    tq, tk = q_tok.shape[1], k_tok.shape[1]
    dev = q_tok.device
    if tq == 0 or tk == 0:
        none = torch.zeros(0, dtype=torch.long, device=dev)
        return none, none, none
    span = int(torch.maximum(q_tok.max(), k_tok.max()).clamp(min=0)) + 1
    base = torch.arange(b, device=dev).unsqueeze(1) * span  # (B, 1)
    # One code per (batch, token); unknown keys get -1 and unknown queries -2, which no key has.
    k_code = torch.where(k_tok >= 0, base + k_tok, -1).reshape(b * tk)  # (B*Tk,)
    q_code = torch.where(q_tok >= 0, base + q_tok, -2).reshape(b * tq)  # (B*tq,)
    sorted_codes, order = k_code.sort(stable=True)  # keys grouped by code, in key order
    start = torch.searchsorted(sorted_codes, q_code, side="left")  # (B*tq,)
    counts = torch.searchsorted(sorted_codes, q_code, side="right") - start  # (B*tq,)
    m = int(counts.sum())
    if m > limit:
        return None
    row = torch.repeat_interleave(torch.arange(b * tq, device=dev), counts)  # (M,)
    first = torch.cumsum(counts, 0) - counts  # (B*tq,): where each row's pairs begin
    within = torch.arange(m, device=dev) - first[row]  # (M,) 0 .. count - 1 per row
    key = order[start[row] + within]  # (M,) flat b * Tk + k
    return row // tq, row % tq, key % tk


def pair_row_sums(
    w: torch.Tensor, b: torch.Tensor, q: torch.Tensor, k: torch.Tensor, *, shared: bool
) -> torch.Tensor:
    """``sum_k w[b, h, q, k]`` over the listed pairs, per row: ``w`` ``(B, H, tq, Tk)``, pairs
    ``(M,)`` each -> ``(B, H, tq)``. ``shared``: the pairs came from one row of tokens that
    every batch shares (``b`` all 0), so they apply to each batch."""
    bw, h, tq, _ = w.shape
    if shared:
        vals = w[:, :, q, k]  # (B, H, M)
        return w.new_zeros(bw, h, tq).index_add_(2, q, vals)
    vals = w[b, :, q, k]  # (M, H)
    out = w.new_zeros(bw * tq, h).index_add_(0, b * tq + q, vals)  # (B*tq, H)
    return out.view(bw, tq, h).transpose(1, 2)  # (B, H, tq)
