"""The learning-rate schedule: linear warmup, then cosine (Loshchilov and Hutter 2017, SGDR)
or linear decay to ``min_lr``, over the steps or the time limit, whichever is further along;
and the DropHead rate schedule (Zhou et al. 2020)."""

from __future__ import annotations

import math

from multihead.train.config import TrainConfig


def lr_at(step: int, config: TrainConfig, elapsed: float | None = None) -> float:
    """Learning rate of step ``step`` (0-based): linear warmup, then cosine to ``min_lr``
    (over the steps, or over ``time_limit`` seconds of training ``elapsed`` if that comes
    first).

    Example:
        >>> cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr=0.0)
        >>> lr_at(4, cfg), lr_at(55, cfg), lr_at(99, cfg) < 1e-3
        (0.5, 0.5, True)
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    if config.time_limit and elapsed is not None:
        progress = max(progress, min(1.0, elapsed / config.time_limit))
    if config.schedule == "linear":
        return config.lr + (config.min_lr - config.lr) * progress
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def drophead_at(step: int, config: TrainConfig, rate: float, elapsed: float | None = None) -> float:
    """DropHead rate of step ``step`` (0-based) for a model configured with ``rate``.

    ``"constant"``: ``rate``. ``"v"`` (Zhou et al. 2020, "Scheduled DropHead: A
    Regularization Method for Transformer Models", Findings of EMNLP): ``rate * |1 - 2 u|``
    with ``u`` the run's progress in [0, 1] (steps, or training time under a time limit,
    whichever is further along), so the rate falls linearly from ``rate`` to 0 at mid-run and
    rises back to ``rate`` at the end: few heads are dropped while the heads specialise early
    on, more later against over-reliance on a few. (The paper's schedule is V-shaped; putting
    the turn at mid-run is this library's choice.) Under ``compile`` the V is rounded to five
    levels (0, rate/4, ..., rate): each new rate would recompile the model.

    Example:
        >>> cfg = TrainConfig(steps=101, drophead_schedule="v")
        >>> [round(drophead_at(s, cfg, 0.2), 3) for s in (0, 25, 50, 75, 100)]
        [0.2, 0.1, 0.0, 0.1, 0.2]
    """
    if config.drophead_schedule == "constant" or rate == 0.0:
        return rate
    progress = min(1.0, step / max(1, config.steps - 1))
    if config.time_limit and elapsed is not None:
        progress = max(progress, min(1.0, elapsed / config.time_limit))
    shape = abs(1.0 - 2.0 * progress)
    if config.compile:
        shape = round(shape * 4) / 4
    return rate * shape
