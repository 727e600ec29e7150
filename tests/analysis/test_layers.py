import pytest
import torch
from torch import nn

from multihead import MultiHeadAttention
from multihead.analysis import attention_layers, resolve_layers
from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig


def test_decoder_layers_in_block_order():
    model = DecoderLM(DecoderConfig(num_layers=3, d_model=32, num_heads=4))
    layers = attention_layers(model)
    assert [n for n, _ in layers] == [f"blocks.{i}.attn" for i in range(3)]
    assert all(m is model.blocks[i].attn for i, (_, m) in enumerate(layers))


def test_encoder_and_bare_module():
    enc = Encoder(EncoderConfig(num_layers=2, d_model=32, num_heads=2))
    assert len(attention_layers(enc)) == 2
    mha = MultiHeadAttention(16, 2)
    assert attention_layers(mha) == [("", mha)]


def test_user_module_registration_order():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.second = MultiHeadAttention(16, 2)
            self.first = MultiHeadAttention(16, 4)

    m = Two()
    assert [n for n, _ in attention_layers(m)] == ["second", "first"]


def test_resolve_layers():
    model = DecoderLM(DecoderConfig(num_layers=3, d_model=32, num_heads=4))
    assert resolve_layers(model) == [0, 1, 2]
    assert resolve_layers(model, -1) == [2]
    assert resolve_layers(model, [2, 0, 2]) == [0, 2]
    with pytest.raises(ValueError, match="layer 3 is out of range: the model has 3"):
        resolve_layers(model, [3])
    with pytest.raises(TypeError, match="layers must hold ints"):
        resolve_layers(model, [True])
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        resolve_layers(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        attention_layers(torch.zeros(1))
