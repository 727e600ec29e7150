"""The pruning curve's timer."""

import pytest
import torch

from multihead.analysis import median_seconds, seconds_per_forward
from multihead.models import DecoderConfig, DecoderLM


def test_median_seconds_runs_warmup_then_repeats_and_takes_the_median():
    calls, clock = [], iter([0.0, 1.0, 1.0, 4.0, 4.0, 6.0])

    def fn():
        calls.append(1)

    import multihead.analysis.timing as timing

    real = timing.time.perf_counter
    timing.time.perf_counter = lambda: next(clock)
    try:
        assert median_seconds(fn, repeats=3, warmup=2) == 2.0  # times 1, 3, 2
    finally:
        timing.time.perf_counter = real
    assert len(calls) == 5
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(fn, repeats=0)


def test_seconds_per_forward_restores_the_mode_and_builds_no_graph():
    model = DecoderLM(DecoderConfig(vocab_size=16, d_model=16, num_layers=1, num_heads=2))
    model.train()
    assert seconds_per_forward(model, torch.randint(0, 16, (1, 5)), repeats=2) > 0
    assert model.training and all(p.grad is None for p in model.parameters())
