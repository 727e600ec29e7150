"""Observation points: observers read beside the fast path (the output is bit-identical), the
points and weights match a float64 reference, GQA gives one map per query head, a KV cache
gives the new tokens' rows over the cache keys, and nothing is built when nobody observes."""

from __future__ import annotations

import importlib

import pytest
import torch

from multihead import MultiHeadAttention, masks
from multihead.cache import KVCache
from multihead.observation import AttentionPoints
from multihead.positional import ALiBi, RotaryEmbedding
from tests import reference as ref

E, D = 24, 4


def build(heads=6, kv_heads=3, kv_index=None, alibi=True, rotary=False, backend="auto", **kw):
    torch.manual_seed(0)
    return MultiHeadAttention(
        E,
        heads,
        num_kv_heads=kv_heads,
        head_dim=D,
        kv_index=kv_index,
        position_bias=ALiBi(heads) if alibi else None,
        rotary=RotaryEmbedding(D) if rotary else None,
        backend=backend,
        **kw,
    )


def record(mha):
    seen: list[AttentionPoints] = []
    return seen, mha.add_observer(seen.append)


def expanded_keys(points):
    kv = points.module.kv_heads_of_queries()
    return points.k[:, kv], points.v[:, kv]  # (B, Hq, Tk, D): one KV head per query head


@pytest.mark.parametrize("backend", ["sdpa", "blockwise", "math"])
@pytest.mark.parametrize("kv_index", [None, [0, 1, 1, 2, 2, 2]], ids=["gqa", "uneven"])
def test_observing_leaves_the_output_bit_identical(backend, kv_index):
    mha = build(kv_index=kv_index, rotary=True, backend=backend)
    x = torch.randn(2, 9, E)
    plain, _ = mha(x, mask=masks.sliding_window(4))
    maps = []
    handle = mha.add_observer(lambda p: maps.append(p.weights()))
    observed, _ = mha(x, mask=masks.sliding_window(4))
    assert torch.equal(observed, plain) and maps[0].shape == (2, 6, 9, 9)
    handle.remove()
    assert torch.equal(mha(x, mask=masks.sliding_window(4))[0], plain) and len(maps) == 1


@pytest.mark.parametrize("kv_index", [None, [0, 1, 1, 2, 2, 2]], ids=["gqa", "uneven"])
def test_points_and_weights_match_the_float64_reference(kv_index):
    mha = build(kv_index=kv_index).double()
    x = torch.randn(2, 7, E, dtype=torch.float64)
    lengths = torch.tensor([7, 4])
    seen, _ = record(mha)
    out, _ = mha(x, mask=masks.key_padding(lengths=lengths), is_causal=True)
    p = seen[0]
    # Queries and keys from the per-head weight views, written out.
    q = torch.einsum("bte,hed->bhtd", x, mha.W_Q) + mha.b_Q[None, :, None]
    k = torch.einsum("bte,hed->bhtd", x, mha.W_K) + mha.b_K[None, :, None]
    assert ref.max_err(p.q, q) < 1e-12 and ref.max_err(p.k, k) < 1e-12
    assert p.k.shape == (2, 3, 7, D) and p.scale == D**-0.5
    allowed = ref.allowed_matrix(2, 7, 7, causal=True, key_lengths=lengths.tolist())
    pos = torch.arange(7).expand(2, 7)
    bias = ref.alibi_bias(mha.position_bias.slopes.tolist(), pos, pos)
    k_exp, v_exp = expanded_keys(p)
    z, w = ref.attention(p.q, k_exp, v_exp, allowed=allowed, bias=bias)
    assert ref.max_err(p.weights(), w) < 1e-12 and ref.max_err(p.out, z) < 1e-12
    merged = torch.einsum("bhtd,hde->bte", p.out, mha.W_O) + mha.out_proj.bias
    assert ref.max_err(out, merged) < 1e-12
    assert torch.equal(p.kv_index, mha.kv_index) if kv_index else p.kv_index is None


def test_weights_in_float32_are_within_twice_torchs_own_error():
    mha = build(kv_heads=6, alibi=False)
    x = torch.randn(2, 33, E)
    seen, _ = record(mha)
    mha(x, is_causal=True)
    p = seen[0]
    allowed = ref.allowed_matrix(2, 33, 33, causal=True)
    _, w64 = ref.attention(p.q.double(), p.k.double(), p.v.double(), allowed=allowed)
    s = (p.q @ p.k.transpose(-1, -2)) * p.scale  # torch's own float32 weights
    own = torch.softmax(s.masked_fill(~allowed, -torch.inf), dim=-1)
    assert ref.max_err(p.weights(), w64) <= ref.tolerance(ref.max_err(own, w64))


