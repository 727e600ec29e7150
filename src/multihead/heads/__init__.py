"""Multi-task networks: named heads on a shared trunk (Caruana 1997).

* :mod:`~multihead.heads.specs`: declarative head specs (classification, binned, regression,
  multi-label), each with its loss, decoding and metrics.
* :mod:`~multihead.heads.trunks`: the trunk contract, an MLP trunk, pooling, trunk registry.
* :mod:`~multihead.heads.network`: :class:`MultiTaskNetwork` (forward, losses, metrics,
  predict, freeze, add_head, save/load through :mod:`multihead.checkpoint`).
* :mod:`~multihead.heads.weighting`: fixed, uncertainty (Kendall et al. 2018), GradNorm
  (Chen et al. 2018) and PCGrad (Yu et al. 2020) loss weighting.
* :mod:`~multihead.heads.stats`: confidence intervals for held-out metrics.

See ``docs/heads.md`` for a guide.
"""

from multihead.heads.network import HeadOutputs, MultiTaskNetwork
from multihead.heads.specs import (
    Binned,
    Classification,
    HeadSpec,
    MultiLabel,
    Regression,
    spec_from_config,
)
from multihead.heads.stats import Estimate, mean_ci, t_quantile
from multihead.heads.trunks import MLP, MLPConfig, TransformerTrunk, pool, register_trunk
from multihead.heads.weighting import (
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
