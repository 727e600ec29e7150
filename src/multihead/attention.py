"""MultiHeadAttention: project, (position), (cache), attend, merge heads, project out.

Legend: B batch, T / Tq / Tk sequence lengths, E embedding width, Hq query heads, Hkv key/value
heads, D head dim. Modules take and return batch-first ``(B, T, E)``; the core works on
``(B, H, T, D)``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from multihead import _checks
from multihead.functional import attention, check_backend_name
from multihead.masks import AttentionMask, as_mask
from multihead.masks import causal as causal_mask


class PositionalRotation(Protocol):
    """Rotates queries or keys by position (RoPE). ``x`` is ``(B, H, T, D)`` and ``positions``
    ``(T,)`` or ``(B, T)``; returns the same shape."""

    def __call__(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...


class KVCacheLayer(Protocol):
    """One layer's KV cache. ``update`` writes new keys/values ``(B, Hkv, t, D)`` at
    ``positions`` ``(t,)`` and returns every cached key/value ``(B, Hkv, Tmax, D)``; keys
    past the write position are excluded by the causal mask that goes with them."""

    def update(
        self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, T, H*D)`` -> ``(B, H, T, D)`` (a view)."""
    b, t, hd = x.shape
    return x.view(b, t, heads, hd // heads).transpose(1, 2)  # (B, H, T, D)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, D)`` -> ``(B, T, H*D)``."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)  # (B, T, H*D)


def project_packed(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sizes: tuple[int, int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project q, k, v with one packed ``[W_q; W_k; W_v]`` weight ``(sum(sizes), E)``.

    Self-attention (query is key is value) is one matmul; key is value (encoder-decoder
    attention) is two; otherwise three, each with its slice of the weight (views, no copies).
    """
    nq, nk, nv = sizes
    if query is key and key is value:
        return nn.functional.linear(query, weight, bias).split(sizes, dim=-1)
    w_q, w_k, w_v = weight.split(sizes, dim=0)
    b_q, b_k, b_v = bias.split(sizes) if bias is not None else (None, None, None)
    q = nn.functional.linear(query, w_q, b_q)
    if key is value:
        kv_bias = bias[nq:] if bias is not None else None
        k, v = nn.functional.linear(key, weight[nq:], kv_bias).split((nk, nv), dim=-1)
        return q, k, v
    return q, nn.functional.linear(key, w_k, b_k), nn.functional.linear(value, w_v, b_v)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch-first, with GQA/MQA, cross-attention and per-head control.

    Args:
        embed_dim: model width E.
        num_heads: query heads Hq; must divide E unless ``head_dim`` is given.
        num_kv_heads: key/value heads Hkv (default Hq). Hkv divides Hq: GQA, or MQA with 1.
        head_dim: D (default E / Hq).
        kdim, vdim: widths of key and value inputs for cross-attention (default E).
        bias: biases on the input projections.
        out_bias: bias on the output projection (default: same as ``bias``).
        dropout: attention-weight dropout in training, in [0, 1).
        drophead: probability of dropping a whole head per example in training, rescaling the
            rest (Zhou et al. 2020, "Scheduled DropHead"), in [0, 1).
        backend: attention backend, ``"auto"`` or a registered name (see
            :mod:`multihead.backends`).
        rotary: optional position rotation applied to q and k (e.g. RoPE).

    Parameters: with ``kdim == vdim == E`` one packed ``in_proj`` (``[W_q; W_k; W_v]``, so
    self-attention is a single matmul), else ``q_proj``, ``k_proj``, ``v_proj``; and
    ``out_proj``. ``W_Q``, ``W_K``, ``W_V`` ``(H, E, D)`` and ``W_O`` ``(H, D, E)`` are per-head
    *views* of those weights.

    Example:
        >>> import torch
        >>> from multihead import MultiHeadAttention
        >>> mha = MultiHeadAttention(64, 8, num_kv_heads=2)
        >>> x = torch.randn(2, 10, 64)                          # (B, T, E)
        >>> out, w = mha(x, is_causal=True, need_weights=True)
        >>> out.shape, w.shape, mha.W_Q.shape
        (torch.Size([2, 10, 64]), torch.Size([2, 8, 10, 10]), torch.Size([8, 64, 8]))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        kdim: int | None = None,
        vdim: int | None = None,
        bias: bool = True,
        out_bias: bool | None = None,
        dropout: float = 0.0,
        drophead: float = 0.0,
        backend: str = "auto",
        rotary: PositionalRotation | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _checks.require_positive_int("embed_dim", embed_dim)
        _checks.require_positive_int("num_heads", num_heads)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        _checks.require_positive_int("num_kv_heads", num_kv_heads)
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads} "
                "(each KV head serves num_heads / num_kv_heads query heads)"
            )
        if head_dim is None:
            if embed_dim % num_heads:
                raise ValueError(
                    f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                    "choose a divisor or pass head_dim"
                )
            head_dim = embed_dim // num_heads
        _checks.require_positive_int("head_dim", head_dim)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.kdim = embed_dim if kdim is None else _checks.require_positive_int("kdim", kdim)
        self.vdim = embed_dim if vdim is None else _checks.require_positive_int("vdim", vdim)
        self.dropout = _checks.require_probability("dropout", dropout)
        self.drophead = _checks.require_probability("drophead", drophead)
        self.backend = check_backend_name(backend)
        self.rotary = rotary
        fk = {"device": device, "dtype": dtype}
        q_size, kv_size = num_heads * head_dim, num_kv_heads * head_dim
        self._sizes = (q_size, kv_size, kv_size)
        self.packed = self.kdim == embed_dim and self.vdim == embed_dim
        if self.packed:
            self.in_proj = nn.Linear(embed_dim, q_size + 2 * kv_size, bias=bias, **fk)
        else:
            self.q_proj = nn.Linear(embed_dim, q_size, bias=bias, **fk)
            self.k_proj = nn.Linear(self.kdim, kv_size, bias=bias, **fk)
            self.v_proj = nn.Linear(self.vdim, kv_size, bias=bias, **fk)
        self.out_proj = nn.Linear(
            q_size, embed_dim, bias=bias if out_bias is None else out_bias, **fk
        )

    # ------------------------------------------------------------------ per-head views
    def _weight(self, which: int) -> torch.Tensor:
        if self.packed:
            return self.in_proj.weight.split(self._sizes, dim=0)[which]
        return (self.q_proj, self.k_proj, self.v_proj)[which].weight

    def _bias(self, which: int) -> torch.Tensor | None:
        if self.packed:
            b = self.in_proj.bias
            return None if b is None else b.split(self._sizes)[which]
        return (self.q_proj, self.k_proj, self.v_proj)[which].bias

    def _per_head_in(self, which: int) -> torch.Tensor:
        w = self._weight(which)  # (H*D, E_in)
        heads = self.num_heads if which == 0 else self.num_kv_heads
        return w.view(heads, self.head_dim, w.shape[-1]).transpose(1, 2)  # (H, E_in, D)

    @property
    def W_Q(self) -> torch.Tensor:
        """Per-head query weights ``(Hq, E, D)``, a view: ``q_h = x @ W_Q[h] + b_Q[h]``."""
        return self._per_head_in(0)

    @property
    def W_K(self) -> torch.Tensor:
        """Per-head key weights ``(Hkv, kdim, D)``, a view."""
        return self._per_head_in(1)

    @property
    def W_V(self) -> torch.Tensor:
        """Per-head value weights ``(Hkv, vdim, D)``, a view."""
        return self._per_head_in(2)

    @property
    def W_O(self) -> torch.Tensor:
        """Per-head output weights ``(Hq, D, E)``, a view: ``out = sum_h z_h @ W_O[h] + b_O``."""
        w = self.out_proj.weight  # (E, Hq*D)
        return w.view(self.embed_dim, self.num_heads, self.head_dim).permute(1, 2, 0)  # (H,D,E)

    @property
    def b_Q(self) -> torch.Tensor | None:
        b = self._bias(0)
        return None if b is None else b.view(self.num_heads, self.head_dim)  # (Hq, D)

    @property
    def b_K(self) -> torch.Tensor | None:
        b = self._bias(1)
        return None if b is None else b.view(self.num_kv_heads, self.head_dim)  # (Hkv, D)

    @property
    def b_V(self) -> torch.Tensor | None:
        b = self._bias(2)
        return None if b is None else b.view(self.num_kv_heads, self.head_dim)  # (Hkv, D)

    # ------------------------------------------------------------------ forward
    def project(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input projections, split into heads: q ``(B, Hq, Tq, D)``, k and v
        ``(B, Hkv, Tk, D)``."""
        if self.packed:
            q, k, v = project_packed(
                query, key, value, self.in_proj.weight, self.in_proj.bias, self._sizes
            )
        else:
            q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        return (
            split_heads(q, self.num_heads),
            split_heads(k, self.num_kv_heads),
            split_heads(v, self.num_kv_heads),
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        mask: AttentionMask | torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        head_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        cache: KVCacheLayer | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend.

        Args:
            query: ``(B, Tq, E)``.
            key: ``(B, Tk, kdim)``; None for self-attention (key = value = query).
            value: ``(B, Tk, vdim)``; None means ``value = key``.
            mask: an :class:`~multihead.masks.AttentionMask` or a tensor, bool with
                **True = may attend** or float (additive), shaped ``(Tq, Tk)``,
                ``(B, Tq, Tk)`` or ``(B|1, Hq|1, Tq, Tk)``.
            is_causal: add a causal mask (aligned bottom-right when a cache is used).
            need_weights: also return per-head weights ``(B, Hq, Tq, Tk)``.
            head_mask: ``(Hq,)`` or ``(B, Hq)`` multiplying each head's output (1 keep,
                0 drop); differentiable.
            positions: positions of the queries ``(Tq,)`` or ``(B, Tq)`` for ``rotary`` and
                the cache; default ``0 .. Tq-1``.
            cache: a KV cache layer; new keys/values are written at ``positions``.

        Returns:
            ``(out, weights)``: out ``(B, Tq, E)``; weights ``(B, Hq, Tq, Tk)`` or None.
        """
        _checks.require_bool("is_causal", is_causal)
        _checks.require_bool("need_weights", need_weights)
        self_attention = key is None
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value, self_attention)
        q, k, v = self.project(query, key, value)
        m = as_mask(mask)
        if positions is not None or self.rotary is not None or cache is not None:
            if positions is None:
                positions = torch.arange(query.shape[1], device=query.device)
            if self.rotary is not None:
                q = self.rotary(q, positions)
                k = self.rotary(k, positions) if self_attention else k
            if cache is not None:
                k, v = cache.update(k, v, positions)
                # Queries sit at `positions`; cached keys at 0..Tmax-1. Causality then also
                # hides the cache slots not written yet.
                m = m.with_query_positions(positions)
        if is_causal:
            m = m & causal_mask(align="bottom_right")
        hm = self._head_mask(head_mask, query.shape[0], query.device, query.dtype)
        out, weights = attention(
            q,
            k,
            v,
            mask=None if m.is_empty else m,
            dropout_p=self.dropout if self.training else 0.0,
            head_mask=hm,
            need_weights=need_weights,
            backend=self.backend,
        )
        # Drop the projections before the output projection allocates: without autograd
        # holding them, inference peaks at the projections or the output, not both.
        del q, k, v
        return self.out_proj(merge_heads(out)), weights

    def _head_mask(
        self,
        head_mask: torch.Tensor | None,
        batch: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor | None:
        if not (self.training and self.drophead > 0.0):
            return head_mask
        keep = 1.0 - self.drophead
        drop = torch.rand(batch, self.num_heads, device=device) < keep  # (B, Hq)
        scale = drop.to(dtype) / keep  # (B, Hq): kept heads rescaled so E[out] is unchanged
        return scale if head_mask is None else scale * head_mask

    def _check_inputs(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, self_attention: bool
    ) -> None:
        for name, t, width in (
            ("query", query, self.embed_dim),
            ("key", key, self.kdim),
            ("value", value, self.vdim),
        ):
            _checks.require_tensor(name, t)
            _checks.require_rank(name, t, 3, f"(B, T, {width}) (MultiHeadAttention is batch-first)")
            if t.shape[-1] != width:
                raise ValueError(
                    f"{name} has shape {tuple(t.shape)} but its last dim must be "
                    f"{'embed_dim' if name == 'query' else name[0] + 'dim'}={width}"
                )
            weight = self.out_proj.weight
            # Under autocast the projections cast for themselves, so mixed dtypes are fine.
            if t.dtype != weight.dtype and not torch.is_autocast_enabled(t.device.type):
                raise TypeError(
                    f"{name} has dtype {t.dtype} but the module's weights are {weight.dtype}; "
                    f"cast the input (x.to({weight.dtype})) or the module (.to({t.dtype}))"
                )
        if self_attention:
            return
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"key has shape {tuple(key.shape)} and value {tuple(value.shape)}: their "
                "(B, Tk) must match"
            )
        if query.shape[0] != key.shape[0]:
            hint = ""
            if query.shape[1] == key.shape[1]:
                hint = (
                    "; they agree along dim 1, so these look like (T, B, E) inputs, but "
                    "MultiHeadAttention is batch-first and expects (B, T, E)"
                )
            raise ValueError(
                f"query has shape {tuple(query.shape)} and key {tuple(key.shape)}: batch sizes "
                f"differ{hint}"
            )

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention, **kwargs) -> MultiHeadAttention:
        """Copy a ``torch.nn.MultiheadAttention`` into a (batch-first) MultiHeadAttention with
        equal outputs. Feed it ``(B, T, E)`` whatever the source's ``batch_first`` was.

        Raises ValueError for ``add_bias_kv``/``add_zero_attn``, which this module does not
        model (use :class:`multihead.compat.MultiheadAttention` for those).
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(
                f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}"
            )
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                "module uses add_bias_kv or add_zero_attn, which MultiHeadAttention does not "
                "model; use multihead.compat.MultiheadAttention instead"
            )
        w = module.in_proj_weight if module._qkv_same_embed_dim else module.q_proj_weight
        new = cls(
            module.embed_dim,
            module.num_heads,
            kdim=module.kdim,
            vdim=module.vdim,
            bias=module.in_proj_bias is not None,
            out_bias=module.out_proj.bias is not None,
            dropout=module.dropout,
            device=w.device,
            dtype=w.dtype,
            **kwargs,
        )
        with torch.no_grad():
            if module._qkv_same_embed_dim:
                new.in_proj.weight.copy_(module.in_proj_weight)
                if module.in_proj_bias is not None:
                    new.in_proj.bias.copy_(module.in_proj_bias)
            else:
                biases = (
                    module.in_proj_bias.chunk(3)
                    if module.in_proj_bias is not None
                    else (None, None, None)
                )
                for proj, weight, b in zip(
                    (new.q_proj, new.k_proj, new.v_proj),
                    (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight),
                    biases,
                ):
                    proj.weight.copy_(weight)
                    if b is not None:
                        proj.bias.copy_(b)
            new.out_proj.weight.copy_(module.out_proj.weight)
            if module.out_proj.bias is not None:
                new.out_proj.bias.copy_(module.out_proj.bias)
        return new

    @classmethod
    def from_head_list(
        cls, heads: nn.ModuleList | list[nn.Module], proj: nn.Linear, **kwargs
    ) -> MultiHeadAttention:
        """Fuse a tutorial-style per-head model into one module with equal outputs.

        ``heads[i]`` has ``query``, ``key`` and ``value`` ``nn.Linear(E, E / H)`` layers and
        computes ``softmax(q k^T / sqrt(E / H)) v``; ``proj`` is the ``nn.Linear(E, E)``
        applied to the concatenated heads. A causal tutorial model (a ``tril`` buffer) matches
        ``forward(x, is_causal=True)``.
        """
        heads = list(heads)
        if not heads:
            raise ValueError("heads is empty; expected at least one per-head module")
        for i, h in enumerate(heads):
            for name in ("query", "key", "value"):
                lin = getattr(h, name, None)
                if not isinstance(lin, nn.Linear):
                    raise TypeError(
                        f"heads[{i}] has no nn.Linear attribute {name!r}; expected the "
                        "tutorial layout with query/key/value Linear(E, E / H) per head"
                    )
        first = heads[0].query
        embed_dim, head_dim = first.in_features, first.out_features
        if proj.in_features != head_dim * len(heads):
            raise ValueError(
                f"proj takes {proj.in_features} features but {len(heads)} heads of width "
                f"{head_dim} give {head_dim * len(heads)}"
            )
        if proj.out_features != embed_dim:
            raise ValueError(
                f"proj gives {proj.out_features} features but the heads read width "
                f"{embed_dim}; the fused module maps E -> E"
            )
        has_bias = first.bias is not None
        new = cls(
            embed_dim,
            len(heads),
            head_dim=head_dim,
            bias=has_bias,
            out_bias=proj.bias is not None,
            device=first.weight.device,
            dtype=first.weight.dtype,
            **kwargs,
        )
        with torch.no_grad():
            parts = []
            for name in ("query", "key", "value"):
                parts.append(torch.cat([getattr(h, name).weight for h in heads], dim=0))
            new.in_proj.weight.copy_(torch.cat(parts, dim=0))
            if has_bias:
                biases = [
                    torch.cat([getattr(h, name).bias for h in heads])
                    for name in ("query", "key", "value")
                ]
                new.in_proj.bias.copy_(torch.cat(biases))
            new.out_proj.weight.copy_(proj.weight)
            if proj.bias is not None:
                new.out_proj.bias.copy_(proj.bias)
        return new

    def extra_repr(self) -> str:
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}{kv}, "
            f"head_dim={self.head_dim}, backend={self.backend!r}"
        )
