"""The validation dialect of configs: TypeError for a wrong type, ValueError for a value out
of range, each naming the argument, the value and what was expected."""

from __future__ import annotations

import math
import re

import pytest

from multihead import _checks
from multihead.multitask import Classification, MLPConfig
from multihead.train import TrainConfig


def test_require_int():
    assert _checks.require_int("n", 3, minimum=1) == 3
    assert _checks.require_int("n", -5) == -5
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got 0$"):
        _checks.require_int("n", 0, minimum=1)
    for bad in (True, 2.0, "2", None):
        with pytest.raises(TypeError, match=r"^n must be an integer >= 1, got .* \(\w+\)$"):
            _checks.require_int("n", bad, minimum=1)


def test_require_number_bounds_and_messages():
    assert _checks.require_number("x", 2) == 2.0 and isinstance(
        _checks.require_number("x", 2), float
    )
    cases = [
        ({"minimum": 0}, -1, ">= 0"),
        ({"above": 0}, 0, "> 0"),
        ({"maximum": 1}, 2, "<= 1"),
        ({"below": 1}, 1, "< 1"),
        ({"minimum": 0, "below": 1}, 1.0, "in [0, 1)"),
        ({"above": 0, "maximum": 0.5}, 0.0, "in (0, 0.5]"),
    ]
    for bounds, bad, text in cases:
        with pytest.raises(ValueError, match=f"^x must be a finite number {re.escape(text)}, "):
            _checks.require_number("x", bad, **bounds)
    with pytest.raises(ValueError, match="finite number >= 0, got inf"):
        _checks.require_number("x", math.inf, minimum=0)
    assert _checks.require_number("x", math.inf, minimum=0, finite=False) == math.inf
    with pytest.raises(ValueError, match="got nan"):  # NaN fails every comparison: never allowed
        _checks.require_number("x", math.nan, finite=False)
    for bad in (True, "1", None, [1.0]):
        with pytest.raises(TypeError, match=r"^x must be a finite number, got .* \(\w+\)$"):
            _checks.require_number("x", bad)


def test_require_choice_and_bool():
    assert _checks.require_choice("s", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"^s must be one of \('a', 'b'\), got 'c'$"):
        _checks.require_choice("s", "c", ("a", "b"))
    assert _checks.require_bool("flag", False) is False
    for bad in (0, 1, "yes", None):
        with pytest.raises(TypeError, match=r"^flag must be a bool \(True or False\), got "):
            _checks.require_bool("flag", bad)


# The same mistake gives the same error in every config of the library: (config, arguments,
# the argument the message must name first).
WRONG_TYPE = [
    (TrainConfig, {"steps": "10"}, "steps"),
    (TrainConfig, {"steps": True}, "steps"),
    (TrainConfig, {"lr": "1e-3"}, "lr"),
    (TrainConfig, {"bf16": 1}, "bf16"),
    (MLPConfig, {"in_features": 4.0}, "in_features"),
    (MLPConfig, {"in_features": 4, "layer_norm": "no"}, "layer_norm"),
    (Classification, {"num_classes": True}, "num_classes"),
]
BAD_VALUE = [
    (TrainConfig, {"steps": 0}, "steps"),
    (TrainConfig, {"lr": -1.0}, "lr"),
    (TrainConfig, {"lr": math.inf}, "lr"),
    (TrainConfig, {"beta2": 1.0}, "beta2"),
    (MLPConfig, {"in_features": 0}, "in_features"),
    (Classification, {"num_classes": 1}, "num_classes"),
]


@pytest.mark.parametrize(("cls", "kw", "name"), WRONG_TYPE)
def test_a_wrong_type_is_a_type_error(cls, kw, name):
    with pytest.raises(TypeError, match=f"^{name} must be "):
        cls(**kw)


@pytest.mark.parametrize(("cls", "kw", "name"), BAD_VALUE)
def test_a_value_out_of_range_is_a_value_error(cls, kw, name):
    with pytest.raises(ValueError, match=f"^{name} must be "):
        cls(**kw)
