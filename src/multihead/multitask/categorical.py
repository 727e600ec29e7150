"""Categorical heads: one class of C (:class:`Classification`) or any subset of L labels
(:class:`MultiLabel`).

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
    _check_indices,
    _require_finite,
    _require_shape,
    _require_target_tensor,
    _shape_text,
    masked_mean,
)


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
