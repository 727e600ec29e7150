"""The reference backend: materializes the ``(B, H, Tq, Tk)`` scores. Supports every feature
(any mask, per-head biases, dropout, GQA, different value width) and returns the weights.

Half-precision inputs are computed in float32 and the result cast back, so this backend is also
the accuracy reference for reduced dtypes. Memory is O(Tq * Tk) per head.
"""

from __future__ import annotations

import torch

from multihead.backends import Backend, Request
from multihead.masks import AttentionMask


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Reduced-precision inputs accumulate scores and softmax in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _scores(
    q: torch.Tensor, k: torch.Tensor, mask: AttentionMask, scale: float
) -> tuple[torch.Tensor, bool]:
    """Scaled, masked scores as a fresh contiguous ``(B, Hkv, G*Tq, Tk)`` tensor in the compute
    dtype, and whether a query row may be fully masked (then holding only ``-inf``).

    GQA without copying K: q is viewed as ``(B, Hkv, G*Tq, D)`` so that one batched matmul
    serves the G query heads that share a KV head. The mask is applied in place: at long T the
    time goes into memory traffic, and every extra ``(B, H, Tq, Tk)`` allocation costs more than
    the arithmetic.
    """
    b, hq, tq, d = q.shape
    hkv, tk = k.shape[1], k.shape[2]
    g = hq // hkv
    cdt = compute_dtype(q.dtype)
    qg = (q.to(cdt) * scale).reshape(b, hkv, g * tq, d)  # (B, Hkv, G*Tq, D)
    s = torch.matmul(qg, k.to(cdt).transpose(-1, -2))  # (B, Hkv, G*Tq, Tk)
    if mask.is_noop(tq, tk):
        return s, False
    rendered = mask.render(b, hq, tq, tk, dtype=cdt, device=q.device)
    if rendered is None:
        return s, False
    if rendered.dtype == torch.bool:
        s.view(b, hq, tq, tk).masked_fill_(~rendered, -torch.inf)
    else:
        s.view(b, hq, tq, tk).add_(rendered)  # additive: 0 keeps, -inf removes
    return s, not mask.is_plain_causal(tq, tk)


def _softmax_(s: torch.Tensor, may_be_empty: bool) -> torch.Tensor:
    """In-place softmax over the last dim of a contiguous tensor; rows holding only ``-inf``
    become zeros instead of NaN."""
    empty = None
    if may_be_empty:
        empty = torch.isneginf(s).all(dim=-1, keepdim=True)  # (..., 1)
        if bool(empty.any()):
            s.masked_fill_(empty, 0.0)
        else:
            empty = None
    if s.device.type == "cpu" and s.is_contiguous():
        # The CPU kernel reads each row (max, then exp) before writing it, so out= may alias.
        torch.ops.aten._softmax.out(s, -1, False, out=s)
    else:
        s.copy_(torch.softmax(s, dim=-1))
    if empty is not None:
        s.masked_fill_(empty, 0.0)
    return s


class _AttentionWeights(torch.autograd.Function):
    """softmax(scale * q k^T + mask) with in-place forward passes and a hand-written backward
    (autograd cannot differentiate the in-place softmax). Saves only q, k and the weights."""

    @staticmethod
    def forward(ctx, q, k, mask, scale):  # type: ignore[override]
        s, may_be_empty = _scores(q, k, mask, scale)
        w = _softmax_(s, may_be_empty)  # (B, Hkv, G*Tq, Tk)
        ctx.save_for_backward(q, k, w)
        ctx.scale = scale
        b, hq, tq, _ = q.shape
        return w.view(b, hq, tq, k.shape[2])  # (B, Hq, Tq, Tk)

    @staticmethod
    def backward(ctx, dw):  # type: ignore[override]
        q, k, w = ctx.saved_tensors
        b, hq, tq, d = q.shape
        hkv, tk = k.shape[1], k.shape[2]
        g = hq // hkv
        cdt = w.dtype
        dw = dw.to(cdt).reshape(b, hkv, g * tq, tk)  # (B, Hkv, G*Tq, Tk)
        # Softmax backward: dS = W * (dW - rowsum(dW * W)); masked entries have W = 0.
        ds = dw * w
        row = ds.sum(dim=-1, keepdim=True)
        torch.sub(dw, row, out=ds).mul_(w)
        qg = q.to(cdt).reshape(b, hkv, g * tq, d)  # (B, Hkv, G*Tq, D)
        dq = torch.matmul(ds, k.to(cdt)).mul_(ctx.scale)  # (B, Hkv, G*Tq, D)
        dk = torch.matmul(ds.transpose(-1, -2), qg).mul_(ctx.scale)  # (B, Hkv, Tk, D)
        return dq.view(b, hq, tq, d).to(q.dtype), dk.to(k.dtype), None, None


