"""Observation points of :class:`~multihead.attention.MultiHeadAttention`.

An observer registered with ``handle = mha.add_observer(fn)`` is called once per forward with
an :class:`AttentionPoints`: the rotated queries and keys, the values, the per-head outputs,
the effective mask and scale. It reads; it never changes the output, which still comes from
the fast backend. Attention weights are computed only when the observer asks for them, beside
that output (:meth:`AttentionPoints.weights`), or one block of query rows at a time for long
inputs (:meth:`AttentionPoints.weights_by_rows`). With no observer registered no
``AttentionPoints`` is built and the forward does no extra work (it compiles with
``fullgraph=True``). ``handle.remove()`` unregisters.

Legend: B batch, Hq query heads, Hkv key/value heads, Tq queries, Tk keys, D head dim,
Dv value head dim. Mask polarity: True = may attend.

Example:
    >>> import torch
    >>> from multihead import MultiHeadAttention
    >>> mha = MultiHeadAttention(32, 4, num_kv_heads=2)
    >>> seen = []
    >>> handle = mha.add_observer(lambda p: seen.append(p.weights()))
    >>> out, _ = mha(torch.randn(2, 5, 32), is_causal=True)
    >>> seen[0].shape                                    # (B, Hq, Tq, Tk): one map per query head
    torch.Size([2, 4, 5, 5])
    >>> handle.remove()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from multihead.backends import math as math_backend
from multihead.masks import AttentionMask


@dataclass(eq=False)
class AttentionPoints:
    """What one forward of a MultiHeadAttention computed, as an observer sees it.

    Attributes:
        module: the MultiHeadAttention that ran.
        q: queries ``(B, Hq, Tq, D)`` after rotation (RoPE).
        k: keys ``(B, Hkv, Tk, D)`` after rotation and the cache: what the queries see. With
            a linear KV cache these are the cache's own buffers (copy them to keep them).
        v: values ``(B, Hkv, Tk, Dv)``, likewise.
        out: per-head outputs ``(B, Hq, Tq, Dv)`` before the merge, head_mask applied.
        mask: the effective :class:`~multihead.masks.AttentionMask` (causal, window, the
            module's position bias, a cache's query and key positions, the caller's mask).
        scale: the score scale (``1 / sqrt(D)``).
        head_mask: ``(Hq,)`` or ``(B, Hq)`` as applied (DropHead included), or None.
        kv_index: ``(Hq,)`` int64, the KV head of each query head; None = uniform groups
            (query head ``h`` reads KV head ``h // (Hq / Hkv)``).
    """

    module: nn.Module
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    out: torch.Tensor
    mask: AttentionMask
    scale: float
    head_mask: torch.Tensor | None
    kv_index: torch.Tensor | None
    _weights: torch.Tensor | None = field(default=None, repr=False)

    def weights(self) -> torch.Tensor:
        """Attention weights ``(B, Hq, Tq, Tk)`` in q's dtype, as ``need_weights=True`` returns
        them: softmax over the keys (before dropout), head_mask applied, 0 for a query with no
        key to attend to. Computed on the first call (O(Tq * Tk) memory), then kept for the
        other observers of the same forward. Differentiable."""
        if self._weights is None:
            b, hq, tq, _ = self.q.shape
            if hq == 0:
                self._weights = self.q.new_zeros(b, 0, tq, self.k.shape[2])
            else:
                w = math_backend.attention_weights(
                    self.q, self._keys(), mask=self.mask, scale=self.scale
                )  # (B, Hq, Tq, Tk)
                self._weights = self._apply_head_mask(w)
        return self._weights

    def weights_by_rows(self, block: int = 256) -> Iterator[tuple[int, int, torch.Tensor]]:
        """The weights one block of query rows at a time, for inputs whose full map would not
        fit: yields ``(q0, q1, w)`` with ``w`` ``(B, Hq, q1 - q0, Tk)`` the rows ``[q0, q1)``
        of :meth:`weights` (computed in float32 for half inputs, returned in q's dtype).
        Memory O(B * Hq * block * Tk); summing statistics over the blocks gives per-head
        scores in O(T) memory."""
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"block must be a positive integer, got {block!r}")
        b, hq, tq, d = self.q.shape
        k = self._keys()
        tk = k.shape[2]
        cdt = math_backend.compute_dtype(self.q.dtype)
        q_pos = self.mask.query_pos(tq, tk, self.q.device)  # (1|B, Tq)
        kt = k.to(cdt).transpose(-1, -2)  # (B, Hkv', D, Tk)
        groups = hq // max(k.shape[1], 1)
        for q0 in range(0, tq, block):
            q1 = min(q0 + block, tq)
            if hq == 0:
                yield q0, q1, self.q.new_zeros(b, 0, q1 - q0, tk)
                continue
            qb = self.q[:, :, q0:q1].to(cdt) * self.scale  # (B, Hq, tq, D)
            qb = qb.reshape(b, k.shape[1], groups * (q1 - q0), d)  # (B, Hkv', G*tq, D)
            s = torch.matmul(qb, kt).view(b, hq, q1 - q0, tk)  # (B, Hq, tq, Tk)
            if not self.mask.is_empty:
                allowed, bias = self.mask.tile(q_pos[:, q0:q1], 0, tk, q0, q1, dtype=cdt)
                if bias is not None:
                    s = s + bias
                if allowed is not None:
                    s = s.masked_fill(~allowed, -torch.inf)
            empty = torch.isneginf(s).all(dim=-1, keepdim=True)  # (B, Hq, tq, 1)
            w = torch.softmax(s.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
            yield q0, q1, self._apply_head_mask(w.to(self.q.dtype))

    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of the queries ``(1 | B, Tq)`` and of the keys ``(Tk,)`` or ``(B, Tk)``
        (int64; -1 = an empty cache slot), as the mask places them: with a KV cache, the
        tokens' positions and the cache's key positions; otherwise ``0 .. Tk - 1`` and the
        mask's alignment."""
        tq, tk = self.q.shape[2], self.k.shape[2]
        q_pos = self.mask.query_pos(tq, tk, self.q.device)
        if self.mask.key_positions is not None:
            return q_pos, self.mask.key_positions
        return q_pos, torch.arange(tk, device=self.q.device)

    def _keys(self) -> torch.Tensor:
        """Keys the core saw: ``(B, Hkv, Tk, D)``, or ``(B, Hq, Tk, D)`` for uneven groups."""
        if self.kv_index is None:
            return self.k
        return self.k.index_select(1, self.kv_index)  # (B, Hq, Tk, D)

    def _apply_head_mask(self, w: torch.Tensor) -> torch.Tensor:
        if self.head_mask is None:
            return w
        hm = self.head_mask.to(w.dtype)
        return w * hm.view(-1 if hm.dim() == 2 else 1, hm.shape[-1], 1, 1)  # (B|1, Hq, 1, 1)


Observer = Callable[[AttentionPoints], None]
