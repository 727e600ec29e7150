"""PyTorch's fused ``scaled_dot_product_attention`` (flash kernels on CPU and CUDA).

Causal masks that are exactly top-left aligned go in as ``is_causal=True`` (the kernel skips
the masked half); every other mask is rendered dense, O(Tq * Tk) memory. GQA uses
``enable_gqa`` where torch has it. Fully masked rows give zeros: recent torch does so itself;
where a probe shows it does not (older releases give NaN), those rows are patched with finite
gradients.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from multihead.backends import Backend, Request
from multihead.masks import AttentionMask


def _probe_enable_gqa() -> bool:
    try:
        return "enable_gqa" in inspect.signature(F.scaled_dot_product_attention).parameters
    except (TypeError, ValueError):  # builtins without a signature: probe instead
        q = torch.zeros(1, 2, 1, 2)
        kv = torch.zeros(1, 1, 1, 2)
        try:
            F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
            return True
        except TypeError:
            return False


def _probe_empty_rows() -> bool:
    """Does this torch's SDPA give 0 (and finite gradients) for fully masked query rows?"""
    q = torch.randn(1, 1, 2, 4, requires_grad=True)
    kv = torch.randn(1, 1, 2, 4)
    m = torch.tensor([[True, True], [False, False]])
    out = F.scaled_dot_product_attention(q, kv, kv, attn_mask=m)
    out.sum().backward()
    assert q.grad is not None
    return bool(torch.isfinite(out).all() and (out[0, 0, 1] == 0).all()) and bool(
        torch.isfinite(q.grad).all()
    )


# Probed once at import, not per call, so that compiled code sees plain constants.
HAS_ENABLE_GQA = _probe_enable_gqa()
ZEROES_EMPTY_ROWS = _probe_empty_rows()


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: AttentionMask,
    scale: float,
    dropout_p: float,
    need_weights: bool,
) -> tuple[torch.Tensor, None]:
    del need_weights  # weights are computed by the functional core when asked for
    b, hq, tq, _ = q.shape
    hkv, tk = k.shape[1], k.shape[2]
    attn_mask = None
    is_causal = False
    if mask.is_noop(tq, tk):
        pass
    elif mask.is_plain_causal(tq, tk):
        is_causal = True
    else:
        attn_mask = mask.render(b, hq, tq, tk, dtype=q.dtype, device=q.device)
    row_ok = None
    if attn_mask is not None and not ZEROES_EMPTY_ROWS:
        if attn_mask.dtype == torch.bool:
            row_ok = attn_mask.any(dim=-1, keepdim=True)  # (B|1, H|1, Tq, 1)
            attn_mask = attn_mask | ~row_ok
        else:
            row_ok = (attn_mask > -torch.inf).any(dim=-1, keepdim=True)
            attn_mask = attn_mask.masked_fill(~row_ok, 0.0)
    kwargs = {}
    if hq != hkv:
        if HAS_ENABLE_GQA:
            kwargs["enable_gqa"] = True
        else:  # torch < 2.5: no native GQA, so K/V are repeated per query head here
            k = k.repeat_interleave(hq // hkv, dim=1)  # (B, Hq, Tk, D)
            v = v.repeat_interleave(hq // hkv, dim=1)  # (B, Hq, Tk, Dv)
    out = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=attn_mask,
        dropout_p=dropout_p,
        is_causal=is_causal,
        scale=scale,
        **kwargs,
    )
    if row_ok is not None:
        out = out * row_ok
    return out, None


def _unsupported(request: Request) -> str | None:
    return None


BACKEND = Backend(
    name="sdpa",
    forward=forward,
    unsupported=_unsupported,
    description="torch.nn.functional.scaled_dot_product_attention (fused kernels)",
)
