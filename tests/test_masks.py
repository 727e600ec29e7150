"""AttentionMask: rendering against the oracle's definitions, composition, block structure."""

from __future__ import annotations

import itertools

import pytest
import torch

from multihead import masks
from tests import reference as ref


@pytest.mark.parametrize(
    ("tq", "tk", "causal", "align", "window"),
    [
        (t, s, c, a, w)
        for (t, s), c, a, w in itertools.product(
            [(6, 6), (4, 9), (9, 4), (1, 7)], [False, True], masks.ALIGNS, [None, 1, 3]
        )
    ],
)
def test_render_matches_definition(tq, tk, causal, align, window):
    lengths = [tk, max(0, tk - 2)]
    if window is not None:
        m = masks.sliding_window(window, causal=causal, align=align)
    else:
        m = masks.causal(align=align) if causal else masks.none()
    m = m & masks.key_padding(lengths=torch.tensor(lengths))
    got = m.render(2, 1, tq, tk)
    exp = ref.allowed_matrix(
        2, tq, tk, causal=causal, align=align, window=window, key_lengths=lengths
    )
    assert torch.equal(got.expand_as(exp), exp)


def test_query_positions_override_alignment():
    pos = torch.tensor([[3, 4], [0, 1]])  # (B, Tq): two examples at different offsets
    m = masks.causal().with_query_positions(pos)
    got = m.render(2, 1, 2, 6)
    exp = ref.allowed_matrix(2, 2, 6, causal=True, query_positions=pos)
    assert torch.equal(got.expand_as(exp), exp)


def test_composition_and_polarity():
    pad = torch.tensor([[True, True, False], [True, False, False]])  # True = real key
    dense_bool = torch.tensor([[True, False, True]] * 3)
    m = masks.causal() & masks.key_padding(mask=pad) & masks.dense(dense_bool)
    got = m.render(2, 1, 3, 3)[:, 0].int()
    assert got.tolist() == [
        [[1, 0, 0], [1, 0, 0], [1, 0, 0]],
        [[1, 0, 0], [1, 0, 0], [1, 0, 0]],
    ]
    # Float parts add; bool parts render to -inf in the float form.
    bias = torch.full((3, 3), 0.5)
    f = (masks.causal() & masks.dense(bias) & masks.dense(bias)).render(1, 1, 3, 3)
    assert f.dtype == torch.float32
    assert f[0, 0, 2, 0] == 1.0 and torch.isneginf(f[0, 0, 0, 2])


def test_window_and_lengths_take_the_tighter_value():
    a = masks.sliding_window(5) & masks.sliding_window(2)
    assert a.window == 2
    b = masks.key_padding(lengths=torch.tensor([4, 2])) & masks.key_padding(
        lengths=torch.tensor([3, 3])
    )
    assert b.key_lengths.tolist() == [3, 2]


def test_noop_and_plain_causal():
    assert masks.none().is_noop(4, 4)
    assert masks.causal(align="bottom_right").is_noop(1, 9)  # one decoding query sees all
    assert not masks.causal().is_noop(1, 9)
    assert masks.causal().is_plain_causal(5, 9)
    assert masks.causal(align="bottom_right").is_plain_causal(5, 5)
    assert not masks.causal(align="bottom_right").is_plain_causal(5, 9)
    assert not (masks.causal() & masks.key_padding(lengths=[1])).is_plain_causal(5, 5)


@pytest.mark.parametrize("window", [None, 3, 8])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("align", masks.ALIGNS)
def test_block_layout_never_skips_an_allowed_pair(window, causal, align):
    tq, tk, bq, bk = 23, 31, 4, 5
    if window is not None:
        m = masks.sliding_window(window, causal=causal, align=align)
    else:
        m = masks.causal(align=align) if causal else masks.none()
    m = m & masks.key_padding(lengths=torch.tensor([20, 31]))
    dense = m.render(2, 1, tq, tk).expand(2, 1, tq, tk)[:, 0].any(dim=0)  # (Tq, Tk)
    layout = m.block_layout(tq, tk, bq, bk)
    for i in range(layout.shape[0]):
        for j in range(layout.shape[1]):
            tile = dense[i * bq : (i + 1) * bq, j * bk : (j + 1) * bk]
            if tile.any():
                assert layout[i, j], f"block ({i}, {j}) holds allowed pairs but is skipped"


def test_block_layout_skips_what_structure_forbids():
    layout = masks.causal().block_layout(64, 64, 16, 16)
    assert layout.sum() == 10  # lower triangle of a 4 x 4 block grid
    win = masks.sliding_window(16).block_layout(1024, 1024, 16, 16)
    assert win.sum(dim=1).max() == 2  # a window of one block touches two key blocks


def test_render_shapes_broadcast():
    m = masks.key_padding(lengths=torch.tensor([2, 3]))
    assert m.render(2, 4, 5, 3).shape == (2, 1, 1, 3)  # no (Tq, Tk) tensor for padding alone
    assert masks.causal().render(2, 4, 5, 3).shape == (1, 1, 5, 3)


@pytest.mark.parametrize(
    ("build", "error", "pattern"),
    [
        (lambda: masks.sliding_window(0), ValueError, "window must be a positive integer"),
        (lambda: masks.causal(align="center"), ValueError, "align must be one of"),
        (lambda: masks.key_padding(), ValueError, "exactly one of lengths= or mask="),
        (
            lambda: masks.key_padding(lengths=torch.tensor([1.5])),
            ValueError,
            "1-D integer tensor",
        ),
        (
            lambda: masks.key_padding(mask=torch.ones(2, 3)),
            ValueError,
            r"bool tensor \(B, Tk\) with True = real key",
        ),
        (lambda: masks.dense(torch.ones(2, 2, 2, 2, 2)), ValueError, "5-D"),
        (lambda: masks.dense([[True]]), TypeError, "torch.Tensor"),
        (lambda: masks.bias(lambda q, k, d: q), TypeError, "HeadBias"),
    ],
)
def test_bad_masks(build, error, pattern):
    with pytest.raises(error, match=pattern):
        build()


def test_check_names_the_wrong_part():
    m = masks.causal().with_query_positions(torch.arange(4))
    with pytest.raises(ValueError, match=r"query_positions has shape \(4,\)"):
        m.check(2, 1, 5, 5, torch.device("cpu"))


def test_errors_show_the_shape_the_user_gave():
    m = masks.causal() & masks.dense(torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask \(bool\) has shape \(5, 5\)"):
        m.check(2, 4, 5, 6, torch.device("cpu"))
