"""The blockwise backend: O(T) memory in forward and backward, skipped blocks, tile sizes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from multihead import masks
from multihead.backends import blockwise
from multihead.functional import attention
from tests import reference as ref
from tests.backends.test_registry import _Shapes


def _qkv(t, b=1, h=4, d=16, requires_grad=True):
    return [torch.randn(b, h, t, d, requires_grad=requires_grad) for _ in range(3)]


@pytest.mark.parametrize("mask", ["full", "causal"])
def test_memory_is_linear_in_sequence_length(mask):
    """No tensor of Tq * Tk elements exists at any point of forward + backward, and what
    autograd keeps between them is O(T)."""
    t = 2048
    q, k, v = _qkv(t)
    m = masks.causal() if mask == "causal" else None
    saved = []

    def pack(x):
        saved.append(x.numel())
        return x

    with _Shapes() as rec, torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out, _ = attention(q, k, v, mask=m, backend="blockwise")
        out.sum().backward()
    largest = max(torch.Size(s).numel() for _, s in rec.shapes)
    assert largest <= blockwise.TILE_ELEMENTS, f"largest intermediate {largest} elements"
    assert largest < t * t
    assert sum(saved) <= 5 * 4 * t * 16  # q, k, v, out (4 heads x T x 16) and lse


def _flops(t, m):
    q, k, v = _qkv(t, requires_grad=False)
    with FlopCounterMode(display=False) as counter:
        attention(q, k, v, mask=m, backend="blockwise")
    return counter.get_total_flops()


def test_causal_costs_about_half_and_a_window_costs_o_t_w():
    t = 4096
    full = _flops(t, None)
    assert full == 4 * 4 * t * t * 16  # two matmuls over every (query, key) pair
    causal = _flops(t, masks.causal())
    assert 0.45 < causal / full < 0.6
    window = _flops(t, masks.sliding_window(128))
    # Each query touches at most window + block_q - 1 keys: O(T * W), not O(T^2).
    bq, _ = blockwise.choose_blocks(1, 4, t, t, 128)
    assert window <= 4 * 4 * t * (128 + bq) * 16
    assert window / full < 0.05


def test_key_lengths_bound_the_work():
    t = 1024
    padded = _flops(t, masks.key_padding(lengths=torch.tensor([256])))
    assert padded <= _flops(t, None) / 4 + 1


@pytest.mark.parametrize(("bq", "bk"), [(1, 1), (3, 5), (64, 7), (1000, 1000)])
def test_any_block_size_gives_the_same_answer(bq, bk):
    q, k, v = (torch.randn(2, 2, 37, 8, dtype=torch.float64) for _ in range(3))
    m = masks.sliding_window(9) & masks.key_padding(lengths=torch.tensor([37, 20]))
    out, _ = blockwise.forward(
        q, k, v, mask=m, scale=0.3, dropout_p=0.0, need_weights=False, block_q=bq, block_k=bk
    )
    allowed = ref.allowed_matrix(2, 37, 37, causal=True, window=9, key_lengths=[37, 20])
    exp, _ = ref.attention(q, k, v, allowed=allowed, scale=0.3)
    assert ref.max_err(out, exp) < 1e-12


def test_large_negative_bias_does_not_overflow_the_running_rescale():
    """A row that sees only masked keys in its first key block, then keys with a huge negative
    bias: the rescale factor exp(m_old - m_new) must not become inf * 0."""
    q, k, v = (torch.randn(1, 1, 4, 4, dtype=torch.float64) for _ in range(3))
    bias = torch.full((4, 4), -1e5, dtype=torch.float64)
    allowed = torch.tensor([[False, False, True, True]] * 4)
    m = masks.dense(bias) & masks.dense(allowed)
    out, _ = blockwise.forward(
        q, k, v, mask=m, scale=1.0, dropout_p=0.0, need_weights=False, block_q=4, block_k=2
    )
    exp, _ = ref.attention(q, k, v, allowed=allowed, bias=bias, scale=1.0)
    assert torch.isfinite(out).all() and ref.max_err(out, exp) < 1e-12


def test_no_grad_path_equals_autograd_path():
    q, k, v = _qkv(300)
    with torch.no_grad():
        a, _ = attention(q, k, v, mask=masks.causal(), backend="blockwise")
    b, _ = attention(q, k, v, mask=masks.causal(), backend="blockwise")
    assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "value"), [("block_q", 0), ("block_k", 0), ("block_q", -3)])
def test_block_sizes_must_be_positive(name, value):
    q, k, v = _qkv(8, requires_grad=False)
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, got {value}"):
        blockwise.forward(
            q, k, v, mask=masks.causal(), scale=1.0, dropout_p=0.0, need_weights=False,
            **{name: value},
        )  # fmt: skip


def test_dense_mask_broadcast_over_queries_past_the_first_block():
    """A (B, 1, 1, Tk) dense mask serves every query block (it used to be sliced along its
    broadcast query dim, which crashed from the second block on)."""
    q, k, v = _qkv(300, b=2, requires_grad=False)
    allowed = torch.rand(2, 1, 1, 300) > 0.5
    out, _ = attention(q, k, v, mask=allowed, backend="blockwise")
    exp, _ = ref.attention(q, k, v, allowed=allowed)
    assert ref.max_err(out, exp) < 1e-5


def test_no_queries():
    q, k, v = torch.randn(1, 2, 0, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    out, _ = attention(q, k, v, mask=masks.causal(), backend="blockwise")
    assert out.shape == (1, 2, 0, 8)
