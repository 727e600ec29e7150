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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled, masked scores as a fresh contiguous ``(B, Hkv, G*Tq, Tk)`` tensor in the compute
    dtype, and the query rows that the mask leaves with no allowed key (bool, same layout with
    a last dim of 1), or None when there are none.

    Emptiness is read from the mask, never from the scores: a row whose allowed scores are all
    ``-inf`` or NaN because of non-finite inputs is not empty and gives NaN, so a diverging
    model shows NaN instead of silent zeros.

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
        return s, None
    rendered = mask.render(b, hq, tq, tk, dtype=cdt, device=q.device)
    if rendered is None:
        return s, None
    if rendered.dtype == torch.bool:
        s.view(b, hq, tq, tk).masked_fill_(~rendered, -torch.inf)
    else:
        s.view(b, hq, tq, tk).add_(rendered)  # additive: 0 keeps, -inf removes
    if mask.is_plain_causal(tq, tk):
        return s, None  # top-left causal: every query sees key 0
    return s, _empty_rows(rendered, b, hkv, g, tq)


def _empty_rows(rendered: torch.Tensor, b: int, hkv: int, g: int, tq: int) -> torch.Tensor | None:
    """Rows of a rendered mask ``(B|1, H|1, Tq, Tk)`` with no allowed key, laid out as the
    scores ``(B, Hkv, G*Tq, 1)``; None when there are none."""
    if rendered.dtype == torch.bool:
        empty = ~rendered.any(dim=-1, keepdim=True)  # (B|1, H|1, Tq, 1)
    else:
        empty = torch.isneginf(rendered).all(dim=-1, keepdim=True)  # (B|1, H|1, Tq, 1)
    if not bool(empty.any()):
        return None
    return empty.expand(b, hkv * g, tq, 1).reshape(b, hkv, g * tq, 1)  # (B, Hkv, G*Tq, 1)


def _softmax_(s: torch.Tensor, empty: torch.Tensor | None) -> torch.Tensor:
    """In-place softmax over the last dim of a contiguous tensor; the ``empty`` rows (no
    allowed key, see :func:`_scores`) become zeros instead of NaN."""
    if empty is not None:
        s.masked_fill_(empty, 0.0)
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
        s, empty = _scores(q, k, mask, scale)
        w = _softmax_(s, empty)  # (B, Hkv, G*Tq, Tk)
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
    if rendered is None:
        return torch.softmax(s, dim=-1)
    s = s + rendered
    empty = torch.isneginf(rendered).all(dim=-1, keepdim=True)  # (B|1, Hq|1, Tq, 1), by the mask
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
    s, empty = _scores(q, k, mask, scale)
    b, hq, tq, _ = q.shape
    return _softmax_(s, empty).view(b, hq, tq, k.shape[2])  # (B, Hq, Tq, Tk)


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
    empty = None
    if not (mask.is_noop(tq, tk) or mask.is_plain_causal(tq, tk)):
        if not bool(torch.isfinite(v).all()):
            # 0 * NaN is NaN: a row with no allowed key (all weights 0, which a softmax row
            # never is) must stay 0 whatever the masked-out values hold.
            empty = (w == 0).all(dim=-1, keepdim=True)  # (B, Hq, Tq, 1)
    if dropout_p > 0.0:
        w = torch.nn.functional.dropout(w, p=dropout_p, training=True)
    wg = w.reshape(b, hkv, g * tq, tk)  # (B, Hkv, G*Tq, Tk)
    out = torch.matmul(wg, v.to(w.dtype))  # (B, Hkv, G*Tq, Dv)
    out = out.view(b, hq, tq, dv).to(q.dtype)  # (B, Hq, Tq, Dv)
    if empty is not None:
        out = out.masked_fill(empty, 0.0)
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
