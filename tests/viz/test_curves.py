"""Loss curve (the phase change found where it is) and the pruning curve."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from multihead.viz import loss_curve, pruning_curve, read_log
from multihead.viz.curves import phase_change


def _sigmoid_drop(at: int, steps=range(0, 1000, 5), noise: float = 0.0):
    rng = np.random.default_rng(0)
    return [
        (s, 4.0 - 2.5 / (1 + math.exp(-(s - at) / 15)) + noise * rng.standard_normal())
        for s in steps
    ]


@pytest.mark.parametrize("at", [150, 420, 800])
def test_phase_change_is_found_where_the_loss_drops(at):
    log = _sigmoid_drop(at, noise=0.05)
    step = phase_change([s for s, _ in log], [v for _, v in log])
    assert abs(step - at) <= 20  # the drop is ~60 steps wide; noise moves the steepest point


def test_no_phase_change_without_a_fall():
    assert phase_change([0, 1, 2, 3, 4, 5], [1, 1, 1, 1, 1, 1]) is None
    assert phase_change(range(10), range(10)) is None  # rising loss
    assert phase_change([0, 1, 2], [3, 2, 1]) is None  # too short


def _write_log(path, log):
    lines = [json.dumps({"type": "train", "step": s, "loss": v, "lr": 1e-3}) for s, v in log]
    lines.insert(3, "not json")
    lines.append(json.dumps({"type": "eval", "step": 500, "val_loss": 1.7, "val_acc": 0.5}))
    path.write_text("\n".join(lines) + "\n")


def test_read_log_parses_train_and_eval_records(tmp_path):
    log = _sigmoid_drop(300)
    _write_log(tmp_path / "log.jsonl", log)
    records = read_log(tmp_path)  # the run directory works as well as the file
    assert records["train"] == [(s, v) for s, v in log]
    assert records["eval"] == [(500, 1.7)]


def test_loss_curve_from_a_log_file_marks_the_drop(tmp_path):
    log = _sigmoid_drop(300)
    _write_log(tmp_path / "log.jsonl", log)
    fig = loss_curve(tmp_path / "log.jsonl")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    train, evals, marker = ax.lines
    np.testing.assert_array_equal(train.get_xdata(), [s for s, _ in log])
    np.testing.assert_array_equal(train.get_ydata(), [v for _, v in log])
    assert list(evals.get_xdata()) == [500]
    assert abs(marker.get_xdata()[0] - 300) <= 10
    assert "steepest drop" in ax.texts[0].get_text()


def test_loss_curve_from_pairs_into_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    got = loss_curve([(0, 3.0), (1, 2.0), (2, 1.5)], ax=ax, mark_phase_change=False, logy=True)
    assert got is fig and len(ax.lines) == 1 and ax.get_yscale() == "log"


@pytest.mark.parametrize(
    ("log", "error", "match"),
    [
        (3, TypeError, "list of \\(step, loss\\) pairs"),
        ([(1, 2, 3)], ValueError, "\\(N, 2\\)"),
        ([], ValueError, "\\(N, 2\\)"),
        ("/nonexistent/log.jsonl", FileNotFoundError, "no training log"),
    ],
)
def test_bad_logs_are_refused(log, error, match):
    with pytest.raises(error, match=match):
        loss_curve(log)


def test_empty_log_file_is_refused(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"type": "eval", "step": 1, "val_loss": 2}\n')
    with pytest.raises(ValueError, match="no training-loss records"):
        read_log(tmp_path / "log.jsonl")


def test_pruning_curve_with_speedup():
    x, y, s = [0.0, 0.25, 0.5], [2.0, 2.1, 2.6], [1.0, 1.3, 1.9]
    fig = pruning_curve(x, y, speedup=s, metric_name="loss", baseline=2.0)
    ax, twin = fig.axes
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 25, 50])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), y)
    assert ax.lines[1].get_ydata()[0] == 2.0  # the unpruned baseline
    np.testing.assert_array_equal(twin.lines[0].get_ydata(), s)
    assert twin.get_ylabel() == "speed-up (×)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "unpruned", "speed-up"]


def test_pruning_curve_into_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert pruning_curve([0, 0.5], [1.0, 0.9], ax=ax, metric_name="accuracy") is fig
    assert ax.get_ylabel() == "accuracy" and len(fig.axes) == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([0, 0.5], [1.0]), {}, "metric has 1 values but fraction has 2"),
        (([0, 1.5], [1.0, 2.0]), {}, "in \\[0, 1\\]"),
        (([0, 0.5], [1.0, float("nan")]), {}, "NaN"),
        (([0, 0.5], [1.0, 2.0]), {"speedup": [1.0]}, "speedup has 1 values"),
        (([0, 0.5], [1.0, 2.0]), {"baseline": float("inf")}, "baseline must be a finite"),
        (("ab", [1.0, 2.0]), {}, "sequence of numbers"),
    ],
)
def test_bad_pruning_curves_are_refused(args, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        pruning_curve(*args, **kwargs)
