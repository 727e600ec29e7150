"""AttentionMask with explicit key positions (a KV cache's slots): rendering against the
oracle's definitions, the block plan, the blockwise backend and per-head biases."""

from __future__ import annotations

import pytest
import torch

from multihead import masks
from multihead.backends import blockwise
from multihead.backends import math as math_backend
from multihead.positional import ALiBi
from tests import reference as ref


def ring_positions(batch: int, slots: int, written: list[int]) -> torch.Tensor:
    """Key positions of a ring of ``slots`` slots after row b wrote ``written[b]`` tokens
    (slot p % S holds the last position written there, -1 = never written)."""
    kp = torch.full((batch, slots), -1, dtype=torch.long)
    for b, n in enumerate(written):
        for p in range(n):
            kp[b, p % slots] = p
    return kp


CASES = [
    # (causal, window)
    (True, None),
    (True, 3),
    (False, 3),
    (False, None),
]


@pytest.mark.parametrize(("causal", "window"), CASES)
@pytest.mark.parametrize("batched_keys", [False, True])
def test_render_matches_definition_at_key_positions(causal, window, batched_keys):
    tq, tk = 3, 7
    qp = torch.tensor([[9, 10, 11], [4, 5, 6]])  # (B, Tq)
    kp = ring_positions(2, tk, [12, 5]) if batched_keys else torch.tensor([5, 6, 7, -1, 9, 3, 10])
    base = masks.sliding_window(window, causal=causal) if window else masks.none()
    if causal and window is None:
        base = masks.causal()
    m = base.with_query_positions(qp).with_key_positions(kp)
    got = m.render(2, 1, tq, tk)
    exp = ref.allowed_matrix(
        2, tq, tk, causal=causal, window=window, query_positions=qp, key_positions=kp
    )
    assert torch.equal(got.expand_as(exp), exp)


@pytest.mark.parametrize(("causal", "window"), CASES)
def test_block_plan_never_skips_an_allowed_pair(causal, window):
    torch.manual_seed(1)
    tq, tk, bq, bk = 13, 29, 4, 5
    qp = torch.arange(20, 20 + tq)  # (Tq,)
    kp = torch.randperm(40)[:tk]  # positions in no order
    kp[::6] = -1  # some empty slots
    base = masks.sliding_window(window, causal=causal) if window else masks.none()
    if causal and window is None:
        base = masks.causal()
    m = base.with_query_positions(qp).with_key_positions(kp)
    dense = m.render(1, 1, tq, tk)[0, 0]  # (Tq, Tk)
    for blk in m.plan_blocks(tq, tk, bq):
        rows = dense[blk.q0 : blk.q1]
        seen = torch.zeros(tk, dtype=torch.bool)
        for k0, k1, edges in blk.chunks(bk):
            seen[k0:k1] = True
            assert sum(b - a for a, b in edges) == k1 - k0  # no tile is taken as fully visible
        assert not rows[:, ~seen].any(), f"block {blk.q0} skips an allowed key"


def test_block_plan_of_ordered_cache_keys_stays_within_the_window():
    # A linear cache: slot j holds position j, the slots past the row's length are empty.
    s, window = 1024, 16
    kp = torch.arange(s)
    kp[600:] = -1
    m = masks.sliding_window(window).with_query_positions(torch.tensor([599]))
    blocks = m.with_key_positions(kp).plan_blocks(1, s, 64)
    assert [(b.lo, b.hi) for b in blocks] == [(584, 600)]


@pytest.mark.parametrize("window", [None, 4])
def test_blockwise_equals_math_at_key_positions_with_alibi(window):
    torch.manual_seed(0)
    b, hq, hkv, tq, tk, d = 2, 4, 2, 5, 11, 8
    q = torch.randn(b, hq, tq, d, dtype=torch.float64)
    k = torch.randn(b, hkv, tk, d, dtype=torch.float64)
    v = torch.randn(b, hkv, tk, d, dtype=torch.float64)
    qp = torch.tensor([[14, 15, 16, 17, 18], [0, 1, 2, 3, 4]])  # row 1: query 0 sees 1 key
    kp = torch.cat((ring_positions(2, 6, [14, 0]), qp), dim=1)  # (B, S + t): ring, then new
    alibi = ALiBi(hq)
    m = (masks.causal() if window is None else masks.sliding_window(window)) & masks.bias(alibi)
    m = m.with_query_positions(qp).with_key_positions(kp)
    kw = {"mask": m, "scale": d**-0.5, "dropout_p": 0.0, "need_weights": False}
    got, _ = blockwise.forward(q, k, v, block_q=2, block_k=3, **kw)
    exp, _ = math_backend.forward(q, k, v, **kw)
    allowed = ref.allowed_matrix(
        b, tq, tk, causal=True, window=window, query_positions=qp, key_positions=kp
    )
    bias = ref.alibi_bias(alibi.slopes.tolist(), qp, kp.clamp_min(0))
    oracle, _ = ref.attention(q, k, v, allowed=allowed, bias=bias)
    assert ref.max_err(got, oracle) < 1e-12 and ref.max_err(exp, oracle) < 1e-12


def test_head_bias_receives_per_example_key_positions():
    calls = []

    class Recorder(ALiBi):
        def forward(self, q_pos, k_pos, dtype):
            calls.append(tuple(k_pos.shape))
            return super().forward(q_pos, k_pos, dtype)

    kp = torch.tensor([[3, 4, -1], [0, 1, 2]])  # (B, Tk)
    m = masks.bias(Recorder(2)).with_query_positions(torch.tensor([[5], [2]]))
    got = m.with_key_positions(kp).render(2, 2, 1, 3)
    assert calls == [(2, 3)]
    exp = ref.alibi_bias(ALiBi(2).slopes.tolist(), torch.tensor([[5], [2]]), kp)
    assert torch.isneginf(got[0, :, 0, 2]).all()  # the empty slot
    torch.testing.assert_close(got[..., :2].double(), exp[..., :2], atol=1e-6, rtol=0)
    torch.testing.assert_close(got[1].double(), exp[1], atol=1e-6, rtol=0)


def test_composition_and_checks_of_key_positions():
    kp = torch.tensor([0, 1, 2])
    a = masks.causal().with_key_positions(kp)
    both = a & masks.sliding_window(2).with_key_positions(kp.clone())
    assert both.key_positions is not None and not both.is_empty and both.is_structured
    assert "key_positions(3,)" in repr(both)
    with pytest.raises(ValueError, match="different key_positions"):
        a & masks.none().with_key_positions(torch.tensor([2, 1, 0]))
    with pytest.raises(ValueError, match=r"key_positions has shape \(3,\).*\(Tk,\) = \(4,\)"):
        a.check(1, 1, 2, 4, torch.device("cpu"))
    assert not masks.none().with_key_positions(kp).is_noop(1, 3)  # empty slots are masked
    with pytest.raises(TypeError, match="key positions must be an integer tensor"):
        masks.none().with_key_positions(torch.tensor([0.5]))
