"""Compiled decode steps: greedy tokens and logits match eager decoding, a compiled step is
reused while the weights are unchanged and never outlives a change of them, and misuse is
named. Each compile of this tiny model takes seconds, so the module compiles three times."""

from __future__ import annotations

import gc

import pytest
import torch

from multihead.models import DecoderConfig, DecoderLM, compiled_decode

# fp32 logits of a 2-layer, width-64 model: fused loops sum in other orders than eager ones.
ATOL, RTOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def model() -> DecoderLM:
    torch.manual_seed(0)
    cfg = DecoderConfig(
        vocab_size=97,
        d_model=64,
        num_heads=4,
        num_kv_heads=2,
        num_layers=2,
        max_seq_len=64,
        tie_embeddings=False,
    )
    return DecoderLM(cfg).eval()


PROMPTS = [[5, 6, 7, 8, 9], [1, 2], [40, 41, 42]]  # ragged: each row at its own position


def test_compiled_greedy_equals_eager_and_is_reused(model):
    eager = model.generate(PROMPTS, max_new_tokens=12)
    assert model.generate(PROMPTS, max_new_tokens=12, compile=True) == eager
    assert compiled_decode.compiled_steps(model) == 1
    step = compiled_decode.step_for(model, 3, 5 + 12)  # the batch and cache length used above
    # the same batch size and cache length again: the step and its cache are reused
    other = [[9, 8, 7], [6, 5, 4, 3, 2], [1]]
    assert model.generate(other, max_new_tokens=12, compile=True) == model.generate(
        other, max_new_tokens=12
    )
    assert compiled_decode.step_for(model, 3, 17) is step
    assert compiled_decode.compiled_steps(model) == 1


def test_compiled_step_logits_match_the_eager_step(model):
    step = compiled_decode.step_for(model, 2, 12)
    cache, eager_cache = step.cache, model.new_cache(2, 12)
    cache.reset()
    tokens = torch.tensor([[3, 4, 5], [6, 7, 8]])
    with torch.no_grad():
        for c in (cache, eager_cache):
            model.transform_cached(tokens, torch.arange(3), c)
        for token in ([[9], [10]], [[11], [12]]):
            feed = torch.tensor(token)
            got = step(feed, cache.next_positions(1))  # (B, V)
            pos = eager_cache.next_positions(1)
            want = model.head(model.transform_cached(feed, pos, eager_cache)[:, -1])
            torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(cache.lengths, eager_cache.lengths)


def test_a_weight_change_compiles_a_new_step_with_the_new_weights(model):
    old = model.generate(PROMPTS, max_new_tokens=12, compile=True)
    with torch.no_grad():
        model.head.weight.add_(torch.randn_like(model.head.weight))  # in place: same tensor
    try:
        eager = model.generate(PROMPTS, max_new_tokens=12)
        assert eager != old  # the change matters to greedy decoding
        assert model.generate(PROMPTS, max_new_tokens=12, compile=True) == eager
        assert compiled_decode.compiled_steps(model) == 1  # the stale step was dropped
    finally:
        compiled_decode.release(model)
    assert compiled_decode.compiled_steps(model) == 0


def test_fingerprint_sees_in_place_changes_and_replaced_parameters(model):
    before = compiled_decode.fingerprint(model)
    with torch.no_grad():
        model.head.weight.mul_(1.0)
    assert compiled_decode.fingerprint(model) != before
    layer = DecoderLM(model.config)
    assert compiled_decode.fingerprint(layer) != compiled_decode.fingerprint(model)


def test_compile_needs_the_cache_and_a_bool(model):
    with pytest.raises(ValueError, match="compile=True .* needs use_cache=True"):
        model.generate(PROMPTS, max_new_tokens=2, compile=True, use_cache=False)
    with pytest.raises(TypeError, match="compile"):
        model.generate(PROMPTS, max_new_tokens=2, compile="yes")


def test_steps_go_with_their_model():
    torch.manual_seed(1)
    cfg = DecoderConfig(vocab_size=11, d_model=16, num_heads=2, num_layers=1, max_seq_len=16)
    small = DecoderLM(cfg).eval()
    compiled_decode.step_for(small, 1, 4)  # compiled lazily: nothing runs yet
    n = len(compiled_decode._STEPS)
    del small
    gc.collect()
    assert len(compiled_decode._STEPS) == n - 1
