"""The learning-rate schedule."""

import pytest

from multihead.train import TrainConfig, lr_at


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)
    linear = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr=0.1, schedule="linear")
    assert lr_at(9, linear) == pytest.approx(1.0)
    assert lr_at(55, linear) == pytest.approx(0.55)  # halfway: (1.0 + 0.1) / 2
    assert lr_at(32, linear) == pytest.approx(1.0 - 0.9 * 22 / 90)
    # With a time limit, whichever of steps and seconds is further along sets the progress.
    timed = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr=0.0, time_limit=10.0)
    assert lr_at(10, timed, elapsed=5.0) == pytest.approx(0.5)
