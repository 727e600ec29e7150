"""Block-wise attention in plain PyTorch: O(T) memory forward *and* backward.

Queries are processed in blocks; for each query block, keys are visited in blocks with an
online softmax (running max and sum, Milakov and Gimelshein 2018; Rabe and Staats 2021,
"Self-attention does not need O(n^2) memory"; Dao et al. 2022, FlashAttention). A custom
autograd Function saves only q, k, v, the output and the per-row log-sum-exp, and recomputes
each score tile in backward, so no ``Tq x Tk`` tensor is ever kept.

Key blocks that the mask's structure forbids for a whole query block (past the causal
diagonal, outside a sliding window, past the longest key length) are never computed: causal
attention costs about half of full attention and a window W costs O(T * W).

GQA without copying: the G query heads that share a KV head are stacked along the query
axis, ``(B, Hkv, G * tq, D)``, so each tile is one batched matmul against the shared K/V.

Not supported (the registry says so, ``auto`` avoids it): dropout, since backward would have
to replay the dropout pattern; gradients with respect to mask or bias tensors.
"""

from __future__ import annotations

import torch

from multihead import _checks
from multihead.backends import Backend, Request
from multihead.backends.math import compute_dtype
from multihead.masks import AttentionMask

# Elements in one score tile (B * Hq * tq * tk). 2**22 float32 = 16 MiB: large enough that the
# Python loop is a small share of the time, small enough to stay cache- and memory-friendly.
TILE_ELEMENTS = 1 << 22
MAX_BLOCK_Q = 256
MIN_BLOCK = 64


