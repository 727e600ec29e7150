"""Position information for attention: RoPE, ALiBi, sinusoidal and learned embeddings.

Legend: B batch, H heads, T sequence length, D head dim, E model width.

- :class:`RotaryEmbedding` rotates queries and keys by their position (Su et al. 2021,
  "RoFormer"), so that ``q_m . k_n`` depends on ``m - n`` only. It plugs into
  :class:`~multihead.attention.MultiHeadAttention` as ``rotary=``.
- :class:`ALiBi` adds ``-slope_h * |i - j|`` to the scores of head ``h`` (Press et al. 2022,
  "Train short, test long"). It is a :class:`~multihead.masks.HeadBias`: the blockwise backend
  evaluates it one tile at a time, never as a dense ``T x T`` tensor.
- :class:`SinusoidalPositions` and :class:`LearnedPositions` give ``(..., T, E)`` vectors added
  to the token embeddings (Vaswani et al. 2017; Radford et al. 2018).

Example:
    >>> import torch
    >>> from multihead.positional import RotaryEmbedding, ALiBi
    >>> rope = RotaryEmbedding(head_dim=16)
    >>> q = torch.randn(2, 4, 5, 16)                     # (B, H, T, D)
    >>> rope(q, torch.arange(5)).shape
    torch.Size([2, 4, 5, 16])
    >>> ALiBi(num_heads=8).slopes[:3]
    tensor([0.5000, 0.2500, 0.1250])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from multihead import _checks

ROPE_SCALINGS = ("linear", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """How RoPE's frequencies are stretched for contexts longer than the training length.

    Attributes:
        kind: ``"linear"`` or ``"llama3"``.
        factor: the context extension factor s (>= 1).
        low_freq_factor, high_freq_factor, original_max_len: ``"llama3"`` only (defaults 1,
            4 and 8192, Llama 3.1's values); ``"linear"`` takes none of them.

    With ``omega_i = base ** (-2i / R)`` the frequency of pair ``i``:

    - ``"linear"`` (position interpolation; Chen et al. 2023, "Extending context window of
      large language models via positional interpolation"): ``omega_i / s`` for every pair,
      i.e. position ``p`` is rotated as ``p / s`` was.
    - ``"llama3"`` (Llama 3.1, Dubey et al. 2024): with wavelength ``lambda_i = 2 pi /
      omega_i``, ``L = original_max_len``, ``lo = L / low_freq_factor`` and ``hi = L /
      high_freq_factor``: pairs with ``lambda_i < hi`` (high frequencies, which see many
      periods within L) keep ``omega_i``; pairs with ``lambda_i > lo`` get ``omega_i / s``;
      in between, with ``a = (L / lambda_i - low_freq_factor) / (high_freq_factor -
      low_freq_factor)``, ``(1 - a) * omega_i / s + a * omega_i``.

    Example:
        >>> import torch
        >>> RopeScaling("linear", 4.0).apply(torch.tensor([1.0, 0.5]))
        tensor([0.2500, 0.1250])
        >>> s = RopeScaling("llama3", 8.0, original_max_len=64)
        >>> s.low_freq_factor, s.high_freq_factor
        (1.0, 4.0)
        >>> s.apply(torch.tensor([1.0, 0.2, 0.05]))          # kept, smoothed, divided by 8
        tensor([1.0000, 0.0855, 0.0063])
    """

    kind: str
    factor: float
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_len: int | None = None

    def __post_init__(self) -> None:
        _checks.require_choice("rope_scaling kind", self.kind, ROPE_SCALINGS)
        object.__setattr__(
            self, "factor", _checks.require_number("rope_scaling factor", self.factor, minimum=1)
        )
        extra = ("low_freq_factor", "high_freq_factor", "original_max_len")
        if self.kind == "linear":
            given = [n for n in extra if getattr(self, n) is not None]
            if given:
                raise ValueError(f"rope_scaling kind 'linear' takes only factor, got {given}")
            return
        defaults = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_len": 8192}
        for name, default in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        low = _checks.require_number("rope_scaling low_freq_factor", self.low_freq_factor, above=0)
        high = _checks.require_number(
            "rope_scaling high_freq_factor", self.high_freq_factor, above=low
        )
        object.__setattr__(self, "low_freq_factor", low)
        object.__setattr__(self, "high_freq_factor", high)
        _checks.require_int("rope_scaling original_max_len", self.original_max_len, minimum=1)

    @classmethod
    def build(cls, value: RopeScaling | Mapping[str, Any] | None) -> RopeScaling | None:
        """``value`` as a RopeScaling: itself, one built from a dict of its fields (as
        ``to_dict`` writes it), or None."""
        if value is None or isinstance(value, RopeScaling):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(
                f"rope_scaling must be None, a RopeScaling or a dict of its fields, got "
                f"{type(value).__name__}"
            )
        names = ("kind", "factor", "low_freq_factor", "high_freq_factor", "original_max_len")
        unknown = sorted(set(value) - set(names))
        if unknown or "kind" not in value or "factor" not in value:
            raise ValueError(
                f"rope_scaling {dict(value)} must have 'kind' and 'factor' and only fields of "
                f"{names}"
            )
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        """The fields that apply to this kind (what :meth:`build` reads back)."""
        names = ("kind", "factor", "low_freq_factor", "high_freq_factor", "original_max_len")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def apply(self, inv_freq: torch.Tensor) -> torch.Tensor:
        """The scaled frequencies ``(R/2,)``, in inv_freq's dtype (float32 for RoPE)."""
        if self.kind == "linear":
            return inv_freq / self.factor
        length = float(self.original_max_len)
        low, high = self.low_freq_factor, self.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > length / low, inv_freq / self.factor, inv_freq)
        smooth = (length / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / self.factor + smooth * scaled
        medium = (wavelen >= length / high) & (wavelen <= length / low)
        return torch.where(medium, blended, scaled)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE; Su et al. 2021).

    Pairs of channels ``(x_a, x_b)`` are rotated by the angle ``position * base ** (-2i / R)``
    where ``i`` indexes the pair and ``R`` is the number of rotated channels.

    Args:
        head_dim: D, the width of each query/key head.
        base: the frequency base (10000 in the paper; larger for long context).
        rotary_dim: how many leading channels of each head are rotated (partial rotary, as in
            GPT-NeoX/GPT-J); must be even. Default: all ``head_dim`` channels.
        interleaved: how channels are paired. False (default) pairs channel ``i`` with
            ``i + R/2`` ("half-split", the GPT-NeoX / HF-Llama layout); True pairs ``2i`` with
            ``2i + 1`` (the paper's and GPT-J's / Meta-Llama's layout). Real checkpoints use
            both, so a converter picks the one its weights were trained with.
        scaling: a :class:`RopeScaling` stretching the frequencies for long contexts
            (``"linear"`` or ``"llama3"``), or None.

    The frequencies ``1 / base ** (2i / R)`` are computed in float32, the way the reference
    implementations (Meta's Llama, transformers) compute them, so a pretrained model rotates by
    exactly the frequencies it was trained with: a one-ulp difference in a frequency grows to
    about 1e-2 rad of angle by position 1e5.

    Call: ``rope(x, positions)`` with x ``(B, H, T, D)`` and positions ``(T,)`` or ``(B, T)``
    (int); returns the same shape and dtype as x. The angles are computed in float32 from the
    positions given, so no table bounds the sequence length and cached decoding (positions
    ``t, t+1, ...``) rotates exactly as the full forward does.

    Example:
        >>> import torch
        >>> rope = RotaryEmbedding(head_dim=8, rotary_dim=4, interleaved=True)
        >>> x = torch.randn(1, 2, 3, 8)
        >>> y = rope(x, torch.arange(3))
        >>> torch.equal(y[..., 4:], x[..., 4:])           # unrotated tail passes through
        True
    """

    def __init__(
        self,
        head_dim: int,
        *,
        base: float = 10000.0,
        rotary_dim: int | None = None,
        interleaved: bool = False,
        scaling: RopeScaling | None = None,
    ) -> None:
        super().__init__()
        _checks.require_positive_int("head_dim", head_dim)
        rotary_dim = head_dim if rotary_dim is None else rotary_dim
        _checks.require_positive_int("rotary_dim", rotary_dim)
        if rotary_dim % 2:
            what = "head_dim" if rotary_dim == head_dim else "rotary_dim"
            raise ValueError(
                f"RoPE rotates channel pairs, so {what} must be even, got {what}={rotary_dim}"
            )
        if rotary_dim > head_dim:
            raise ValueError(f"rotary_dim={rotary_dim} must be at most head_dim={head_dim}")
        if not (isinstance(base, (int, float)) and base > 1.0):
            raise ValueError(f"base must be a number > 1, got {base!r}")
        self.head_dim = head_dim
        self.rotary_dim = rotary_dim
        self.base = float(base)
        self.interleaved = bool(interleaved)
        if scaling is not None and not isinstance(scaling, RopeScaling):
            raise TypeError(f"scaling must be a RopeScaling or None, got {type(scaling).__name__}")
        self.scaling = scaling
        exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim
        inv_freq = 1.0 / self.base**exponents  # (R/2,) float32, as the reference code has it
        if scaling is not None:
            inv_freq = scaling.apply(inv_freq)
        # Not persistent: a function of the config, so checkpoints do not carry it.
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (R/2,)
        # (positions, versions, inv_freq, (cos, sin)) of the last call; see angles().
        self._angles_memo: tuple | None = None
        self._full_memo: tuple | None = None  # (cos, ([cos, cos], [-sin, sin]))

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ``(1 | B, 1, T, R/2)`` in float32 for positions ``(T,)`` or ``(B, T)``.

        The layers of a model share this module and rotate at the same positions tensor, so
        the last angles are reused while the positions are the same, unmodified tensor
        (identity and version counter) and ``inv_freq`` is the same buffer."""
        # Compiled code neither reads nor writes the memo: a guard on it would recompile the
        # graph whenever eager code replaced it.
        remember = not (torch.compiler.is_compiling() or positions.is_inference())
        memo = self._angles_memo if remember else None
        if memo is not None:
            pos_t, versions, inv_freq, angles = memo
            same = pos_t is positions and inv_freq is self.inv_freq
            if same and versions == (positions._version, inv_freq._version):
                return angles
        pos = positions.to(device=self.inv_freq.device, dtype=torch.float32)
        pos = pos if pos.dim() == 2 else pos.unsqueeze(0)  # (1|B, T)
        theta = pos[:, None, :, None] * self.inv_freq  # (1|B, 1, T, R/2)
        angles = (theta.cos(), theta.sin())
        if remember:
            versions = (positions._version, self.inv_freq._version)
            self._angles_memo = (positions, versions, self.inv_freq, angles)
        return angles

    def _full_angles(
        self, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[cos, cos]`` and ``[-sin, sin]`` ``(1 | B, 1, T, R)`` for the half-split layout,
        kept beside the angles they were built from."""
        compiling = torch.compiler.is_compiling()  # compiled code keeps off the memo
        memo = None if compiling else self._full_memo
        if memo is not None and memo[0] is cos:
            return memo[1]
        full = (torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1))  # (1|B,1,T,R)
        if not compiling:
            self._full_memo = (cos, full)
        return full

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.head_dim:
            raise ValueError(
                f"x has shape {tuple(x.shape)} but RotaryEmbedding was built for "
                f"head_dim={self.head_dim}; expected (B, H, T, {self.head_dim})"
            )
        if positions.dim() not in (1, 2) or positions.shape[-1] != x.shape[-2]:
            raise ValueError(
                f"positions has shape {tuple(positions.shape)} but (T,) or (B, T) with "
                f"T={x.shape[-2]} is expected"
            )
        cos, sin = self.angles(positions)
        r = self.rotary_dim
        if not self.interleaved and r == self.head_dim and x.dtype == torch.float32:
            # The same products and sums as below, in 4 operations instead of 7: with
            # [a, b] -> [b, a] (a roll by R/2), out = x * [cos, cos] + [b, a] * [-sin, sin].
            cos2, sin2 = self._full_angles(cos, sin)
            return x * cos2 + x.roll(r // 2, dims=-1) * sin2  # (B, H, T, D)
        rot, rest = x[..., :r].float(), x[..., r:]
        if self.interleaved:
            pairs = rot.unflatten(-1, (r // 2, 2))  # (B, H, T, R/2, 2)
            a, b = pairs[..., 0], pairs[..., 1]  # (B, H, T, R/2) each
            out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)  # (B,H,T,R/2,2)
            out = out.flatten(-2)  # (B, H, T, R)
        else:
            a, b = rot[..., : r // 2], rot[..., r // 2 :]  # (B, H, T, R/2) each
            out = torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)  # (B, H, T, R)
        out = out.to(x.dtype)
        return out if r == self.head_dim else torch.cat((out, rest), dim=-1)  # (B, H, T, D)

    def extra_repr(self) -> str:
        scaling = "" if self.scaling is None else f", scaling={self.scaling}"
        return (
            f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, base={self.base}, "
            f"interleaved={self.interleaved}{scaling}"
        )


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes ``(H,)`` (Press et al. 2022, section 3).

    For ``H`` a power of two the slopes are the geometric sequence starting at and with ratio
    ``2 ** (-8 / H)``. Otherwise the paper takes the slopes of the nearest smaller power of two
    ``n`` and adds every other slope of ``2n`` heads until there are ``H``.
    """
    _checks.require_positive_int("num_heads", num_heads)

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    n = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(n)
    if n < num_heads:
        slopes += power_of_two(2 * n)[0::2][: num_heads - n]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(nn.Module):
    """Attention with Linear Biases (Press et al. 2022): adds ``-slope_h * |q_pos - k_pos|``
    to head ``h``'s scores. A :class:`~multihead.masks.HeadBias`.

    Args:
        num_heads: H; the slopes default to the paper's (:func:`alibi_slopes`).
        slopes: explicit per-head slopes ``(H,)`` instead (e.g. from a checkpoint or a
            pruned model); ``num_heads`` may then be omitted.
        persistent: save the slopes in the state dict (default). A model that rebuilds them
            from its config (the models of :mod:`multihead.models` keep each layer's original
            head ids) passes False, so its checkpoints hold the same tensors as before.

    The slopes are a buffer ``slopes (H,)``, saved with the model unless told otherwise, and
    :meth:`select_heads` keeps each kept head's own slope, so a pruned model attends as the
    original one did. Inject one ALiBi per attention layer as
    ``MultiHeadAttention(..., position_bias=ALiBi(H))``, or pass ``masks.bias(ALiBi(H))`` in a
    mask.

    The distance is symmetric, so the same bias serves causal decoders (where only
    ``k_pos <= q_pos`` survive the mask and it equals the paper's ``-(q - k)``) and
    bidirectional encoders.

    Call: ``alibi(q_pos, k_pos, dtype)`` with q_pos ``(1 | B, tq)`` and k_pos ``(tk,)`` or
    ``(B, tk)`` int64; returns ``(1 | B, H, tq, tk)``. It is evaluated per tile by the
    blockwise backend.

    Example:
        >>> import torch
        >>> from multihead import masks
        >>> alibi = ALiBi(num_heads=2)
        >>> alibi(torch.arange(3)[None], torch.arange(3), torch.float32)[0, 0]
        tensor([[-0.0000, -0.0625, -0.1250],
                [-0.0625, -0.0000, -0.0625],
                [-0.1250, -0.0625, -0.0000]])
        >>> m = masks.causal() & masks.bias(alibi)
        >>> ALiBi(num_heads=8).select_heads(torch.tensor([6, 1])).slopes
        tensor([0.0078, 0.2500])
    """

    def __init__(
        self,
        num_heads: int | None = None,
        *,
        slopes: torch.Tensor | Sequence[float] | None = None,
        persistent: bool = True,
    ) -> None:
        super().__init__()
        _checks.require_bool("persistent", persistent)
        if slopes is None:
            if num_heads is None:
                raise ValueError("ALiBi needs num_heads or explicit slopes, got neither")
            values = alibi_slopes(_checks.require_positive_int("num_heads", num_heads))
        else:
            values = torch.as_tensor(slopes, dtype=torch.float32)
            if values.dim() != 1 or not bool(torch.isfinite(values).all()):
                raise ValueError(
                    f"slopes must be a finite 1-D sequence (H,), got shape {tuple(values.shape)}"
                )
            if num_heads is not None and num_heads != values.numel():
                raise ValueError(
                    f"num_heads={num_heads} but {values.numel()} slopes were given; pass one "
                    "slope per head"
                )
        self.register_buffer("slopes", values.clone(), persistent=persistent)  # (H,)

    @property
    def num_heads(self) -> int:
        """H, the number of slopes."""
        return self.slopes.shape[0]

    def select_heads(self, index: torch.Tensor) -> ALiBi:
        """Keep the heads ``index`` ``(H',)`` (current head numbers, in that order), in place;
        returns self. Each kept head keeps its slope."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.slopes.device)
        if index.dim() != 1 or (
            index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_heads)
        ):
            raise ValueError(
                f"index must be a 1-D tensor of head numbers in [0, {self.num_heads}), got "
                f"{index.tolist()}"
            )
        self.slopes = self.slopes.index_select(0, index)  # (H',), stays a buffer
        return self

    def forward(self, q_pos: torch.Tensor, k_pos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        qp = q_pos if q_pos.dim() == 2 else q_pos.unsqueeze(0)  # (1|B, tq)
        kp = k_pos if k_pos.dim() == 2 else k_pos.unsqueeze(0)  # (1|B, tk)
        dist = (qp[:, :, None] - kp[:, None, :]).abs()  # (1|B, tq, tk)
        slopes = self.slopes.to(device=dist.device)
        bias = -slopes.view(1, -1, 1, 1) * dist[:, None].float()  # (1|B, H, tq, tk)
        return bias.to(dtype)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position vectors (Vaswani et al. 2017, section 3.5):
    ``PE[p, 2i] = sin(p / 10000^(2i/E))``, ``PE[p, 2i+1] = cos(p / 10000^(2i/E))``.

    Call: ``pe(positions)`` with positions ``(T,)`` or ``(B, T)`` -> ``(T, E)`` or
    ``(B, T, E)`` float32, computed from the positions (no table, no length limit).

    Example:
        >>> SinusoidalPositions(dim=4)(torch.arange(2))
        tensor([[0.0000, 1.0000, 0.0000, 1.0000],
                [0.8415, 0.5403, 0.0100, 0.9999]])
    """

    def __init__(self, dim: int, *, base: float = 10000.0) -> None:
        super().__init__()
        _checks.require_positive_int("dim", dim)
        if dim % 2:
            raise ValueError(
                f"sinusoidal positions pair sin and cos, so dim must be even, got {dim}"
            )
        self.dim = dim
        inv = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        self.register_buffer("inv_freq", inv.float(), persistent=False)  # (E/2,)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        theta = positions.float()[..., None] * self.inv_freq  # (..., T, E/2)
        return torch.stack((theta.sin(), theta.cos()), dim=-1).flatten(-2)  # (..., T, E)


class LearnedPositions(nn.Module):
    """Learned absolute position embeddings (Radford et al. 2018), one vector per position
    ``0 .. max_positions - 1``.

    Call: ``pe(positions)`` with positions ``(T,)`` or ``(B, T)`` -> ``(..., T, E)``.
    """

    def __init__(
        self,
        max_positions: int,
        dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.max_positions = _checks.require_positive_int("max_positions", max_positions)
        self.embedding = nn.Embedding(max_positions, dim, device=device, dtype=dtype)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.embedding(positions)
