"""Packed weights for decoding: products by the packed copy equal F.linear to rounding, packs
follow in-place changes, stay within their budget and are freed; greedy generation with
packing equals generation without it."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F

from multihead import packed_weights
from multihead.linear import Linear, linear
from multihead.models import DecoderConfig, DecoderLM

pytestmark = pytest.mark.skipif(
    not packed_weights.AVAILABLE, reason="torch has no MKL packed linear on this machine"
)

# fp32, E <= 64: products by the packed copy sum in another order than F.linear.
ATOL, RTOL = 1e-5, 1e-5


def _layer(e: int = 64, o: int = 48, bias: bool = True) -> Linear:
    torch.manual_seed(0)
    return Linear(e, o, bias=bias)


@pytest.mark.parametrize("rows", [1, 3, 8, 64])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_product_equals_f_linear(rows, bias):
    layer = _layer(bias=bias)
    x = torch.randn(rows, 1, 64)  # (n, 1, E): leading dimensions are flattened
    with torch.no_grad(), packed_weights.use(layer, rows=rows) as packs:
        y = linear(x, layer.weight, layer.bias)
        assert len(packs) == 1
    assert y.shape == (rows, 1, 48)
    torch.testing.assert_close(y, F.linear(x, layer.weight, layer.bias), atol=ATOL, rtol=RTOL)
    packed_weights.release(layer)


def test_other_row_counts_and_no_context_take_the_usual_path():
    layer = _layer()
    x = torch.randn(5, 64)
    with torch.no_grad():
        usual = linear(x, layer.weight, layer.bias)
        with packed_weights.use(layer, rows=4) as packs:
            assert torch.equal(linear(x, layer.weight, layer.bias), usual)  # 5 rows, not 4
            assert len(packs) == 0
        assert packed_weights.linear(x[:4], layer.weight, layer.bias) is None  # no context
    packed_weights.release(layer)


def test_packs_are_reused_and_follow_in_place_updates():
    layer = _layer()
    x = torch.randn(2, 64)
    with torch.no_grad():
        with packed_weights.use(layer, rows=2) as packs:
            linear(x, layer.weight, layer.bias)
            first = packs.packed(layer.weight)
            assert packs.packed(layer.weight) is first  # reused, not packed again
            layer.weight.mul_(2.0)  # bumps the version: the next call packs again
            y = linear(x, layer.weight, layer.bias)
            assert packs.packed(layer.weight) is not first
        with packed_weights.use(layer, rows=2) as again:
            assert again is packs  # kept on the module between uses
    torch.testing.assert_close(y, F.linear(x, layer.weight, layer.bias), atol=ATOL, rtol=RTOL)
    packed_weights.release(layer)
    assert packed_weights.packs_of(layer) is None


def test_unpackable_weights_autograd_and_budget_fall_back():
    layer = _layer()
    x = torch.randn(2, 64)
    with packed_weights.use(layer, rows=2) as packs:
        # autograd: the packed op has no backward, so training keeps F.linear
        assert packed_weights.linear(x, layer.weight, layer.bias) is None
        with torch.no_grad():
            view = layer.weight[:16]  # a slice is a new tensor at each call: never packed
            assert packed_weights.linear(x, view, None) is None
            assert packed_weights.linear(x.double(), layer.weight.double(), None) is None
            packs.budget = 0  # nothing fits
            assert packed_weights.linear(x, layer.weight, layer.bias) is None
    assert len(packs) == 0
    packed_weights.release(layer)


def test_packs_go_with_their_module():
    layer = _layer()
    with torch.no_grad(), packed_weights.use(layer, rows=1):
        linear(torch.randn(1, 64), layer.weight, layer.bias)
    assert packed_weights.packs_of(layer) is not None
    n = len(packed_weights._PACKS)
    del layer
    gc.collect()
    assert len(packed_weights._PACKS) == n - 1


def test_a_new_row_count_replaces_the_packs():
    layer = _layer()
    with torch.no_grad():
        with packed_weights.use(layer, rows=2) as two:
            linear(torch.randn(2, 64), layer.weight, layer.bias)
        with packed_weights.use(layer, rows=3) as three:
            linear(torch.randn(3, 64), layer.weight, layer.bias)
    assert three is not two and three.rows == 3 and packed_weights.packs_of(layer) is three
    packed_weights.release(layer)


def test_worth_packing_rules(monkeypatch):
    layer = _layer()
    tokens = packed_weights.MIN_TOKENS
    assert packed_weights.worth_packing(layer, 8, tokens)
    assert not packed_weights.worth_packing(layer, 8, tokens - 1)  # too short to pay
    assert not packed_weights.worth_packing(layer, packed_weights.MAX_ROWS + 1, tokens)
    with torch.no_grad(), packed_weights.use(layer, rows=8):
        pass
    assert packed_weights.worth_packing(layer, 8, 1)  # already packed for 8 rows
    assert not packed_weights.worth_packing(layer, 4, 1)
    monkeypatch.setattr(packed_weights, "ENABLED", False)
    assert not packed_weights.worth_packing(layer, 8, tokens)
    packed_weights.release(layer)


def test_available_bytes_reads_meminfo(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:   2048 kB\n")
    monkeypatch.setattr(packed_weights, "_MEMINFO", meminfo)
    assert packed_weights.available_bytes() == 2048 * 1024
    monkeypatch.setattr(packed_weights, "_MEMINFO", tmp_path / "missing")
    assert packed_weights.available_bytes() == 0  # unknown: no budget, no packing


@pytest.mark.parametrize("batch", [1, 4])
def test_greedy_generation_with_packing_equals_without(batch, monkeypatch):
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=97, d_model=64, num_heads=4, num_layers=2, max_seq_len=64)
    model = DecoderLM(cfg).eval()
    prompts = torch.randint(0, 97, (batch, 5), generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(packed_weights, "ENABLED", False)
    plain = model.generate(prompts, max_new_tokens=40)
    monkeypatch.setattr(packed_weights, "ENABLED", True)
    monkeypatch.setattr(packed_weights, "MIN_TOKENS", 1)
    packed = model.generate(prompts, max_new_tokens=40)
    packs = packed_weights.packs_of(model)
    assert packs is not None and packs.rows == batch
    assert len(packs) == 2 * 4 + 1  # per layer in_proj, out_proj, two FFN weights; the head
    assert packed == plain
    packed_weights.release(model)
