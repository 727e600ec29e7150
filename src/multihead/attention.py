"""MultiHeadAttention: project, (position), (cache), attend, merge heads, project out.

Legend: B batch, T / Tq / Tk sequence lengths, E embedding width, Hq query heads, Hkv key/value
heads, D head dim. Modules take and return batch-first ``(B, T, E)``; the core works on
``(B, H, T, D)``. Mask polarity: True = may attend.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from multihead import _checks, module_conversions, selection
from multihead.functional import attention, check_backend_name
from multihead.linear import Linear
from multihead.masks import AttentionMask, HeadBias, as_mask
from multihead.masks import bias as bias_mask
from multihead.masks import causal as causal_mask
from multihead.observation import AttentionPoints, Observer
from multihead.projection import merge_heads, project_packed, split_heads
from multihead.roles import MATRIX, RESIDUAL, Role
from multihead.unpadding import Unpadded


class PositionalRotation(Protocol):
    """Rotates queries or keys by position (RoPE). ``x`` is ``(B, H, T, D)`` and ``positions``
    ``(T,)`` or ``(B, T)``; returns the same shape."""

    def __call__(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...


class KVCacheLayer(Protocol):
    """One layer's KV cache (see :class:`multihead.cache.KVCacheLayer`), written apart from
    read: the owner of the cache plans each forward's write beforehand
    (:meth:`multihead.cache.KVCache.begin`).

    ``key_positions()`` is a pure read: the positions ``(B, Tk)`` int64 of the keys that
    ``update`` returns, -1 for an empty slot (never attended). ``update(k, v, positions)``
    writes the new keys/values ``(B, Hkv, t, D)`` of the queries at ``positions`` ``(t,)`` or
    ``(B, t)`` and returns every key/value to attend to, ``(B, Hkv, Tk, D)``.
    """

    def key_positions(self) -> torch.Tensor: ...

    def update(
        self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch-first, with GQA/MQA, cross-attention and per-head control.

    Args:
        embed_dim: model width E.
        num_heads: query heads Hq; must divide E unless ``head_dim`` is given. 0 is allowed
            with an explicit ``head_dim`` (a layer whose heads were all selected away: its
            output is ``out_proj``'s bias).
        num_kv_heads: key/value heads Hkv (default Hq). Hkv divides Hq (GQA, or MQA with 1)
            unless ``kv_index`` gives the groups.
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
        kv_index: the KV head of each query head, ``Hq`` ids in ``[0, Hkv)`` each KV head
            used at least once, for uneven groups (e.g. after :meth:`select_heads`); default:
            uniform groups, query head ``h`` reads KV head ``h // (Hq / Hkv)``. Uneven groups
            expand K/V per query head for the core; a cache still stores Hkv heads.
        position_bias: a per-head additive score bias computed from positions (a
            :class:`~multihead.masks.HeadBias` with ``num_heads`` 1 or Hq, e.g.
            :class:`~multihead.positional.ALiBi`), added to every call's mask as
            ``masks.bias(position_bias)``. A module (ALiBi's slopes) is registered as a
            submodule, so its per-head buffers are saved and :meth:`select_heads` slices them.

    Parameters: with ``kdim == vdim == E`` one packed ``in_proj`` (``[W_q; W_k; W_v]``, so
    self-attention is a single matmul), else ``q_proj``, ``k_proj``, ``v_proj``; and
    ``out_proj``. ``W_Q``, ``W_K``, ``W_V`` ``(H, E, D)`` and ``W_O`` ``(H, D, E)`` are per-head
    *views* of those weights.

    Observation: :meth:`add_observer` registers a function called with the
    :class:`~multihead.observation.AttentionPoints` of every forward.

    Example:
        >>> import torch
        >>> from multihead import MultiHeadAttention
        >>> mha = MultiHeadAttention(64, 8, num_kv_heads=2)
        >>> x = torch.randn(2, 10, 64)                          # (B, T, E)
        >>> out, w = mha(x, is_causal=True, need_weights=True)
        >>> out.shape, w.shape, mha.W_Q.shape
        (torch.Size([2, 10, 64]), torch.Size([2, 8, 10, 10]), torch.Size([8, 64, 8]))
    """

    kv_index: torch.Tensor | None

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
        kv_index: Sequence[int] | torch.Tensor | None = None,
        position_bias: HeadBias | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _checks.require_positive_int("embed_dim", embed_dim)
        if head_dim is None:
            _checks.require_positive_int("num_heads", num_heads)
            if embed_dim % num_heads:
                raise ValueError(
                    f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                    "choose a divisor or pass head_dim"
                )
            head_dim = embed_dim // num_heads
        _checks.require_nonnegative_int("num_heads", num_heads)
        _checks.require_positive_int("head_dim", head_dim)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads == 0:
            if num_kv_heads != 0:
                raise ValueError(
                    f"num_kv_heads={num_kv_heads} but num_heads=0: a KV head needs at least "
                    "one query head"
                )
        else:
            _checks.require_positive_int("num_kv_heads", num_kv_heads)
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
        if position_bias is not None:
            bias_mask(position_bias)  # validates the HeadBias protocol
            if position_bias.num_heads not in (1, num_heads):
                raise ValueError(
                    f"position_bias has num_heads={position_bias.num_heads} but the module has "
                    f"num_heads={num_heads}; expected 1 (shared) or one per query head"
                )
        self.position_bias = position_bias
        # Not persistent: the map is configuration (the constructor's argument), not state.
        self.register_buffer(
            "kv_index",
            selection.check_kv_index(kv_index, num_heads, num_kv_heads, device),
            persistent=False,
        )
        fk = {"device": device, "dtype": dtype}
        q_size, kv_size = num_heads * head_dim, num_kv_heads * head_dim
        self._sizes = (q_size, kv_size, kv_size)
        self.packed = self.kdim == embed_dim and self.vdim == embed_dim
        with warnings.catch_warnings():
            # No heads: torch warns that initializing the empty projections is a no-op.
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            if self.packed:
                self.in_proj = Linear(embed_dim, q_size + 2 * kv_size, bias=bias, **fk)
            else:
                self.q_proj = Linear(embed_dim, q_size, bias=bias, **fk)
                self.k_proj = Linear(self.kdim, kv_size, bias=bias, **fk)
                self.v_proj = Linear(self.vdim, kv_size, bias=bias, **fk)
            self.out_proj = Linear(
                q_size, embed_dim, bias=bias if out_bias is None else out_bias, **fk
            )
        # An OrderedDict, as torch's hook dicts: RemovableHandle holds a weak reference to it.
        self._observers: OrderedDict[int, Observer] = OrderedDict()

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

    @property
    def scale(self) -> float:
        """The score scale ``1 / sqrt(D)`` (the core's default, computed the same way)."""
        return 1.0 / math.sqrt(self.head_dim)

    def kv_heads_of_queries(self) -> list[int]:
        """The KV head of each query head, ``Hq`` ids (the uniform map when ``kv_index`` is
        None)."""
        if self.kv_index is not None:
            return self.kv_index.tolist()
        return selection.uniform_kv_map(self.num_heads, self.num_kv_heads)

    # ------------------------------------------------------------------ heads
    def select_heads(
        self,
        query_heads: Sequence[int] | torch.Tensor,
        kv_heads: Sequence[int] | torch.Tensor | None = None,
    ) -> MultiHeadAttention:
        """Keep only the listed heads, in place; returns the module. The one place in
        multihead that slices head weights (pruning, tensor parallelism and conversion use it).

        Args:
            query_heads: the query heads to keep, as current ids in ``[0, Hq)``, in the order
                they take in the new module (a reordering is allowed). May be empty: the
                module then outputs ``out_proj``'s bias (callers such as pruning refuse
                that unless asked).
            kv_heads: the KV heads to keep, current ids in ``[0, Hkv)`` in their new order;
                default: those the kept query heads read, in order of first use. Every kept
                query head's KV head must be kept and every kept KV head must keep a query
                head.

        Slices the rows of W_Q (and W_K, W_V) in the packed ``in_proj`` or in ``q_proj``/
        ``k_proj``/``v_proj``, their biases, the columns of ``out_proj`` (its bias is
        unchanged), and the per-head state of injected parts: a part whose ``num_heads``
        equals Hq (or that has no ``num_heads``) and implements ``select_heads(index)``
        (``index`` ``(Hq',)`` int64, e.g. ALiBi's slopes) is replaced by a sliced copy, so a
        part shared with other layers is left alone. ``num_heads``, ``num_kv_heads``,
        ``kv_index`` and the views ``W_Q``... follow. Groups that become uneven set
        ``kv_index``. Parameters are new tensors: rebuild an optimizer afterwards.

        Raises:
            TypeError: ids that are not integers; a per-head part without ``select_heads``.
            ValueError: ids out of range or repeated, a kept query head whose KV head is
                dropped, a kept KV head without query heads. Nothing changes on error.

        Example:
            >>> import torch
            >>> mha = MultiHeadAttention(16, 4, num_kv_heads=2)
            >>> x = torch.randn(1, 3, 16)
            >>> masked, _ = mha(x, head_mask=torch.tensor([0.0, 1.0, 0.0, 1.0]))
            >>> pruned, _ = mha.select_heads([1, 3])(x)
            >>> torch.allclose(pruned, masked, atol=1e-6), mha.num_kv_heads
            (True, 2)
        """
        return selection.select_heads(self, query_heads, kv_heads)

    # ------------------------------------------------------------------ observation
    def add_observer(self, fn: Observer) -> RemovableHandle:
        """Call ``fn(points)`` with the :class:`~multihead.observation.AttentionPoints` of
        every forward (after the attention, before the output projection). Observers read;
        the output is unchanged and still comes from the fast backend. Returns a handle whose
        ``remove()`` unregisters ``fn``; with no observer left, the forward builds nothing."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        handle = RemovableHandle(self._observers)
        self._observers[handle.id] = fn
        return handle

    # ------------------------------------------------------------------ forward
    def project(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        unpadded: Unpadded | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input projections, split into heads: q ``(B, Hq, Tq, D)``, k and v
        ``(B, Hkv, Tk, D)``. With ``unpadded``, query = key = value are the real tokens
        ``(N, E)``: they are projected, then padded (zeros) to ``(B, T, ...)``."""
        if self.packed:
            q, k, v = project_packed(
                query, key, value, self.in_proj.weight, self.in_proj.bias, self._sizes
            )
        else:
            q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        if unpadded is not None:
            q, k, v = (unpadded.pad(t) for t in (q, k, v))  # (B, T, H*D) each, 0 at padding
        d = self.head_dim
        return (
            split_heads(q, self.num_heads, d),
            split_heads(k, self.num_kv_heads, d),
            split_heads(v, self.num_kv_heads, d),
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
        unpadded: Unpadded | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend.

        Args:
            query: ``(B, Tq, E)``.
            key: ``(B, Tk, kdim)``; None for self-attention (key = value = query).
            value: ``(B, Tk, vdim)``; None means ``value = key``.
            mask: an :class:`~multihead.masks.AttentionMask` or a tensor, bool with
                **True = may attend** or float (additive), shaped ``(Tq, Tk)``,
                ``(B, Tq, Tk)`` or ``(B|1, Hq|1, Tq, Tk)``. The module's ``position_bias``
                is added to it.
            is_causal: add a causal mask (aligned bottom-right when a cache is used).
            need_weights: also return per-head weights ``(B, Hq, Tq, Tk)``.
            head_mask: ``(Hq,)`` or ``(B, Hq)`` multiplying each head's output (1 keep,
                0 drop); differentiable.
            positions: positions of the queries ``(Tq,)`` or ``(B, Tq)`` for ``rotary`` and
                the cache; default ``0 .. Tq-1``.
            cache: a KV cache layer whose write was planned for ``positions`` (see
                :meth:`multihead.cache.KVCache.begin`); the new keys/values are written to it
                and the mask is evaluated at its key positions (``cache.key_positions()``)
                and the query ``positions``, so causality, windows and ALiBi hold for any
                cache layout.
            unpadded: self-attention on unpadded tokens (:mod:`multihead.unpadding`):
                ``query`` is ``(N, E)``, the real tokens of a ``(B, T)`` batch; the
                projections compute on those N rows only, the attention on the padded
                layout (zeros at the padding, which ``mask`` must keep from being
                attended), and ``out`` is ``(N, E)``. No key, value or cache.

        Returns:
            ``(out, weights)``: out ``(B, Tq, E)``; weights ``(B, Hq, Tq, Tk)`` or None.
        """
        _checks.require_bool("is_causal", is_causal)
        _checks.require_bool("need_weights", need_weights)
        self_attention = key is None
        key = query if key is None else key
        value = key if value is None else value
        if unpadded is None:
            self._check_inputs(query, key, value, self_attention)
            b, t = query.shape[:2]
        else:
            self._check_unpadded(query, self_attention, cache, unpadded)
            b, t = unpadded.batch, unpadded.length
        q, k, v = self.project(query, key, value, unpadded)
        m = as_mask(mask)
        if self.position_bias is not None:
            m = m & AttentionMask(head_biases=(self.position_bias,))
        if positions is not None or self.rotary is not None or cache is not None:
            if positions is None:
                positions = torch.arange(t, device=query.device)
            if self.rotary is not None:
                q = self.rotary(q, positions)
                k = self.rotary(k, positions) if self_attention else k
            if cache is not None:
                key_positions = cache.key_positions()  # (B, Tk), -1 = empty slot
                k, v = cache.update(k, v, positions)
                m = m.with_query_positions(positions).with_key_positions(key_positions)
        if is_causal:
            m = m & causal_mask(align="bottom_right")
        hm = self._head_mask(head_mask, b, query.device, query.dtype)
        out, weights = self._attend(q, k, v, m, hm, need_weights)
        if self._observers:
            self._notify(q, k, v, out, m, hm, weights)
        # Drop the projections before the output projection allocates: without autograd
        # holding them, inference peaks at the projections or the output, not both.
        del q, k, v
        merged = merge_heads(out)  # (B, Tq, Hq*Dv)
        if unpadded is not None:
            merged = unpadded.unpad(merged)  # (N, Hq*Dv)
        return self.out_proj(merged), weights

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        m: AttentionMask,
        hm: torch.Tensor | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The core call: out ``(B, Hq, Tq, Dv)`` and weights ``(B, Hq, Tq, Tk)`` or None."""
        if self.num_heads == 0:
            b, _, tq, _ = q.shape
            weights = q.new_zeros(b, 0, tq, k.shape[2]) if need_weights else None
            return q.new_zeros(b, 0, tq, v.shape[-1]), weights
        if self.kv_index is not None:
            # Uneven groups: the core serves uniform groups only, so give it one KV head per
            # query head (the cache above still holds the Hkv heads).
            k = k.index_select(1, self.kv_index)  # (B, Hq, Tk, D)
            v = v.index_select(1, self.kv_index)  # (B, Hq, Tk, Dv)
        return attention(
            q,
            k,
            v,
            mask=None if m.is_empty else m,
            dropout_p=self.dropout if self.training else 0.0,
            head_mask=hm,
            need_weights=need_weights,
            backend=self.backend,
        )

    def _notify(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor,
        m: AttentionMask,
        hm: torch.Tensor | None,
        weights: torch.Tensor | None,
    ) -> None:
        dropped = self.training and self.dropout > 0.0
        points = AttentionPoints(
            module=self,
            q=q,
            k=k,
            v=v,
            out=out,
            mask=m,
            scale=self.scale,
            head_mask=hm,
            kv_index=self.kv_index,
            # Weights asked for by the caller are reused unless dropout changed them.
            _weights=None if dropped else weights,
        )
        for fn in list(self._observers.values()):
            fn(points)

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
            # Not "these look like (T, B, E)": with Tq == Tk a real batch mismatch agrees
            # along dim 1 too, so name the mismatch and the layout read, not a guess.
            raise ValueError(
                f"query has shape {tuple(query.shape)} and key {tuple(key.shape)}: batch sizes "
                f"differ ({query.shape[0]} vs {key.shape[0]}); MultiHeadAttention is "
                "batch-first and reads (B, T, E)"
            )

    def _check_unpadded(
        self, query: torch.Tensor, self_attention: bool, cache: object, unpadded: object
    ) -> None:
        if not isinstance(unpadded, Unpadded):
            raise TypeError(f"unpadded must be an Unpadded, got {type(unpadded).__name__}")
        if not self_attention or cache is not None:
            raise ValueError(
                "unpadded= is for self-attention without a cache; got "
                + ("a key/value" if not self_attention else "a cache")
            )
        _checks.require_tensor("query", query)
        if tuple(query.shape) != (unpadded.count, self.embed_dim):
            raise ValueError(
                f"query has shape {tuple(query.shape)} but unpadded= expects the "
                f"({unpadded.count}, {self.embed_dim}) real tokens (N, E) of a "
                f"({unpadded.batch}, {unpadded.length}) batch"
            )
        self._check_inputs(query.unsqueeze(0), query.unsqueeze(0), query.unsqueeze(0), True)

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention, **kwargs) -> MultiHeadAttention:
        """Copy a ``torch.nn.MultiheadAttention`` into a (batch-first) MultiHeadAttention with
        equal outputs (see :func:`multihead.module_conversions.from_torch`)."""
        return module_conversions.from_torch(cls, module, **kwargs)

    @classmethod
    def from_head_list(
        cls, heads: nn.ModuleList | list[nn.Module], proj: nn.Linear, **kwargs
    ) -> MultiHeadAttention:
        """Fuse a tutorial-style per-head model into one module with equal outputs (see
        :func:`multihead.module_conversions.from_head_list`)."""
        return module_conversions.from_head_list(cls, heads, proj, **kwargs)

    def parameter_roles(self) -> list[tuple[nn.Parameter, Role]]:
        """Roles of the weights (:mod:`multihead.roles`): the packed ``[W_q; W_k; W_v]`` is
        three matrices, and ``out_proj`` writes the residual stream. Biases get the default."""
        if self.packed:
            sizes = [n for n in self._sizes if n]  # a layer with no heads left packs nothing
            roles = [(self.in_proj.weight, MATRIX.packed(sizes))]
        else:
            roles = [(p.weight, MATRIX) for p in (self.q_proj, self.k_proj, self.v_proj)]
        return [*roles, (self.out_proj.weight, RESIDUAL)]

    def extra_repr(self) -> str:
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        if self.kv_index is not None:
            kv += f", kv_index={self.kv_index.tolist()}"
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}{kv}, "
            f"head_dim={self.head_dim}, backend={self.backend!r}"
        )
