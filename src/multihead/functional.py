"""The functional attention core: validates once, then calls a backend.

Legend: B batch, Hq query heads, Hkv key/value heads (Hkv divides Hq: GQA/MQA), Tq queries,
Tk keys, D query/key head dim, Dv value head dim.

Example:
    >>> import torch
    >>> from multihead import masks
    >>> from multihead.functional import attention
    >>> q = torch.randn(2, 8, 5, 16)            # (B, Hq, Tq, D)
    >>> k = v = torch.randn(2, 2, 5, 16)        # (B, Hkv, Tk, D): 4 query heads per KV head
    >>> out, w = attention(q, k, v, mask=masks.causal(), need_weights=True)
    >>> out.shape, w.shape
    (torch.Size([2, 8, 5, 16]), torch.Size([2, 8, 5, 5]))
    >>> bool(w[0, 0, 0, 1:].eq(0).all())       # causal: the first query sees only itself
    True
"""

from __future__ import annotations

import math as _math

import torch

from multihead import _checks
from multihead.backends import Backend, Request, get_backend
from multihead.backends import math as math_backend
from multihead.masks import AttentionMask, as_mask

# auto: above this many bytes a dense rendering of a float bias (e.g. ALiBi) is avoided in
# favour of the blockwise backend, which computes the bias one tile at a time.
DENSE_BIAS_BYTES = 256 * 2**20
# auto: a sliding window pays for the blockwise backend once the keys outnumber it this much.
WINDOW_RATIO = 4
WINDOW_MIN_LEN = 1024


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: AttentionMask | torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    head_mask: torch.Tensor | None = None,
    need_weights: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over heads.

    Args:
        q: queries ``(B, Hq, Tq, D)``.
        k: keys ``(B, Hkv, Tk, D)``; Hkv must divide Hq (GQA/MQA; K is never copied per
            query head); ``D >= 1``. ``Hq = Hkv = 0`` (every head pruned) gives an empty output.
        v: values ``(B, Hkv, Tk, Dv)``.
        mask: an :class:`~multihead.masks.AttentionMask`, or a tensor: bool with
            **True = may attend**, or float (added to the scores), shaped ``(Tq, Tk)``,
            ``(B, Tq, Tk)`` or ``(B|1, Hq|1, Tq, Tk)``. A query row with no allowed key gives
            output 0, weights 0 and finite gradients; only such rows: a NaN or Inf in q, k, v or
            the scores propagates (NaN out) on every backend. A float mask holding NaN or
            ``+inf`` is refused (it is a bug, never a bias).
        scale: score scale; default ``1 / sqrt(D)``.
        dropout_p: dropout on the attention weights, in [0, 1). Pass 0 in eval.
        head_mask: ``(Hq,)`` or ``(B, Hq)``; multiplies each head's output (and weights):
            1 keeps, 0 removes. Differentiable, so its gradient scores heads.
        need_weights: also return the weights ``(B, Hq, Tq, Tk)``. The output still comes
            from the chosen fast backend; the weights are computed beside it.
        backend: ``"auto"``, ``"math"``, ``"sdpa"``, ``"blockwise"`` or any registered name.

    Returns:
        ``(out, weights)``: out ``(B, Hq, Tq, Dv)`` in q's dtype; weights ``(B, Hq, Tq, Tk)``
        or None. With dropout, weights are the dropped-out ones that produced the output.

    Raises:
        ValueError, TypeError: bad shapes, dtypes, devices, masks, or a backend that cannot
            serve the request (the message says why).
    """
    request, mask_obj, scale_f = _validate(q, k, v, mask, scale, dropout_p, head_mask, need_weights)
    if request.q_heads == 0:  # nothing to attend; shapes as usual, (B, 0, Tq, Dv)
        out = q.new_zeros(request.batch, 0, request.q_len, request.v_dim)
        return out, (q.new_zeros(*out.shape[:3], request.k_len) if need_weights else None)
    chosen = select_backend(request, backend)
    native = need_weights and chosen.returns_weights
    out, weights = chosen.forward(
        q, k, v, mask=mask_obj, scale=scale_f, dropout_p=dropout_p, need_weights=native
    )
    if need_weights and weights is None:
        weights = math_backend.attention_weights(q, k, mask=mask_obj, scale=scale_f)
    if head_mask is not None:
        hm = head_mask.to(out.dtype)
        hm = hm.view(-1 if hm.dim() == 2 else 1, hm.shape[-1], 1, 1)  # (B|1, Hq, 1, 1)
        out = out * hm
        if weights is not None:
            weights = weights * hm.to(weights.dtype)
    return out, weights


def select_backend(request: Request, backend: str = "auto") -> Backend:
    """The backend that will serve ``request``: the named one (or an error saying why it
    cannot), or for ``"auto"`` the fastest that can."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend != "auto":
        chosen = get_backend(backend)
        reason = chosen.unsupported(request)
        if reason is None and request.need_weights and request.dropout_p > 0.0:
            if not chosen.returns_weights:
                reason = (
                    f"backend {backend!r} cannot return the dropped-out weights it used; "
                    "use backend='math' for need_weights=True with dropout"
                )
        if reason is not None:
            raise ValueError(f"backend {backend!r} cannot serve this call: {reason}")
        return chosen
    return get_backend(_auto_name(request))


