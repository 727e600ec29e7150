"""Head scores and importance figures from the report: cells hold the report's values."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from multihead.viz import head_importance, head_scores
from tests.viz.data import toy_decoder


def test_scores_cells_are_the_report_scaled_per_column():
    _, _, report = toy_decoder()
    fig = head_scores(report)
    ax = fig.axes[0]
    shade = np.asarray(ax.images[0].get_array().filled(np.nan))
    raw = np.array(
        [[h["scores"][n] for n in ("entropy", "previous_token")] for h in report["heads"]]
    )
    want = (raw - raw.min(0)) / (raw.max(0) - raw.min(0))
    np.testing.assert_allclose(shade, want)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[1] == "L0 H1  previous token" and labels[6] == "L1 H2  induction"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["entropy", "previous token"]
    assert len(ax.texts) == raw.size  # values written in the cells
    assert f"{raw[1, 1]:.2f}" in [t.get_text() for t in ax.texts]


def test_scores_choose_columns_mark_missing_and_use_given_axes():
    report = {
        "heads": [
            {"layer": 1, "head": 0, "scores": {"a": 1.0, "b": 5.0}},
            {"layer": 0, "head": 0, "scores": {"a": 3.0}},
        ]
    }
    fig = Figure()
    ax = fig.add_subplot()
    assert head_scores(report, scores=["b", "a"], ax=ax) is fig
    shade = np.asarray(ax.images[0].get_array().filled(np.nan))
    # rows sorted by (layer, head): L0 H0 first; its "b" is missing
    assert np.isnan(shade[0, 0]) and shade[1, 0] == 0.0  # one value: no range
    np.testing.assert_array_equal(shade[:, 1], [1.0, 0.0])


def test_importance_grid_places_heads_by_layer_and_id():
    _, _, report = toy_decoder()
    report["heads"] = [h for h in report["heads"] if (h["layer"], h["head"]) != (2, 1)]  # pruned
    fig = head_importance(report)
    assert isinstance(fig, Figure)
    grid = np.asarray(fig.axes[0].images[0].get_array().filled(np.nan))
    assert grid.shape == (3, 4) and np.isnan(grid[2, 1])
    for h in report["heads"]:
        assert grid[h["layer"], h["head"]] == h["importance"]


def test_importance_from_per_layer_values():
    fig = head_importance([[0.5, 0.25, 1.0], [0.75]])
    grid = np.asarray(fig.axes[0].images[0].get_array().filled(np.nan))
    np.testing.assert_array_equal(grid, [[0.5, 0.25, 1.0], [0.75, np.nan, np.nan]])
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.50", "0.25", "1.00", "0.75"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: head_scores([1]), TypeError, "report must be a mapping"),
        (lambda: head_scores({"heads": []}), ValueError, "empty"),
        (lambda: head_scores({"heads": [{"layer": 0, "head": 0}]}), ValueError, "no scores"),
        (lambda: head_scores({"heads": [{"layer": "0", "head": 0}]}), ValueError, "integer"),
        (
            lambda: head_importance({"heads": [{"layer": 0, "head": 0, "importance": None}]}),
            ValueError,
            "no importance",
        ),
        (lambda: head_importance("x"), TypeError, "importance must be"),
        (lambda: head_importance([]), ValueError, "empty"),
    ],
)
def test_bad_reports_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()
