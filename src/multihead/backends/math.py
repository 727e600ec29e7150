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


def masked_scores(
    q: torch.Tensor, k: torch.Tensor, mask: AttentionMask, scale: float
) -> tuple[torch.Tensor, bool]:
    """Scaled, masked scores ``(B, Hq, Tq, Tk)`` in the compute dtype, and whether a query row
    may be fully masked (then holding only ``-inf``).

    GQA without copying K: q is viewed as ``(B, Hkv, G * Tq, D)`` so that one batched matmul
    serves the G query heads that share a KV head.
    """
    b, hq, tq, d = q.shape
    hkv, tk = k.shape[1], k.shape[2]
    g = hq // hkv
    cdt = compute_dtype(q.dtype)
    qg = (q.to(cdt) * scale).reshape(b, hkv, g * tq, d)  # (B, Hkv, G*Tq, D)
    s = torch.matmul(qg, k.to(cdt).transpose(-1, -2))  # (B, Hkv, G*Tq, Tk)
    s = s.view(b, hq, tq, tk)  # (B, Hq, Tq, Tk)
    if mask.is_noop(tq, tk):
        return s, False
    rendered = mask.render(b, hq, tq, tk, dtype=cdt, device=q.device)
    if rendered is None:
        return s, False
    if rendered.dtype == torch.bool:
        s = s.masked_fill(~rendered, -torch.inf)
    else:
        s = s + rendered
    may_be_empty = not mask.is_plain_causal(tq, tk)
    return s, may_be_empty


def softmax_rows(s: torch.Tensor, may_be_empty: bool) -> torch.Tensor:
    """Softmax over the last dim; rows holding only ``-inf`` give zeros with finite gradients
    (``torch.softmax`` alone gives NaN there)."""
    if not may_be_empty:
        return torch.softmax(s, dim=-1)
    empty = torch.isneginf(s).all(dim=-1, keepdim=True)  # (B, H, Tq, 1)
    if not bool(empty.any()):
        return torch.softmax(s, dim=-1)
    # Give empty rows finite scores so softmax and its backward stay finite, then zero them.
    w = torch.softmax(s.masked_fill(empty, 0.0), dim=-1)
    return w.masked_fill(empty, 0.0)


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, *, mask: AttentionMask, scale: float
) -> torch.Tensor:
    """Attention weights ``(B, Hq, Tq, Tk)`` in q's dtype; differentiable."""
    s, may_be_empty = masked_scores(q, k, mask, scale)
    return softmax_rows(s, may_be_empty).to(q.dtype)


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
    s, may_be_empty = masked_scores(q, k, mask, scale)
    w = softmax_rows(s, may_be_empty)
    if dropout_p > 0.0:
        w = torch.nn.functional.dropout(w, p=dropout_p, training=True)
    wg = w.view(b, hkv, g * tq, tk)  # (B, Hkv, G*Tq, Tk)
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
