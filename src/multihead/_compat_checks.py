"""Input checks of :class:`multihead.compat.MultiheadAttention`, in torch's order and with
torch's exception types.

torch.nn.MultiheadAttention raises AssertionError for some mistakes and RuntimeError (or, for a
missing dim under ``batch_first``, IndexError) for others, and which one depends on the order
its checks run in. Each check here raises our message as an exception that is *also* torch's
type for that input (see the classes at the end of ``_checks``), and runs in torch's order, so
an input with two mistakes raises the type torch would. Where torch's type depends on the path
(its inference fast path raises RuntimeError for some shapes its general path asserts), the
exception is an instance of both.

Legend: N batch, L queries, S keys, E embed_dim, H num_heads. Mask polarity is torch's:
**True = blocked**.
"""

from __future__ import annotations

from typing import Protocol

import torch

from multihead import _checks
from multihead._checks import (
    TypeAssertionError,
    TypeRuntimeError,
    ValueAssertionError,
    ValueAssertionRuntimeError,
    ValueIndexError,
    ValueRuntimeError,
)


class _Module(Protocol):
    embed_dim: int
    kdim: int
    vdim: int
    num_heads: int
    batch_first: bool
    _qkv_same_embed_dim: bool

    def named_parameters(self) -> object: ...


def check_mask_dtypes(key_padding_mask: object, attn_mask: object) -> None:
    """Masks are bool (True = blocked) or float (additive); torch checks this first."""
    for name, t in (("key_padding_mask", key_padding_mask), ("attn_mask", attn_mask)):
        if t is None:
            continue
        _checks.require_tensor(name, t)
        if t.dtype != torch.bool and not t.is_floating_point():
            raise TypeAssertionError(
                f"{name} has dtype {t.dtype}; expected bool (True = blocked) or float (additive)"
            )


def attn_mask_used(
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    is_causal: bool,
    need_weights: bool,
) -> bool:
    """torch trusts the ``is_causal`` hint, and ignores ``attn_mask``, only when there is no
    key_padding_mask and no weights are needed."""
    if attn_mask is None:
        return False
    return not (is_causal and key_padding_mask is None and not need_weights)


def check_inputs(
    m: _Module,
    query: object,
    key: object,
    value: object,
    key_padding_mask: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    need_weights: bool,
) -> bool:
    """Every check of a forward call (after :func:`check_mask_dtypes`); returns whether the
    inputs are batched."""
    q = _checks.require_tensor("query", query)
    k = _checks.require_tensor("key", key)
    v = _checks.require_tensor("value", value)
    batched = _check_ranks(m, q, k, v, key_padding_mask, attn_mask)
    if is_causal and attn_mask is None:
        raise ValueRuntimeError(
            "is_causal=True is a hint that attn_mask is causal and needs attn_mask too "
            "(as in torch.nn.MultiheadAttention); pass e.g. "
            "torch.nn.Transformer.generate_square_subsequent_mask(L)"
        )
    _check_widths(m, q, k, v)
    _check_projection_inputs(m, q, k, v)
    used = attn_mask_used(attn_mask, key_padding_mask, is_causal, need_weights)
    _check_sizes(m, q, k, key_padding_mask, attn_mask if used else None, batched)
    for name, t in (("key_padding_mask", key_padding_mask), ("attn_mask", attn_mask)):
        if t is None or (name == "attn_mask" and not used):
            continue
        if t.is_floating_point() and t.dtype != q.dtype:
            raise TypeRuntimeError(
                f"{name} has dtype {t.dtype} but query has dtype {q.dtype}; a float mask must "
                "have the query's dtype"
            )
        if t.device != q.device:
            raise ValueRuntimeError(f"{name} is on device {t.device} but query is on {q.device}")
    return batched


def _layouts(m: _Module) -> tuple[str, str]:
    """This module's batched layout and the other one."""
    return ("(N, L, E)", "(L, N, E)") if m.batch_first else ("(L, N, E)", "(N, L, E)")


