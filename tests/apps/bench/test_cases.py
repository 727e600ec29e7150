"""Cases and competitors: FLOP counting, masks, skipping, and every competitor running."""

from __future__ import annotations

import pytest
import torch

from multihead_apps.bench.cases import (
    CASES,
    COMPETITORS,
    DIRECTIONS,
    FWD,
    FWD_BWD,
    Case,
    Inputs,
    get_cases,
    get_competitor,
    label,
)

TINY = [
    Case("tiny", 2, 16, 32, 4),
    Case("tiny-causal", 2, 16, 32, 4, "causal"),
    Case("tiny-window", 1, 16, 32, 4, "window", window=4),
]


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.name)
def test_pairs_count_the_allowed_mask(case):
    allowed = Inputs.make(case).allowed()
    expected = case.seq**2 if allowed is None else int(allowed.sum())
    assert case.pairs() == expected


def test_forward_flops_by_hand():
    c = Case("c", 2, 16, 32, 4)  # D = 8
    proj = 2 * 2 * 16 * 32 * (3 * 32) + 2 * 2 * 16 * 32 * 32
    attention = 4 * 2 * 4 * 16 * 16 * 8
    assert c.forward_flops() == proj + attention
    assert c.flops(FWD_BWD) == 3 * c.flops(FWD)
    gqa_proj = 2 * 2 * 16 * 32 * (32 + 2 * 2 * 8) + 2 * 2 * 16 * 32 * 32
    assert c.forward_flops(kv_heads=2) == gqa_proj + attention


def test_window_mask_polarity():
    case = Case("w", 1, 6, 8, 2, "window", window=2)
    inputs = Inputs.make(case)
    allowed = inputs.allowed()
    assert allowed[3].tolist() == [False, False, True, True, False, False]
    assert torch.equal(inputs.blocked(), ~allowed)


def test_case_validation():
    with pytest.raises(ValueError, match="window"):
        Case("bad", 1, 8, 8, 2, "window")
    with pytest.raises(ValueError, match="divisible"):
        Case("bad", 1, 8, 10, 3)


def test_get_cases():
    assert [c.name for c in get_cases("t2048,b8-t256")] == ["t2048", "b8-t256"]
    assert all(c.quick for c in get_cases(quick=True))
    assert len(get_cases()) == len(CASES)
    with pytest.raises(ValueError, match="unknown case 'nope'"):
        get_cases("nope")


def test_skip_reasons():
    big = Case("big", 1, 8192, 512, 8)
    math = get_competitor("mh-math")
    assert "GiB" in math.skip_reason(big, FWD, mem_limit_bytes=2**30)
    assert math.skip_reason(big, FWD, mem_limit_bytes=2**40) is None
    assert get_competitor("mh-blockwise").skip_reason(big, FWD_BWD, 2**30) is None
    assert get_competitor("torch-mha-eval").skip_reason(big, FWD_BWD, 2**40) is not None
    assert "tril" in get_competitor("tutorial").skip_reason(TINY[2], FWD, 2**40)


def test_labels_name_the_backend_auto_picks():
    assert label(get_competitor("mh-auto"), TINY[0], FWD).endswith("[sdpa]")
    long_window = Case("lw", 1, 4096, 64, 2, "window", window=64)
    assert label(get_competitor("mh-auto"), long_window, FWD).endswith("[blockwise]")
    # compat receives the window as a dense mask, which auto serves with sdpa
    assert label(get_competitor("compat"), long_window, FWD).endswith("[sdpa]")


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.name)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_competitor_runs(case, direction):
    inputs = Inputs.make(case)
    for comp in COMPETITORS:
        if comp.skip_reason(case, direction, 2**40) is not None:
            continue
        call = comp.make_call(inputs, direction)
        call()
        call()  # twice: gradients are reset, not accumulated into a stale graph


def test_tutorial_matches_fused_module():
    """The baseline is the model `from_head_list` fuses: equal outputs (causal)."""
    from multihead.attention import MultiHeadAttention
    from multihead_apps.bench.baselines import TutorialMultiHead

    torch.manual_seed(0)
    tut = TutorialMultiHead(32, 4, block_size=16)
    fused = MultiHeadAttention.from_head_list(tut.heads, tut.proj)
    x = torch.randn(2, 16, 32)
    torch.testing.assert_close(fused(x, is_causal=True)[0], tut(x), atol=1e-5, rtol=1e-5)


def test_sdpa_linear_matches_multihead():
    from multihead.attention import MultiHeadAttention
    from multihead_apps.bench.baselines import SdpaLinear

    torch.manual_seed(0)
    ref = SdpaLinear(32, 4)
    mh = MultiHeadAttention(32, 4)
    with torch.no_grad():
        mh.in_proj.weight.copy_(ref.qkv.weight)
        mh.in_proj.bias.copy_(ref.qkv.bias)
        mh.out_proj.weight.copy_(ref.proj.weight)
        mh.out_proj.bias.copy_(ref.proj.bias)
    x = torch.randn(2, 16, 32)
    torch.testing.assert_close(mh(x, is_causal=True)[0], ref(x, is_causal=True))
