"""RoPE against a float64 complex-number reference, ALiBi against the paper's slopes, and the
absolute position embeddings against their formulas."""

import math

import pytest
import torch

from multihead import masks
from multihead.backends import blockwise
from multihead.backends import math as math_backend
from multihead.positional import (
    ALiBi,
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    alibi_slopes,
)


def rope_reference(x, positions, base, rotary_dim, interleaved):
    """RoPE as the paper writes it: channel pairs are complex numbers multiplied by
    exp(i * position * theta_j), theta_j = base^(-2j/R). float64 throughout."""
    x = x.double()
    r = rotary_dim
    rot, rest = x[..., :r], x[..., r:]
    if interleaved:
        z = torch.complex(rot[..., 0::2], rot[..., 1::2])
    else:
        z = torch.complex(rot[..., : r // 2], rot[..., r // 2 :])
    theta = base ** (-torch.arange(0, r, 2, dtype=torch.float64) / r)
    pos = positions.double()
    pos = pos if pos.dim() == 2 else pos[None]
    angle = pos[:, None, :, None] * theta  # (1|B, 1, T, R/2)
    z = z * torch.polar(torch.ones_like(angle), angle)
    if interleaved:
        out = torch.stack((z.real, z.imag), dim=-1).flatten(-2)
    else:
        out = torch.cat((z.real, z.imag), dim=-1)
    return torch.cat((out, rest), dim=-1)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rotary_dim", [None, 8])
@pytest.mark.parametrize("batched_positions", [False, True])
def test_rope_matches_complex_reference(interleaved, rotary_dim, batched_positions):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 16)
    positions = (
        torch.tensor([[0, 1, 2, 3, 4, 5, 6], [5, 6, 7, 8, 9, 10, 11]])
        if batched_positions
        else torch.arange(3, 10)
    )
    rope = RotaryEmbedding(16, base=500.0, rotary_dim=rotary_dim, interleaved=interleaved)
    got = rope(x, positions)
    ref = rope_reference(x, positions, 500.0, rotary_dim or 16, interleaved)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    s1 = (rope(q, torch.tensor([5])) * rope(k, torch.tensor([2]))).sum()
    s2 = (rope(q, torch.tensor([103])) * rope(k, torch.tensor([100]))).sum()
    torch.testing.assert_close(s1, s2, atol=1e-4, rtol=1e-4)


def test_rope_rejects_odd_head_dim():
    with pytest.raises(ValueError, match="head_dim must be even, got head_dim=7"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="rotary_dim must be even"):
        RotaryEmbedding(8, rotary_dim=3)


def test_alibi_slopes_follow_the_paper():
    # Power of two: the geometric sequence 2^(-8/n * i), i = 1..n.
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    # 12 heads: the 8-head slopes, then every other slope of 16 heads: 2^-0.5, 2^-1.5, ...
    expected = [2.0**-i for i in range(1, 9)] + [2.0 ** -(i + 0.5) for i in range(4)]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected))
    assert alibi_slopes(1).tolist() == [2.0**-8]


def test_alibi_bias_is_minus_slope_times_distance():
    alibi = ALiBi(4)
    b = alibi(torch.tensor([[3, 4]]), torch.arange(6), torch.float32)  # (1, H, 2, 6)
    assert b.shape == (1, 4, 2, 6)
    for h, slope in enumerate(alibi_slopes(4).tolist()):
        for i, qp in enumerate((3, 4)):
            for kp in range(6):
                assert math.isclose(b[0, h, i, kp].item(), -slope * abs(qp - kp), rel_tol=1e-6)


class RecordingALiBi(ALiBi):
    def __init__(self, heads):
        super().__init__(heads)
        self.tiles = []

    def forward(self, q_pos, k_pos, dtype):
        self.tiles.append((q_pos.shape[-1], k_pos.shape[0]))
        return super().forward(q_pos, k_pos, dtype)


def test_alibi_is_evaluated_per_tile_on_blockwise():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 64, 8) for _ in range(3))
    alibi = RecordingALiBi(4)
    m = masks.causal() & masks.bias(alibi)
    out, _ = blockwise.forward(
        q, k, v, mask=m, scale=8**-0.5, dropout_p=0.0, need_weights=False, block_q=16, block_k=16
    )
    assert alibi.tiles and max(tk for _, tk in alibi.tiles) <= 16
    assert max(tq for tq, _ in alibi.tiles) <= 16
    ref, _ = math_backend.forward(
        q.double(),
        k.double(),
        v.double(),
        mask=m,
        scale=8**-0.5,
        dropout_p=0.0,
        need_weights=False,
    )
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_sinusoidal_matches_formula():
    pe = SinusoidalPositions(6)(torch.arange(5))
    for p in range(5):
        for i in range(3):
            w = 10000 ** (-2 * i / 6)
            assert math.isclose(pe[p, 2 * i].item(), math.sin(p * w), abs_tol=1e-6)
            assert math.isclose(pe[p, 2 * i + 1].item(), math.cos(p * w), abs_tol=1e-6)
    with pytest.raises(ValueError, match="dim must be even"):
        SinusoidalPositions(5)


