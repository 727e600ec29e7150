"""Multi-task networks: named heads on a shared trunk (Caruana 1997).

* :mod:`~multihead.multitask.specs`: declarative head specs (classification, binned, regression,
  multi-label), each with its loss, decoding and metrics.
* :mod:`~multihead.multitask.trunks`: the trunk contract, an MLP trunk, pooling, trunk registry.
* :mod:`~multihead.multitask.network`: :class:`MultiTaskNetwork` (forward, losses, metrics,
  predict, freeze, add_head, save/load through :mod:`multihead.checkpoint`).
* :mod:`~multihead.multitask.weighting`: fixed, uncertainty (Kendall et al. 2018), GradNorm
  (Chen et al. 2018) and PCGrad (Yu et al. 2020) loss weighting.
* :mod:`~multihead.multitask.stats`: confidence intervals for held-out metrics.

See ``docs/multitask.md`` for a guide.
"""

from multihead.multitask.network import HeadOutputs, MultiTaskNetwork
from multihead.multitask.specs import (
    Binned,
    Classification,
    HeadSpec,
    MultiLabel,
    Regression,
    spec_from_config,
)
from multihead.multitask.stats import Estimate, mean_ci, t_quantile
from multihead.multitask.trunks import MLP, MLPConfig, TransformerTrunk, pool, register_trunk
from multihead.multitask.weighting import (
    WEIGHTINGS,
    FixedWeighting,
    GradNorm,
    LossWeighting,
    PCGrad,
    UncertaintyWeighting,
    make_weighting,
    pcgrad_project,
)

__all__ = [
    "MLP",
    "WEIGHTINGS",
    "Binned",
    "Classification",
    "Estimate",
    "FixedWeighting",
    "GradNorm",
    "HeadOutputs",
    "HeadSpec",
    "LossWeighting",
    "MLPConfig",
    "MultiLabel",
    "MultiTaskNetwork",
    "PCGrad",
    "Regression",
    "TransformerTrunk",
    "UncertaintyWeighting",
    "make_weighting",
    "mean_ci",
    "pcgrad_project",
    "pool",
    "register_trunk",
    "spec_from_config",
    "t_quantile",
]
