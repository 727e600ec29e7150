"""A small wall-clock timer for the pruning curve: the median of repeated calls.

The benchmarks (``benchmarks/pruning.py``) time competitors interleaved in shuffled rounds
(:mod:`multihead_apps.bench.timing`); this is the in-library measurement a pruning curve
records at each point, so it stays simple: warm-up calls, then the median of ``repeats``.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, d_model=16, num_layers=1, num_heads=2))
    >>> seconds_per_forward(model, torch.randint(0, 16, (1, 8)), repeats=3) > 0
    True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from multihead import _checks


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones
    (CUDA work is synchronized before each clock read)."""
    _checks.require_int("repeats", repeats, minimum=1)
    _checks.require_int("warmup", warmup, minimum=0)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def seconds_per_forward(
    model: nn.Module, tokens: torch.Tensor, *, repeats: int = 5, warmup: int = 1
) -> float:
    """Median seconds of ``model(tokens)`` in eval mode under ``torch.no_grad`` (the model's
    mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return median_seconds(lambda: model(tokens), repeats=repeats, warmup=warmup)
    finally:
        model.train(was_training)