def test_learned_positions_shapes():
    pe = LearnedPositions(10, 4)
    assert pe(torch.arange(3)).shape == (3, 4)
    assert pe(torch.arange(6).view(2, 3)).shape == (2, 3, 4)


def test_alibi_slopes_are_a_saved_per_head_buffer():
    alibi = ALiBi(4)
    assert "slopes" in alibi.state_dict()
    other = ALiBi(slopes=[0.0, 0.0, 0.0, 0.0])
    other.load_state_dict(alibi.state_dict())
    assert torch.equal(other.slopes, alibi_slopes(4))
    assert alibi.double().slopes.dtype == torch.float64  # moves with the module


def test_alibi_from_explicit_slopes_and_its_errors():
    alibi = ALiBi(slopes=torch.tensor([0.5, 0.125, 1.0]))
    assert alibi.num_heads == 3
    b = alibi(torch.tensor([[2]]), torch.tensor([0]), torch.float64)  # (1, H, 1, 1)
    assert b.flatten().tolist() == [-1.0, -0.25, -2.0]
    with pytest.raises(ValueError, match="needs num_heads or explicit slopes"):
        ALiBi()
    with pytest.raises(ValueError, match="num_heads=2 but 3 slopes"):
        ALiBi(2, slopes=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite 1-D"):
        ALiBi(slopes=[[1.0]])
    with pytest.raises(ValueError, match="num_heads must be a positive integer"):
        ALiBi(0)


def test_alibi_select_heads_keeps_each_heads_slope():
    alibi = ALiBi(8)
    before = alibi.slopes.clone()
    assert alibi.select_heads(torch.tensor([5, 0, 7])) is alibi
    assert torch.equal(alibi.slopes, before[[5, 0, 7]]) and alibi.num_heads == 3
    assert "slopes" in alibi.state_dict()  # still a buffer
    assert alibi.select_heads(torch.tensor([], dtype=torch.long)).num_heads == 0
    with pytest.raises(ValueError, match=r"head numbers in \[0, 0\)"):
        alibi.select_heads(torch.tensor([0]))


def test_alibi_takes_per_example_key_positions():
    alibi = ALiBi(2)
    q_pos = torch.tensor([[4], [1]])  # (B, tq)
    k_pos = torch.tensor([[0, 4, 6], [1, 0, -1]])  # (B, tk)
    got = alibi(q_pos, k_pos, torch.float64)  # (B, H, tq, tk)
    for b in range(2):
        for h, slope in enumerate(alibi.slopes.tolist()):
            for j in range(3):
                exp = -slope * abs(int(q_pos[b, 0]) - int(k_pos[b, j]))
                assert math.isclose(got[b, h, 0, j].item(), exp, rel_tol=1e-12)


def test_alibi_slopes_can_stay_out_of_the_state_dict():
    alibi = ALiBi(num_heads=4, persistent=False).select_heads(torch.tensor([2, 0]))
    assert "slopes" not in alibi.state_dict()
    assert alibi.slopes.tolist() == [alibi_slopes(4)[2].item(), alibi_slopes(4)[0].item()]
    with pytest.raises(TypeError, match="persistent must be a bool"):
        ALiBi(num_heads=4, persistent=1)


def test_rope_fast_half_split_path_equals_the_pairwise_formula_and_follows_positions():
    from multihead.positional import RotaryEmbedding

    rope = RotaryEmbedding(16)
    x = torch.randn(2, 3, 16, 5).transpose(2, 3)  # (B, H, T, D), not contiguous
    pos = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
    for _ in range(2):  # the second call reuses the remembered angles
        cos, sin = rope.angles(pos)
        a, b = x[..., :8], x[..., 8:]
        want = torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)
        assert torch.equal(rope(x, pos), want)
    pos += 3  # changed in place: the angles must follow
    fresh = RotaryEmbedding(16)
    assert torch.equal(rope(x, pos), fresh(x, pos.clone()))
