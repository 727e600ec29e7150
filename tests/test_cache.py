"""KV cache: decoding with the cache equals the full forward, for every position type, GQA,
sliding windows (linear and ring), and batches of prompts of different lengths."""

import pytest
import torch

from multihead import MultiHeadAttention, masks
from multihead.cache import KVCache
from multihead.models import DecoderConfig, DecoderLM
from multihead.positional import ALiBi, RotaryEmbedding
from tests import reference as ref

POSITIONS = ["rope", "alibi", "sinusoidal", "learned", "none"]


def tiny(position="rope", num_kv_heads=None, window=None, **kw):
    torch.manual_seed(0)
    cfg = DecoderConfig(
        vocab_size=40,
        max_seq_len=64,
        d_model=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=num_kv_heads,
        window=window,
        position=position,
        **kw,
    )
    return DecoderLM(cfg).eval()


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize(
    ("kv", "window", "ring"), [(None, None, False), (2, None, False), (1, 5, False), (2, 5, True)]
)
def test_cached_logits_equal_full_forward(position, kv, window, ring):
    model = tiny(position, kv, window)
    x = torch.randint(0, 40, (2, 20))
    full = model(x)
    cache = model.new_cache(2, 30, ring=ring)
    parts = [model(x[:, :7], cache=cache)]  # a prefill longer than the ring
    for i in range(7, 20, 3):  # then chunks, and single tokens at the end
        parts.append(model(x[:, i : i + 3], cache=cache))
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.lengths.tolist() == [20, 20]


@pytest.mark.parametrize("position", ["rope", "alibi"])
@pytest.mark.parametrize(("window", "ring"), [(None, False), (4, False), (4, True)])
def test_batched_prompts_of_different_lengths_equal_one_at_a_time(position, window, ring):
    model = tiny(position, 2, window)
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11]]
    cache = model.new_cache(3, 16, ring=ring)
    padded = torch.zeros(3, 6, dtype=torch.long)
    for i, p in enumerate(prompts):
        padded[i, : len(p)] = torch.tensor(p)
    cache.set_prompt_lengths(torch.tensor([6, 2, 3]))
    batched = model(padded, cache=cache)
    assert cache.lengths.tolist() == [6, 2, 3]
    step = model(torch.tensor([[3], [4], [5]]), cache=cache)  # each row at its own position
    for i, p in enumerate(prompts):
        single = model(torch.tensor([[*p, 3 + i]]))
        torch.testing.assert_close(batched[i, : len(p)], single[0, : len(p)], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(step[i, 0], single[0, -1], atol=1e-5, rtol=1e-5)


def test_cache_stores_only_kv_heads_and_ring_is_window_sized():
    model = tiny("rope", num_kv_heads=1, window=8)
    linear = model.new_cache(2, 100, ring=False)
    ring = model.new_cache(2, 100)
    assert linear.layers[0].k.shape == (2, 1, 100, 8)  # (B, Hkv, S, D)
    assert ring.layers[0].k.shape == (2, 1, 9, 8)  # window slots + one never-read trash slot
    assert len(linear.layers) == 2


def test_cache_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ring=True needs a window"):
        KVCache(num_layers=1, batch_size=1, max_len=8, num_kv_heads=1, head_dim=4, ring=True)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        KVCache(num_layers=1, batch_size=1, max_len=8, num_kv_heads=1, head_dim=4, window=0)
    cache = KVCache(num_layers=1, batch_size=2, max_len=8, num_kv_heads=2, head_dim=4)
    with pytest.raises(ValueError, match=r"\(B, Hkv\)"):
        cache.layers[0].update(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4), torch.arange(1))
    with pytest.raises(ValueError, match="lengths has shape"):
        cache.set_prompt_lengths(torch.tensor([1, 2, 3]))


def test_reset_forgets_positions():
    model = tiny()
    cache = model.new_cache(1, 10)
    model(torch.tensor([[1, 2, 3]]), cache=cache)
    cache.reset()
    assert cache.lengths.tolist() == [0]
    torch.testing.assert_close(
        model(torch.tensor([[4, 5]]), cache=cache),
        model(torch.tensor([[4, 5]])),
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    ("position", "window", "ring"), [("rope", None, False), ("alibi", 4, True)]
)
def test_compiled_decode_step_fullgraph(position, window, ring):
    # Positions live in cache tensors, so a decode step traces without graph breaks.
    model = tiny(position, num_kv_heads=2, window=window)
    x = torch.randint(0, 40, (1, 10))
    cache = model.new_cache(1, 32, ring=ring)
    with torch.no_grad():
        model(x[:, :6], cache=cache)
        step = torch.compile(lambda t: model(t, cache=cache), fullgraph=True)
        outs = [step(x[:, i : i + 1]) for i in range(6, 10)]
        torch.testing.assert_close(torch.cat(outs, 1), model(x)[:, 6:], atol=1e-5, rtol=1e-5)


