"""Packing by parameter roles: the blocks come from the modules' declared roles (attention's
[W_q; W_k; W_v], SwiGLU's [gate; up]) and a block of the wrong shape is named."""

import pytest
import torch
from torch import nn

from multihead.convert.packing import pack_rows, packed_blocks, unpack_rows
from multihead.convert.pretrained import _parameters_on_meta
from multihead.models import DecoderConfig, DecoderLM, FeedForward


def test_blocks_come_from_the_roles():
    ffn = FeedForward(dim=8, hidden_dim=12, activation="swiglu", bias=True)
    assert packed_blocks(ffn) == {"up.weight": (12, 12), "up.bias": (12, 12)}
    assert packed_blocks(FeedForward(dim=8, hidden_dim=12)) == {}  # GELU: one matrix
    gate, up = torch.randn(12, 8), torch.randn(12, 8)
    packed = pack_rows("up.weight", [("gate", gate), ("up", up)], (12, 12))
    assert [torch.equal(a, b) for a, b in zip(unpack_rows(packed, (12, 12)), (gate, up))] == [
        True,
        True,
    ]


def test_a_block_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"k has shape \(6, 8\) but in_proj.weight needs a block"):
        pack_rows("in_proj.weight", [("q", torch.ones(8, 8)), ("k", torch.ones(6, 8))], (8, 4))
    with pytest.raises(ValueError, match="packs 2 blocks"):
        pack_rows("up.weight", [("gate", torch.ones(4, 2))], (4, 4))
    with pytest.raises(ValueError, match="cannot be split into row blocks"):
        unpack_rows(torch.ones(5, 2), (2, 2))


def test_models_are_built_with_parameters_on_meta_and_real_buffers():
    # About 2.4 billion parameters: built in no time and no memory.
    big = DecoderConfig(
        vocab_size=128000,
        d_model=4096,
        num_layers=8,
        num_heads=32,
        num_kv_heads=8,
        ffn_dim=14336,
        activation="swiglu",
        norm="rmsnorm",
    )
    with _parameters_on_meta():
        model = DecoderLM(big)
    assert sum(p.numel() for p in model.parameters()) > 2e9
    assert all(p.is_meta for p in model.parameters())
    assert not model.rotary.inv_freq.is_meta  # derived from the config, never in a checkpoint
    assert not nn.Linear(2, 2).weight.is_meta  # the hook is gone afterwards
