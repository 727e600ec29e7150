"""KV cache: decoding with the cache equals the full forward, for every position type, GQA,
sliding windows (linear and ring), and batches of prompts of different lengths."""

import pytest
import torch

from multihead.cache import KVCache
from multihead.models import DecoderConfig, DecoderLM

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


@pytest.mark.parametrize(("window", "ring"), [(None, False), (4, True)])
def test_batched_prompts_of_different_lengths_equal_one_at_a_time(window, ring):
    model = tiny("rope", 2, window)
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


def test_compiled_decode_step_fullgraph():
    # Positions live in cache tensors, so a decode step traces without graph breaks.
    model = tiny("rope", num_kv_heads=2)
    x = torch.randint(0, 40, (1, 10))
    cache = model.new_cache(1, 32)
    with torch.no_grad():
        model(x[:, :6], cache=cache)
        step = torch.compile(lambda t: model(t, cache=cache), fullgraph=True)
        outs = [step(x[:, i : i + 1]) for i in range(6, 10)]
        torch.testing.assert_close(torch.cat(outs, 1), model(x)[:, 6:], atol=1e-5, rtol=1e-5)
