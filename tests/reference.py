"""The float64 oracle every numerical test compares against.

Written plainly, independently of the package: masks are built from their definitions with
explicit index arithmetic, K/V heads are repeated for GQA, and softmax handles rows with no
allowed key (by the mask) by returning zeros; NaN and Inf inputs propagate as IEEE arithmetic
makes them.
"""

from __future__ import annotations

import math

import torch


def allowed_matrix(
    batch: int,
    q_len: int,
    k_len: int,
    *,
    causal: bool = False,
    align: str = "top_left",
    window: int | None = None,
    key_lengths: list[int] | None = None,
    query_positions: torch.Tensor | None = None,
    key_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bool ``(B, 1, Tq, Tk)``, True = may attend, from the definitions in masks.py's docs.
    ``key_positions`` ``(Tk,)`` or ``(B, Tk)`` place key j at that position (negative = empty
    slot, never attended) instead of at j."""
    out = torch.ones(batch, 1, q_len, k_len, dtype=torch.bool)
    for b in range(batch):
        for i in range(q_len):
            if query_positions is not None:
                qp = query_positions[b, i] if query_positions.dim() == 2 else query_positions[i]
                qp = int(qp)
            else:
                qp = i + (k_len - q_len if align == "bottom_right" else 0)
            for j in range(k_len):
                kp = j
                if key_positions is not None:
                    kp = int(key_positions[b, j] if key_positions.dim() == 2 else key_positions[j])
                ok = kp >= 0
                if causal:
                    ok = ok and kp <= qp
                if window is not None:
                    ok = ok and kp > qp - window
                    if not causal:
                        ok = ok and kp < qp + window
                if key_lengths is not None:
                    ok = ok and j < key_lengths[b]
                out[b, 0, i, j] = ok
    return out


def alibi_bias(slopes: list[float], q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """ALiBi from its definition (Press et al. 2022): ``-slope_h * |q - k|``, float64
    ``(B, H, Tq, Tk)`` for positions ``(B, Tq)`` and ``(B, Tk)``."""
    b, tq = q_pos.shape
    tk = k_pos.shape[1]
    out = torch.zeros(b, len(slopes), tq, tk, dtype=torch.float64)
    for r in range(b):
        for h, s in enumerate(slopes):
            for i in range(tq):
                for j in range(tk):
                    out[r, h, i, j] = -s * abs(int(q_pos[r, i]) - int(k_pos[r, j]))
    return out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    allowed: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    head_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 attention. q ``(B, Hq, Tq, D)``, k ``(B, Hkv, Tk, D)``, v ``(B, Hkv, Tk, Dv)``;
    ``allowed`` bool broadcastable to ``(B, Hq, Tq, Tk)`` (True = may attend); ``bias``
    float added to scores. Returns (out ``(B, Hq, Tq, Dv)``, weights ``(B, Hq, Tq, Tk)``)."""
    q, k, v = q.double(), k.double(), v.double()
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.einsum("bhid,bhjd->bhij", q, k) * scale
    if scores.shape[-1] == 0:  # no keys: every row is empty
        return q.new_zeros(*q.shape[:3], v.shape[-1]), scores
    keep = torch.ones_like(scores, dtype=torch.bool)
    if allowed is not None:
        keep = keep & allowed
    if bias is not None:
        scores = scores + bias.double()
        keep = keep & ~torch.isneginf(bias)  # an additive -inf removes the score
    # A row is empty when the *mask* allows no key: output 0. Every other row is a plain
    # softmax, so a NaN/Inf input gives NaN (all -inf scores from inputs: 0 / 0).
    empty = ~keep.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~keep, -math.inf)
    row_max = scores.max(dim=-1, keepdim=True).values.masked_fill(empty, 0.0)
    e = torch.exp(scores - row_max)
    weights = (e / e.sum(dim=-1, keepdim=True)).masked_fill(empty, 0.0)
    if head_mask is not None:
        hm = head_mask.double()
        hm = hm.view(-1 if hm.dim() == 2 else 1, hm.shape[-1], 1, 1)
        weights = weights * hm
    out = torch.einsum("bhij,bhjd->bhid", weights, v)
    return out.masked_fill(empty, 0.0), weights  # empty rows: 0 even if v holds NaN


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def sdpa_at_dtype(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    allowed: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """PyTorch's own attention at the inputs' dtype: F.scaled_dot_product_attention with the
    mask as an additive float tensor. The "2x PyTorch's own error" rule measures this."""
    mask = None
    if allowed is not None or bias is not None:
        shape = torch.broadcast_shapes(*(t.shape for t in (allowed, bias) if t is not None))
        mask = torch.zeros(shape, dtype=q.dtype)
        if allowed is not None:
            mask = mask.masked_fill(~allowed, -math.inf)
        if bias is not None:
            mask = mask + bias.to(q.dtype)
    groups = q.shape[1] // k.shape[1]
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=scale, enable_gqa=groups > 1
    )


def tolerance(own_error: float) -> float:
    """The rule FlashAttention's tests use: at most 2x PyTorch's own error, plus 1e-6."""
    return 2.0 * own_error + 1e-6
