"""FLOP counts against torch's own FLOP counter and brute-force pair counts."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from multihead.analysis import attended_pairs, attention_flops, forward_flops, prune_heads
from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("t", [1, 5, 9])
@pytest.mark.parametrize("window", [None, 1, 3, 20])
def test_attended_pairs_count_the_allowed_matrix(t, window):
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    causal = j <= i
    two_sided = torch.ones(t, t, dtype=torch.bool)
    if window is not None:
        causal &= i - j < window
        two_sided &= (i - j).abs() < window
    assert attended_pairs(t, causal=True, window=window) == int(causal.sum())
    assert attended_pairs(t, causal=False, window=window) == int(two_sided.sum())


def counted(model, tokens):
    with FlopCounterMode(display=False) as counter:
        model(tokens)
    return counter.get_total_flops()


def test_forward_flops_equal_torchs_counter_on_dense_attention():
    # The math backend computes every score, so torch counts T^2 pairs: compare the count
    # for an unmasked encoder, and a decoder counted as if unmasked.
    torch.manual_seed(0)
    enc = Encoder(
        EncoderConfig(vocab_size=30, d_model=32, num_layers=2, num_heads=4, backend="math")
    )
    x = torch.randint(0, 30, (1, 7))
    assert forward_flops(enc, 7) == counted(enc, x)
    dec = DecoderLM(
        DecoderConfig(vocab_size=30, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                      backend="math")
    )  # fmt: skip
    prune_heads(dec, {0: [1, 2], 1: [3]})
    assert forward_flops(dec, 7, causal=False) == counted(dec, x)
    causal_saving = 4 * (7 * 7 - 28) * 8 * (2 + 3)  # 4 P Hq D summed over layers: 49 -> 28
    assert attention_flops(dec, 7, causal=False) - attention_flops(dec, 7) == causal_saving


def test_pruning_half_the_heads_halves_the_head_dependent_flops():
    cfg = DecoderConfig(vocab_size=30, d_model=32, num_layers=2, num_heads=4)
    full = attention_flops(DecoderLM(cfg), 16)
    half = attention_flops(prune_heads(DecoderLM(cfg), {0: [0, 1], 1: [2, 3]}), 16)
    assert half * 2 == full  # projections, scores and values all scale with the heads
