"""TrainConfig: its errors and its dict round trip."""

import pytest

from multihead.train import TrainConfig


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"task": "sort"}, "task must be one of"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"batch_size": 6, "grad_accum": 4}, "batch_size=6 is not divisible by grad_accum=4"),
        ({"min_lr": 1.0, "lr": 0.1}, "min_lr=1.0 must not exceed lr=0.1"),
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"schedule": "step"}, "schedule must be one of"),
    ],
)
def test_train_config_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw)


def test_dict_round_trip_and_unknown_fields():
    cfg = TrainConfig(task="copy", steps=7, lr=0.5, bf16=True)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields \['stpes'\]"):
        TrainConfig.from_dict({**cfg.to_dict(), "stpes": 3})
