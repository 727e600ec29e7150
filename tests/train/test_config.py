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


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"steps": "100"}, TypeError, r"steps must be an integer >= 1, got '100' \(str\)"),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
        ({"lr": float("inf")}, ValueError, "lr must be a finite number >= 0, got inf"),
        ({"lr": float("nan")}, ValueError, "lr must be a finite number >= 0, got nan"),
        ({"val_fraction": 0.0}, ValueError, r"val_fraction must be a finite number in \(0, 0.5\]"),
        ({"bf16": "yes"}, TypeError, r"bf16 must be a bool \(True or False\), got 'yes'"),
        ({"data": 3}, TypeError, "data must be a path or None, got 3"),
        ({"device": "tpu"}, ValueError, r"device must be one of \('auto', 'cpu', 'cuda'\)"),
    ],
)
def test_train_config_checks_types_and_values(kw, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**kw)


def test_a_path_for_data_is_kept_as_text(tmp_path):
    assert TrainConfig(data=tmp_path).data == str(tmp_path)  # the config is saved as JSON
