"""The base of every head spec and the target checks the specs share.

A spec is a small frozen dataclass. It knows its output size, builds its module, checks targets,
computes its loss (derived from the spec: cross-entropy, Gaussian/MSE, Bernoulli), decodes
outputs into values and computes its metrics. :class:`~multihead.multitask.MultiTaskNetwork` holds
one spec per named head and never special-cases a spec type.

Legend: B batch, T tokens, F trunk features, C classes, N bins, L labels, K regression dims.
``P`` is the leading shape of one head's predictions: ``(B,)`` for an example-level head and
``(B, T)`` for a token-level head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
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
