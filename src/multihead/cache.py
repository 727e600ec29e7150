"""KV cache for decoding: preallocated, one layer per attention layer, positions as tensors.

Legend: B batch, Hkv key/value heads, S cache slots, t new tokens, D head dim.

Only the key/value heads are stored, so a GQA model with ``Hkv = Hq / G`` caches G times less.
Buffers are allocated once; the write position is a tensor (``lengths``), never a Python int
read back from the device, so a decode step has static shapes and compiles without graph
breaks (the gpt-fast design).

Two layouts:

- **linear** (default): slot ``p`` holds position ``p``; ``S = max_len``. Attention runs over
  all S slots; slots not written yet have position -1 and are masked.
- **ring** (``ring=True`` with a sliding ``window``): ``S = window`` slots reused modulo the
  window, so memory stays O(window) however long the generation (the Mistral design). Slots
  no longer map to positions in order.

Both track each slot's position (``slot_positions``), and the attention masks with those.

Writing is apart from reading. Once per forward, before the layers run,
:meth:`KVCache.begin` plans the write of the new tokens' positions for every layer and
advances ``lengths``. Then each layer's :meth:`KVCacheLayer.key_positions` (a pure read) gives
the position of every key its ``update`` returns, ``-1`` for an empty slot, and
:class:`~multihead.attention.MultiHeadAttention` masks with those positions
(:meth:`~multihead.masks.AttentionMask.with_key_positions`): the model's ordinary mask
(causal, window, ALiBi) evaluated at the cache's key positions, for both layouts.

Batches of prompts of different lengths: call :meth:`KVCache.set_prompt_lengths`, then
prefill them right-padded with positions ``0 .. T-1``. Each row then continues at its own
position; padding is marked empty (-1) and either rewritten later (linear) or never stored
(ring).

Example:
    >>> import torch
    >>> from multihead.cache import KVCache
    >>> cache = KVCache(num_layers=2, batch_size=1, max_len=6, num_kv_heads=2, head_dim=8)
    >>> cache.begin(torch.arange(3))                     # plan the write of positions 0, 1, 2
    >>> cache.key_positions()                            # (B, S); -1 = empty
    tensor([[ 0,  1,  2, -1, -1, -1]])
    >>> k = v = torch.randn(1, 2, 3, 8)                  # (B, Hkv, t, D)
    >>> k_all, v_all = cache.layers[0].update(k, v, torch.arange(3))
    >>> k_all.shape                                      # every slot; empty ones are masked
    torch.Size([1, 2, 6, 8])
    >>> torch.equal(k_all[:, :, :3], k)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from multihead import _checks

_NO_LIMIT = 2**62
_NO_PLAN = (
    "no write is planned for this cache layer: call KVCache.begin(positions) once per forward, "
    "before the attention layers run"
)


class KVCacheLayer(nn.Module):
    """One attention layer's cache; satisfies :class:`multihead.attention.KVCacheLayer`.

    After :meth:`KVCache.begin` has planned a write of ``t`` tokens:

    - ``key_positions()`` (a pure read) gives the positions ``(B, Tk)`` int64 of the keys
      ``update`` returns, -1 for an empty slot (never attended);
    - ``update(k, v, positions)`` writes keys/values ``(B, Hkv, t, D)`` (``positions``
      ``(t,)`` or ``(B, t)`` are the ones given to ``begin``) and returns the keys/values to
      attend to: the whole buffer ``(B, Hkv, S, D)`` for a linear cache (slot index =
      position); for a ring cache the previous ``S`` slots followed by the new entries,
      ``(B, Hkv, S + t, D)``. A plan is written once: the next forward calls ``begin`` again.

    A ring layer has one extra slot that is never attended to: writes that must not land
    (padding of a short prompt, entries the ring has no room for) are sent there, so one
    ``scatter_`` does every write without data-dependent shapes.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        slots: int,
        num_kv_heads: int,
        head_dim: int,
        ring: bool,
        dtype: torch.dtype,
        device: torch.device | str | None,
    ) -> None:
        super().__init__()
        self.ring = ring
        self.slots = slots
        shape = (batch_size, num_kv_heads, slots + int(ring), head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        # The plan of the current write, set once per forward by KVCache.begin: the slots
        # (B, t) to write (None once written) and the positions (B, Tk) of the keys to read.
        self.write_slots: torch.Tensor | None = None
        self.planned_key_positions: torch.Tensor | None = None

    def key_positions(self) -> torch.Tensor:
        """Positions ``(B, S)`` (linear) or ``(B, S + t)`` (ring) int64 of the keys that
        :meth:`update` returns for the planned write; -1 = empty slot. A pure read."""
        if self.planned_key_positions is None:
            raise RuntimeError(_NO_PLAN)
        return self.planned_key_positions

    def update(
        self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if k.shape[0] != self.k.shape[0] or k.shape[1] != self.k.shape[1]:
            raise ValueError(
                f"k has shape {tuple(k.shape)} but this cache holds (B, Hkv) = "
                f"{tuple(self.k.shape[:2])}; build the cache for this batch and num_kv_heads"
            )
        slots = self.write_slots
        if slots is None:
            raise RuntimeError(_NO_PLAN)
        if slots.shape[-1] != k.shape[2] or positions.shape[-1] != k.shape[2]:
            raise ValueError(
                f"k has {k.shape[2]} new tokens and positions shape {tuple(positions.shape)}, "
                f"but KVCache.begin planned {slots.shape[-1]}"
            )
        self.write_slots = None  # written once: a stale plan must not be replayed
        if not self.ring:
            self._write(k, v, slots)
            return self.k, self.v
        # Attend to the old contents plus the new entries, then write: with t > S an earlier
        # query of the chunk still needs keys that the ring is about to overwrite.
        k_all = torch.cat((self.k[:, :, : self.slots], k.to(self.k.dtype)), dim=2)  # (B,Hkv,S+t,D)
        v_all = torch.cat((self.v[:, :, : self.slots], v.to(self.v.dtype)), dim=2)  # (B,Hkv,S+t,D)
        self._write(k, v, slots)
        return k_all, v_all

    def _write(self, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor) -> None:
        b, h, t, d = k.shape
        idx = slots if slots.dim() == 2 else slots.unsqueeze(0)  # (1|B, t)
        idx = idx.view(idx.shape[0], 1, t, 1).expand(b, h, t, d)  # (B, Hkv, t, D)
        self.k.scatter_(2, idx, k.to(self.k.dtype))
        self.v.scatter_(2, idx, v.to(self.v.dtype))


class KVCache(nn.Module):
    """Preallocated key/value cache for all layers of a decoder.

    Args:
        num_layers: one :class:`KVCacheLayer` per attention layer (``cache.layers[i]``).
        batch_size: B.
        max_len: the longest sequence (prompt + generated) the cache must hold.
        num_kv_heads: Hkv (only the KV heads are stored, so GQA saves memory here): one
            count for every layer, or a sequence of ``num_layers`` counts for a model whose
            layers keep different heads (0 for a layer with no heads left).
        head_dim: D.
        window: the model's sliding window, if any. With ``ring=True`` the cache keeps only
            the last ``window`` positions.
        ring: store ``window`` slots reused modulo the window instead of ``max_len``.

    State (tensors, so a compiled decode step sees no Python ints):
        lengths: ``(B,)`` int64, the next position of each row.
        slot_positions: ``(B, S)`` int64, the position each slot holds (-1 = empty); the
            attention masks with these positions (:meth:`key_positions`).
        limit: ``(B,)`` int64, set by :meth:`set_prompt_lengths` for one padded write.

    Example:
        >>> import torch
        >>> cache = KVCache(num_layers=1, batch_size=2, max_len=8, num_kv_heads=1, head_dim=4,
        ...                 window=3, ring=True)
        >>> cache.slots
        3
        >>> cache.next_positions(2)                       # (B, t)
        tensor([[0, 1],
                [0, 1]])
    """

    def __init__(
        self,
        *,
        num_layers: int,
        batch_size: int,
        max_len: int,
        num_kv_heads: int | Sequence[int],
        head_dim: int,
        window: int | None = None,
        ring: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_layers", num_layers),
            ("batch_size", batch_size),
            ("max_len", max_len),
            ("head_dim", head_dim),
        ):
            _checks.require_positive_int(name, value)
        if isinstance(num_kv_heads, Sequence):
            if len(num_kv_heads) != num_layers:
                raise ValueError(
                    f"num_kv_heads lists {len(num_kv_heads)} counts but num_layers={num_layers}; "
                    "give one count per layer or a single int"
                )
            per_layer = [
                _checks.require_nonnegative_int(f"num_kv_heads[{i}]", n)
                for i, n in enumerate(num_kv_heads)
            ]
        else:
            per_layer = [_checks.require_positive_int("num_kv_heads", num_kv_heads)] * num_layers
        if window is not None:
            _checks.require_positive_int("window", window)
        if ring and window is None:
            raise ValueError("ring=True needs a window: a ring buffer keeps the last `window` keys")
        self.max_len = max_len
        self.window = window
        self.ring = bool(ring)
        self.slots = min(window, max_len) if ring and window is not None else max_len
        self.layers = nn.ModuleList(
            KVCacheLayer(
                batch_size=batch_size,
                slots=self.slots,
                num_kv_heads=heads,
                head_dim=head_dim,
                ring=self.ring,
                dtype=dtype,
                device=device,
            )
            for heads in per_layer
        )
        self.register_buffer(
            "lengths", torch.zeros(batch_size, dtype=torch.long, device=device), persistent=False
        )
        self.register_buffer(
            "limit", torch.full((batch_size,), _NO_LIMIT, device=device), persistent=False
        )
        self.register_buffer(
            "slot_positions",
            torch.full((batch_size, self.slots), -1, dtype=torch.long, device=device),
            persistent=False,
        )

    @property
    def batch_size(self) -> int:
        return self.lengths.shape[0]

    def next_positions(self, t: int) -> torch.Tensor:
        """Positions ``(B, t)`` of the next ``t`` tokens of each row."""
        return self.lengths[:, None] + torch.arange(t, device=self.lengths.device)  # (B, t)

    def set_prompt_lengths(self, lengths: torch.Tensor) -> None:
        """Declare that the next write is a right-padded batch of prompts: row ``b`` has
        ``lengths[b]`` real tokens, the rest is padding that is not kept. Afterwards each row
        continues at its own length."""
        lengths = lengths.to(device=self.lengths.device, dtype=torch.long)
        if lengths.shape != self.lengths.shape:
            raise ValueError(
                f"lengths has shape {tuple(lengths.shape)} but (B,) = ({self.batch_size},) "
                "is expected"
            )
        self.limit.copy_(lengths)

    def begin(self, positions: torch.Tensor) -> None:
        """Plan a write of new tokens at ``positions`` ``(t,)`` or ``(B, t)`` for every layer
        and advance ``lengths``. Call once per forward, before the layers run; each layer's
        ``update`` then writes its keys/values and :meth:`key_positions` reads the positions
        of the keys they attend to."""
        b = self.batch_size
        _checks.require_tensor("positions", positions)
        if (
            positions.dim() not in (1, 2)
            or (positions.dim() == 2 and positions.shape[0] != b)
            or positions.shape[-1] == 0
            or positions.is_floating_point()
            or positions.dtype == torch.bool
        ):
            raise ValueError(
                f"positions has shape {tuple(positions.shape)} and dtype {positions.dtype} but "
                f"integer (t,) or (B, t) = ({b}, t) with t >= 1 is expected"
            )
        pos = positions.long()
        pos = pos if pos.dim() == 2 else pos.unsqueeze(0).expand(b, -1)  # (B, t)
        real = pos < self.limit[:, None]  # (B, t): False for padding of a short prompt
        self.lengths.copy_(torch.minimum(pos[:, -1] + 1, self.limit))
        self.limit.fill_(_NO_LIMIT)
        if not self.ring:
            # Padding lands in slots past the row's length, marked empty until the row's own
            # tokens overwrite them.
            self.slot_positions.scatter_(1, pos, pos.masked_fill(~real, -1))
            slots, key_pos = pos, self.slot_positions.clone()  # (B, t), (B, S)
        else:
            # Ring: keep each row's last S real positions; the rest goes to the trash slot.
            last = pos.masked_fill(~real, -1).amax(dim=1, keepdim=True)  # (B, 1)
            keep = real & (pos > last - self.slots)  # (B, t)
            slots = torch.where(keep, pos % self.slots, self.slots)  # (B, t)
            old = self.slot_positions.clone()  # (B, S)
            table = torch.cat((self.slot_positions, old[:, :1]), dim=1)  # (B, S + 1): + trash
            table.scatter_(1, slots, pos)
            self.slot_positions.copy_(table[:, : self.slots])
            key_pos = torch.cat((old, pos.masked_fill(~real, -1)), dim=1)  # (B, S + t)
        for layer in self.layers:
            layer.write_slots = slots
            layer.planned_key_positions = key_pos

    def key_positions(self) -> torch.Tensor:
        """Positions of the keys every layer attends to in the write planned by
        :meth:`begin`: ``(B, S)`` for a linear cache (slot = position) or ``(B, S + t)`` for
        a ring (the old slots, then the new entries); -1 = empty or padding, never attended.
        A pure read."""
        return self.layers[0].key_positions()

    def reset(self) -> None:
        """Forget everything (buffers stay allocated)."""
        self.lengths.zero_()
        self.limit.fill_(_NO_LIMIT)
        self.slot_positions.fill_(-1)
        for layer in self.layers:
            layer.k.zero_()
            layer.v.zero_()
            layer.write_slots = layer.planned_key_positions = None

    def extra_repr(self) -> str:
        kind = f"ring, window={self.window}" if self.ring else "linear"
        return f"batch_size={self.batch_size}, slots={self.slots}, {kind}"
