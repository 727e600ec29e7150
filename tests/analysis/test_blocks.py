"""visible_blocks and weight_map: tiles over the visible keys rebuild the core's map."""

import pytest
import torch

from multihead import MultiHeadAttention
from multihead import _hugepages as hugepages
from multihead.analysis import blocks
from multihead.analysis.blocks import visible_blocks, weight_map
from multihead.masks import dense, key_padding, sliding_window
from multihead.models import DecoderConfig, DecoderLM


def observed(mha, *args, **kwargs):
    """Run ``mha`` once; returns the AttentionPoints its observer saw."""
    seen = []
    handle = mha.add_observer(seen.append)
    with torch.no_grad():
        mha(*args, **kwargs)
    handle.remove()
    return seen[0]


def masks(t):
    lengths = torch.tensor([t, t - 3, 0])  # the last example has no real key: empty rows
    allowed = torch.rand(3, t, t) > 0.3
    return {
        "none": {},
        "causal": dict(is_causal=True),
        "window": dict(mask=sliding_window(4)),
        "window_not_causal": dict(mask=sliding_window(5, causal=False)),
        "lengths": dict(mask=key_padding(lengths=lengths), is_causal=True),
        "padding": dict(mask=key_padding(mask=torch.arange(t) < lengths[:, None])),
        "dense": dict(mask=dense(allowed)),
        "additive": dict(mask=dense(torch.randn(3, 1, t, t, dtype=torch.float64))),
    }


@pytest.mark.parametrize("kind", list(masks(11)))
@pytest.mark.parametrize("kv", [4, 2, 1])
@pytest.mark.parametrize("elements", [1, 64, 1 << 19])
def test_weight_map_equals_the_cores_weights(kind, kv, elements, monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(blocks, "MAP_ELEMENTS", elements)  # 1: one row per tile
    if elements == 64:  # the map on huge pages (where the kernel offers them), however small
        monkeypatch.setattr(hugepages, "MIN_BYTES", 0)
    mha = MultiHeadAttention(32, 4, num_kv_heads=kv, dtype=torch.float64)
    x = torch.randn(3, 11, 32, dtype=torch.float64)
    head_mask = torch.tensor([1.0, 0.5, 0.0, 2.0], dtype=torch.float64)
    p = observed(mha, x, head_mask=head_mask, **masks(11)[kind])
    ref = p.weights()  # (B, Hq, Tq, Tk): the core's softmax, checked against the oracle
    torch.testing.assert_close(weight_map(p, [0, 1, 2, 3], 4), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weight_map(p, [3, 1], 256), ref[:, [3, 1]], rtol=0, atol=1e-12)


def test_weight_map_of_cross_attention_and_of_a_ring_cache():
    torch.manual_seed(1)
    mha = MultiHeadAttention(16, 2, dtype=torch.float64)
    x, mem = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    p = observed(mha, x, mem)
    torch.testing.assert_close(weight_map(p, [0, 1], 2), p.weights(), rtol=0, atol=1e-12)
    model = DecoderLM(
        DecoderConfig(num_layers=1, d_model=32, num_heads=4, vocab_size=40, window=4)
    ).eval()
    tokens = torch.randint(0, 40, (2, 9))
    cache = model.new_cache(2, 9)  # a window of 4: the cache is a ring of 4 slots
    seen = []
    model.blocks[0].attn.add_observer(seen.append)
    with torch.no_grad():
        model(tokens[:, :6], cache=cache)
        model(tokens[:, 6:8], cache=cache)
    for p in seen:
        torch.testing.assert_close(weight_map(p, [0, 1, 2, 3], 1), p.weights(), atol=1e-6, rtol=0)


def test_weight_map_of_half_inputs_is_computed_in_float32():
    torch.manual_seed(2)
    mha = MultiHeadAttention(32, 4, dtype=torch.bfloat16)
    p = observed(mha, torch.randn(1, 9, 32, dtype=torch.bfloat16), is_causal=True)
    got = weight_map(p, [0, 1, 2, 3], 4)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, p.weights(), atol=4e-3, rtol=0)  # bfloat16 rounding


@pytest.mark.parametrize("window", [None, 3])
def test_visible_blocks_rebuild_the_full_map(window):
    mha = MultiHeadAttention(32, 4, num_kv_heads=2)
    x = torch.randn(2, 9, 32)
    got = []

    def observe(p):
        full = torch.zeros_like(p.weights())
        spans = []
        for q0, q1, k0, k1, w, _, _ in visible_blocks(p, 4):
            full[:, :, q0:q1, k0:k1] = w
            spans.append((q0, q1, k0, k1))
        got.append((full, p.weights(), spans))

    mha.add_observer(observe)
    mask = key_padding(lengths=torch.tensor([9, 6]))
    if window is not None:
        mask = mask & sliding_window(window)
    mha(x, mask=mask, is_causal=True, head_mask=torch.tensor([1.0, 0.5, 1.0, 0.0]))
    full, ref, spans = got[0]
    torch.testing.assert_close(full, ref)
    assert spans[0] == (0, 4, 0, 4)  # causal: the first block sees only its own keys