def choose_blocks(
    batch: int, heads: int, q_len: int, k_len: int, window: int | None
) -> tuple[int, int]:
    """Query and key block sizes for a problem size."""
    block_q = max(1, min(q_len, MAX_BLOCK_Q))
    if window is not None:
        # Each query block sees block_q + window - 1 keys; keep the wasted triangle small.
        block_q = min(block_q, max(MIN_BLOCK, window // 2))
    block_k = max(MIN_BLOCK, TILE_ELEMENTS // max(1, batch * heads * block_q))
    return block_q, min(block_k, max(k_len, 1))


def has_dense_parts(mask: AttentionMask) -> bool:
    """Parts of the mask that must be rendered on every tile (not only on edge tiles)."""
    return (
        mask.key_padding is not None
        or mask.allowed is not None
        or mask.additive is not None
        or bool(mask.head_biases)
    )


def mask_tile(
    s: torch.Tensor,
    mask: AttentionMask,
    q_pos: torch.Tensor,
    q0: int,
    q1: int,
    k0: int,
    k1: int,
    groups: int,
    edges: list[tuple[int, int]],
    dense: bool,
    shift: int,
) -> torch.Tensor | None:
    """Apply the mask to the score tile ``s`` ``(B, Hkv, G*tq, tk)`` (keys ``[k0, k1)``) in
    place, ``-inf`` where a pair may not attend (also what analysis.blocks builds kept maps
    with). Returns which query rows the mask lets see some key of the tile: bool
    broadcastable to ``(B, Hkv, G, tq, 1)``, or None when every row does.

    Structural parts (causal, window, lengths) are rendered only on the ``edges`` columns;
    dense parts (padding, dense masks, biases) on the whole tile."""
    b, hkv, _, tk = s.shape
    s5 = s.view(b, hkv, groups, q1 - q0, tk)  # (B, Hkv, G, tq, tk)
    if dense:
        ranges = [(k0, k1)]
    else:
        ranges = edges
    # Columns outside the edges are fully visible by the plan, so every row sees a key there.
    rows_all = sum(e - a for a, e in ranges) < k1 - k0
    rows: torch.Tensor | None = None
    for a, e in ranges:
        allowed, bias = mask.tile(q_pos, a, e, q0, q1, dtype=s.dtype, shift=shift)
        cols = s5[..., a - k0 : e - k0]  # (B, Hkv, G, tq, e - a), a view
        keep = None  # (B|1, Hq|1, tq, e - a): what the mask keeps (the additive -inf removes)
        if allowed is not None:
            cols.masked_fill_(~_to5(allowed, hkv, groups), -torch.inf)
            keep = allowed
        if bias is not None:
            cols.add_(_to5(bias, hkv, groups))
            if mask.additive is not None:
                finite = ~torch.isneginf(bias)
                keep = finite if keep is None else keep & finite
        if not rows_all:
            if keep is None:
                rows_all = True
            else:
                seen = _to5(keep.any(dim=-1, keepdim=True), hkv, groups)  # (.., tq, 1)
                rows = seen if rows is None else rows | seen
    return None if rows_all else rows


def _to5(t: torch.Tensor, hkv: int, groups: int) -> torch.Tensor:
    """(B|1, Hq|1, tq, tk) -> broadcastable to (B, Hkv, G, tq, tk) (tk may be 1)."""
    b, h, tq, tk = t.shape
    if h == 1:
        return t.view(b, 1, 1, tq, tk)  # (B|1, 1, 1, tq, tk)
    return t.view(b, hkv, groups, tq, tk)  # (B|1, Hkv, G, tq, tk)


def _forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask,
    scale: float,
    block_q: int,
    block_k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns out ``(B, Hq, Tq, Dv)`` (stored as ``(B, Tq, Hq, Dv)``, so that merging heads
    afterwards is free) and lse ``(B, Hq, Tq)`` in the compute dtype (-inf = empty row)."""
    b, hq, tq_all, d = q.shape
    hkv, tk_all, dv = k.shape[1], k.shape[2], v.shape[-1]
    g = hq // hkv
    cdt = compute_dtype(q.dtype)
    dense = has_dense_parts(mask)
    q5 = q.view(b, hkv, g, tq_all, d)  # (B, Hkv, G, Tq, D)
    out_mem = q.new_zeros(b, tq_all, hq, dv)  # (B, Tq, Hq, Dv)
    out5 = out_mem.view(b, tq_all, hkv, g, dv).permute(0, 2, 3, 1, 4)  # (B, Hkv, G, Tq, Dv)
    lse = torch.full((b, hkv, g, tq_all), -torch.inf, dtype=cdt, device=q.device)
    q_pos = mask.query_pos(tq_all, tk_all, q.device)  # (1|B, Tq)
    shift = mask.align_shift(tq_all, tk_all)
    for blk in mask.plan_blocks(tq_all, tk_all, block_q):
        chunks = blk.chunks(block_k)
        if not chunks:
            continue  # every query of the block is fully masked: output 0, lse -inf
        q0, q1 = blk.q0, blk.q1
        tq = q1 - q0
        qb = (q5[:, :, :, q0:q1].to(cdt) * scale).reshape(b, hkv, g * tq, d)  # (B,Hkv,G*tq,D)
        # Running row max m, sum l and unnormalized output acc. A row that has seen only
        # masked keys has m = -inf; m_safe replaces it by 0 so exp() never sees inf - inf.
        # `seen`: the rows the mask lets see some key so far (None = all of them); a row
        # that is not seen is empty (output 0), while a seen row whose scores all came out
        # -inf from non-finite inputs gets 0 / 0 = NaN, as on the other backends.
        m = l = acc = m_safe = None
        seen: torch.Tensor | None = q.new_zeros((), dtype=torch.bool)
        for k0, k1, edges in chunks:
            kb = k[:, :, k0:k1].to(cdt)  # (B, Hkv, tk, D)
            vb = v[:, :, k0:k1].to(cdt)  # (B, Hkv, tk, Dv)
            s = torch.matmul(qb, kb.transpose(-1, -2))  # (B, Hkv, G*tq, tk)
            rows = None
            if edges or dense:
                rows = mask_tile(s, mask, q_pos[:, q0:q1], q0, q1, k0, k1, g, edges, dense, shift)
            if seen is not None:
                seen = None if rows is None else seen | rows
            m_blk = s.amax(dim=-1, keepdim=True)  # (B, Hkv, G*tq, 1)
            m_new = m_blk if m is None else torch.maximum(m, m_blk)
            m_safe = m_new.masked_fill(torch.isneginf(m_new), 0.0)
            p = s.sub_(m_safe).exp_()  # exp(-inf) = 0 for masked scores
            if m is None:
                l = p.sum(dim=-1, keepdim=True)
                acc = torch.matmul(p, vb)  # (B, Hkv, G*tq, Dv)
            else:
                alpha = torch.exp(m - m_safe)  # rescales what was accumulated; 0 if m = -inf
                l = torch.addcmul(p.sum(dim=-1, keepdim=True), l, alpha)
                acc = torch.addcmul(torch.matmul(p, vb), acc, alpha)
            m = m_new
        assert l is not None and acc is not None and m_safe is not None
        empty = l == 0  # (B, Hkv, G*tq, 1)
        out_b = acc.div_(l)  # (B, Hkv, G*tq, Dv); a seen row with l = 0 is 0 / 0 = NaN
        if seen is not None:
            # Rows the mask lets see no key are 0, even if masked-out inputs hold NaN.
            unseen = ~seen.expand(b, hkv, g, tq, 1).reshape(b, hkv, g * tq, 1)  # (B,Hkv,G*tq,1)
            out_b.masked_fill_(unseen, 0.0)
            empty = empty | unseen
        out5[:, :, :, q0:q1] = out_b.view(b, hkv, g, tq, dv)  # (B, Hkv, G, tq, Dv)
        lse_b = (m_safe + torch.log(l)).masked_fill_(empty, -torch.inf)  # (B, Hkv, G*tq, 1)
        lse[:, :, :, q0:q1] = lse_b.view(b, hkv, g, tq)
    out = out_mem.transpose(1, 2)  # (B, Hq, Tq, Dv), a view
    return out, lse.view(b, hq, tq_all)


def _backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    mask: AttentionMask,
    scale: float,
    block_q: int,
    block_k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, hq, tq_all, d = q.shape
    hkv, tk_all, dv = k.shape[1], k.shape[2], v.shape[-1]
    g = hq // hkv
    cdt = compute_dtype(q.dtype)
    dense = has_dense_parts(mask)
    q5 = q.view(b, hkv, g, tq_all, d)  # (B, Hkv, G, Tq, D)
    do5 = dout.reshape(b, hkv, g, tq_all, dv)  # (B, Hkv, G, Tq, Dv)
    # delta_i = sum_j P_ij dP_ij = <dO_i, O_i>: the softmax backward's row term.
    delta = (dout.to(cdt) * out.to(cdt)).sum(dim=-1).view(b, hkv, g, tq_all)  # (B,Hkv,G,Tq)
    # Empty rows have lse = -inf; +inf makes their recomputed probabilities exp(s - inf) = 0.
    lse5 = lse.view(b, hkv, g, tq_all)  # (B, Hkv, G, Tq)
    lse5 = lse5.masked_fill(torch.isneginf(lse5), torch.inf)
    # dq in q's usual memory layout (B, Tq, Hq, D), which the projection's backward wants.
    dq_mem = torch.zeros(b, tq_all, hq, d, dtype=cdt, device=q.device)  # (B, Tq, Hq, D)
    dq5 = dq_mem.view(b, tq_all, hkv, g, d).permute(0, 2, 3, 1, 4)  # (B, Hkv, G, Tq, D)
    dk = torch.zeros(b, hkv, tk_all, d, dtype=cdt, device=q.device)  # (B, Hkv, Tk, D)
    dvv = torch.zeros(b, hkv, tk_all, dv, dtype=cdt, device=q.device)  # (B, Hkv, Tk, Dv)
    q_pos = mask.query_pos(tq_all, tk_all, q.device)  # (1|B, Tq)
    shift = mask.align_shift(tq_all, tk_all)
    for blk in mask.plan_blocks(tq_all, tk_all, block_q):
        chunks = blk.chunks(block_k)
        if not chunks:
            continue
        q0, q1 = blk.q0, blk.q1
        tq = q1 - q0
        qs = (q5[:, :, :, q0:q1].to(cdt) * scale).reshape(b, hkv, g * tq, d)  # (B,Hkv,G*tq,D)
        dob = do5[:, :, :, q0:q1].to(cdt).reshape(b, hkv, g * tq, dv)  # (B, Hkv, G*tq, Dv)
        lse_b = lse5[:, :, :, q0:q1].reshape(b, hkv, g * tq, 1)  # (B, Hkv, G*tq, 1)
        delta_b = delta[:, :, :, q0:q1].reshape(b, hkv, g * tq, 1)  # (B, Hkv, G*tq, 1)
        dqb = None
        for k0, k1, edges in chunks:
            kb = k[:, :, k0:k1].to(cdt)  # (B, Hkv, tk, D)
            vb = v[:, :, k0:k1].to(cdt)  # (B, Hkv, tk, Dv)
            s = torch.matmul(qs, kb.transpose(-1, -2))  # (B, Hkv, G*tq, tk)
            if edges or dense:
                mask_tile(s, mask, q_pos[:, q0:q1], q0, q1, k0, k1, g, edges, dense, shift)
            p = s.sub_(lse_b).exp_()  # recomputed probabilities (B, Hkv, G*tq, tk)
            dvv[:, :, k0:k1] += torch.matmul(p.transpose(-1, -2), dob)  # (B, Hkv, tk, Dv)
            dp = torch.matmul(dob, vb.transpose(-1, -2))  # (B, Hkv, G*tq, tk)
            ds = p.mul_(dp.sub_(delta_b))  # dS = P * (dP - delta)
            dqk = torch.matmul(ds, kb)  # (B, Hkv, G*tq, D)
            dqb = dqk if dqb is None else dqb.add_(dqk)
            dk[:, :, k0:k1] += torch.matmul(ds.transpose(-1, -2), qs)  # (B, Hkv, tk, D)
        assert dqb is not None
        dq5[:, :, :, q0:q1] = dqb.view(b, hkv, g, tq, d).mul_(scale)
    dq = dq_mem.transpose(1, 2)  # (B, Hq, Tq, D), a view
    return dq.to(q.dtype), dk.to(k.dtype), dvv.to(v.dtype)


class _BlockwiseAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, scale, block_q, block_k):  # type: ignore[override]
        out, lse = _forward(q, k, v, mask, scale, block_q, block_k)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.mask, ctx.scale, ctx.block_q, ctx.block_k = mask, scale, block_q, block_k
        return out

    @staticmethod
    def backward(ctx, dout):  # type: ignore[override]
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(
            dout, q, k, v, out, lse, ctx.mask, ctx.scale, ctx.block_q, ctx.block_k
        )
        return dq, dk, dv, None, None, None, None


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: AttentionMask,
    scale: float,
    dropout_p: float,
    need_weights: bool,
    block_q: int | None = None,
    block_k: int | None = None,
) -> tuple[torch.Tensor, None]:
    del need_weights
    if dropout_p > 0.0:
        raise ValueError(_DROPOUT)
    b, hq, tq, _ = q.shape
    tk = k.shape[2]
    bq, bk = choose_blocks(b, hq, tq, tk, mask.tightest_window)
    if block_q is not None:
        bq = _checks.require_positive_int("block_q", block_q)
    if block_k is not None:
        bk = _checks.require_positive_int("block_k", block_k)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _BlockwiseAttention.apply(q, k, v, mask, scale, bq, bk), None
    out, _ = _forward(q, k, v, mask, scale, bq, bk)
    return out, None


_DROPOUT = (
    "the blockwise backend does not support dropout_p > 0: its backward recomputes attention "
    "and would have to replay the dropout pattern; use backend='sdpa' or 'math', or dropout_p=0"
)


def _unsupported(request: Request) -> str | None:
    if request.dropout_p > 0.0:
        return _DROPOUT
    m = request.mask
    if request.requires_grad and (m.additive is not None and m.additive.requires_grad):
        return (
            "the blockwise backend does not propagate gradients into a float mask that "
            "requires grad; use backend='sdpa' or 'math'"
        )
    return None


BACKEND = Backend(
    name="blockwise",
    forward=forward,
    unsupported=_unsupported,
    description="online softmax over key blocks, O(T) memory, skips masked blocks",
)