def _check_ranks(
    m: _Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
) -> bool:
    layout, _ = _layouts(m)
    shape = _checks.shape
    expected = f"3-D {layout} (batch_first={m.batch_first}) or 2-D (L, E) is expected"
    for name, t in (("key", key), ("value", value)):
        # torch swaps the first two dims of a batched query, key and value before checking
        # ranks: a key or value without two dims fails there, as an IndexError.
        if m.batch_first and query.dim() == 3 and t.dim() < 2:
            raise ValueIndexError(f"{name} has shape {shape(t)} ({t.dim()}-D) but {expected}")
    if query.dim() not in (2, 3):
        raise ValueAssertionError(
            f"query has shape {shape(query)} ({query.dim()}-D) but {expected}"
        )
    batched = query.dim() == 3
    for name, t in (("key", key), ("value", value)):
        if t.dim() != query.dim():
            raise ValueAssertionError(
                f"{name} has shape {shape(t)} ({t.dim()}-D) but query is {query.dim()}-D; "
                "they must have the same rank"
            )
    if key_padding_mask is not None and key_padding_mask.dim() != (2 if batched else 1):
        raise ValueAssertionRuntimeError(
            f"key_padding_mask has shape {shape(key_padding_mask)} but "
            + ("(N, S)" if batched else "(S,) for an unbatched query")
            + " is expected"
        )
    if attn_mask is not None:
        if attn_mask.dim() not in (2, 3):
            raise ValueAssertionRuntimeError(
                f"attn_mask has shape {shape(attn_mask)} but (L, S) or (N * num_heads, L, S) "
                "is expected"
            )
        want = (m.num_heads, query.shape[0], key.shape[0])
        if not batched and attn_mask.dim() == 3 and shape(attn_mask) != want:
            raise ValueAssertionError(
                f"attn_mask has shape {shape(attn_mask)} but a 3-D attn_mask for an unbatched "
                f"query must be (num_heads, L, S) = {want}"
            )
    return batched


