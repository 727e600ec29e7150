"""The learning-rate schedule: linear warmup, then cosine (Loshchilov and Hutter 2017, SGDR)
or linear decay to ``min_lr``, over the steps or the time limit, whichever is further along."""

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
