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


def test_drophead_schedule_is_constant_or_v_shaped():
    from multihead.train import drophead_at

    const = TrainConfig(steps=11)
    assert [drophead_at(s, const, 0.3) for s in (0, 5, 10)] == [0.3, 0.3, 0.3]
    v = TrainConfig(steps=11, drophead_schedule="v")
    rates = [drophead_at(s, v, 0.3) for s in range(11)]
    assert rates[0] == pytest.approx(0.3) and rates[10] == pytest.approx(0.3)
    assert rates[5] == pytest.approx(0.0)
    assert rates[:6] == sorted(rates[:6], reverse=True) and rates[5:] == sorted(rates[5:])
    assert rates[2] == pytest.approx(0.3 * (1 - 2 * 0.2))  # linear in the progress
    # A time limit further along than the steps sets the progress; compile rounds to 5 levels.
    timed = TrainConfig(steps=100, time_limit=10.0, drophead_schedule="v")
    assert drophead_at(0, timed, 0.3, elapsed=5.0) == pytest.approx(0.0)
    compiled = TrainConfig(steps=11, drophead_schedule="v", compile=True)
    levels = {round(drophead_at(s, compiled, 0.4), 9) for s in range(11)}
    assert levels <= {0.0, 0.1, 0.2, 0.3, 0.4}
    with pytest.raises(ValueError, match="drophead_schedule must be one of"):
        TrainConfig(drophead_schedule="w")