def check_backend_name(backend: object) -> str:
    """Validate a backend name early (at module construction): ``"auto"`` or registered."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend != "auto":
        get_backend(backend)
    return backend


def _auto_name(r: Request) -> str:
    if r.need_weights and r.dropout_p > 0.0:
        return "math"
    blockwise_ok = get_backend("blockwise").unsupported(r) is None
    m = r.mask
    window = m.tightest_window
    if blockwise_ok and window is not None:
        if r.k_len >= WINDOW_RATIO * window and r.k_len >= WINDOW_MIN_LEN:
            return "blockwise"
    if blockwise_ok and m.head_biases:
        dense_bytes = r.q_heads * r.q_len * r.k_len * 4
        if m.query_positions is not None and m.query_positions.dim() == 2:
            dense_bytes *= r.batch
        if dense_bytes > DENSE_BIAS_BYTES:
            return "blockwise"
    if get_backend("sdpa").unsupported(r) is None:
        return "sdpa"
    return "math"


def _validate(
    q: object,
    k: object,
    v: object,
    mask: object,
    scale: object,
    dropout_p: object,
    head_mask: object,
    need_weights: object,
) -> tuple[Request, AttentionMask, float]:
    layout = {"q": "(B, Hq, Tq, D)", "k": "(B, Hkv, Tk, D)", "v": "(B, Hkv, Tk, Dv)"}
    tensors = []
    for name, t in (("q", q), ("k", k), ("v", v)):
        t = _checks.require_tensor(name, t)
        _checks.require_rank(name, t, 4, f"4-D {layout[name]}")
        _checks.require_floating(name, t)
        tensors.append(t)
    q_t, k_t, v_t = tensors
    _checks.require_same(("q", "k", "v"), (q_t, k_t, v_t))
    b, hq, tq, d = q_t.shape
    if k_t.shape[0] != b or v_t.shape[0] != b:
        raise ValueError(
            f"batch sizes differ: q {tuple(q_t.shape)}, k {tuple(k_t.shape)}, "
            f"v {tuple(v_t.shape)}; all are (B, heads, T, dim)"
        )
    hkv, tk = k_t.shape[1], k_t.shape[2]
    if v_t.shape[1] != hkv or v_t.shape[2] != tk:
        raise ValueError(
            f"v has shape {tuple(v_t.shape)} but k has {tuple(k_t.shape)}; v must be "
            f"(B, Hkv, Tk, Dv) = ({b}, {hkv}, {tk}, Dv)"
        )
    if k_t.shape[3] != d:
        raise ValueError(
            f"k has head dim {k_t.shape[3]} but q has {d}; queries and keys must share D"
        )
    if d == 0:
        raise ValueError(
            f"q {tuple(q_t.shape)} and k {tuple(k_t.shape)} have head dim D = 0, but D >= 1 is "
            "expected: with no features every score is 0 and the scale 1/sqrt(D) is undefined"
        )
    if hq == 0 and hkv == 0:
        pass  # no heads at all (every head pruned away): the output is empty
    elif hkv == 0 or hq % hkv != 0:
        raise ValueError(
            f"k has {hkv} heads, which must divide q's {hq} heads (GQA/MQA: each KV head "
            "serves Hq / Hkv query heads)"
        )
    if scale is None:
        scale_f = 1.0 / _math.sqrt(d)
    else:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
        scale_f = float(scale)
        if not _math.isfinite(scale_f):
            raise ValueError(f"scale must be finite, got {scale!r}")
    p = _checks.require_probability("dropout_p", dropout_p)
    if head_mask is not None:
        hm = _checks.require_tensor("head_mask", head_mask)
        if hm.shape not in ((hq,), (b, hq)):
            raise ValueError(
                f"head_mask has shape {tuple(hm.shape)} but (Hq,) = ({hq},) or "
                f"(B, Hq) = ({b}, {hq}) is expected"
            )
        if hm.device != q_t.device:
            raise ValueError(f"head_mask is on {hm.device} but q is on {q_t.device}")
    _checks.require_bool("need_weights", need_weights)
    mask_obj = as_mask(mask)  # type: ignore[arg-type]
    mask_obj.check(b, hq, tq, tk, q_t.device)
    request = Request(
        batch=b,
        q_heads=hq,
        kv_heads=hkv,
        q_len=tq,
        k_len=tk,
        head_dim=d,
        v_dim=v_t.shape[3],
        dtype=q_t.dtype,
        device=q_t.device,
        mask=mask_obj,
        dropout_p=p,
        need_weights=need_weights,
        requires_grad=torch.is_grad_enabled()
        and (q_t.requires_grad or k_t.requires_grad or v_t.requires_grad),
    )
    return request, mask_obj, scale_f


def request_for(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: AttentionMask | torch.Tensor | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> Request:
    """The validated :class:`~multihead.backends.Request` for a call (to inspect selection)."""
    request, _, _ = _validate(q, k, v, mask, None, dropout_p, None, need_weights)
    return request
