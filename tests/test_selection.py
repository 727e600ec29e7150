"""select_heads: the pruned module equals the head-masked original (float64, max abs error
< 1e-12), for MHA/GQA/MQA, packed and separate projections, with and without biases, RoPE and
ALiBi, reordered selections and uneven groups; reselection; state_dict round trips; bad input.
"""

from __future__ import annotations

import copy

import pytest
import torch

from multihead import MultiHeadAttention
from multihead.positional import ALiBi, RotaryEmbedding
from tests import reference as ref

E, D, H = 24, 4, 6
ATOL = 1e-12  # float64; only the order of the sums over heads changes

# (num_kv_heads, query heads to keep, expected kv_index after selection; None = uniform)
SELECTIONS = [
    (6, [4, 0, 5], None),  # MHA: drop and reorder
    (6, [5, 4, 3, 2, 1, 0], None),
    (3, [1, 0, 4, 5], None),  # GQA 2 per group: drop group 1 whole
    (3, [5, 0, 2, 3], [0, 1, 2, 2]),  # groups of 1, 1 and 2: uneven
    (3, [0, 2, 4], None),  # one query head per group: uniform again
    (2, [0, 1, 3], [0, 0, 1]),  # GQA 3 per group -> groups of 2 and 1
    (2, [3, 0, 4], [0, 1, 0]),  # interleaved groups need the map too
    (1, [3, 1], None),  # MQA
]


def build(kind, kv_heads, position, bias, backend="auto", heads=H, kv_index=None):
    torch.manual_seed(0)
    kw = {"kdim": 10, "vdim": 6} if kind == "separate" else {}
    return MultiHeadAttention(
        E,
        heads,
        num_kv_heads=kv_heads,
        head_dim=D,
        bias=bias,
        backend=backend,
        kv_index=kv_index,
        rotary=RotaryEmbedding(D) if position == "rope" else None,
        position_bias=ALiBi(heads) if position == "alibi" else None,
        **kw,
    ).double()


def inputs(kind):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, E, generator=g, dtype=torch.float64)
    if kind == "packed":
        return (x,), {"is_causal": True}
    mem_k = torch.randn(2, 9, 10, generator=g, dtype=torch.float64)
    mem_v = torch.randn(2, 9, 6, generator=g, dtype=torch.float64)
    return (x, mem_k, mem_v), {}


def keep_mask(kept, heads=H):
    hm = torch.zeros(heads, dtype=torch.float64)
    hm[kept] = 1.0
    return hm


