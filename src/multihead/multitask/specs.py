"""Declarative head specs: what a head predicts, how it is trained and how it is decoded.

A spec is a small frozen dataclass. It knows its output size, builds its module, checks targets,
computes its loss (derived from the spec: cross-entropy, Gaussian/MSE, Bernoulli), decodes
outputs into values and computes its metrics. :class:`~multihead.multitask.MultiTaskNetwork` holds
one spec per named head and never special-cases a spec type.

The base class lives in :mod:`~multihead.multitask.spec_base`, the categorical specs in
:mod:`~multihead.multitask.categorical`, the continuous ones in
:mod:`~multihead.multitask.continuous`; this module is the registry that names them.

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

from dataclasses import fields
from typing import Any

from multihead.multitask.categorical import Classification, MultiLabel
from multihead.multitask.continuous import Binned, Regression
from multihead.multitask.spec_base import LEVELS, POOLINGS, HeadSpec, Level, Pooling, masked_mean

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
    "LEVELS",
    "POOLINGS",
    "Binned",
    "Classification",
    "HeadSpec",
    "Level",
    "MultiLabel",
    "Pooling",
    "Regression",
    "masked_mean",
    "spec_from_config",
]