def test_head_mask_and_shared_weights_between_observers():
    mha = build()
    x = torch.randn(1, 5, E)
    a, _ = record(mha)
    b, _ = record(mha)
    hm = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 1.0])
    _, returned = mha(x, head_mask=hm, need_weights=True)
    assert a[0] is b[0] and a[0].weights() is returned  # computed once, reused
    assert (a[0].out[:, 1] == 0).all() and (returned[:, 1] == 0).all()
    assert torch.equal(a[0].head_mask, hm)


def test_weights_before_dropout_in_training():
    mha = build(dropout=0.5, backend="math").train()
    seen, _ = record(mha)
    _, dropped = mha(torch.randn(1, 6, E), need_weights=True)
    rows = seen[0].weights().sum(dim=-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))  # softmax rows, not dropped out
    assert not torch.equal(seen[0].weights(), dropped)


@pytest.mark.parametrize("ring", [False, True])
def test_with_a_cache_the_weights_are_the_new_rows_over_the_cache_keys(ring):
    mha = build(kv_index=[0, 1, 1, 2, 2, 2], rotary=True).double()
    x = torch.randn(2, 9, E, dtype=torch.float64)
    mask = masks.sliding_window(4)
    _, full = mha(x, mask=mask, need_weights=True)  # (B, Hq, T, T)
    cache = KVCache(
        num_layers=1,
        batch_size=2,
        max_len=9,
        num_kv_heads=3,
        head_dim=D,
        window=4,
        ring=ring,
        dtype=torch.float64,
    )
    seen, _ = record(mha)
    with torch.no_grad():
        for i0, i1 in ((0, 6), (6, 8), (8, 9)):
            pos = torch.arange(i0, i1)
            cache.begin(pos)
            mha(x[:, i0:i1], mask=mask, positions=pos, cache=cache.layers[0])
    for p, (i0, i1) in zip(seen, ((0, 6), (6, 8), (8, 9))):
        w = p.weights()  # (B, Hq, t, Tk): Tk = S (linear) or S + t (ring)
        assert w.shape[:3] == (2, 6, i1 - i0) and not w.requires_grad
        assert w.shape[-1] == (4 + i1 - i0 if ring else 9)
        q_pos, k_pos = p.positions()
        assert q_pos.tolist() == [list(range(i0, i1))]
        by_position = torch.zeros(2, 6, i1 - i0, 9, dtype=torch.float64)
        for j in range(w.shape[-1]):  # scatter each key column to its position
            for b in range(2):
                if k_pos[b, j] >= 0:
                    by_position[b, :, :, int(k_pos[b, j])] += w[b, :, :, j]
        assert ref.max_err(by_position, full[:, :, i0:i1]) < 1e-12


@pytest.mark.parametrize("kv_index", [None, [2, 0, 1, 1, 0, 2]], ids=["gqa", "uneven"])
def test_weights_by_rows_equal_the_weights(kv_index):
    mha = build(kv_index=kv_index).double()
    x = torch.randn(2, 11, E, dtype=torch.float64)
    seen, _ = record(mha)
    lengths = torch.tensor([11, 0])  # example 1 has no key at all: its rows are 0
    mha(x, mask=masks.key_padding(lengths=lengths) & masks.sliding_window(5))
    p = seen[0]
    blocks = list(p.weights_by_rows(block=4))
    assert [(q0, q1) for q0, q1, _ in blocks] == [(0, 4), (4, 8), (8, 11)]
    rows = torch.cat([w for _, _, w in blocks], dim=2)
    assert ref.max_err(rows, p.weights()) < 1e-12 and (rows[1] == 0).all()
    with pytest.raises(ValueError, match="block must be a positive integer"):
        next(p.weights_by_rows(block=0))


def test_nothing_is_built_when_nobody_observes(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("AttentionPoints built without an observer")

    mha = build()
    x = torch.randn(1, 4, E)
    attention_module = importlib.import_module("multihead.attention")
    monkeypatch.setattr(attention_module, "AttentionPoints", refuse)
    mha(x)
    mha.add_observer(lambda p: None).remove()
    mha(x)
    with pytest.raises(TypeError, match="fn must be callable"):
        mha.add_observer("not a function")


def test_compile_fullgraph_without_observers():
    mha = build(kv_index=[0, 1, 1, 2, 2, 2], rotary=True).eval()
    mha.add_observer(lambda p: None).remove()
    x = torch.randn(2, 8, E)
    try:
        compiled = torch.compile(mha, fullgraph=True)
        with torch.no_grad():
            out, _ = compiled(x, is_causal=True)
    except RuntimeError as err:  # no C++ compiler for inductor on this platform
        if "compiler" in str(err).lower() and "not found" in str(err).lower():
            pytest.skip(f"inductor cannot compile on this platform: {err}")
        raise
    with torch.no_grad():
        torch.testing.assert_close(out, mha(x, is_causal=True)[0], atol=1e-5, rtol=1e-5)
