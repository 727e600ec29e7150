"""Declarative head specs: what a head predicts, how it is trained and how it is decoded.

A spec is a small frozen dataclass. It knows its output size, builds its module, checks targets,
computes its loss (derived from the spec: cross-entropy, Gaussian/MSE, Bernoulli), decodes
outputs into values and computes its metrics. :class:`~multihead.multitask.MultiTaskNetwork` holds
one spec per named head and never special-cases a spec type.

Legend: B batch, T tokens, F trunk features, C classes, N bins, L labels, K regression dims.
``P`` is the leading shape of one head's predictions: ``(B,)`` for an example-level head and
``(B, T)`` for a token-level head.

Example:
    >>> import torch
    >>> from multihead.multitask import Binned, Classification
    >>> side = Classification(2)
    >>> lev = Binned(100, low=0.02, high=2.0)      # values 0.02, 0.04, ..., 2.0
    >>> logits = torch.zeros(3, 100); logits[:, 49] = 5.0
    >>> lev.decode(logits)                           # the chosen bin's value, shape (B,)
    tensor([1., 1., 1.])
    >>> round(float(lev.loss(logits, torch.tensor([1.0, 1.0, 1.0]))), 3)   # log(1 + 99 e^-5)
    0.511
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from multihead import _checks

Level = Literal["example", "token"]
Pooling = Literal["mean", "first", "last", "max"]
LEVELS: tuple[str, ...] = ("example", "token")
POOLINGS: tuple[str, ...] = ("mean", "first", "last", "max")


@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    """Fields every head shares.

    Args:
        level: ``"example"`` (one prediction per example; a sequence trunk's ``(B, T, F)``
            features are pooled first) or ``"token"`` (one prediction per token).
        pooling: how an example-level head reduces ``(B, T, F)`` to ``(B, F)``: ``"mean"``
            over real tokens, ``"first"`` (a CLS token), ``"last"`` real token (a causal
            decoder's summary) or ``"max"``. Ignored for ``(B, F)`` trunks.
        hidden: width of one hidden layer in the head; None for a single linear layer.
    """

    level: Level = "example"
    pooling: Pooling = "mean"
    hidden: int | None = None

    kind: ClassVar[str] = ""
    # Which likelihood the loss is the negative log of; uncertainty weighting (Kendall et al.
    # 2018) scales a Gaussian term by 1/(2 sigma^2) and a categorical one by 1/sigma^2.
    likelihood: ClassVar[str] = "categorical"

    def __post_init__(self) -> None:
        _checks.require_choice("level", self.level, LEVELS)
        _checks.require_choice("pooling", self.pooling, POOLINGS)
        if self.hidden is not None:
            _checks.require_int("hidden", self.hidden, minimum=1)

    # --- what subclasses provide -------------------------------------------------------
    @property
    def out_features(self) -> int:
        """Width of the head's last linear layer."""
        raise NotImplementedError

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        """Turn the last layer's ``(*P, out_features)`` into this head's output."""
        return raw

    def check_target(
        self,
        name: str,
        target: object,
        prefix: tuple[int, ...],
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Validate ``target`` for head ``name`` with predictions of leading shape ``prefix``
        (only where ``valid`` is True, when given); return it in the form the loss uses.

        Raises:
            TypeError, ValueError: naming the head, what was received and what was expected.
        """
        raise NotImplementedError

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-prediction loss of shape ``P`` (targets already checked)."""
        raise NotImplementedError

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """Decoded values of shape ``P`` (or ``(*P, K|L)``)."""
        raise NotImplementedError

    def metrics(
        self, output: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Held-out metrics; ``valid`` (bool, shape ``P``) marks predictions that count."""
        raise NotImplementedError

    def to_python(self, value: torch.Tensor) -> Any:
        """One decoded prediction as a plain Python value."""
        return value.item()

    # --- shared machinery --------------------------------------------------------------
    def build(self, in_features: int) -> nn.Module:
        """The head module mapping ``(*, F)`` to ``(*, out_features)``."""
        _checks.require_int("in_features", in_features, minimum=1)
        if self.hidden is None:
            return nn.Linear(in_features, self.out_features)
        return nn.Sequential(
            nn.Linear(in_features, self.hidden),
            nn.GELU(),
            nn.Linear(self.hidden, self.out_features),
        )

    def loss(
        self, output: torch.Tensor, target: object, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean loss over the predictions that count (all of them when ``valid`` is None).

        Args:
            output: this head's output, ``(*P, out)`` (or ``P`` for a scalar regression).
            target: targets matching the spec (see :meth:`check_target`).
            valid: optional bool ``P``, True = this prediction counts (padding is False).
        """
        prefix = self.prefix(output)
        target_t = self.check_target(type(self).__name__, target, prefix, valid)
        return masked_mean(self.elementwise_loss(output, target_t), valid)

    def prefix(self, output: torch.Tensor) -> tuple[int, ...]:
        """The leading shape ``P`` of an output of this head."""
        return tuple(output.shape[:-1])

    def to_config(self) -> dict[str, Any]:
        """JSON-serializable description; :func:`spec_from_config` inverts it."""
        return {"type": self.kind, **asdict(self)}


def masked_mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (shape ``P``) over the positions where ``valid`` is True."""
    if valid is None:
        return values.mean()
    w = valid.to(values.dtype)
    # clamp: a batch with no valid prediction gives loss 0 (and zero gradient), not NaN.
    return (values * w).sum() / w.sum().clamp(min=1.0)


def _require_target_tensor(name: str, target: object) -> torch.Tensor:
    if isinstance(target, torch.Tensor):
        return target
    if isinstance(target, (list, tuple, int, float)):
        return torch.as_tensor(target)
    raise TypeError(
        f"target for head {name!r} must be a tensor (or list of numbers), "
        f"got {type(target).__name__}"
    )


def _require_shape(name: str, t: torch.Tensor, expected: tuple[int, ...], what: str) -> None:
    if tuple(t.shape) != expected:
        raise ValueError(
            f"target for head {name!r} has shape {tuple(t.shape)} but {what} {expected} is expected"
        )


def _require_finite(name: str, t: torch.Tensor, valid: torch.Tensor | None) -> None:
    bad = ~torch.isfinite(t)
    if valid is not None:
        bad = bad & valid.reshape(valid.shape + (1,) * (t.dim() - valid.dim()))
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"target for head {name!r} has a non-finite value {t[idx].item()} at index {idx}; "
            "targets must be finite (drop the example or leave the head out of the batch)"
        )


def _shape_text(prefix: tuple[int, ...], trailing: str = "") -> str:
    """The symbolic shape of a target: ``(B,)``, ``(B, T)``, ``(B, K)``, ``(B, T, L)``..."""
    dims = ["B", "T"][: len(prefix)] + ([trailing] if trailing else [])
    return "(B,)" if dims == ["B"] else "(" + ", ".join(dims) + ")"


@dataclass(frozen=True)
class Classification(HeadSpec):
    """One of ``num_classes`` classes; cross-entropy loss; decodes to the argmax class.

    Output: logits ``(*P, C)``. Target: integer class indices ``P`` in ``[0, C)``.

    Example:
        >>> import torch
        >>> spec = Classification(3)
        >>> spec.decode(torch.tensor([[0.1, 2.0, -1.0]]))
        tensor([1])
    """

    num_classes: int
    kind: ClassVar[str] = "classification"

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.require_int("num_classes", self.num_classes, minimum=2)

    @property
    def out_features(self) -> int:
        return self.num_classes

    def check_target(
        self,
        name: str,
        target: object,
        prefix: tuple[int, ...],
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = _require_target_tensor(name, target)
        _require_shape(name, t, prefix, f"class indices of shape {_shape_text(prefix)} =")
        return _check_indices(name, t, self.num_classes, "class", valid)

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = F.cross_entropy(
            output.reshape(-1, self.num_classes), target.reshape(-1), reduction="none"
        )
        return flat.view(target.shape)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        return output.argmax(dim=-1)

    def metrics(
        self, output: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> dict[str, float]:
        correct = (self.decode(output) == target).to(output.dtype)
        return {
            "accuracy": float(masked_mean(correct, valid)),
            "nll": float(masked_mean(self.elementwise_loss(output, target), valid)),
        }


def _check_indices(
    name: str, t: torch.Tensor, n: int, what: str, valid: torch.Tensor | None
) -> torch.Tensor:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        if t.is_floating_point() and not torch.isfinite(t).all():
            _require_finite(name, t, valid)
        raise TypeError(
            f"target for head {name!r} has dtype {t.dtype} but integer {what} indices "
            "(torch.long) are expected"
        )
    t = t.long()
    check = t if valid is None else t[valid]
    if check.numel() and (check.min() < 0 or check.max() >= n):
        bad = int(check[(check < 0) | (check >= n)][0])
        raise ValueError(
            f"target for head {name!r} has {what} index {bad} outside [0, {n}); the head has "
            f"{n} {what}es"
        )
    if valid is not None:
        # Padded positions may hold anything; the loss must not index with it.
        t = t.masked_fill(~valid, 0)
    return t


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


@dataclass(frozen=True)
class MultiLabel(HeadSpec):
    """Any subset of ``num_labels`` labels; binary cross-entropy per label.

    Output: logits ``(*P, L)``. Target: 0/1 (or bool) ``(*P, L)``. Decodes to a bool
    ``(*P, L)`` (probability above ``threshold``); :meth:`to_python` gives the list of active
    label indices.

    Example:
        >>> import torch
        >>> spec = MultiLabel(3)
        >>> spec.to_python(spec.decode(torch.tensor([2.0, -1.0, 0.5])))
        [0, 2]
    """

    num_labels: int
    threshold: float = 0.5
    kind: ClassVar[str] = "multilabel"

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.require_int("num_labels", self.num_labels, minimum=1)
        _checks.require_number("threshold", self.threshold, above=0, below=1)

    @property
    def out_features(self) -> int:
        return self.num_labels

    def check_target(
        self,
        name: str,
        target: object,
        prefix: tuple[int, ...],
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = _require_target_tensor(name, target)
        what = f"0/1 labels of shape {_shape_text(prefix, 'L')} ="
        _require_shape(name, t, (*prefix, self.num_labels), what)
        if t.is_complex():
            raise TypeError(f"target for head {name!r} has dtype {t.dtype}; 0/1 is expected")
        if t.is_floating_point():
            _require_finite(name, t, valid)
        t = t.float()
        check = t if valid is None else t[valid]
        bad = (check != 0) & (check != 1)
        if bad.any():
            raise ValueError(
                f"target for head {name!r} has value {float(check[bad][0]):.6g}; multi-label "
                "targets must be 0 or 1"
            )
        if valid is not None:
            t = t.masked_fill(~valid.unsqueeze(-1), 0.0)
        return t

    def elementwise_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(output, target.to(output.dtype), reduction="none")
        return bce.mean(dim=-1)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output) > self.threshold

    def metrics(
        self, output: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> dict[str, float]:
        pred = self.decode(output)
        truth = target > 0.5
        if valid is not None:
            pred, truth = pred[valid], truth[valid]
        tp = (pred & truth).sum().item()
        fp = (pred & ~truth).sum().item()
        fn = (~pred & truth).sum().item()
        f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
        return {
            "exact_match": float((pred == truth).all(dim=-1).double().mean()),
            "label_accuracy": float((pred == truth).double().mean()),
            "f1": float(f1),
        }

    def to_python(self, value: torch.Tensor) -> Any:
        return [int(i) for i in value.nonzero().flatten()]


SPECS: dict[str, type[HeadSpec]] = {
    cls.kind: cls for cls in (Classification, Binned, Regression, MultiLabel)
}


def spec_from_config(config: dict[str, Any]) -> HeadSpec:
    """Rebuild a spec from :meth:`HeadSpec.to_config` output.

    Example:
        >>> spec_from_config(Binned(10, low=0.0, high=1.0).to_config())
        Binned(level='example', pooling='mean', hidden=None, num_bins=10, low=0.0, high=1.0)
    """
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"a head config must be a dict with a 'type', got {config!r}")
    kind = config["type"]
    cls = SPECS.get(kind)
    if cls is None:
        raise ValueError(f"unknown head type {kind!r}; known types are {sorted(SPECS)}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(config) - names - {"type"})
    if unknown:
        raise ValueError(f"head config for type {kind!r} has unknown fields {unknown}")
    return cls(**{k: v for k, v in config.items() if k != "type"})


__all__ = [
    "Binned",
    "Classification",
    "HeadSpec",
    "MultiLabel",
    "Regression",
    "masked_mean",
    "spec_from_config",
]