@pytest.mark.parametrize("position", ["none", "rope", "alibi"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["packed", "separate"])
@pytest.mark.parametrize(("kv_heads", "kept", "kv_index"), SELECTIONS)
def test_selected_equals_head_masked(kv_heads, kept, kv_index, kind, bias, position):
    mha = build(kind, kv_heads, position, bias)
    args, kw = inputs(kind)
    masked, _ = mha(*args, head_mask=keep_mask(kept), **kw)
    pruned = copy.deepcopy(mha).select_heads(kept)
    out, _ = pruned(*args, **kw)
    assert pruned.num_heads == len(kept)
    assert (pruned.kv_index.tolist() if pruned.kv_index is not None else None) == kv_index
    assert ref.max_err(out, masked) < ATOL


@pytest.mark.parametrize("backend", ["math", "sdpa", "blockwise"])
def test_selected_equals_head_masked_on_every_backend(backend):
    mha = build("packed", 2, "alibi", True, backend=backend)
    args, kw = inputs("packed")
    kept = [4, 0, 1]  # groups of 1 and 2, reordered
    masked, w_masked = mha(*args, head_mask=keep_mask(kept), need_weights=True, **kw)
    out, w = mha.select_heads(kept)(*args, need_weights=True, **kw)
    assert ref.max_err(out, masked) < ATOL
    assert ref.max_err(w, w_masked[:, kept]) < ATOL  # one map per kept query head


def test_select_then_select_again_composes():
    mha = build("packed", 3, "alibi", True)
    args, kw = inputs("packed")
    original = copy.deepcopy(mha)
    mha.select_heads([5, 0, 2, 3])  # uneven: kv_index [0, 1, 2, 2]
    mha.select_heads([3, 0, 1])  # current ids: original heads 3, 5, 0
    assert mha.kv_index is None and mha.num_kv_heads == 3  # one query head per KV head
    masked, _ = original(*args, head_mask=keep_mask([3, 5, 0]), **kw)
    assert ref.max_err(mha(*args, **kw)[0], masked) < ATOL
    assert torch.equal(mha.position_bias.slopes, original.position_bias.slopes[[3, 5, 0]])


def test_explicit_kv_heads_reorder_the_kv_heads():
    mha = build("packed", 3, "none", True)
    args, kw = inputs("packed")
    masked, _ = mha(*args, head_mask=keep_mask([2, 3, 0, 1]), **kw)
    w_k = mha.W_K.detach().clone()
    mha.select_heads([2, 3, 0, 1], kv_heads=[1, 0])
    assert mha.kv_index is None  # [0, 0, 1, 1]: uniform
    assert torch.equal(mha.W_K, w_k[[1, 0]])
    assert ref.max_err(mha(*args, **kw)[0], masked) < ATOL


@pytest.mark.parametrize("kind", ["packed", "separate"])
def test_per_head_views_follow_the_selection(kind):
    mha = build(kind, 3, "none", True)
    before = {n: getattr(mha, n).detach().clone() for n in ("W_Q", "W_K", "W_V", "W_O")}
    biases = {n: getattr(mha, n).detach().clone() for n in ("b_Q", "b_K", "b_V")}
    mha.select_heads([5, 0, 2, 3])  # KV heads 2, 0, 1
    q, kv = [5, 0, 2, 3], [2, 0, 1]
    assert torch.equal(mha.W_Q, before["W_Q"][q]) and torch.equal(mha.W_O, before["W_O"][q])
    assert torch.equal(mha.W_K, before["W_K"][kv]) and torch.equal(mha.W_V, before["W_V"][kv])
    assert torch.equal(mha.b_Q, biases["b_Q"][q]) and torch.equal(mha.b_K, biases["b_K"][kv])
    assert torch.equal(mha.b_V, biases["b_V"][kv])
    with torch.no_grad():
        mha.W_Q[1].zero_()  # still views of the (new) parameters
    weight = mha.in_proj.weight if kind == "packed" else mha.q_proj.weight
    assert (weight[D : 2 * D] == 0).all()


@pytest.mark.parametrize("kind", ["packed", "separate"])
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trip_into_a_module_built_with_the_new_sizes(kind, bias):
    mha = build(kind, 2, "alibi", bias).select_heads([0, 1, 3])
    args, kw = inputs(kind)
    fresh = MultiHeadAttention(
        E,
        3,
        num_kv_heads=2,
        head_dim=D,
        bias=bias,
        kv_index=[0, 0, 1],
        position_bias=ALiBi(3),
        **({"kdim": 10, "vdim": 6} if kind == "separate" else {}),
    ).double()
    fresh.load_state_dict(mha.state_dict())  # strict: same keys and shapes
    assert torch.equal(fresh.position_bias.slopes, mha.position_bias.slopes)
    assert ref.max_err(fresh(*args, **kw)[0], mha(*args, **kw)[0]) == 0.0


def test_zero_query_heads_leave_the_output_bias():
    mha = build("packed", 3, "alibi", True).select_heads([])
    x = torch.randn(2, 5, E, dtype=torch.float64, requires_grad=True)
    out, w = mha(x, is_causal=True, need_weights=True)
    assert out.shape == (2, 5, E) and w.shape == (2, 0, 5, 5)
    assert torch.equal(out, mha.out_proj.bias.expand(2, 5, E))
    assert mha.W_Q.shape == (0, E, D) and mha.num_kv_heads == 0
    out.sum().backward()  # the output no longer depends on x; the bias still trains
    assert x.grad is None and torch.equal(mha.out_proj.bias.grad, torch.full((E,), 10.0).double())
    no_bias = build("packed", 3, "none", False).select_heads([])
    assert torch.equal(no_bias(x)[0], torch.zeros(2, 5, E, dtype=torch.float64))
    rebuilt = MultiHeadAttention(E, 0, head_dim=D).double()
    rebuilt.load_state_dict(mha.state_dict(), strict=False)
    assert torch.equal(rebuilt(x)[0], out)


def test_a_part_shared_with_another_layer_is_left_alone():
    alibi = ALiBi(H)
    a = MultiHeadAttention(E, H, position_bias=alibi)
    b = MultiHeadAttention(E, H, position_bias=alibi)
    a.select_heads([1, 2])
    assert b.position_bias is alibi and alibi.num_heads == H
    assert a.position_bias is not alibi and a.position_bias.num_heads == 2
    shared = ALiBi(1)  # one slope for every head: no per-head state to slice
    c = MultiHeadAttention(E, H, position_bias=shared).select_heads([0])
    assert c.position_bias is shared


class PlainBias:
    """A per-head bias without select_heads."""

    num_heads = H

    def __call__(self, q_pos, k_pos, dtype):
        return torch.zeros(1, H, q_pos.shape[-1], k_pos.shape[-1], dtype=dtype)


@pytest.mark.parametrize(
    ("query", "kv", "error", "pattern"),
    [
        ([0, 0], None, ValueError, "query_heads lists head 0 twice"),
        ([0, 6], None, ValueError, r"query_heads\[1\] = 6 is out of range.*6 query heads"),
        ([-1], None, ValueError, "out of range"),
        ([0, 1.0], None, TypeError, r"query_heads\[1\] = 1.0 is not an integer"),
        ([True], None, TypeError, "is not an integer head id"),
        ("01", None, TypeError, "sequence of integer head ids, got str"),
        (torch.tensor([0.0]), None, TypeError, "1-D integer tensor"),
        ([0, 2], [0], ValueError, "query head 2 is kept but its KV head 1 is not in kv_heads"),
        ([0], [0, 1], ValueError, r"KV head 1 is kept but none of its query heads \[2, 3\]"),
        ([], [0], ValueError, "KV head 0 is kept but none"),
        ([0], [0, 0], ValueError, "kv_heads lists head 0 twice"),
        ([0], [3], ValueError, r"kv_heads\[0\] = 3 is out of range.*3 KV heads"),
    ],
)
def test_bad_selections_raise_and_change_nothing(query, kv, error, pattern):
    mha = build("packed", 3, "alibi", True)
    state = {k: v.clone() for k, v in mha.state_dict().items()}
    with pytest.raises(error, match=pattern):
        mha.select_heads(query, kv)
    assert mha.num_heads == H and mha.num_kv_heads == 3 and mha.kv_index is None
    assert all(torch.equal(v, state[k]) for k, v in mha.state_dict().items())


def test_a_per_head_part_must_implement_select_heads():
    mha = MultiHeadAttention(E, H, position_bias=PlainBias())
    with pytest.raises(TypeError, match="position_bias .PlainBias. has num_heads=6.*select_heads"):
        mha.select_heads([0])
    assert mha.num_heads == H


@pytest.mark.parametrize(
    ("heads", "kv", "kv_index", "pattern"),
    [
        (3, 2, None, "num_kv_heads=2 must divide num_heads=3.*kv_index"),
        (3, 2, [0, 1], "kv_index must list the KV head of each of the num_heads=3"),
        (3, 2, [0, 1, 2], r"kv_index\[2\] = 2 is not a KV head id in \[0, num_kv_heads=2\)"),
        (3, 3, [0, 1, 1], r"leaves KV heads \[2\] without query heads"),
        (3, 2, [0, 1, True], r"kv_index\[2\] = True"),
        (0, 1, None, "num_kv_heads=1 but num_heads=0"),
    ],
)
def test_bad_kv_index(heads, kv, kv_index, pattern):
    with pytest.raises(ValueError, match=pattern):
        MultiHeadAttention(E, heads, num_kv_heads=kv, head_dim=D, kv_index=kv_index)


def test_uniform_kv_index_is_the_plain_gqa_layout():
    mha = MultiHeadAttention(E, 4, num_kv_heads=2, head_dim=D, kv_index=[0, 0, 1, 1])
    assert mha.kv_index is None and "kv_index" not in mha.state_dict()
    uneven = MultiHeadAttention(E, 3, num_kv_heads=2, head_dim=D, kv_index=torch.tensor([1, 0, 1]))
    assert uneven.kv_index.tolist() == [1, 0, 1] and "kv_index=[1, 0, 1]" in repr(uneven)
    assert uneven.kv_heads_of_queries() == [1, 0, 1] and mha.kv_heads_of_queries() == [0, 0, 1, 1]
