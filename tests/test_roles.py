"""Parameter roles: what each module declares, the defaults by module type, and that wrapping
a model changes nothing; conflicting or impossible declarations are refused."""

import pytest
import torch
from torch import nn

from multihead import MultiHeadAttention
from multihead.models import DecoderConfig, DecoderLM, FeedForward
from multihead.roles import (
    BIAS,
    EMBEDDING,
    MATRIX,
    NORM,
    OUTPUT,
    RESIDUAL,
    Role,
    parameter_roles,
)


def by_name(model):
    return {name: role for name, _, role in parameter_roles(model)}


def test_a_decoder_declares_every_parameter():
    cfg = DecoderConfig(
        vocab_size=20,
        max_seq_len=8,
        d_model=16,
        num_layers=1,
        num_heads=4,
        num_kv_heads=2,
        activation="swiglu",
        ffn_dim=24,
        position="learned",
        tie_embeddings=False,
    )
    roles = by_name(DecoderLM(cfg))
    assert roles == {
        "embed.tokens.weight": EMBEDDING,
        "embed.absolute.embedding.weight": EMBEDDING,
        "blocks.0.norm1.weight": NORM,
        "blocks.0.norm1.bias": NORM,
        "blocks.0.attn.in_proj.weight": MATRIX.packed((16, 8, 8)),  # [W_q; W_k; W_v]
        "blocks.0.attn.in_proj.bias": BIAS,
        "blocks.0.attn.out_proj.weight": RESIDUAL,
        "blocks.0.attn.out_proj.bias": BIAS,
        "blocks.0.norm2.weight": NORM,
        "blocks.0.norm2.bias": NORM,
        "blocks.0.ffn.up.weight": MATRIX.packed((24, 24)),  # SwiGLU's [gate; up]
        "blocks.0.ffn.up.bias": BIAS,
        "blocks.0.ffn.down.weight": RESIDUAL,
        "blocks.0.ffn.down.bias": BIAS,
        "norm.weight": NORM,
        "norm.bias": NORM,
        "head.weight": OUTPUT,
    }


def test_a_tied_head_is_the_embedding_once():
    model = DecoderLM(DecoderConfig(vocab_size=20, d_model=16, num_layers=1, num_heads=2))
    roles = parameter_roles(model)
    assert [n for n, _, r in roles if r.kind in ("embedding", "output")] == ["embed.tokens.weight"]
    assert len(roles) == len(list(model.parameters()))


def test_wrapping_changes_no_role():
    model = DecoderLM(DecoderConfig(vocab_size=20, d_model=16, num_layers=2, num_heads=2))
    expected = [(id(p), r) for _, p, r in parameter_roles(model)]
    holder = nn.Module()
    holder.renamed = model
    for wrapped in (nn.Sequential(model), holder, torch.compile(model)):
        assert [(id(p), r) for _, p, r in parameter_roles(wrapped)] == expected


def test_unpacked_attention_and_defaults_by_module_type():
    cross = MultiHeadAttention(8, 2, kdim=6, vdim=4, bias=False)
    assert set(by_name(cross).values()) == {MATRIX, RESIDUAL}
    assert by_name(cross)["out_proj.weight"] == RESIDUAL
    raw = nn.Module()
    raw.table = nn.Parameter(torch.zeros(3, 4))
    raw.gain = nn.Parameter(torch.ones(4))
    assert by_name(raw) == {"table": MATRIX, "gain": BIAS}
    assert by_name(nn.Embedding(3, 2)) == {"weight": EMBEDDING}
    assert set(by_name(nn.RMSNorm(4)).values()) == {NORM}
    assert by_name(FeedForward(dim=4, hidden_dim=8)) == {
        "up.weight": MATRIX,
        "up.bias": BIAS,
        "down.weight": RESIDUAL,
        "down.bias": BIAS,
    }


def test_conflicting_or_impossible_declarations_are_refused():
    class Claims(nn.Module):
        def __init__(self, role):
            super().__init__()
            self.lin = nn.Linear(4, 6)
            self.attn = MultiHeadAttention(4, 2)
            self.role = role

        def parameter_roles(self):
            return [(self.attn.out_proj.weight, self.role), (self.lin.weight, self.role)]

    with pytest.raises(ValueError, match=r"'attn.out_proj.weight' is declared .*residual=False"):
        parameter_roles(Claims(MATRIX))
    with pytest.raises(
        ValueError,
        match=r"attn.out_proj.weight has shape \(4, 4\) but its role packs row blocks \(3, 2\)",
    ):
        parameter_roles(Claims(RESIDUAL.packed((3, 2))))

    class NotARole(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(2, 2))

        def parameter_roles(self):
            return [(self.w, "matrix")]

    with pytest.raises(TypeError, match=r"must yield \(Parameter, Role\) pairs, got a str"):
        parameter_roles(NotARole())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"kind": "weights"}, ValueError, "kind must be one of"),
        ({"kind": "bias", "residual": True}, ValueError, "residual=True is for kind='matrix'"),
        ({"kind": "norm", "blocks": (2,)}, ValueError, "blocks are for kind='matrix'"),
        (
            {"kind": "matrix", "blocks": (2, 0)},
            ValueError,
            "blocks entries must be an integer >= 1",
        ),
        ({"kind": "matrix", "residual": 1}, TypeError, "residual must be a bool"),
    ],
)
def test_roles_are_validated(kwargs, error, message):
    with pytest.raises(error, match=message):
        Role(**kwargs)
