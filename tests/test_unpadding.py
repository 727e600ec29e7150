"""Unpadded: the real tokens of a padded batch, and attention that projects only those."""

import pytest
import torch

from multihead import MultiHeadAttention, masks
from multihead.unpadding import Unpadded
from tests import reference


def test_unpad_then_pad_keeps_real_tokens_and_zeroes_the_padding():
    real = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    u = Unpadded.from_mask(real)
    x = torch.randn(3, 3, 4, dtype=torch.float64)
    flat = u.unpad(x)
    assert flat.shape == (5, 4) and u.count == 5
    torch.testing.assert_close(flat, x[real], rtol=0, atol=0)
    back = u.pad(flat)
    torch.testing.assert_close(back[real], x[real], rtol=0, atol=0)
    assert back[~real].abs().max() == 0


def test_pad_is_differentiable():
    u = Unpadded.from_mask(torch.tensor([[True, False], [True, True]]))
    x = torch.randn(3, 2, requires_grad=True)
    (u.pad(x) * torch.arange(8.0).view(2, 2, 2)).sum().backward()
    # x's rows land at flat slots 0, 2, 3 of the (4, 2) padded layout.
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 1.0], [4.0, 5.0], [6.0, 7.0]]))


def test_bad_masks_and_shapes_are_named():
    with pytest.raises(ValueError, match=r"real must be a \(B, T\) bool mask"):
        Unpadded.from_mask(torch.ones(2, 3))
    u = Unpadded.from_mask(torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"x has shape \(5, 4\).*expect \(N, \.\.\.\)"):
        u.pad(torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"expect \(B, T, \.\.\.\) with leading \(2, 3\)"):
        u.unpad(torch.zeros(3, 2, 4))


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_unpadded_attention_equals_the_float64_oracle_on_real_tokens(kv_heads):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, num_kv_heads=kv_heads, bias=True).double()
    lengths = torch.tensor([5, 2, 4])
    real = torch.arange(5)[None] < lengths[:, None]  # (B, T)
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    u = Unpadded.from_mask(real)
    mask = masks.key_padding(lengths=lengths)
    with torch.no_grad():
        out, _ = mha(u.unpad(x), mask=mask, unpadded=u)  # (N, E)
        want = _oracle(mha, x, real)  # (B, T, E)
    torch.testing.assert_close(out, want[real], atol=1e-12, rtol=1e-12)


def _oracle(mha: MultiHeadAttention, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The padded forward from the per-head weights and tests/reference.py's attention."""

    def heads(w, b):  # (H, E, D), (H, D) -> (B, H, T, D)
        return torch.einsum("bte,hed->bhtd", x, w) + b[None, :, None, :]

    q, k, v = heads(mha.W_Q, mha.b_Q), heads(mha.W_K, mha.b_K), heads(mha.W_V, mha.b_V)
    z, _ = reference.attention(q, k, v, allowed=real[:, None, None, :])  # (B, H, T, D)
    return torch.einsum("bhtd,hde->bte", z, mha.W_O) + mha.out_proj.bias


def test_unpadded_attention_refuses_what_it_cannot_serve():
    mha = MultiHeadAttention(8, 2)
    u = Unpadded.from_mask(torch.tensor([[True, True, False]]))
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match=r"query has shape \(3, 8\).*\(2, 8\) real tokens"):
        mha(torch.randn(3, 8), unpadded=u)
    with pytest.raises(ValueError, match="self-attention without a cache; got a key/value"):
        mha(x, x, unpadded=u)
    with pytest.raises(TypeError, match="unpadded must be an Unpadded"):
        mha(x, unpadded=torch.ones(1, 3, dtype=torch.bool))
