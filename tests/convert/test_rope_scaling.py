"""RoPE with rope_theta and rope_scaling ("linear", "llama3") against transformers' own rotary
embedding, out to long positions (131072, 16x Llama 3.1's original 8192 context)."""

import pytest
import torch

from multihead.positional import RopeScaling, RotaryEmbedding
from tests.convert.tiny_hf import transformers  # skips this module without transformers

LlamaRotaryEmbedding = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding
apply_rotary_pos_emb = transformers.models.llama.modeling_llama.apply_rotary_pos_emb

POSITIONS = torch.tensor([0, 1, 7, 100, 1000, 8191, 8192, 20000, 65535, 131071])
CASES = {
    "default": (10000.0, None, None),
    "theta-500000": (500000.0, None, None),
    "linear": (10000.0, {"rope_type": "linear", "factor": 4.0}, RopeScaling("linear", 4.0)),
    "llama3": (
        500000.0,
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        RopeScaling(
            "llama3", 8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_len=8192
        ),
    ),
}


@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("case", list(CASES))
def test_rotation_equals_transformers_at_long_positions(case, head_dim):
    theta, hf_scaling, scaling = CASES[case]
    params = {"rope_type": "default", "rope_theta": theta, **(hf_scaling or {})}
    config = transformers.LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        max_position_embeddings=131072,
        rope_parameters=params,
    )
    theirs = LlamaRotaryEmbedding(config)
    ours = RotaryEmbedding(head_dim, base=theta, scaling=scaling)
    torch.testing.assert_close(ours.inv_freq, theirs.inv_freq, atol=0, rtol=0)  # bit for bit
    q = torch.randn(1, 2, len(POSITIONS), head_dim)
    cos, sin = theirs(q, POSITIONS[None])
    want, _ = apply_rotary_pos_emb(q, q, cos, sin)
    got = ours(q, POSITIONS)
    # The same frequencies and angles; the rotation differs only in rounding.
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)


def test_scaling_changes_only_what_it_should():
    base = RotaryEmbedding(128, base=500000.0).inv_freq
    linear = RotaryEmbedding(128, base=500000.0, scaling=RopeScaling("linear", 4.0)).inv_freq
    torch.testing.assert_close(linear, base / 4)
    llama3 = RotaryEmbedding(128, base=500000.0, scaling=RopeScaling("llama3", 8.0)).inv_freq
    wavelen = 2 * torch.pi / base
    assert torch.equal(llama3[wavelen < 8192 / 4], base[wavelen < 8192 / 4])  # high: kept
    torch.testing.assert_close(llama3[wavelen > 8192], base[wavelen > 8192] / 8)  # low: / s
    mid = (wavelen >= 8192 / 4) & (wavelen <= 8192)
    assert mid.any() and bool(((llama3[mid] < base[mid]) & (llama3[mid] > base[mid] / 8)).all())
