"""A drop-in twin of ``torch.nn.MultiheadAttention``.

Same constructor, forward signature, defaults, parameter names (``state_dict`` loads both
ways) and numbers, with two deliberate differences:

* A query row whose keys are all masked gives output 0 and weights 0 (torch gives NaN there:
  pytorch issues 41508 and 160064).
* Without ``need_weights`` the attention runs on a fused O(T)-memory backend in train and eval
  alike (torch's eval fast path materializes ``T x T`` scores).

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

from multihead import _checks
from multihead.attention import project_packed
from multihead.functional import attention, check_backend_name
from multihead.masks import AttentionMask
from multihead.masks import causal as causal_mask


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
        _checks.require_positive_int("embed_dim", embed_dim)
        _checks.require_positive_int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        fk = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = _checks.require_probability("dropout", dropout)
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

        Returns ``(attn_output, attn_weights)``: output shaped like ``query``; weights
        ``(N, L, S)`` averaged over heads, ``(N, H, L, S)`` per head, or None.
        """
        batched = self._check_ranks(query, key, value, key_padding_mask, attn_mask)
        bdim = (0 if self.batch_first else 1) if batched else None
        if bdim is None:
            # Unbatched: add a batch dim of 1 where the layout puts it, drop it at the end.
            pos = 0 if self.batch_first else 1
            query, key, value = query.unsqueeze(pos), key.unsqueeze(pos), value.unsqueeze(pos)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
            bdim = pos
        tdim = 1 - bdim
        self._check_shapes(query, key, value, key_padding_mask, bdim)
        bsz, tgt_len, src_len = query.shape[bdim], query.shape[tdim], key.shape[tdim]
        h, d = self.num_heads, self.head_dim

        q, k, v = self._in_projection(query, key, value)  # each (T, N, E) or (N, T, E)
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

        mask = self._mask(
            attn_mask, key_padding_mask, is_causal, need_weights, bsz, tgt_len, src_len, extra
        )
        out, weights = attention(
            q,
            k,
            v,
            mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
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
        if not batched:
            out = out.squeeze(bdim)
            if weights is not None:
                weights = weights.squeeze(0)
        return out, weights

    def _in_projection(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            return project_packed(
                query, key, value, self.in_proj_weight, self.in_proj_bias, (e, e, e)
            )
        b = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
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
        tgt_len: int,
        src_len: int,
        extra: int,
    ) -> AttentionMask | None:
        """Translate torch's masks (True = blocked) into one AttentionMask (True = may attend).
        Key columns added by ``add_bias_kv``/``add_zero_attn`` are always visible."""
        if is_causal and attn_mask is None:
            raise ValueError(
                "is_causal=True is a hint that attn_mask is causal and needs attn_mask too "
                "(as in torch.nn.MultiheadAttention); pass e.g. "
                "torch.nn.Transformer.generate_square_subsequent_mask(L)"
            )
        for name, t in (("attn_mask", attn_mask), ("key_padding_mask", key_padding_mask)):
            if t is not None and t.dtype != torch.bool and not t.is_floating_point():
                raise TypeError(
                    f"{name} has dtype {t.dtype}; expected bool (True = blocked) or float "
                    "(additive)"
                )
        m = AttentionMask()
        if attn_mask is not None:
            if is_causal and key_padding_mask is None and not need_weights:
                # torch's rule: trust the hint only where it does (no padding, no weights).
                m = causal_mask()
            else:
                m = m & self._attn_mask(attn_mask, bsz, tgt_len, src_len, extra)
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

    def _attn_mask(
        self, attn_mask: torch.Tensor, bsz: int, tgt_len: int, src_len: int, extra: int
    ) -> AttentionMask:
        h = self.num_heads
        if attn_mask.dim() == 2:
            if attn_mask.shape != (tgt_len, src_len):
                raise ValueError(
                    f"attn_mask has shape {tuple(attn_mask.shape)} but a 2-D attn_mask must "
                    f"be (L, S) = ({tgt_len}, {src_len})"
                )
            am = attn_mask[None, None]  # (1, 1, L, S)
        else:
            if attn_mask.shape != (bsz * h, tgt_len, src_len):
                raise ValueError(
                    f"attn_mask has shape {tuple(attn_mask.shape)} but a 3-D attn_mask must "
                    f"be (N * num_heads, L, S) = ({bsz * h}, {tgt_len}, {src_len})"
                )
            am = attn_mask.view(bsz, h, tgt_len, src_len)  # (N, H, L, S)
        if am.dtype == torch.bool:
            keep = ~am
            if extra:
                keep = F.pad(keep, (0, extra), value=True)
            return AttentionMask(allowed=keep)
        return AttentionMask(additive=F.pad(am, (0, extra)) if extra else am)

    # ------------------------------------------------------------------ checks
    def _check_ranks(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        attn_mask: torch.Tensor | None,
    ) -> bool:
        layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
        for name, t in (("query", query), ("key", key), ("value", value)):
            _checks.require_tensor(name, t)
            _checks.require_floating(name, t)
        _checks.require_rank(
            "query", query, (2, 3), f"3-D {layout} (batch_first={self.batch_first}) or 2-D (L, E)"
        )
        batched = query.dim() == 3
        for name, t in (("key", key), ("value", value)):
            if t.dim() != query.dim():
                raise ValueError(
                    f"{name} has shape {tuple(t.shape)} ({t.dim()}-D) but query is "
                    f"{query.dim()}-D; they must have the same rank"
                )
        _checks.require_same(("query", "key", "value"), (query, key, value))
        if key_padding_mask is not None:
            want = 2 if batched else 1
            if key_padding_mask.dim() != want:
                raise ValueError(
                    f"key_padding_mask has shape {tuple(key_padding_mask.shape)} but "
                    + ("(N, S)" if batched else "(S,) for an unbatched query")
                    + " is expected"
                )
        if attn_mask is not None and attn_mask.dim() not in (2, 3):
            raise ValueError(
                f"attn_mask has shape {tuple(attn_mask.shape)} but (L, S) or "
                "(N * num_heads, L, S) is expected"
            )
        return batched

    def _check_shapes(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        bdim: int,
    ) -> None:
        layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
        other = "(L, N, E)" if self.batch_first else "(N, L, E)"
        for name, t, width in (
            ("query", query, self.embed_dim),
            ("key", key, self.kdim),
            ("value", value, self.vdim),
        ):
            if t.shape[-1] != width:
                raise ValueError(
                    f"{name} has shape {tuple(t.shape)} but its last dim must be {width}"
                )
        tdim = 1 - bdim
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"key has shape {tuple(key.shape)} and value {tuple(value.shape)}; their "
                "batch and sequence dims must match"
            )
        kpm_mismatch = key_padding_mask is not None and (
            key_padding_mask.shape != (query.shape[bdim], key.shape[tdim])
        )
        if query.shape[bdim] != key.shape[bdim] or kpm_mismatch:
            looks_swapped = query.shape[tdim] == key.shape[tdim] or (
                key_padding_mask is not None
                and key_padding_mask.shape == (query.shape[tdim], key.shape[bdim])
            )
            what = f"query has shape {tuple(query.shape)} and key {tuple(key.shape)}" + (
                f" with key_padding_mask {tuple(key_padding_mask.shape)}"
                if key_padding_mask is not None
                else ""
            )
            if looks_swapped:
                raise ValueError(
                    f"{what}: these look like {other} inputs, but batch_first="
                    f"{self.batch_first} expects {layout}"
                )
            raise ValueError(
                f"{what}: batch sizes (dim {bdim}) must match"
                + (
                    f" and key_padding_mask must be (N, S) = ({query.shape[bdim]}, "
                    f"{key.shape[tdim]})"
                    if key_padding_mask is not None
                    else ""
                )
            )


def _to_bhtd(x: torch.Tensor, bdim: int, heads: int, head_dim: int) -> torch.Tensor:
    """``(T, N, H*D)`` (bdim=1) or ``(N, T, H*D)`` (bdim=0) -> ``(N, H, T, D)``."""
    if bdim == 1:
        t, n, _ = x.shape
        return x.view(t, n, heads, head_dim).permute(1, 2, 0, 3)  # (N, H, T, D)
    n, t, _ = x.shape
    return x.view(n, t, heads, head_dim).transpose(1, 2)  # (N, H, T, D)