def _weights_autograd(
    q: torch.Tensor, k: torch.Tensor, mask: AttentionMask, scale: float
) -> torch.Tensor:
    """Plain differentiable version, for masks whose float part requires grad."""
    b, hq, tq, d = q.shape
    hkv, tk = k.shape[1], k.shape[2]
    g = hq // hkv
    cdt = compute_dtype(q.dtype)
    qg = (q.to(cdt) * scale).reshape(b, hkv, g * tq, d)  # (B, Hkv, G*Tq, D)
    s = torch.matmul(qg, k.to(cdt).transpose(-1, -2)).view(b, hq, tq, tk)  # (B, Hq, Tq, Tk)
    rendered = mask.render(b, hq, tq, tk, dtype=cdt, device=q.device, as_float=True)
    if rendered is not None:
        s = s + rendered
    empty = torch.isneginf(s).all(dim=-1, keepdim=True)  # (B, Hq, Tq, 1)
    w = torch.softmax(s.masked_fill(empty, 0.0), dim=-1)
    return w.masked_fill(empty, 0.0)


def attention_weights_compute(
    q: torch.Tensor, k: torch.Tensor, *, mask: AttentionMask, scale: float
) -> torch.Tensor:
    """Weights ``(B, Hq, Tq, Tk)`` in the compute dtype; differentiable w.r.t. q and k."""
    if mask.additive is not None and mask.additive.requires_grad and torch.is_grad_enabled():
        return _weights_autograd(q, k, mask, scale)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        return _AttentionWeights.apply(q, k, mask, scale)
    s, may_be_empty = _scores(q, k, mask, scale)
    b, hq, tq, _ = q.shape
    return _softmax_(s, may_be_empty).view(b, hq, tq, k.shape[2])  # (B, Hq, Tq, Tk)


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, *, mask: AttentionMask, scale: float
) -> torch.Tensor:
    """Attention weights ``(B, Hq, Tq, Tk)`` in q's dtype; differentiable. Fully masked rows
    are 0."""
    return attention_weights_compute(q, k, mask=mask, scale=scale).to(q.dtype)


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: AttentionMask,
    scale: float,
    dropout_p: float,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    b, hq, tq, _ = q.shape
    hkv, tk, dv = k.shape[1], k.shape[2], v.shape[-1]
    g = hq // hkv
    w = attention_weights_compute(q, k, mask=mask, scale=scale)  # (B, Hq, Tq, Tk)
    if dropout_p > 0.0:
        w = torch.nn.functional.dropout(w, p=dropout_p, training=True)
    wg = w.reshape(b, hkv, g * tq, tk)  # (B, Hkv, G*Tq, Tk)
    out = torch.matmul(wg, v.to(w.dtype))  # (B, Hkv, G*Tq, Dv)
    out = out.view(b, hq, tq, dv).to(q.dtype)  # (B, Hq, Tq, Dv)
    return out, (w.to(q.dtype) if need_weights else None)


def _unsupported(request: Request) -> str | None:
    return None


BACKEND = Backend(
    name="math",
    forward=forward,
    unsupported=_unsupported,
    returns_weights=True,
    description="reference: materialized scores, every feature, returns weights",
)
