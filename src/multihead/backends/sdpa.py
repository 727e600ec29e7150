"""PyTorch's fused ``scaled_dot_product_attention`` (flash kernels on CPU and CUDA).

Causal masks that are exactly top-left aligned go in as ``is_causal=True`` (the kernel skips
the masked half); every other mask is rendered dense, O(Tq * Tk) memory. GQA uses
``enable_gqa`` where torch has it. Fully masked rows give zeros: recent torch does so itself;
where a probe shows it does not (older releases give NaN), those rows are patched with finite
gradients. NaN and Inf inputs propagate as on the other backends (torch's kernels return 0 for
some of them, which is undone here).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from multihead.backends import Backend, Request
from multihead.backends.math import compute_dtype
from multihead.backends.render_memo import RenderMemo
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
# The last rendered mask: the layers of one forward share it (see render_memo).
MEMO = RenderMemo()


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
    row_ok = None  # (B|1, H|1, Tq, 1): rows the mask lets see some key; None = every row
    if mask.is_noop(tq, tk):
        pass
    elif mask.is_plain_causal(tq, tk):
        is_causal = True
    else:
        sizes = (b, hq, tq, tk, q.dtype, q.device)
        attn_mask, row_ok = MEMO.get(mask, sizes, lambda: _render(mask, *sizes))
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
        # Rows with no allowed key are 0, even when masked-out inputs hold NaN (torch adds the
        # mask to the scores, and NaN + -inf is NaN).
        out = out.masked_fill(~row_ok, 0.0)
    return _propagate_non_finite(out, q, k, row_ok), None


def _eager_cpu(t: torch.Tensor) -> bool:
    """On the CPU outside compiled code a value read back costs no device round trip, so
    eager code may branch on it and skip work that only matters in rare cases."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def _render(
    mask: AttentionMask, b: int, hq: int, tq: int, tk: int, dtype: torch.dtype, device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The mask as SDPA takes it and the rows that may see some key (None: all of them)."""
    # Float parts are summed in float32 and rounded to q's dtype once, as torch would.
    attn_mask = mask.render(b, hq, tq, tk, dtype=compute_dtype(dtype), device=device)
    if attn_mask is None:
        return None, None
    if attn_mask.is_floating_point():
        attn_mask = attn_mask.to(dtype)
        row_ok = (attn_mask > -torch.inf).any(dim=-1, keepdim=True)  # (B|1, H|1, Tq, 1)
    else:
        row_ok = attn_mask.any(dim=-1, keepdim=True)  # (B|1, H|1, Tq, 1)
    if _eager_cpu(attn_mask) and bool(row_ok.all()):
        # No empty row: nothing to patch afterwards. A bool mask becomes the additive form
        # SDPA would build from it on every call (0 keep, -inf drop), once per forward.
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=dtype, device=device).masked_fill(
                ~attn_mask, -torch.inf
            )
        return attn_mask, None
    if not ZEROES_EMPTY_ROWS:
        if attn_mask.dtype == torch.bool:
            attn_mask = attn_mask | ~row_ok
        else:
            attn_mask = attn_mask.masked_fill(~row_ok, 0.0)
    return attn_mask, row_ok


def _propagate_non_finite(
    out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, row_ok: torch.Tensor | None
) -> torch.Tensor:
    """NaN where a NaN or Inf input should make the output NaN but torch's kernels gave 0.

    The kernels treat a row whose scores are all NaN or ``-inf`` as a row with no allowed key
    and return 0 for it (their fully-masked-row rule), which hides a NaN/Inf query, or keys that
    made every allowed score ``-inf``: a training divergence would pass unseen. Here only rows
    with no allowed key *by the mask* are 0, as on the other backends: a row of a non-finite
    query is NaN, and a row that came out exactly 0 while some key of its head is non-finite is
    NaN too (a finite exact 0 there would need the values to cancel exactly). Tensor operations
    only, no data-dependent branch, so compiled graphs stay whole; it reads q and k once more
    (O(T * D)), small beside the attention except when decoding one query against a long cache.
    """
    b, hq, hkv = q.shape[0], q.shape[1], k.shape[1]
    acc = torch.promote_types(q.dtype, torch.float32)
    if _eager_cpu(q) and bool(torch.isfinite(q.sum(dtype=acc) + k.sum(dtype=acc))):
        return out  # every input finite (the common case): nothing to propagate
    # A sum is NaN/Inf when a term is (and, accumulated in at least float32, finite inputs of
    # any sane size never overflow it): one read of q and k, no temporary of their size.
    q_bad = ~torch.isfinite(q.sum(dim=-1, keepdim=True, dtype=acc))  # (B, Hq, Tq, 1)
    k_bad = ~torch.isfinite(k.sum(dim=(-2, -1), dtype=acc))  # (B, Hkv)
    k_bad = k_bad.view(b, hkv, 1).expand(b, hkv, hq // hkv).reshape(b, hq, 1, 1)  # (B,Hq,1,1)
    nan_rows = q_bad | (k_bad & (out == 0).all(dim=-1, keepdim=True))  # (B, Hq, Tq, 1)
    if row_ok is not None:
        nan_rows = nan_rows & row_ok
    return out.masked_fill(nan_rows, torch.nan)


def _unsupported(request: Request) -> str | None:
    return None


BACKEND = Backend(
    name="sdpa",
    forward=forward,
    unsupported=_unsupported,
    description="torch.nn.functional.scaled_dot_product_attention (fused kernels)",
)
