"""The viewer's encoding decodes back to the input: kept weights within the stated 1/510,
the residual equal to the mass not kept, thumbnails equal to an independent pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multihead.viz.encoding import (
    EDGE_BUDGET,
    MIN_TOP_K,
    as_layers,
    auto_top_k,
    encode_attention,
    encoded_size,
    thumbnails,
)
from tests.viz.data import bidirectional_softmax, causal_softmax, previous_token

QUANT = 1 / 510 + 1e-7  # round(w * 255) / 255 is within half a step


def _decode(enc):
    """Independent reader of the byte layout: rows ordered layer, head, query."""
    rows = enc.tq * sum(enc.heads)
    index = np.frombuffer(enc.index, dtype="<u2").reshape(rows, enc.top_k)
    weight = np.frombuffer(enc.weight, dtype=np.uint8).reshape(rows, enc.top_k) / 255
    rest = np.frombuffer(enc.rest, dtype=np.uint8) / 255
    sq, sk = enc.thumb_shape
    thumbs = np.frombuffer(enc.thumbs, dtype=np.uint8).reshape(sum(enc.heads), sq, sk) / 255
    dense = np.zeros((rows, enc.tk))
    np.put_along_axis(dense, index.astype(np.int64), weight, axis=1)
    return dense, index, weight, rest, thumbs


def _stack(layers):
    return torch.cat([w.reshape(-1, w.shape[-1]) for w in layers]).double().numpy()


def test_every_weight_kept_when_top_k_covers_the_keys():
    layers = [causal_softmax(3, 9, seed=0), causal_softmax(2, 9, seed=1)]  # 3 then 2 heads
    enc = encode_attention(layers, top_k=9)
    dense, _, weight, rest, _ = _decode(enc)
    exact = _stack(layers)
    assert enc.heads == (3, 2) and enc.top_k == 9 and enc.causal
    np.testing.assert_allclose(dense, exact, atol=QUANT, rtol=0)
    assert np.all(np.diff(weight, axis=1) <= 0)  # largest first
    np.testing.assert_allclose(rest, 0.0, atol=QUANT)


def test_top_k_keeps_the_largest_weights_and_the_rest_of_the_mass():
    layers = [bidirectional_softmax(4, 6, 40, seed=2)]
    enc = encode_attention(layers, top_k=5)
    dense, index, _, rest, _ = _decode(enc)
    exact = _stack(layers)
    order = np.argsort(-exact, axis=1, kind="stable")[:, :5]
    assert {tuple(sorted(r)) for r in index} == {tuple(sorted(r)) for r in order}
    kept = np.take_along_axis(exact, order, axis=1)
    np.testing.assert_allclose(np.sort(dense, 1)[:, ::-1][:, :5], kept, atol=QUANT)
    np.testing.assert_allclose(rest, 1.0 - kept.sum(1), atol=QUANT)
    assert not enc.causal


def test_rows_are_laid_out_layer_head_query():
    t = 7
    layers = [causal_softmax(2, t, seed=3), causal_softmax(3, t, seed=4)]
    layers[1][2] = previous_token(t)  # last head of the last layer
    dense, *_ = _decode(encode_attention(layers))
    np.testing.assert_array_equal(dense[-t:], previous_token(t).numpy())


def test_thumbnails_equal_an_independent_pooling():
    w = causal_softmax(2, 130, seed=5)  # 130 rows and keys -> 64 cells, uneven
    got = thumbnails(w, (64, 64)).double().numpy()
    cells = np.arange(130) * 64 // 130
    want = np.zeros((2, 64, 64))
    count = np.bincount(cells, minlength=64)
    exact = w.double().numpy()
    for i in range(130):
        for j in range(130):
            want[:, cells[i], cells[j]] += exact[:, i, j] / count[cells[i]]
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)  # rows still sum to the mass
    enc = encode_attention([w])
    assert enc.thumb_shape == (64, 64)
    np.testing.assert_allclose(_decode(enc)[4], want, atol=QUANT)


def test_small_thumbnails_are_the_maps_themselves():
    w = bidirectional_softmax(2, 5, 8, seed=6)
    enc = encode_attention([w])
    assert enc.thumb_shape == (5, 8)
    np.testing.assert_allclose(_decode(enc)[4], w.double().numpy(), atol=QUANT)


def test_auto_top_k_fits_the_budget():
    assert auto_top_k(rows=12 * 12 * 512, tk=512) == 18
    assert EDGE_BUDGET >= 3 * 12 * 12 * 512 * 18
    assert auto_top_k(rows=10**7, tk=512) == MIN_TOP_K  # huge inputs keep a floor
    assert auto_top_k(rows=10, tk=7) == 7
    enc = encode_attention([causal_softmax(2, 300, seed=7)])
    assert enc.top_k == 300  # 2 * 300 rows * 300 keys * 3 bytes fits
    assert encoded_size(enc) == sum(
        4 * -(-len(b) // 3) for b in (enc.index, enc.weight, enc.rest, enc.thumbs)
    )


def test_layers_may_be_empty_batched_or_one_tensor():
    t = 4
    w = causal_softmax(2, t, seed=8)
    empty = torch.zeros(0, t, t)
    enc = encode_attention([w, empty, w[None]])
    assert enc.heads == (2, 0, 2)
    assert len(enc.rest) == 4 * t
    assert encode_attention(torch.stack([w, w])).heads == (2, 2)  # (L, H, Tq, Tk)
    assert encode_attention([w.numpy().astype(np.float64)]).heads == (2,)


def test_input_is_not_modified():
    w = causal_softmax(1, 5, seed=9)
    w[0, 0, 0] -= 1e-8  # rounding noise below zero is clipped, not written back
    before = w.clone()
    encode_attention([w])
    assert torch.equal(w, before)


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        ("abc", TypeError, "sequence of per-layer"),
        ([], ValueError, "empty"),
        ([torch.rand(4, 4)], ValueError, r"shape \(4, 4\) but \(H, Tq, Tk\)"),
        ([torch.rand(2, 1, 3, 3)], ValueError, r"weights\[l\]\[b\]"),
        ([torch.ones(1, 3, 3, dtype=torch.int64)], TypeError, "floating point"),
        ([torch.rand(1, 3, 3) / 3, torch.rand(1, 4, 4) / 4], ValueError, "same \\(Tq, Tk\\)"),
        ([torch.tensor([[[0.5, float("nan")], [1.0, 0.0]]])], ValueError, "NaN"),
        ([torch.tensor([[[0.5, float("inf")], [1.0, 0.0]]])], ValueError, "infinite"),
        ([-torch.rand(1, 2, 2)], ValueError, "negative"),
        ([torch.full((1, 2, 2), 3.0)], ValueError, "above 1"),
        ([torch.zeros(1, 0, 0)], ValueError, "at least one"),
        ([torch.zeros(1, 1, 65_536)], ValueError, "at most 65535"),
        ([object()], TypeError, r"weights\[0\] must be a tensor"),
    ],
)
def test_bad_weights_are_refused(weights, error, match):
    with pytest.raises(error, match=match):
        as_layers(weights)


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True, "8"])
def test_bad_top_k_is_refused(top_k):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        encode_attention([causal_softmax(1, 3, seed=0)], top_k=top_k)
