"""The shared stack: DecoderLM and Encoder are one embed -> blocks -> norm loop, and GPT-2
initialization follows parameter roles, so a wrapper or a rename initializes the same."""

import math

import pytest
import torch
from torch import nn

from multihead import masks
from multihead.models import (
    DecoderConfig,
    DecoderLM,
    Encoder,
    EncoderConfig,
    TransformerStack,
    init_weights,
)

SMALL = {"vocab_size": 30, "max_seq_len": 16, "d_model": 32, "num_layers": 2, "num_heads": 4}


def test_both_models_are_the_stack_with_their_own_mask():
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(**SMALL)).eval()
    torch.manual_seed(0)
    dec = DecoderLM(DecoderConfig(**SMALL)).eval()
    assert isinstance(enc, TransformerStack) and isinstance(dec, TransformerStack)
    tokens = torch.randint(0, 30, (2, 7))
    pos = torch.arange(7)
    torch.testing.assert_close(enc(tokens)[0], enc.transform(tokens, pos, mask=masks.none()))
    torch.testing.assert_close(
        dec.hidden_states(tokens), dec.transform(tokens, pos, mask=masks.causal())
    )
    # The same weights under the other model's mask give the other model's hidden states.
    enc.load_state_dict({k: v for k, v in dec.state_dict().items() if k != "head.weight"})
    torch.testing.assert_close(
        enc.transform(tokens, pos, mask=masks.causal()), dec.hidden_states(tokens)
    )


def test_gpt2_initialization_by_role():
    torch.manual_seed(0)
    cfg = DecoderConfig(**{**SMALL, "d_model": 64, "num_layers": 4, "tie_embeddings": False})
    model = DecoderLM(cfg)
    residual = torch.cat(
        [
            torch.cat((b.attn.out_proj.weight.flatten(), b.ffn.down.weight.flatten()))
            for b in model.blocks
        ]
    )
    hidden = torch.cat([b.attn.in_proj.weight.flatten() for b in model.blocks])
    # Sample stds of ~50k normal draws: within 3 % of the target.
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.03)
    assert hidden.std().item() == pytest.approx(0.02, rel=0.03)
    assert model.head.weight.std().item() == pytest.approx(0.02, rel=0.03)
    for b in model.blocks:
        assert not b.attn.in_proj.bias.any() and not b.ffn.down.bias.any()
        assert torch.equal(b.norm1.weight, torch.ones(64))


def test_a_wrapper_initializes_exactly_like_the_bare_model():
    cfg = DecoderConfig(**SMALL)
    torch.manual_seed(0)
    bare = DecoderLM(cfg)
    torch.manual_seed(1)
    init_weights(bare, cfg.num_layers)
    torch.manual_seed(0)
    wrapped = nn.Sequential(DecoderLM(cfg))
    torch.manual_seed(1)
    init_weights(wrapped, cfg.num_layers)
    for (name, a), b in zip(bare.state_dict().items(), wrapped[0].state_dict().values()):
        assert torch.equal(a, b), name
