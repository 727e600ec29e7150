"""Confidence intervals: t quantiles against published table values; doctests of the package."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest

from multihead.multitask import mean_ci, t_quantile


@pytest.mark.parametrize(
    ("df", "expected"),
    # Two-sided 95 % critical values from any Student t table.
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (199, 1.9720)],
)
def test_t_quantile_matches_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_limits():
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert t_quantile(0.5, 5) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="p must be in"):
        t_quantile(0.2, 5)


def test_mean_ci_by_hand():
    xs = [0.1, 0.4, 0.35, 0.8, 0.05]
    mean = sum(xs) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / 4)
    est = mean_ci(xs)
    assert est.mean == pytest.approx(mean)
    assert est.high - est.mean == pytest.approx(2.7764 * sd / math.sqrt(5), rel=1e-4)
    assert est.mean - est.low == pytest.approx(est.high - est.mean)
    with pytest.raises(ValueError, match="at least 2 values"):
        mean_ci([1.0])


@pytest.mark.parametrize(
    "module", ["specs", "trunks", "network", "weighting", "stats"], ids=lambda m: m
)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"multihead.multitask.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
