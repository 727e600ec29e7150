"""A drop-in twin of ``torch.nn.MultiheadAttention``.

Same constructor, forward signature, defaults, parameter names (``state_dict`` loads both
ways) and numbers, with two deliberate differences:

* A query row whose keys are all masked gives output 0 and weights 0 (torch gives NaN there:
  pytorch issues 41508 and 160064).
* Without ``need_weights`` the attention runs on a fused O(T)-memory backend in train and eval
  alike (torch's eval fast path materializes ``T x T`` scores).

and a few places where it takes what torch takes only on some paths: nested tensors in every
mode and layout (torch: only on its inference fast path); an ``in_proj_bias`` of another dtype
in every layout (torch: only where its input is non-contiguous, as with ``batch_first``). And
``is_causal=True`` without ``attn_mask`` always raises (torch's inference fast path silently
ignores the hint).

Bad input raises ValueError or TypeError with a message naming the argument, what came and what
was expected; each is also an instance of the exception torch raises for that input
(:class:`ValueAssertionError` where torch asserts, :class:`ValueRuntimeError` or
:class:`TypeRuntimeError` where it raises RuntimeError, ...), so ``except`` clauses written for
torch keep working.

This is the only module in multihead that speaks torch's ``(T, B, E)`` default layout and its
mask polarity: in ``key_padding_mask`` and a bool ``attn_mask``, **True = blocked** (may not
attend). Everything is translated to multihead's True = may attend at the boundary.

Example:
    >>> import torch
    >>> from multihead.compat import MultiheadAttention
    >>> ref = torch.nn.MultiheadAttention(16, 4)
    >>> ours = MultiheadAttention(16, 4)
    >>> _ = ours.load_state_dict(ref.state_dict())
    >>> x = torch.randn(5, 2, 16)                    # (T, B, E): batch_first=False
    >>> torch.allclose(ours(x, x, x)[0], ref(x, x, x)[0], atol=1e-6)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from multihead import _checks, _compat_checks
from multihead._checks import (  # re-exported: the exception types of bad inputs
    TypeAssertionError,
    TypeAssertionRuntimeError,
    TypeRuntimeError,
    ValueAssertionError,
    ValueAssertionRuntimeError,
    ValueIndexError,
    ValueRuntimeError,
)
from multihead.attention import project_packed
from multihead.functional import attention, check_backend_name
from multihead.masks import AttentionMask
from multihead.masks import causal as causal_mask

__all__ = [
    "MultiheadAttention",
    "TypeAssertionError",
    "TypeAssertionRuntimeError",
    "TypeRuntimeError",
    "ValueAssertionError",
    "ValueAssertionRuntimeError",
    "ValueIndexError",
    "ValueRuntimeError",
]


class MultiheadAttention(nn.Module):
    """Drop-in for ``torch.nn.MultiheadAttention``; see the module docstring.

    Args are torch's: ``embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
    add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None, dtype=None``,
    plus keyword-only ``backend`` (default ``"auto"``).
    """

    __constants__ = ("batch_first",)

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        for name, n in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"{name} must be an int, got {type(n).__name__}")  # as torch
            _checks.require_positive_int(name, n)
        if embed_dim % num_heads:
            raise ValueAssertionError(
                f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}"
            )
        for name, n in (("kdim", kdim), ("vdim", vdim)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
                raise TypeError(f"{name} must be an int or None, got {type(n).__name__}")
            if n is not None and n < 0:
                raise ValueRuntimeError(f"{name} must be >= 0, got {n}")
        fk = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = _dropout(dropout)
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        self.backend = check_backend_name(backend)
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = nn.Parameter(torch.empty((embed_dim, embed_dim), **fk))
            self.k_proj_weight = nn.Parameter(torch.empty((embed_dim, self.kdim), **fk))
            self.v_proj_weight = nn.Parameter(torch.empty((embed_dim, self.vdim), **fk))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = nn.Parameter(torch.empty((3 * embed_dim, embed_dim), **fk))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **fk))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **fk)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty((1, 1, embed_dim), **fk))
            self.bias_v = nn.Parameter(torch.empty((1, 1, embed_dim), **fk))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # torch's initialization, so that a fresh module is distributed like torch's.
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            nn.init.xavier_uniform_(self.q_proj_weight)
            nn.init.xavier_uniform_(self.k_proj_weight)
            nn.init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.constant_(self.in_proj_bias, 0.0)
            nn.init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            nn.init.xavier_normal_(self.bias_v)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """torch's semantics: inputs ``(L, N, E)`` (``(N, L, E)`` with ``batch_first``) or
        unbatched ``(L, E)``; ``key_padding_mask`` ``(N, S)`` and bool ``attn_mask``
        ``(L, S)`` / ``(N*H, L, S)`` with **True = blocked**, or float (additive).
        With ``batch_first``, query, key and value may also be nested tensors ``(N, L_i, E)``
        (strided or jagged layout; no masks: the lengths are the mask).

        Returns ``(attn_output, attn_weights)``: output shaped like ``query`` (nested if it
        is); weights ``(N, L, S)`` averaged over heads, ``(N, H, L, S)`` per head, or None
        (for nested inputs padded to the longest sequences, with zeros in the padding).

        Raises ValueError/TypeError naming the argument, each also an instance of the
        exception torch raises for that input (AssertionError, RuntimeError, IndexError).
        """
        _compat_checks.check_mask_dtypes(key_padding_mask, attn_mask)
        if any(isinstance(t, torch.Tensor) and t.is_nested for t in (query, key, value)):
            _compat_checks.check_nested(
                self, query, key, value, key_padding_mask, attn_mask, is_causal
            )
            return self._forward_nested(query, key, value, need_weights, average_attn_weights)
        batched = _compat_checks.check_inputs(
            self, query, key, value, key_padding_mask, attn_mask, is_causal, need_weights
        )
        if not batched:
            # Unbatched: add a batch dim of 1 where the layout puts it, drop it at the end.
            pos = 0 if self.batch_first else 1
            query, key, value = _unsqueeze(pos, query, key, value)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
        out, weights = self._attend(
            query,
            key,
            value,
            key_padding_mask,
            attn_mask,
            need_weights=need_weights,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
            if weights is not None:
                weights = weights.squeeze(0)
        return out, weights

    def _attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        attn_mask: torch.Tensor | None,
        *,
        need_weights: bool,
        average_attn_weights: bool,
        is_causal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batched forward on checked inputs ``(L, N, E)`` or ``(N, L, E)``."""
        bdim = 0 if self.batch_first else 1
        tdim = 1 - bdim
        bsz, tgt_len, src_len = query.shape[bdim], query.shape[tdim], key.shape[tdim]
        h, d = self.num_heads, self.head_dim

        q, k, v = self._in_projection(query, key, value)  # each (L, N, E) or (N, L, E)
        if self.bias_k is not None and self.bias_v is not None:
            bk = self.bias_k.expand(1, bsz, -1) if bdim == 1 else self.bias_k.expand(bsz, 1, -1)
            bv = self.bias_v.expand(1, bsz, -1) if bdim == 1 else self.bias_v.expand(bsz, 1, -1)
            k = torch.cat([k, bk], dim=tdim)
            v = torch.cat([v, bv], dim=tdim)
        q = _to_bhtd(q, bdim, h, d)  # (N, H, L, D)
        k = _to_bhtd(k, bdim, h, d)  # (N, H, S', D)
        v = _to_bhtd(v, bdim, h, d)  # (N, H, S', D)
        if self.add_zero_attn:
            zeros = k.new_zeros(bsz, h, 1, d)
            k = torch.cat([k, zeros], dim=2)  # (N, H, S'+1, D)
            v = torch.cat([v, zeros], dim=2)
        extra = k.shape[2] - src_len  # key columns added by bias_kv / zero_attn

        mask = self._mask(attn_mask, key_padding_mask, is_causal, need_weights, bsz, extra)
        dropout_p = self.dropout if self.training else 0.0
        head_mask = None
        if dropout_p == 1.0:
            # Every weight is dropped: the attention output is exactly 0 (torch's output is
            # then out_proj.bias, its weights 0, its gradients 0). The core refuses p = 1 (the
            # 1 / (1 - p) rescale is undefined), so drop every head instead: same numbers,
            # and the graph, hence zero gradients, is kept.
            dropout_p, head_mask = 0.0, q.new_zeros(h)
        out, weights = attention(
            q,
            k,
            v,
            mask=mask,
            dropout_p=dropout_p,
            head_mask=head_mask,
            need_weights=bool(need_weights),
            backend=self.backend,
        )  # out (N, H, L, D), weights (N, H, L, S') or None
        del q, k, v  # free the projections before the output projection allocates
        if bdim == 1:
            out = out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, h * d)  # (L, N, E)
        else:
            out = out.transpose(1, 2).reshape(bsz, tgt_len, h * d)  # (N, L, E)
        out = self.out_proj(out)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)  # (N, L, S')
        return out, weights

    def _forward_nested(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        need_weights: bool,
        average_attn_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Nested ``(N, L_i, E)`` inputs: pad them, mask the padded keys, attend, and cut the
        output back to each query's length. torch only takes them on its inference fast path
        (eval, no grad, strided layout, self-attention, ...); padding works in every mode and
        for both layouts, at the cost of computing on the padding."""
        q_lens = [c.shape[0] for c in query.unbind()]
        k_lens = torch.tensor([c.shape[0] for c in key.unbind()], device=query.device)
        qp = torch.nested.to_padded_tensor(query, 0.0)  # (N, L, E)
        kp = qp if key is query else torch.nested.to_padded_tensor(key, 0.0)  # (N, S, Ek)
        vp = kp if value is key else torch.nested.to_padded_tensor(value, 0.0)  # (N, S, Ev)
        src = kp.shape[1]
        pad = torch.arange(src, device=query.device) >= k_lens[:, None]  # (N, S): True = pad
        try:
            _compat_checks.check_inputs(self, qp, kp, vp, pad, None, False, need_weights)
        except (ValueError, TypeError) as e:
            # torch refuses nested inputs outside its fast path with AssertionError and fails
            # inside it with RuntimeError: be both.
            if isinstance(e, AssertionError) and isinstance(e, RuntimeError):
                raise
            both = (
                TypeAssertionRuntimeError
                if isinstance(e, TypeError)
                else ValueAssertionRuntimeError
            )
            raise both(str(e)) from None
        out, weights = self._attend(
            qp,
            kp,
            vp,
            pad,
            None,
            need_weights=need_weights,
            average_attn_weights=average_attn_weights,
            is_causal=False,
        )  # out (N, L, E)
        nested = torch.nested.as_nested_tensor(
            [out[i, :n] for i, n in enumerate(q_lens)], layout=query.layout
        )
        if weights is not None:
            # Padded query rows are not queries: zero them, as torch's fast path does.
            real = (
                torch.arange(qp.shape[1], device=query.device)
                < torch.tensor(q_lens, device=query.device)[:, None]
            )  # (N, L)
            real = real[:, None, :, None] if weights.dim() == 4 else real[:, :, None]
            weights = weights * real.to(weights.dtype)  # (N, [H,] L, S)
        return nested, weights

    def _in_projection(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = self.embed_dim
        bias = self.in_proj_bias
        if bias is not None and bias.dtype != query.dtype:
            # torch accepts an in_proj_bias of another dtype where its linear adds the bias
            # apart (non-contiguous batch_first inputs) and computes in the input's dtype; so
            # do we, in every layout.
            bias = bias.to(query.dtype)
        if self._qkv_same_embed_dim:
            return project_packed(query, key, value, self.in_proj_weight, bias, (e, e, e))
        b = bias.chunk(3) if bias is not None else (None,) * 3
        return (
            F.linear(query, self.q_proj_weight, b[0]),
            F.linear(key, self.k_proj_weight, b[1]),
            F.linear(value, self.v_proj_weight, b[2]),
        )

    def _mask(
        self,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
        is_causal: bool,
        need_weights: bool,
        bsz: int,
        extra: int,
    ) -> AttentionMask | None:
        """Translate torch's masks (True = blocked) into one AttentionMask (True = may attend).
        Key columns added by ``add_bias_kv``/``add_zero_attn`` are always visible."""
        m = AttentionMask()
        if attn_mask is not None:
            if not _compat_checks.attn_mask_used(
                attn_mask, key_padding_mask, is_causal, need_weights
            ):
                # torch's rule: trust the hint only where it does (no padding, no weights).
                m = causal_mask()
            else:
                m = m & self._attn_mask(attn_mask, bsz, extra)
        if key_padding_mask is not None:
            kpm = key_padding_mask
            if kpm.dtype == torch.bool:
                keep = ~kpm
                if extra:
                    keep = F.pad(keep, (0, extra), value=True)  # (N, S')
                m = m & AttentionMask(key_padding=keep)
            else:
                add = F.pad(kpm, (0, extra)) if extra else kpm
                m = m & AttentionMask(additive=add[:, None, None, :])  # (N, 1, 1, S')
        return None if m.is_empty else m

    def _attn_mask(self, attn_mask: torch.Tensor, bsz: int, extra: int) -> AttentionMask:
        """A checked ``(L, S)`` or ``(N*H, L, S)`` attn_mask as an AttentionMask."""
        if attn_mask.dim() == 2:
            am = attn_mask[None, None]  # (1, 1, L, S)
        else:
            am = attn_mask.view(bsz, self.num_heads, *attn_mask.shape[1:])  # (N, H, L, S)
        if am.dtype == torch.bool:
            keep = ~am
            if extra:
                keep = F.pad(keep, (0, extra), value=True)
            return AttentionMask(allowed=keep)
        return AttentionMask(additive=F.pad(am, (0, extra)) if extra else am)


def _unsqueeze(dim: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Unsqueeze each tensor at ``dim``, keeping ``query is key`` (self-attention) identities."""
    out: list[torch.Tensor] = []
    for t in tensors:
        same = next((o for o, orig in zip(out, tensors) if orig is t), None)
        out.append(same if same is not None else t.unsqueeze(dim))
    return tuple(out)


def _dropout(p: object) -> float:
    """torch's range, [0, 1]: p = 1 drops every attention weight in training."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"dropout must be a float in [0, 1], got {type(p).__name__}")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"dropout must be in [0, 1], got {p!r}")
    return float(p)


def _to_bhtd(x: torch.Tensor, bdim: int, heads: int, head_dim: int) -> torch.Tensor:
    """``(T, N, H*D)`` (bdim=1) or ``(N, T, H*D)`` (bdim=0) -> ``(N, H, T, D)``."""
    if bdim == 1:
        t, n, _ = x.shape
        return x.view(t, n, heads, head_dim).permute(1, 2, 0, 3)  # (N, H, T, D)
    n, t, _ = x.shape
    return x.view(n, t, heads, head_dim).transpose(1, 2)  # (N, H, T, D)
