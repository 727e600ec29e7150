"""What a :class:`~multihead.multitask.MultiTaskNetwork` forward returns, and the checks on
the names and specs of its heads.

Legend: B batch, T tokens, F trunk features; ``P`` is a head's leading shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch

from multihead.multitask.specs import HeadSpec

TRUNK = "trunk"


class HeadOutputs(Mapping[str, torch.Tensor]):
    """The per-head outputs of one forward pass: ``outputs[name]`` is that head's output
    (logits ``(*P, C|N|L)``, or values ``P`` / ``(*P, K)`` for regression).

    Attributes:
        features: the trunk's output, ``(B, F)`` or ``(B, T, F)``.
        mask: bool ``(B, T)``, True = real token, for sequence trunks (None = all real).
    """

    def __init__(
        self,
        outputs: dict[str, torch.Tensor],
        *,
        features: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> None:
        self._outputs = outputs
        self.features = features
        self.mask = mask

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._outputs[name]
        except KeyError:
            raise KeyError(
                f"no output for head {name!r}; this forward pass computed {list(self._outputs)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._outputs.items())
        return f"HeadOutputs({shapes})"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a head name must be a non-empty string, got {name!r}")
    if "." in name:
        raise ValueError(f"head name {name!r} must not contain '.' (it names a submodule)")
    if name == TRUNK:
        raise ValueError(f"head name {name!r} collides with the trunk; choose another name")
    return name


def _named_specs(
    heads: Mapping[str, HeadSpec] | Iterable[tuple[str, HeadSpec]],
) -> list[tuple[str, HeadSpec]]:
    items = list(heads.items()) if isinstance(heads, Mapping) else list(heads)
    if not items:
        raise ValueError("heads must name at least one head, got none")
    seen: set[str] = set()
    out = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"heads must be a mapping or (name, spec) pairs, got item {item!r}")
        name, spec = _check_name(item[0]), item[1]
        if name in seen:
            raise ValueError(f"head name {name!r} is given twice; head names must be unique")
        if not isinstance(spec, HeadSpec):
            raise TypeError(
                f"head {name!r} has spec {type(spec).__name__}; a HeadSpec (Classification, "
                "Binned, Regression, MultiLabel) is expected"
            )
        seen.add(name)
        out.append((name, spec))
    return out
