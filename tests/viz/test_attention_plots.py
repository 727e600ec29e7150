"""Attention heatmap and layers x heads grid: the pixels shown are the input weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from multihead.viz import attention_grid, attention_heatmap
from multihead.viz.encoding import thumbnails
from multihead.viz.tokens import readable_tokens
from tests.viz.data import TOKENS, bidirectional_softmax, causal_softmax


def test_heatmap_image_is_the_weights_with_token_labels():
    w = causal_softmax(1, len(TOKENS), seed=0)[0]  # (T, T)
    fig = attention_heatmap(w, TOKENS, title="L0 H0")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), w.double().numpy())
    labels = readable_tokens(TOKENS).labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert ax.images[0].get_clim() == (0.0, float(w.max()))
    assert ax.get_title() == "L0 H0" and len(fig.axes) == 2  # the colour bar


def test_heatmap_draws_into_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot(1, 2, 2)
    w = bidirectional_softmax(1, 3, 5, seed=1)[0]
    got = attention_heatmap(w, ["a", "b", "c"], key_tokens=list("vwxyz"), ax=ax, colorbar=False)
    assert got is fig and len(ax.images) == 1 and len(fig.axes) == 1
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), w.double().numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == list("vwxyz")


def test_heatmap_thins_labels_of_long_inputs():
    w = causal_softmax(1, 200, seed=2)[0]
    ax = attention_heatmap(w, ["t"] * 200, max_labels=50).axes[0]
    assert len(ax.get_yticks()) == 50 and ax.get_yticks()[1] == 4


@pytest.mark.parametrize(
    ("weights", "tokens", "match"),
    [
        (torch.rand(2, 3, 3), None, r"\(Tq, Tk\) map is expected"),
        (torch.ones(3, 3, dtype=torch.int64), None, "floating point"),
        (torch.rand(3, 3), ["a"], "tokens has 1 tokens"),
    ],
)
def test_heatmap_refuses_bad_input(weights, tokens, match):
    with pytest.raises((ValueError, TypeError), match=match):
        attention_heatmap(weights, tokens)


def _cell(image: np.ndarray, layer: int, head: int, side: int, gap: int) -> np.ndarray:
    r, c = layer * (side + gap), head * (side + gap)
    return image[r : r + side, c : c + side]


def test_grid_cells_are_the_heads_maps():
    t = 9
    layers = [causal_softmax(3, t, seed=3), causal_softmax(2, t, seed=4)]  # pruned: 3, 2
    fig = attention_grid(layers, head_ids=[[0, 1, 2], [0, 2]])
    ax = fig.axes[0]
    image = np.asarray(ax.images[0].get_array().filled(np.nan))
    gap = 1
    for l, w in enumerate(layers):
        for h in range(w.shape[0]):
            np.testing.assert_allclose(_cell(image, l, h, t, gap), w[h].double(), atol=1e-6)
    assert np.isnan(_cell(image, 1, 2, t, gap)).all()  # layer 1 has no third head
    assert np.isnan(image[t, :]).all()  # the gap between layers
    assert [x.get_text() for x in ax.texts] == ["0", "1", "2", "0", "2"]


def test_grid_pools_long_inputs_and_draws_into_axes():
    w = causal_softmax(2, 100, seed=5)
    fig = Figure()
    ax = fig.add_subplot()
    assert attention_grid([w], ax=ax) is fig
    image = np.asarray(ax.images[0].get_array().filled(np.nan))
    assert image.shape == (64, 64 * 2 + 8)
    np.testing.assert_allclose(image[:, :64], thumbnails(w, (64, 64))[0].double(), atol=1e-6)


def test_grid_refuses_mismatched_head_ids():
    with pytest.raises(ValueError, match=r"head_ids\[0\] has 1 ids but weights\[0\] has 2"):
        attention_grid([causal_softmax(2, 3, seed=0)], head_ids=[[0]])
