"""Every plot returns a Figure, draws into a given Axes (also inside a subfigure) and saves
as non-empty PNG and SVG; save() picks the format by suffix."""

from __future__ import annotations

import math

import pytest
from matplotlib.figure import Figure

from multihead.viz import (
    attention_grid,
    attention_heatmap,
    head_importance,
    head_scores,
    loss_curve,
    pruning_curve,
    save,
)
from multihead.viz.figures import root_figure
from tests.viz.data import TOKENS, causal_softmax, toy_decoder

_, _WEIGHTS, _REPORT = toy_decoder()
PLOTS = {
    "attention_heatmap": lambda ax: attention_heatmap(_WEIGHTS[0][1], TOKENS, ax=ax),
    "attention_grid": lambda ax: attention_grid(_WEIGHTS, ax=ax),
    "head_scores": lambda ax: head_scores(_REPORT, ax=ax),
    "head_importance": lambda ax: head_importance(_REPORT, ax=ax),
    "pruning_curve": lambda ax: pruning_curve([0, 0.5], [1.0, 1.2], speedup=[1, 1.6], ax=ax),
    "loss_curve": lambda ax: loss_curve(
        [(s, 3 - 2 / (1 + math.exp(-(s - 50) / 5))) for s in range(100)], ax=ax
    ),
}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_saves_png_and_svg(name, tmp_path):
    fig = PLOTS[name](None)
    assert isinstance(fig, Figure)
    png = save(fig, tmp_path / f"{name}.png")
    svg = save(fig, tmp_path / "sub" / f"{name}.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    text = svg.read_text()
    assert "<svg" in text and "</svg>" in text and len(text) > 2000


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_draws_into_a_given_axes_of_a_subfigure(name):
    fig = Figure()
    sub = fig.subfigures(1, 2)[1]
    ax = sub.add_subplot()
    assert PLOTS[name](ax) is fig
    assert ax.has_data() or ax.images


def test_save_picks_the_format_by_suffix(tmp_path):
    fig = attention_heatmap(causal_softmax(1, 3, seed=0)[0])
    assert save(fig, tmp_path / "a.PDF").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match=r"suffix '\.jpeg'; expected one of"):
        save(fig, tmp_path / "a.jpeg")
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        save("fig", tmp_path / "a.png")


def test_axes_must_be_axes():
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        attention_heatmap(causal_softmax(1, 3, seed=0)[0], ax="left")


def test_root_figure_of_nested_subfigures():
    fig = Figure()
    inner = fig.subfigures(1, 2)[0].subfigures(2, 1)[1]
    assert root_figure(inner.add_subplot()) is fig