def test_begin_plans_the_write_and_key_positions_is_a_pure_read():
    linear = KVCache(num_layers=2, batch_size=2, max_len=5, num_kv_heads=1, head_dim=2)
    linear.set_prompt_lengths(torch.tensor([3, 1]))
    linear.begin(torch.arange(3))  # a right-padded prefill: row 1 has one real token
    assert linear.lengths.tolist() == [3, 1]
    expected = [[0, 1, 2, -1, -1], [0, -1, -1, -1, -1]]  # padding is an empty slot
    assert linear.key_positions().tolist() == expected
    assert linear.key_positions().tolist() == expected and linear.lengths.tolist() == [3, 1]
    assert linear.layers[1].key_positions().tolist() == expected
    ring = KVCache(
        num_layers=1, batch_size=1, max_len=20, num_kv_heads=1, head_dim=2, window=3, ring=True
    )
    ring.begin(torch.arange(4))
    assert ring.key_positions().tolist() == [[-1, -1, -1, 0, 1, 2, 3]]  # (B, S + t)
    ring.layers[0].update(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2), torch.arange(4))
    ring.begin(torch.tensor([4]))
    assert ring.key_positions().tolist() == [[3, 1, 2, 4]]  # slot p % 3 holds p
    assert ring.lengths.tolist() == [5]


def test_a_write_needs_its_plan():
    cache = KVCache(num_layers=1, batch_size=1, max_len=8, num_kv_heads=1, head_dim=2)
    layer, kv = cache.layers[0], torch.zeros(1, 1, 2, 2)
    with pytest.raises(RuntimeError, match=r"call KVCache.begin\(positions\)"):
        layer.update(kv, kv, torch.arange(2))
    with pytest.raises(RuntimeError, match="no write is planned"):
        layer.key_positions()
    cache.begin(torch.arange(3))
    with pytest.raises(ValueError, match="k has 2 new tokens.*begin planned 3"):
        layer.update(kv, kv, torch.arange(2))
    cache.begin(torch.arange(2))
    layer.update(kv, kv, torch.arange(2))
    with pytest.raises(RuntimeError, match="no write is planned"):  # a plan is written once
        layer.update(kv, kv, torch.arange(2))
    for bad in (torch.zeros(2, 1, dtype=torch.long), torch.tensor([0.5]), torch.tensor([])):
        with pytest.raises(ValueError, match="positions has shape"):
            cache.begin(bad)


def test_per_layer_kv_heads():
    cache = KVCache(num_layers=3, batch_size=1, max_len=4, num_kv_heads=[2, 0, 1], head_dim=8)
    assert [layer.k.shape[1] for layer in cache.layers] == [2, 0, 1]
    with pytest.raises(ValueError, match="num_kv_heads lists 2 counts but num_layers=3"):
        KVCache(num_layers=3, batch_size=1, max_len=4, num_kv_heads=[2, 1], head_dim=8)
    with pytest.raises(ValueError, match=r"num_kv_heads\[1\] must be an integer >= 0"):
        KVCache(num_layers=2, batch_size=1, max_len=4, num_kv_heads=[2, -1], head_dim=8)


@pytest.mark.parametrize("ring", [False, True])
@pytest.mark.parametrize(
    ("heads", "kv_heads", "kv_index"),
    [(4, 4, None), (4, 2, None), (4, 1, None), (3, 2, [0, 1, 1])],
    ids=["mha", "gqa", "mqa", "uneven"],
)
def test_attention_module_with_a_cache_equals_its_full_forward(ring, heads, kv_heads, kv_index):
    """No model around it: MultiHeadAttention with RoPE, a per-head ALiBi and a window masks at
    the cache's key positions, linear or ring, exactly as the full causal forward does."""
    torch.manual_seed(0)
    window = 4
    mha = MultiHeadAttention(
        24,
        heads,
        num_kv_heads=kv_heads,
        head_dim=8,
        kv_index=kv_index,
        rotary=RotaryEmbedding(8),
        position_bias=ALiBi(heads),
    ).double()
    x = torch.randn(2, 11, 24, dtype=torch.float64)
    mask = masks.sliding_window(window)
    full, _ = mha(x, mask=mask)
    cache = KVCache(
        num_layers=1,
        batch_size=2,
        max_len=11,
        num_kv_heads=kv_heads,
        head_dim=8,
        window=window,
        ring=ring,
        dtype=torch.float64,
    )
    parts = []
    for i0, i1 in ((0, 6), (6, 7), (7, 10), (10, 11)):  # a prefill longer than the ring
        pos = torch.arange(i0, i1)
        cache.begin(pos)
        parts.append(mha(x[:, i0:i1], mask=mask, positions=pos, cache=cache.layers[0])[0])
    assert cache.layers[0].k.shape[1] == kv_heads  # the cache stores the KV heads only
    assert ref.max_err(torch.cat(parts, dim=1), full) < 1e-12