def _check_widths(m: _Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    shape = _checks.shape
    if query.shape[-1] != m.embed_dim:
        raise ValueAssertionRuntimeError(
            f"query has shape {shape(query)} but its last dim must be embed_dim={m.embed_dim}"
        )
    if m._qkv_same_embed_dim:
        if key.shape != value.shape:
            raise ValueAssertionError(
                f"key has shape {shape(key)} and value {shape(value)}; they must match "
                "(kdim = vdim = embed_dim)"
            )
        return
    if key.shape[:-1] != value.shape[:-1]:
        raise ValueAssertionError(
            f"key has shape {shape(key)} and value {shape(value)}; their sequence and batch "
            "dims must match"
        )
    for name, t, width in (("key", key, m.kdim), ("value", value, m.vdim)):
        if t.shape[-1] != width:
            raise ValueAssertionError(
                f"{name} has shape {shape(t)} but its last dim must be {name[0]}dim={width}"
            )


def _check_projection_inputs(
    m: _Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> None:
    """What torch's input projections would fail on (RuntimeError): dtypes, devices, and with
    one packed weight a key/value width other than embed_dim."""
    params = dict(m.named_parameters())  # type: ignore[call-overload]
    if m._qkv_same_embed_dim:
        weights = ("in_proj_weight",) * 3
    else:
        weights = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
    for (name, t), wname in zip((("query", query), ("key", key), ("value", value)), weights):
        w = params[wname]
        if not t.is_floating_point() or t.dtype != w.dtype:
            raise TypeRuntimeError(
                f"{name} has dtype {t.dtype} but {wname} has dtype {w.dtype}; they must match"
            )
        if t.device != w.device:
            raise ValueRuntimeError(
                f"{name} is on device {t.device} but {wname} is on {w.device}; they must be on "
                "one device"
            )
        if t.shape[-1] != w.shape[1]:
            raise ValueRuntimeError(
                f"{name} has shape {_checks.shape(t)} but its last dim must be "
                f"embed_dim={m.embed_dim} (kdim = vdim = embed_dim)"
            )
    for pname in ("out_proj.weight", "out_proj.bias", "bias_k", "bias_v"):
        p = params.get(pname)
        if p is not None and p.dtype != query.dtype:
            raise TypeRuntimeError(
                f"{pname} has dtype {p.dtype} but query has dtype {query.dtype}; they must match"
            )


def _check_sizes(
    m: _Module,
    query: torch.Tensor,
    key: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
    batched: bool,
) -> None:
    """attn_mask shape (RuntimeError in torch), batch sizes (RuntimeError), then
    key_padding_mask shape (AssertionError), in that order. ``attn_mask`` is None when torch
    would not use it."""
    shape = _checks.shape
    layout, _ = _layouts(m)
    b = (0 if m.batch_first else 1) if batched else None
    t = 1 - b if b is not None else 0
    n = query.shape[b] if b is not None else 1
    tgt, src, h = query.shape[t], key.shape[t], m.num_heads
    hint = _swap_hint(m, query, key, key_padding_mask, attn_mask) if batched else ""
    if attn_mask is not None:
        if attn_mask.dim() == 2 and shape(attn_mask) != (tgt, src):
            raise ValueRuntimeError(
                f"attn_mask has shape {shape(attn_mask)} but a 2-D attn_mask must be (L, S) = "
                f"({tgt}, {src}){hint}"
            )
        if batched and attn_mask.dim() == 3 and shape(attn_mask) != (n * h, tgt, src):
            raise ValueRuntimeError(
                f"attn_mask has shape {shape(attn_mask)} but a 3-D attn_mask must be "
                f"(N * num_heads, L, S) = ({n * h}, {tgt}, {src}){hint}"
            )
    if b is not None and key.shape[b] != n:
        raise ValueRuntimeError(
            f"query has shape {shape(query)} and key {shape(key)}: their batch sizes differ "
            f"({n} vs {key.shape[b]}); batch_first={m.batch_first} reads them as {layout}, "
            f"the batch along dim {b}{hint}"
        )
    if key_padding_mask is not None:
        want = (n, src) if batched else (src,)
        if shape(key_padding_mask) != want:
            expected = f"(N, S) = {want}" if batched else f"(S,) = {want}"
            raise ValueAssertionRuntimeError(
                f"key_padding_mask has shape {shape(key_padding_mask)} but {expected} is "
                f"expected for query {shape(query)} and key {shape(key)} "
                f"({layout if batched else 'unbatched'}){hint}"
            )


def _swap_hint(
    m: _Module,
    query: torch.Tensor,
    key: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
) -> str:
    """A hint that the inputs are in the other layout, given only when that reading fits every
    shape and a mask corroborates it (fits the other reading, not this one).

    Batch sizes alone cannot tell: query ``(5, 3, E)`` and key ``(5, 2, E)`` are both a batch
    mismatch with L = S = 5 and a swapped pair with N = 5, so without a mask no hint is given.
    """
    layout, other = _layouts(m)
    b = 0 if m.batch_first else 1
    t = 1 - b
    here = {"n": query.shape[b], "l": query.shape[t], "s": key.shape[t]}
    swapped = {"n": query.shape[t], "l": query.shape[b], "s": key.shape[b]}
    if key.shape[t] != swapped["n"]:
        return ""
    corroborated = False
    for kind, mask in (("kpm", key_padding_mask), ("attn", attn_mask)):
        if mask is None:
            continue
        got = _checks.shape(mask)
        if got != _mask_shape(kind, mask.dim(), swapped, m.num_heads):
            return ""
        corroborated |= got != _mask_shape(kind, mask.dim(), here, m.num_heads)
    if not corroborated:
        return ""
    return (
        f"; these look like {other} inputs, but batch_first={m.batch_first} expects {layout}"
        f" (pass batch_first={not m.batch_first} if {other} is their layout)"
    )


def _mask_shape(kind: str, dim: int, r: dict[str, int], heads: int) -> tuple[int, ...]:
    """The shape a key_padding_mask (``kind="kpm"``) or attn_mask must have in reading ``r``."""
    if kind == "kpm":
        return (r["n"], r["s"])
    return (r["l"], r["s"]) if dim == 2 else (r["n"] * heads, r["l"], r["s"])


def check_nested(
    m: _Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
) -> None:
    """Nested (ragged) inputs: all three nested ``(N, L_i, E)``, batch-first, no masks (the
    lengths are the mask). torch refuses what it does not support with AssertionError."""
    tensors = (("query", query), ("key", key), ("value", value))
    flat = [name for name, t in tensors if not (isinstance(t, torch.Tensor) and t.is_nested)]
    if flat:
        raise TypeAssertionError(
            f"{', '.join(flat)} {'is' if len(flat) == 1 else 'are'} not nested while the other "
            "inputs are; pass query, key and value all as nested tensors or all as dense ones"
        )
    if not m.batch_first:
        raise ValueAssertionError(
            "nested tensors are (N, L_i, E), batch first; construct the module with "
            "batch_first=True to pass them"
        )
    if key_padding_mask is not None or attn_mask is not None or is_causal:
        raise ValueAssertionError(
            "key_padding_mask, attn_mask and is_causal are not supported with nested tensors "
            "(as in torch.nn.MultiheadAttention): their lengths already say which keys are real"
        )
    for name, t in tensors:
        if t.dim() != 3:
            raise ValueAssertionError(
                f"{name} is a {t.dim()}-D nested tensor but (N, L_i, E) nested tensors "
                "(3-D) are expected"
            )
    if not query.size(0) == key.size(0) == value.size(0):
        raise ValueAssertionError(
            f"query, key and value hold {query.size(0)}, {key.size(0)} and {value.size(0)} "
            "sequences; they must hold one per batch example each"
        )
    k_lens = [c.shape[0] for c in key.unbind()]
    v_lens = [c.shape[0] for c in value.unbind()]
    if k_lens != v_lens:
        raise ValueAssertionError(
            f"key has sequence lengths {k_lens} but value {v_lens}; they must match"
        )
