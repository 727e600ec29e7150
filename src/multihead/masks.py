"""Attention masks: one object for causal, sliding-window, key-padding, dense and per-head-bias
masks, composable with ``&`` and rendered to whatever form a backend needs.

Polarity: **True = may attend** everywhere in multihead (as in
``torch.nn.functional.scaled_dot_product_attention``). Float masks are *additive*: 0 keeps a
score, ``-inf`` removes it, other values bias it.

Legend: B batch, H query heads, Tq queries, Tk keys.

Positions. Keys sit at positions ``0 .. Tk-1`` unless explicit ``key_positions`` ``(Tk,)`` or
``(B, Tk)`` say otherwise (a KV cache whose slots hold arbitrary positions; a negative position
marks an empty slot that is never attended). Query ``i`` sits at position ``i`` when the mask
is aligned ``"top_left"`` and at ``i + Tk - Tq`` when aligned ``"bottom_right"`` (the last query
lines up with the last key, as when decoding with a cache); explicit ``query_positions`` override
both. Causal means ``key_pos <= query_pos``; a window ``W`` keeps ``key_pos > query_pos - W``
(and, when not causal, ``key_pos < query_pos + W``); per-head biases (ALiBi) read the same
positions.

Composition. ``a & b`` allows what both allow. Every positional part (causal, window) keeps its
own alignment: ``sliding_window(3, causal=False) & causal(align="bottom_right")`` applies the
window to top-left positions and causality to bottom-right ones. When ``Tq == Tk`` (or query
positions are explicit) the alignments coincide and the parts merge into one. Per-head biases
(ALiBi) read the positions of the leftmost positional part's alignment (top-left if none).

Example:
    >>> import torch
    >>> from multihead import masks
    >>> m = masks.causal() & masks.key_padding(lengths=torch.tensor([3, 2]))
    >>> m.render(batch=2, heads=1, q_len=3, k_len=3)[1, 0].int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 0]], dtype=torch.int32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import torch

from multihead import _checks
from multihead._checks import require_bool, shape

ALIGNS = ("top_left", "bottom_right")


@runtime_checkable
class HeadBias(Protocol):
    """A per-head additive score bias computed from positions, one tile at a time.

    ``bias(q_pos, k_pos, dtype)`` takes query positions ``(1 | B, tq)`` and key positions
    ``(tk,)`` or ``(B, tk)`` (int64; ``(B, tk)`` when the mask has per-example
    ``key_positions``, e.g. a ring KV cache; negative = empty slot, masked anyway) and returns
    a tensor broadcastable to ``(B, H, tq, tk)``, typically ``(1 | B, H, tq, tk)``. It is
    evaluated per block on the blockwise backend, so it never needs a dense ``Tq x Tk`` tensor
    there.

    ``num_heads`` is ``H`` (1 = one bias shared by every head). A bias that holds per-head
    state (ALiBi's slopes) and is injected into a
    :class:`~multihead.attention.MultiHeadAttention` as ``position_bias`` also implements
    ``select_heads(index)`` (see :meth:`MultiHeadAttention.select_heads`).
    """

    num_heads: int

    def __call__(
        self, q_pos: torch.Tensor, k_pos: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class QueryBlock:
    """One block of queries ``[q0, q1)`` and its key structure (see
    :meth:`AttentionMask.plan_blocks`)."""

    q0: int
    q1: int
    lo: int  # keys [lo, hi) may be seen by some query of the block
    hi: int
    full_lo: int  # keys [full_lo, full_hi) are seen by every query (structure only)
    full_hi: int

    def chunks(self, block_k: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """Key chunks ``(k0, k1, edges)`` covering ``[lo, hi)``, at most ``block_k`` wide;
        ``edges`` are the sub-ranges ``[a, b)`` of the chunk outside the fully visible range,
        the only keys that need the structural mask."""
        out = []
        for k0 in range(self.lo, self.hi, block_k):
            k1 = min(k0 + block_k, self.hi)
            edges = [
                (max(a, k0), min(b, k1))
                for a, b in ((self.lo, self.full_lo), (self.full_hi, self.hi))
                if min(b, k1) > max(a, k0)
            ]
            out.append((k0, k1, edges))
        return out


@dataclass(frozen=True)
class Positional:
    """One positional part: causal and/or a sliding window, at one alignment (see the module
    docstring). Two parts at the same alignment intersect into one part: the result is causal
    if either is, with the narrower window."""

    causal: bool = False
    window: int | None = None
    align: str = "top_left"

    def __post_init__(self) -> None:
        _check_positional(self.causal, self.window, self.align)

    def __and__(self, other: Positional) -> Positional:
        if other.align != self.align:
            raise ValueError(
                f"only parts of one alignment intersect, got {self.align!r} and {other.align!r}"
            )
        return Positional(
            self.causal or other.causal, _min_opt(self.window, other.window), self.align
        )


@dataclass(frozen=True, eq=False)
class AttentionMask:
    """Which keys each query may attend to (True = may attend), plus additive biases.

    Build one with :func:`causal`, :func:`sliding_window`, :func:`key_padding`, :func:`dense`,
    :func:`bias` and combine with ``&``. Fields are normalized (dense tensors are 4-D
    ``(B | 1, H | 1, Tq, Tk)``) and checked against the actual sizes by :meth:`check`.
    """

    causal: bool = False
    align: str = "top_left"
    window: int | None = None
    query_positions: torch.Tensor | None = None  # (Tq,) or (B, Tq), int64
    key_positions: torch.Tensor | None = None  # (Tk,) or (B, Tk), int64; < 0 = empty slot
    key_lengths: torch.Tensor | None = None  # (B,), int64: keys [0, len) are real
    key_padding: torch.Tensor | None = None  # (B, Tk) bool, True = real key (may attend)
    allowed: torch.Tensor | None = None  # (B|1, H|1, Tq, Tk) bool, True = may attend
    additive: torch.Tensor | None = None  # (B|1, H|1, Tq, Tk) float, added to scores
    head_biases: tuple[HeadBias, ...] = ()
    # A second positional part aligned the other way, kept apart by ``a & b`` when the sides'
    # alignments differ: where each query sits then depends on (Tq, Tk), so the two parts merge
    # (or apply one after the other) only once the sizes are known (see ``positional_parts``).
    also: Positional | None = None
    # Shapes of dense tensors as the user gave them (before normalizing to 4-D), for errors.
    given_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _check_positional(self.causal, self.window, self.align)
        if self.also is not None:
            if not isinstance(self.also, Positional):
                raise TypeError(
                    f"also must be a Positional or None, got {type(self.also).__name__}"
                )
            if self.also.align == self.align:
                raise ValueError(
                    f"also must be aligned differently from the mask ({self.align!r}); parts of "
                    "one alignment intersect into one part"
                )

    # ------------------------------------------------------------------ composition
    def __and__(self, other: AttentionMask) -> AttentionMask:
        if not isinstance(other, AttentionMask):
            raise TypeError(_not_a_mask(other))
        by_align: dict[str, Positional] = {}
        for part in self._own_parts() + other._own_parts():
            have = by_align.get(part.align)
            by_align[part.align] = part if have is None else have & part
        # The leftmost positional part's alignment stays first: per-head biases read it.
        align = self.align if self._own_parts() else other.align
        first = by_align.pop(align, Positional(align=align))
        if self.query_positions is not None and other.query_positions is not None:
            if self.query_positions is not other.query_positions and not torch.equal(
                self.query_positions, other.query_positions
            ):
                raise ValueError("cannot combine masks with different query_positions")
        if self.key_positions is not None and other.key_positions is not None:
            if self.key_positions is not other.key_positions and not torch.equal(
                self.key_positions, other.key_positions
            ):
                raise ValueError("cannot combine masks with different key_positions")
        return AttentionMask(
            causal=first.causal,
            align=align,
            window=first.window,
            query_positions=_first(self.query_positions, other.query_positions),
            key_positions=_first(self.key_positions, other.key_positions),
            key_lengths=_combine(self.key_lengths, other.key_lengths, torch.minimum),
            key_padding=_combine(self.key_padding, other.key_padding, torch.logical_and),
            allowed=_combine(self.allowed, other.allowed, torch.logical_and),
            additive=_combine(self.additive, other.additive, _add_float),
            head_biases=self.head_biases + other.head_biases,
            also=next(iter(by_align.values()), None),
            given_shapes=_given_shapes(self, other),
        )

    def __rand__(self, other: object) -> AttentionMask:
        raise TypeError(_not_a_mask(other))

    def _own_parts(self) -> list[Positional]:
        """The positional parts as declared, each at its own alignment."""
        parts = []
        if self.causal or self.window is not None:
            parts.append(Positional(self.causal, self.window, self.align))
        if self.also is not None:
            parts.append(self.also)
        return parts

    def align_shift(self, q_len: int, k_len: int) -> int:
        """How far the queries of the part aligned the other way (``also``) sit from
        :meth:`query_pos`: ``±(Tk - Tq)``, or 0 with explicit query positions."""
        if self.also is None or self.query_positions is not None:
            return 0
        offset = k_len - q_len
        return offset if self.also.align == "bottom_right" else -offset

    def positional_parts(self, q_len: int, k_len: int) -> list[tuple[bool, int | None, int]]:
        """The positional parts for these sizes as ``(causal, window, shift)``: a query at
        :meth:`query_pos` ``p`` is tested at ``p + shift``. Parts that land on the same
        positions merge (so at ``Tq == Tk`` alignments never matter), and of two plain causal
        parts only the stricter is kept.

        Example:
            >>> m = sliding_window(3, causal=False) & causal(align="bottom_right")
            >>> m.positional_parts(2, 5), m.positional_parts(4, 4)
            ([(False, 3, 0), (True, None, 3)], [(True, 3, 0)])
        """
        parts = [(self.causal, self.window, 0)] if self.causal or self.window is not None else []
        if self.also is None:
            return parts
        shift = self.align_shift(q_len, k_len)
        other = (self.also.causal, self.also.window, shift)
        if not parts:
            return [other]
        (c0, w0, _), (c1, w1, _) = parts[0], other
        if shift == 0:
            return [(c0 or c1, _min_opt(w0, w1), 0)]
        if c0 and c1 and w0 is None and w1 is None:
            return [parts[0] if shift > 0 else other]  # causal at the earlier positions wins
        return [*parts, other]

    def with_query_positions(self, positions: torch.Tensor) -> AttentionMask:
        """The same mask with explicit query positions ``(Tq,)`` or ``(B, Tq)`` (integers)."""
        if not isinstance(positions, torch.Tensor):
            raise TypeError(f"positions must be a torch.Tensor, got {type(positions).__name__}")
        integer = not (positions.is_floating_point() or positions.is_complex())
        if not integer or positions.dtype == torch.bool or positions.dim() not in (1, 2):
            raise ValueError(
                f"positions must be an integer tensor (Tq,) or (B, Tq), got shape "
                f"{shape(positions)} and dtype {positions.dtype}"
            )
        return replace(self, query_positions=positions.long())

    def with_key_positions(self, positions: torch.Tensor) -> AttentionMask:
        """The same mask with explicit key positions ``(Tk,)`` or ``(B, Tk)``: key ``j`` of
        row ``b`` sits at ``positions[b, j]``; a negative entry is an empty slot, never
        attended. Causality, windows and per-head biases compare these positions, so a KV
        cache whose slots do not hold positions in order (a ring) masks correctly.

        Example:
            >>> import torch
            >>> m = causal().with_query_positions(torch.tensor([5]))
            >>> m = m.with_key_positions(torch.tensor([[3, 4, 5, -1]]))   # (B, Tk)
            >>> m.render(1, 1, 1, 4)[0, 0].int()
            tensor([[1, 1, 1, 0]], dtype=torch.int32)
        """
        if (
            not isinstance(positions, torch.Tensor)
            or positions.is_floating_point()
            or (positions.dtype == torch.bool)
        ):
            got = positions.dtype if isinstance(positions, torch.Tensor) else type(positions)
            raise TypeError(f"key positions must be an integer tensor (Tk,) or (B, Tk), got {got}")
        return replace(self, key_positions=positions.long())

    # ------------------------------------------------------------------ properties
    @property
    def is_empty(self) -> bool:
        """True when the mask keeps every score unchanged."""
        return not (
            self.causal
            or self.window is not None
            or self.key_positions is not None
            or self.key_lengths is not None
            or self.key_padding is not None
            or self.allowed is not None
            or self.additive is not None
            or self.head_biases
            or self.also is not None
        )

    @property
    def tightest_window(self) -> int | None:
        """The narrowest sliding window of any positional part, or None."""
        return _min_opt(self.window, self.also.window if self.also is not None else None)

    @property
    def has_bias(self) -> bool:
        """True when scores are shifted by float values (not only kept or removed)."""
        return self.additive is not None or bool(self.head_biases)

    @property
    def is_structured(self) -> bool:
        """True when no dense ``Tq x Tk`` tensor is involved (only positions and lengths)."""
        return self.allowed is None and self.additive is None

    def is_plain_causal(self, q_len: int, k_len: int) -> bool:
        """True when the mask is exactly SDPA's ``is_causal=True`` (top-left causal)."""
        diagonal = self._causal_diagonal(q_len, k_len)
        return diagonal is not None and diagonal == 0

    def is_noop(self, q_len: int, k_len: int) -> bool:
        """True when, for these sizes, the mask keeps every score (for example causal decoding
        of a single query aligned bottom-right, which sees every key)."""
        if self.is_empty:
            return True
        diagonal = self._causal_diagonal(q_len, k_len)
        return diagonal is not None and diagonal >= k_len - 1  # the first query sees every key

    def _causal_diagonal(self, q_len: int, k_len: int) -> int | None:
        """For a mask that is nothing but causal (once its parts merge at these sizes), the
        position of the first query (0 = top-left, ``Tk - Tq`` = bottom-right); else None."""
        if not self._structure_only():
            return None
        parts = self.positional_parts(q_len, k_len)
        if len(parts) != 1 or parts[0][:2] != (True, None):
            return None
        return (k_len - q_len if self.align == "bottom_right" else 0) + parts[0][2]

    def _structure_only(self) -> bool:
        """True when nothing but ``causal``/``align`` is set."""
        return (
            self.window is None
            and self.query_positions is None
            and self.key_positions is None
            and self.key_lengths is None
            and self.key_padding is None
            and self.allowed is None
            and self.additive is None
            # len(), not `not`: dynamo cannot trace `not` of a tuple holding a module.
            and len(self.head_biases) == 0
        )

    # ------------------------------------------------------------------ validation
    def check(self, batch: int, heads: int, q_len: int, k_len: int, device: torch.device) -> None:
        """Raise ValueError/TypeError unless every part fits ``(B, H, Tq, Tk)``, and unless the
        float part holds only finite values and ``-inf`` (an additive NaN or ``+inf`` is a bug,
        never a bias: it would turn whole rows into NaN)."""
        _check_sizes(batch=batch, heads=heads, q_len=q_len, k_len=k_len)
        full = (batch, heads, q_len, k_len)
        for name, t in (("mask (bool)", self.allowed), ("mask (float)", self.additive)):
            if t is None:
                continue
            ok = t.dim() == 4 and all(s in (1, f) for s, f in zip(t.shape, full))
            ok = ok and t.shape[-1] == k_len
            if not ok:
                given = self.given_shapes.get("allowed" if "bool" in name else "additive")
                raise ValueError(
                    f"{name} has shape {given or shape(t)} but attention needs (Tq, Tk) = "
                    f"({q_len}, {k_len}), broadcastable to (B, H, Tq, Tk) = {full}"
                )
            _same_device(name, t, device)
        if self.additive is not None:
            _check_additive(self.additive, self.given_shapes.get("additive"))
        if self.key_lengths is not None:
            kl = self.key_lengths
            if kl.shape != (batch,):
                raise ValueError(
                    f"key_lengths has shape {shape(kl)} but (B,) = ({batch},) is expected"
                )
            _same_device("key_lengths", kl, device)
            if kl.numel() and (int(kl.min()) < 0 or int(kl.max()) > k_len):
                raise ValueError(f"key_lengths must lie in [0, Tk={k_len}], got {kl.tolist()}")
        if self.key_padding is not None:
            kp = self.key_padding
            if kp.shape != (batch, k_len):
                raise ValueError(
                    f"key_padding has shape {shape(kp)} but (B, Tk) = ({batch}, {k_len}) "
                    "is expected (True = real key, may attend)"
                )
            _same_device("key_padding", kp, device)
        if self.query_positions is not None:
            qp = self.query_positions
            if qp.shape not in ((q_len,), (batch, q_len)):
                raise ValueError(
                    f"query_positions has shape {shape(qp)} but (Tq,) = ({q_len},) or "
                    f"(B, Tq) = ({batch}, {q_len}) is expected"
                )
            _same_device("query_positions", qp, device)
        if self.key_positions is not None:
            kpos = self.key_positions
            if kpos.shape not in ((k_len,), (batch, k_len)):
                raise ValueError(
                    f"key_positions has shape {shape(kpos)} but (Tk,) = ({k_len},) or "
                    f"(B, Tk) = ({batch}, {k_len}) is expected"
                )
            _same_device("key_positions", kpos, device)
        for b in self.head_biases:
            if b.num_heads not in (1, heads):
                raise ValueError(
                    f"a head bias has {b.num_heads} heads but attention has {heads} query heads"
                )

    # ------------------------------------------------------------------ positions
    def query_pos(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
        """Query positions, ``(1, Tq)`` or ``(B, Tq)`` int64."""
        if self.query_positions is not None:
            qp = self.query_positions.to(device=device, dtype=torch.long)
            return qp if qp.dim() == 2 else qp.unsqueeze(0)  # (1|B, Tq)
        offset = k_len - q_len if self.align == "bottom_right" else 0
        return torch.arange(offset, offset + q_len, device=device).unsqueeze(0)  # (1, Tq)

    # ------------------------------------------------------------------ rendering
    def tile(
        self,
        q_pos: torch.Tensor,
        k0: int,
        k1: int,
        q0: int,
        q1: int,
        *,
        dtype: torch.dtype,
        structure: bool = True,
        shift: int | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Render the tile of queries ``[q0, q1)`` x keys ``[k0, k1)``.

        Args:
            q_pos: positions of the tile's queries, ``(1 | B, tq)`` (from :meth:`query_pos`).
            dtype: dtype of the returned bias.
            structure: False skips the causal/window/length comparisons, for tiles that
                :meth:`plan_blocks` found fully visible.
            shift: :meth:`align_shift` for the whole problem's sizes; required when the mask
                has a part aligned the other way (``also``), whose queries sit elsewhere.

        Returns:
            ``(allowed, bias)``: ``allowed`` is bool ``(B|1, H|1, tq, tk)`` with True = may
            attend, or None when every pair may attend; ``bias`` is float of the same
            broadcast shape, or None.
        """
        device = q_pos.device
        if self.key_positions is None:
            k_pos = torch.arange(k0, k1, device=device)  # (tk,)
        else:
            k_pos = self.key_positions[..., k0:k1].to(device=device, dtype=torch.long)
        qp = q_pos[:, None, :, None]  # (1|B, 1, tq, 1)
        kp = k_pos.view(1, 1, 1, -1) if k_pos.dim() == 1 else k_pos[:, None, None]  # (1|B,1,1,tk)
        allowed: torch.Tensor | None = None

        def both(m: torch.Tensor) -> None:
            nonlocal allowed
            allowed = m if allowed is None else allowed & m

        if self.key_positions is not None:
            # Empty slots are never attended, whatever the structure of the tile.
            both(kp >= 0)
        if structure:
            if self.causal or self.window is not None:
                both(_positional_allowed(kp, qp, self.causal, self.window))
            if self.also is not None:
                if shift is None:
                    raise ValueError(
                        "this mask has positional parts of both alignments; pass "
                        "shift=mask.align_shift(q_len, k_len) to tile()"
                    )
                both(_positional_allowed(kp, qp + shift, self.also.causal, self.also.window))
            if self.key_lengths is not None:
                both(kp < self.key_lengths.view(-1, 1, 1, 1))  # (B, 1, 1, tk)
        if self.key_padding is not None:
            both(self.key_padding[:, None, None, k0:k1])  # (B, 1, 1, tk)
        if self.allowed is not None:
            both(_query_rows(self.allowed, q0, q1)[..., k0:k1])
        bias: torch.Tensor | None = None
        if self.additive is not None:
            bias = _query_rows(self.additive, q0, q1)[..., k0:k1].to(dtype)
        for hb in self.head_biases:
            b = hb(q_pos, k_pos, dtype)  # (1|B, H, tq, tk)
            bias = b if bias is None else bias + b
        return allowed, bias

    def render(
        self,
        batch: int,
        heads: int,
        q_len: int,
        k_len: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        as_float: bool | None = None,
    ) -> torch.Tensor | None:
        """The whole mask as one dense tensor broadcastable to ``(B, H, Tq, Tk)`` (the sizes
        must be integers >= 0; ``batch`` and ``heads`` are only checked, since parts broadcast).

        Returns a bool tensor (True = may attend) when the mask has no float biases and
        ``as_float`` is not True, otherwise an additive float tensor (0 keep, ``-inf`` drop,
        plus biases). None when the mask keeps everything. This costs O(Tq * Tk) memory;
        the blockwise backend uses :meth:`tile` instead.
        """
        _check_sizes(batch=batch, heads=heads, q_len=q_len, k_len=k_len)
        if as_float is not None:
            require_bool("as_float", as_float)
        if self.is_empty:
            return None
        dev = torch.device(device) if device is not None else self._device()
        q_pos = self.query_pos(q_len, k_len, dev)
        shift = self.align_shift(q_len, k_len)
        allowed, bias = self.tile(q_pos, 0, k_len, 0, q_len, dtype=dtype, shift=shift)
        if as_float is None:
            as_float = bias is not None
        if not as_float:
            if bias is not None:
                raise ValueError("a mask with float biases cannot be rendered as bool")
            return allowed
        if allowed is None:
            return bias
        out = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill(~allowed, -torch.inf)
        return out if bias is None else out + bias

    def _device(self) -> torch.device:
        for t in (
            self.allowed,
            self.additive,
            self.key_padding,
            self.key_lengths,
            self.query_positions,
            self.key_positions,
        ):
            if t is not None:
                return t.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ block structure
    def plan_blocks(self, q_len: int, k_len: int, block_q: int) -> list[QueryBlock]:
        """Split the queries into blocks of ``block_q`` and say, for each, which keys any of its
        queries may see (``[lo, hi)``; keys outside are masked for the whole block and can be
        skipped) and which keys *every* query may see as far as the structural parts (causal,
        window, key lengths) go (``[full_lo, full_hi)``; tiles there need no structural mask).
        Dense parts (key padding, dense masks, biases) are not considered here.

        With explicit ``key_positions`` the key range of each block is read from the data
        (the first and last key any of its queries may see) and no tile counts as fully
        visible, since keys are not ordered by position in general (a ring cache).
        """
        _check_sizes(q_len=q_len, k_len=k_len)
        _check_block("block_q", block_q)
        starts = list(range(0, q_len, block_q))
        if self.query_positions is not None:
            qp = self.query_positions.long()
            qp = qp if qp.dim() == 2 else qp.unsqueeze(0)  # (1|B, Tq)
            lows = [int(qp[:, s : s + block_q].min()) for s in starts]
            highs = [int(qp[:, s : s + block_q].max()) for s in starts]
        else:
            offset = k_len - q_len if self.align == "bottom_right" else 0
            lows = [s + offset for s in starts]
            highs = [min(s + block_q, q_len) - 1 + offset for s in starts]
        k_max = k_min = k_len
        if self.key_lengths is not None and self.key_lengths.numel():
            k_max = min(k_max, int(self.key_lengths.max()))
            k_min = min(k_min, int(self.key_lengths.min()))
        if self.key_positions is not None:
            return self._plan_blocks_by_key_positions(starts, lows, highs, q_len, k_len, block_q)
        parts = self.positional_parts(q_len, k_len)
        blocks = []
        for q0, qmin, qmax in zip(starts, lows, highs):
            lo, hi = 0, k_max
            full_lo, full_hi = 0, k_min
            for causal, window, shift in parts:  # each part narrows the ranges
                pmin, pmax = qmin + shift, qmax + shift
                if causal:
                    hi = min(hi, pmax + 1)
                    full_hi = min(full_hi, pmin + 1)
                if window is not None:
                    lo = max(lo, pmin - window + 1)
                    full_lo = max(full_lo, pmax - window + 1)
                    if not causal:
                        hi = min(hi, pmax + window)
                        full_hi = min(full_hi, pmin + window)
            lo = min(max(lo, 0), k_len)
            hi = max(lo, hi)
            full_lo, full_hi = min(max(full_lo, lo), hi), min(max(full_hi, lo), hi)
            if full_hi < full_lo:
                full_hi = full_lo
            blocks.append(QueryBlock(q0, min(q0 + block_q, q_len), lo, hi, full_lo, full_hi))
        return blocks

    def _plan_blocks_by_key_positions(
        self,
        starts: list[int],
        lows: list[int],
        highs: list[int],
        q_len: int,
        k_len: int,
        block_q: int,
    ) -> list[QueryBlock]:
        """:meth:`plan_blocks` for explicit key positions: per query block, the smallest index
        range ``[lo, hi)`` holding every key that causality and the window let some query of
        the block see (bounds from the block's lowest and highest query positions)."""
        assert self.key_positions is not None
        if k_len == 0 or not starts:
            return [QueryBlock(q0, min(q0 + block_q, q_len), 0, 0, 0, 0) for q0 in starts]
        kp = self.key_positions.long()
        kp = kp if kp.dim() == 2 else kp.unsqueeze(0)  # (1|B, Tk)
        qmin = torch.tensor(lows, device=kp.device)[:, None, None]  # (nb, 1, 1)
        qmax = torch.tensor(highs, device=kp.device)[:, None, None]  # (nb, 1, 1)
        seen = (kp >= 0).expand(len(starts), -1, -1)  # (nb, 1|B, Tk)
        if self.causal:
            seen = seen & (kp <= qmax)
        if self.window is not None:
            seen = seen & (kp > qmin - self.window)
            if not self.causal:
                seen = seen & (kp < qmax + self.window)
        if self.key_lengths is not None and self.key_lengths.numel():
            idx = torch.arange(k_len, device=kp.device)
            seen = seen & (idx < int(self.key_lengths.max()))
        any_seen = seen.any(dim=1)  # (nb, Tk)
        idx = torch.arange(k_len, device=kp.device)
        first = torch.where(any_seen, idx, k_len).amin(dim=1).tolist()
        last = torch.where(any_seen, idx, -1).amax(dim=1).tolist()
        blocks = []
        for q0, lo, hi in zip(starts, first, last):
            lo, hi = (lo, hi + 1) if hi >= lo else (0, 0)
            blocks.append(QueryBlock(q0, min(q0 + block_q, q_len), lo, hi, lo, lo))
        return blocks

    def key_ranges(
        self, q_len: int, k_len: int, block_q: int, device: torch.device | None = None
    ) -> list[tuple[int, int]]:
        """For each query block of ``block_q`` queries, the key range ``[lo, hi)`` that any of
        its queries may see, from the structural parts (causal, window, key lengths). Keys
        outside the range are masked for every query of the block, so a backend may skip them.
        """
        return [(b.lo, b.hi) for b in self.plan_blocks(q_len, k_len, block_q)]

    def block_layout(self, q_len: int, k_len: int, block_q: int, block_k: int) -> torch.Tensor:
        """Which key blocks each query block may see: bool ``(ceil(Tq/bq), ceil(Tk/bk))``.

        True means the block pair may hold an allowed score (dense parts are assumed to allow
        something); False means every score of the pair is masked and can be skipped.
        """
        _check_block("block_q", block_q)
        _check_block("block_k", block_k)
        nq = -(-q_len // block_q)
        nk = -(-k_len // block_k)
        layout = torch.zeros(nq, nk, dtype=torch.bool)
        for i, (lo, hi) in enumerate(self.key_ranges(q_len, k_len, block_q)):
            if hi > lo:
                layout[i, lo // block_k : -(-hi // block_k)] = True
        return layout

    def __repr__(self) -> str:
        parts = []
        if self.causal:
            parts.append(f"causal({self.align})")
        if self.window is not None:
            parts.append(f"window={self.window}")
        if self.query_positions is not None:
            parts.append(f"query_positions{shape(self.query_positions)}")
        if self.key_positions is not None:
            parts.append(f"key_positions{shape(self.key_positions)}")
        if self.key_lengths is not None:
            parts.append(f"key_lengths{shape(self.key_lengths)}")
        if self.key_padding is not None:
            parts.append(f"key_padding{shape(self.key_padding)}")
        if self.allowed is not None:
            parts.append(f"allowed{shape(self.allowed)}")
        if self.additive is not None:
            parts.append(f"additive{shape(self.additive)}")
        parts += [type(b).__name__ for b in self.head_biases]
        if self.also is not None:
            a = self.also
            what = ["causal"] * a.causal + [f"window={a.window}"] * (a.window is not None)
            parts.append(f"also {a.align}: {', '.join(what)}")
        return f"AttentionMask({', '.join(parts) or 'none'})"


# ---------------------------------------------------------------------- constructors
def none() -> AttentionMask:
    """A mask that keeps every score."""
    return AttentionMask()


def causal(*, align: str = "top_left") -> AttentionMask:
    """Each query sees keys at or before its position (see the module docstring).

    Example:
        >>> causal(align="bottom_right").render(1, 1, 2, 4)[0, 0].int()
        tensor([[1, 1, 1, 0],
                [1, 1, 1, 1]], dtype=torch.int32)
    """
    return AttentionMask(causal=True, align=align)


def sliding_window(window: int, *, causal: bool = True, align: str = "top_left") -> AttentionMask:
    """Each query sees the ``window`` most recent keys including itself (causal), or keys
    within distance ``window - 1`` on both sides (``causal=False``)."""
    return AttentionMask(causal=require_bool("causal", causal), window=window, align=align)


def key_padding(
    *, lengths: torch.Tensor | Sequence[int] | None = None, mask: torch.Tensor | None = None
) -> AttentionMask:
    """Mask padded keys, given either per-example ``lengths`` ``(B,)`` (keys ``[0, len)`` are
    real) or a bool ``mask`` ``(B, Tk)`` with **True = real key (may attend)**.

    Note: ``torch.nn.MultiheadAttention``'s ``key_padding_mask`` has the opposite polarity
    (True = padding); pass ``mask=~key_padding_mask`` to convert.
    """
    if (lengths is None) == (mask is None):
        raise ValueError("key_padding needs exactly one of lengths= or mask=")
    if lengths is not None:
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(
                f"lengths must be a 1-D integer tensor (B,), got shape {shape(lengths)} "
                f"and dtype {lengths.dtype}"
            )
        return AttentionMask(key_lengths=lengths.long())
    assert mask is not None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        got = (
            f"shape {shape(mask)} dtype {mask.dtype}"
            if isinstance(mask, torch.Tensor)
            else type(mask).__name__
        )
        raise ValueError(
            f"key padding mask must be a bool tensor (B, Tk) with True = real key, got {got}"
        )
    return AttentionMask(key_padding=mask)


def dense(mask: torch.Tensor) -> AttentionMask:
    """A dense mask: bool (True = may attend) or float (additive), shaped ``(Tq, Tk)``,
    ``(B, Tq, Tk)`` or ``(B | 1, H | 1, Tq, Tk)``."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or AttentionMask, got {type(mask).__name__}")
    if mask.dim() not in (2, 3, 4):
        raise ValueError(
            f"mask has shape {shape(mask)} ({mask.dim()}-D) but (Tq, Tk), (B, Tq, Tk) or "
            "(B, H, Tq, Tk) is expected"
        )
    given = shape(mask)
    if mask.dim() == 2:
        mask = mask[None, None]  # (1, 1, Tq, Tk)
    elif mask.dim() == 3:
        mask = mask[:, None]  # (B, 1, Tq, Tk)
    if mask.dtype == torch.bool:
        return AttentionMask(allowed=mask, given_shapes={"allowed": given})
    if mask.is_floating_point():
        return AttentionMask(additive=mask, given_shapes={"additive": given})
    raise TypeError(
        f"mask has dtype {mask.dtype}; expected bool (True = may attend) or a float dtype "
        "(additive)"
    )


def bias(head_bias: HeadBias) -> AttentionMask:
    """A per-head additive bias computed from positions, one tile at a time (e.g. ALiBi)."""
    if not isinstance(head_bias, HeadBias):
        raise TypeError(
            f"head_bias must implement HeadBias (num_heads and __call__), got "
            f"{type(head_bias).__name__}"
        )
    return AttentionMask(head_biases=(head_bias,))


def as_mask(mask: AttentionMask | torch.Tensor | None) -> AttentionMask:
    """Normalize what users pass as ``mask=``: None, a tensor (see :func:`dense`) or a mask."""
    if mask is None:
        return AttentionMask()
    if isinstance(mask, AttentionMask):
        return mask
    return dense(mask)


# ---------------------------------------------------------------------- helpers
def _check_positional(causal: object, window: object, align: object) -> None:
    require_bool("causal", causal)
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
    if window is not None:
        _checks.require_positive_int("window", window)  # the one window rule


def _positional_allowed(
    kp: torch.Tensor, qp: torch.Tensor, causal: bool, window: int | None
) -> torch.Tensor:
    """Which keys at positions ``kp`` the queries at ``qp`` may see (broadcast shapes)."""
    out = kp <= qp if causal else None
    if window is not None:
        near = kp > qp - window
        if not causal:
            near = near & (kp < qp + window)
        out = near if out is None else out & near
    assert out is not None
    return out


def _query_rows(t: torch.Tensor, q0: int, q1: int) -> torch.Tensor:
    """Rows ``[q0, q1)`` of a dense part ``(B|1, H|1, Tq|1, Tk)``; a part broadcast over the
    queries (``Tq = 1``) serves every row as it is."""
    return t if t.shape[-2] == 1 else t[..., q0:q1, :]


def _not_a_mask(other: object) -> str:
    if isinstance(other, torch.Tensor):
        hint = (
            f"wrap the tensor (shape {shape(other)}, dtype {other.dtype}) as masks.dense(t) "
            "(bool: True = may attend; float: added to the scores)"
        )
    elif other is None:
        hint = "None is no mask: leave it out, or use masks.none()"
    else:
        hint = "build one with masks.causal, sliding_window, key_padding, dense or bias"
    return (
        "an AttentionMask combines with & only with another AttentionMask, got "
        f"{type(other).__name__}: {hint}"
    )


def _check_sizes(**sizes: object) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _check_block(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (a block size), got {value!r}")


def _check_additive(t: torch.Tensor, given: tuple[int, ...] | None) -> None:
    """An additive mask holds 0 (keep), -inf (remove) or finite biases; NaN and +inf are bugs.
    Skipped while compiling (a data-dependent check would break the graph): there a NaN bias
    propagates to the output like any NaN input."""
    if torch.compiler.is_compiling() or t.numel() == 0:
        return
    with torch.no_grad():
        bad = ~(t < torch.inf)  # NaN and +inf (NaN compares False)
        if not bool(bad.any()):
            return
        first = tuple(int(i) for i in bad.nonzero()[0])
        n = int(bad.sum())
    raise ValueError(
        f"mask (float) of shape {given or shape(t)} holds {n} NaN or +inf value(s), the first "
        f"{t[first].item()} at index {first} of its (B|1, H|1, Tq, Tk) form; an additive mask "
        "takes 0 to keep a score, -inf to remove it and finite values to bias it"
    )


def _same_device(name: str, t: torch.Tensor, device: torch.device) -> None:
    if t.device != device:
        raise ValueError(f"{name} is on device {t.device} but the query is on {device}")


def _given_shapes(a: AttentionMask, b: AttentionMask) -> dict[str, tuple[int, ...]]:
    """Keep a dense part's user-given shape when only one side of ``a & b`` has that part."""
    out = {}
    for key in ("allowed", "additive"):
        has_a, has_b = getattr(a, key) is not None, getattr(b, key) is not None
        if has_a != has_b:
            src = a if has_a else b
            if key in src.given_shapes:
                out[key] = src.given_shapes[key]
    return out


def _min_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _first(a, b):
    return a if a is not None else b


def _add_float(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Float parts add in at least float32: summing half-precision masks in their own dtype
    would round once per part, where one rounding (at render time) is what torch does."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return a.to(dtype) + b.to(dtype)


def _combine(a, b, op):
    if a is None:
        return b
    if b is None:
        return a
    return op(a, b)
