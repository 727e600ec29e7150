"""AttentionMask: rendering against the oracle's definitions, composition, block structure."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead import masks
from tests import mask_parts
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


# ---------------------------------------------------------------------- alignment of parts
def test_parts_keep_their_own_alignment():
    """The issue's case: a non-causal window (top-left) & causal bottom-right, Tq=2, Tk=5.
    Query 0 sits at 0 for the window (keys 0..2) and at 3 for causality (keys 0..3)."""
    m = masks.sliding_window(3, causal=False) & masks.causal(align="bottom_right")
    exp = ref.allowed_matrix(1, 2, 5, window=3) & ref.allowed_matrix(
        1, 2, 5, causal=True, align="bottom_right"
    )
    assert m.render(1, 1, 2, 5)[0, 0].int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    assert torch.equal(m.render(1, 1, 2, 5), exp)
    # The other order is the same mask.
    n = masks.causal(align="bottom_right") & masks.sliding_window(3, causal=False)
    assert torch.equal(n.render(1, 1, 2, 5), exp)


@pytest.mark.parametrize("t", [1, 4, 9])
def test_alignments_do_not_matter_when_tq_equals_tk(t):
    m = masks.sliding_window(3) & masks.causal(align="bottom_right")
    assert torch.equal(m.render(1, 1, t, t), masks.sliding_window(3).render(1, 1, t, t))
    assert m.positional_parts(t, t) == [(True, 3, 0)]  # one part: one comparison per tile
    both = masks.causal() & masks.causal(align="bottom_right")
    assert both.is_plain_causal(t, t)  # still SDPA's fast is_causal path


def test_two_causal_alignments_keep_the_stricter():
    both = masks.causal() & masks.causal(align="bottom_right")
    assert both.is_plain_causal(3, 8)  # top-left is stricter when Tq < Tk
    assert torch.equal(both.render(1, 1, 3, 8), masks.causal().render(1, 1, 3, 8))
    br = masks.causal(align="bottom_right").render(1, 1, 8, 3)
    assert torch.equal(both.render(1, 1, 8, 3), br)  # and bottom-right when Tq > Tk


def test_explicit_query_positions_merge_the_alignments():
    pos = torch.tensor([[2, 3], [5, 6]])
    m = (
        masks.sliding_window(2, causal=False) & masks.causal(align="bottom_right")
    ).with_query_positions(pos)
    exp = ref.allowed_matrix(2, 2, 8, causal=True, window=2, query_positions=pos)
    assert torch.equal(m.render(2, 1, 2, 8).expand_as(exp), exp)


def test_tile_needs_the_shift_when_alignments_differ():
    m = masks.sliding_window(3, causal=False) & masks.causal(align="bottom_right")
    q_pos = m.query_pos(2, 5, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"pass shift=mask.align_shift\(q_len, k_len\)"):
        m.tile(q_pos, 0, 5, 0, 2, dtype=torch.float32)


# ---------------------------------------------------------------------- & over every part
@st.composite
def part_lists(draw):
    """Sizes and 1-5 mask parts of every kind, plus optional explicit query positions."""
    b, h = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    tq, tk = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    return (b, h, tq, tk, *draw(mask_parts.parts_for(b, tq, tk)))


def _same(got, allowed, bias):
    """``got`` (any broadcastable float rendering) equals the hand-combined parts."""
    got = got.expand(allowed.shape)
    assert torch.equal(torch.isneginf(got), ~allowed | torch.isneginf(bias))
    keep = ~torch.isneginf(got)
    torch.testing.assert_close(got[keep], bias[keep], rtol=0, atol=1e-12)


def _assemble_from_plan(m, b, h, tq, tk, block_q, block_k):
    """The whole mask as the blockwise backend sees it: -inf outside each query block's key
    range, structure rendered only on edge columns, the rest of each chunk rendered without
    the structural comparisons (which the plan says every query passes there)."""
    out = torch.full((b, h, tq, tk), -torch.inf, dtype=torch.float64)
    q_pos = m.query_pos(tq, tk, torch.device("cpu"))
    shift = m.align_shift(tq, tk)
    for blk in m.plan_blocks(tq, tk, block_q):
        for k0, k1, edges in blk.chunks(block_k):
            cols = [(a, e, True) for a, e in edges]
            inner = sorted({*range(k0, k1)} - {j for a, e in edges for j in range(a, e)})
            cols += [(j, j + 1, False) for j in inner]
            for a, e, structure in cols:
                allowed, bias = m.tile(
                    q_pos[:, blk.q0 : blk.q1], a, e, blk.q0, blk.q1,
                    dtype=torch.float64, structure=structure, shift=shift,
                )  # fmt: skip
                tile = torch.zeros(b, h, blk.q1 - blk.q0, e - a, dtype=torch.float64)
                if bias is not None:
                    tile = tile + bias
                if allowed is not None:
                    tile = tile.masked_fill(~allowed, -torch.inf)
                out[:, :, blk.q0 : blk.q1, a:e] = tile
    return out


@settings(max_examples=200)
@given(problem=part_lists(), blocks=st.tuples(st.integers(1, 5), st.integers(1, 5)))
def test_and_over_every_part_matches_the_parts_combined_by_hand(problem, blocks):
    b, h, tq, tk = problem[:4]
    m, allowed, bias = mask_parts.build(*problem)
    m.check(b, h, tq, tk, torch.device("cpu"))
    _same(m.render(b, h, tq, tk, dtype=torch.float64, as_float=True), allowed, bias)
    if not m.has_bias:
        got = m.render(b, h, tq, tk)
        exp = allowed if got is not None else torch.ones_like(allowed)
        assert torch.equal(
            (got if got is not None else exp).expand_as(exp), exp & ~torch.isneginf(bias)
        )
    _same(_assemble_from_plan(m, b, h, tq, tk, *blocks), allowed, bias)
    # Block skipping never skips an allowed pair.
    layout = m.block_layout(tq, tk, *blocks)
    bq, bk = blocks
    for i in range(layout.shape[0]):
        for j in range(layout.shape[1]):
            if allowed[..., i * bq : (i + 1) * bq, j * bk : (j + 1) * bk].any():
                assert layout[i, j]


# ---------------------------------------------------------------------- named mistakes
@pytest.mark.parametrize(
    ("build", "error", "pattern"),
    [
        (
            lambda: masks.causal() & torch.ones(3, 3, dtype=torch.bool),
            TypeError,
            r"masks\.dense\(t\)",
        ),
        (
            lambda: torch.ones(3, 3, dtype=torch.bool) & masks.causal(),
            TypeError,
            r"masks\.dense\(t\)",
        ),
        (lambda: masks.causal() & None, TypeError, r"None is no mask.*masks\.none\(\)"),
        (lambda: None & masks.causal(), TypeError, r"None is no mask"),
        (lambda: masks.causal() & 1, TypeError, "got int"),
        (
            lambda: masks.causal().render(1, 1, -1, 3),
            ValueError,
            "q_len must be an integer >= 0, got -1",
        ),
        (lambda: masks.causal().render(1, 1, 3, 2.0), ValueError, "k_len must be an integer >= 0"),
        (lambda: masks.causal().plan_blocks(4, 4, 0), ValueError, "block_q must be a positive"),
        (lambda: masks.causal().block_layout(4, 4, 2, 0), ValueError, "block_k must be a positive"),
        (lambda: masks.sliding_window(3, causal="no"), TypeError, "causal must be a bool.*'no'"),
        (lambda: masks.AttentionMask(causal=1), TypeError, "causal must be a bool"),
        (
            lambda: masks.causal().with_query_positions(torch.tensor([0.5, 1.5])),
            ValueError,
            "positions must be an integer tensor",
        ),
    ],
)
def test_mistakes_are_named(build, error, pattern):
    with pytest.raises(error, match=pattern):
        build()


@pytest.mark.parametrize("bad", [torch.nan, torch.inf])
def test_float_mask_with_nan_or_plus_inf_is_refused(bad):
    t = torch.zeros(2, 3, 4)
    t[1, 2, 3] = bad
    m = masks.dense(t)
    with pytest.raises(
        ValueError,
        match=r"mask \(float\) of shape \(2, 3, 4\) holds 1 NaN or \+inf.*\(1, 0, 2, 3\)",
    ):
        m.check(2, 1, 3, 4, torch.device("cpu"))
    ok = masks.dense(torch.zeros(3, 4).masked_fill(torch.eye(3, 4, dtype=torch.bool), -torch.inf))
    ok.check(2, 1, 3, 4, torch.device("cpu"))  # -inf removes a score: fine


def test_float_parts_add_in_float32():
    """Half-precision float parts are summed in float32 (rounded once when rendered), not
    rounded to bf16 at every ``&``."""
    a = torch.full((2, 2), 1.0, dtype=torch.bfloat16)
    b = torch.full((2, 2), 2.0**-9, dtype=torch.bfloat16)  # below bf16's resolution at 1.0
    m = masks.dense(a) & masks.dense(b) & masks.dense(b)
    assert m.additive.dtype == torch.float32
    assert m.render(1, 1, 2, 2, dtype=torch.float32)[0, 0, 0, 0] == 1.0 + 2.0**-8
