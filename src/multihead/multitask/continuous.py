"""Continuous heads: a value predicted as one of N bins (:class:`Binned`) or directly with a
Gaussian/MSE loss (:class:`Regression`).

Legend as in :mod:`multihead.multitask.spec_base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from multihead import _checks
from multihead.multitask.spec_base import (
    HeadSpec,
    _require_finite,
    _require_shape,
    _require_target_tensor,
    _shape_text,
    masked_mean,
)


@dataclass(frozen=True)
class Binned(HeadSpec):
    """A value in ``[low, high]`` predicted as one of ``num_bins`` evenly spaced bins.

    Bin ``i`` stands for the value ``low + i * (high - low) / (num_bins - 1)``, so both ends of
    the range are exact bin values (an action head can say "exactly 0" or "the maximum").
    A target value is trained as the class of its nearest bin (cross-entropy); decoding returns
    the value of the most probable bin.

    Output: logits ``(*P, N)``. Target: float values ``P`` within ``[low, high]``.

    Example:
        >>> import torch
        >>> spec = Binned(5, low=0.0, high=1.0)
        >>> spec.values()
        tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000])
        >>> spec.bin_index(torch.tensor([0.1, 0.9]))
        tensor([0, 4])
    """

    num_bins: int
    low: float
    high: float
    kind: ClassVar[str] = "binned"

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.require_int("num_bins", self.num_bins, minimum=2)
        for arg in ("low", "high"):
            _checks.require_number(arg, getattr(self, arg))
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low!r}, high={self.high!r}")

    @property
    def out_features(self) -> int:
        return self.num_bins

    @property
    def step(self) -> float:
        return (self.high - self.low) / (self.num_bins - 1)

    def values(self, *, dtype: torch.dtype = torch.float32, device: Any = None) -> torch.Tensor:
        """The value of every bin, ``(N,)``."""
        i = torch.arange(self.num_bins, dtype=torch.float64, device=device)
        return (self.low + i * self.step).to(dtype)

    def bin_index(self, value: torch.Tensor) -> torch.Tensor:
        """Index of the nearest bin for each value (same shape, torch.long)."""
        idx = torch.round((value.double() - self.low) / self.step)
        return idx.clamp(0, self.num_bins - 1).long()

    def check_target(
        self,
        name: str,
        target: object,
        prefix: tuple[int, ...],
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = _require_target_tensor(name, target)
        _require_shape(name, t, prefix, f"values of shape {_shape_text(prefix)} =")
        if not t.is_floating_point():
            if t.dtype == torch.bool or t.is_complex():
                raise TypeError(
                    f"target for head {name!r} has dtype {t.dtype} but real values are expected"
                )
            t = t.double()
        _require_finite(name, t, valid)
        check = t if valid is None else t[valid]
        # A hair of slack so that e.g. 0.1 + 0.2 is accepted as 0.3 at the top of the range.
        eps = 1e-9 * (self.high - self.low)
        outside = (check < self.low - eps) | (check > self.high + eps)
        if outside.any():
            bad = float(check[outside][0])
            raise ValueError(
                f"target for head {name!r} has value {bad:.6g} outside the binned range "
                f"[{self.low}, {self.high}]"
            )
        idx = self.bin_index(t)
        return idx if valid is None else idx.masked_fill(~valid, 0)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # target: bin indices from check_target.
        flat = F.cross_entropy(
            output.reshape(-1, self.num_bins), target.reshape(-1), reduction="none"
        )
        return flat.view(target.shape)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        values = self.values(dtype=output.dtype, device=output.device)
        return values[output.argmax(dim=-1)]

    def to_python(self, value: torch.Tensor) -> Any:
        # Snap to the grid in float64 so users see 0.48, not float32's 0.47999998927.
        i = round((float(value) - self.low) / self.step)
        return float(f"{self.low + i * self.step:.12g}")

    def metrics(
        self, output: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> dict[str, float]:
        # target: bin indices; the error is measured between bin values.
        values = self.values(dtype=torch.float64, device=output.device)
        pred = output.argmax(dim=-1)
        err = (values[pred] - values[target]).abs()
        return {
            "accuracy": float(masked_mean((pred == target).double(), valid)),
            "mae": float(masked_mean(err, valid)),
            "nll": float(masked_mean(self.elementwise_loss(output, target).double(), valid)),
        }


@dataclass(frozen=True)
class Regression(HeadSpec):
    """``dim`` real values, optionally bounded; squared-error (Gaussian) loss.

    Bounds shape the output so a prediction can never leave them: both bounds give
    ``low + (high - low) * sigmoid(z)``, one bound ``low + softplus(z)`` or
    ``high - softplus(z)``. Targets outside the bounds are rejected.

    Output: ``P`` when ``dim == 1`` (a plain number per example), else ``(*P, K)``.

    Example:
        >>> import torch
        >>> spec = Regression(low=0.0, high=1.0)
        >>> spec.output(torch.zeros(2, 1))
        tensor([0.5000, 0.5000])
    """

    dim: int = 1
    low: float | None = None
    high: float | None = None
    kind: ClassVar[str] = "regression"
    likelihood: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.require_int("dim", self.dim, minimum=1)
        for arg in ("low", "high"):
            if getattr(self, arg) is not None:
                _checks.require_number(arg, getattr(self, arg))
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low!r}, high={self.high!r}")

    @property
    def out_features(self) -> int:
        return self.dim

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        if self.low is not None and self.high is not None:
            raw = self.low + (self.high - self.low) * torch.sigmoid(raw)
        elif self.low is not None:
            raw = self.low + F.softplus(raw)
        elif self.high is not None:
            raw = self.high - F.softplus(raw)
        return raw.squeeze(-1) if self.dim == 1 else raw

    def prefix(self, output: torch.Tensor) -> tuple[int, ...]:
        return tuple(output.shape) if self.dim == 1 else tuple(output.shape[:-1])

    def check_target(
        self,
        name: str,
        target: object,
        prefix: tuple[int, ...],
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = _require_target_tensor(name, target)
        if self.dim == 1:
            _require_shape(name, t, prefix, f"values of shape {_shape_text(prefix)} =")
        else:
            what = f"values of shape {_shape_text(prefix, 'K')} ="
            _require_shape(name, t, (*prefix, self.dim), what)
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(
                f"target for head {name!r} has dtype {t.dtype} but real values are expected"
            )
        t = t if t.is_floating_point() else t.float()
        _require_finite(name, t, valid)
        check = t if valid is None else t[valid]
        for bound, bad_mask, word in (
            (self.low, None if self.low is None else check < self.low, "below low"),
            (self.high, None if self.high is None else check > self.high, "above high"),
        ):
            if bad_mask is not None and bad_mask.any():
                raise ValueError(
                    f"target for head {name!r} has value {float(check[bad_mask][0]):.6g} {word}="
                    f"{bound}; the head's bounds are [{self.low}, {self.high}]"
                )
        if valid is not None:
            t = t.masked_fill(~valid.reshape(valid.shape + (1,) * (t.dim() - valid.dim())), 0.0)
        return t

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sq = (output - target.to(output.dtype)) ** 2
        return sq if self.dim == 1 else sq.mean(dim=-1)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def metrics(
        self, output: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> dict[str, float]:
        diff = (output.double() - target.double()).abs()
        if self.dim > 1:
            sq, ab = (diff**2).mean(dim=-1), diff.mean(dim=-1)
        else:
            sq, ab = diff**2, diff
        return {"mse": float(masked_mean(sq, valid)), "mae": float(masked_mean(ab, valid))}

    def to_python(self, value: torch.Tensor) -> Any:
        return value.item() if self.dim == 1 else value.tolist()
