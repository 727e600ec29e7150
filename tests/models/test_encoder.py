"""Encoder: bidirectional attention, padding never changes real tokens, pooling."""

import pytest
import torch

from multihead.models import Encoder, EncoderConfig
from tests.models.pruning import copy_kept_heads, removed_mask


def build(**kw):
    torch.manual_seed(0)
    base = {"vocab_size": 30, "max_seq_len": 16, "d_model": 32, "num_layers": 2, "num_heads": 4}
    return Encoder(EncoderConfig(**{**base, **kw})).eval()


@pytest.mark.parametrize(
    "kw", [{}, {"position": "alibi", "window": 3}, {"position": "learned", "pooling": "first"}]
)
def test_padding_does_not_change_real_tokens(kw):
    enc = build(**kw)
    a = torch.randint(1, 30, (1, 5))
    padded = torch.cat((a, torch.zeros(1, 4, dtype=torch.long)), dim=1)
    h0, p0 = enc(a)
    h1, p1 = enc(padded, lengths=torch.tensor([5]))
    _h2, p2 = enc(padded, padding_mask=torch.arange(9)[None] < 5)
    torch.testing.assert_close(h1[:, :5], h0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p1, p0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p2, p1)


def test_a_padded_batch_computes_only_its_real_tokens_and_trains():
    enc = build(position="rope", num_layers=3).double()
    x = torch.randint(1, 30, (3, 7))
    lengths = torch.tensor([7, 3, 5])
    hidden, _ = enc(x, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, _ = enc(x[i : i + 1, :n])
        torch.testing.assert_close(hidden[i, :n], alone[0], atol=1e-12, rtol=1e-12)
        assert hidden[i, n:].abs().sum() == 0  # padding is not computed
    enc.train()
    _, pooled = enc(x, lengths=lengths)
    pooled.sum().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert enc.blocks[0].attn.in_proj.weight.grad.abs().sum() > 0


def test_attention_is_bidirectional():
    enc = build()
    x = torch.randint(0, 30, (1, 6))
    y = x.clone()
    y[0, -1] = (y[0, -1] + 1) % 30
    h_x, _ = enc(x)
    h_y, _ = enc(y)
    assert not torch.allclose(h_x[0, 0], h_y[0, 0])  # the first token sees the last


def test_lengths_and_padding_mask_are_exclusive():
    enc = build()
    x = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="not both"):
        enc(x, lengths=torch.tensor([3]), padding_mask=torch.ones(1, 3, dtype=torch.bool))


def test_a_pruned_encoder_equals_the_head_masked_full_encoder():
    full = build(num_layers=3).double()
    pruned = build(num_layers=3, layer_heads=[[2], [0, 1, 2, 3], [3, 0]]).double()
    copy_kept_heads(full, pruned)
    x = torch.randint(0, 30, (2, 6))
    lengths = torch.tensor([6, 4])
    got_h, got_p = pruned(x, lengths=lengths)
    want_h, want_p = full(x, lengths=lengths, head_mask=removed_mask(pruned.config))
    torch.testing.assert_close(got_h, want_h, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(got_p, want_p, atol=1e-10, rtol=1e-10)


def test_a_bert_layout_encoder_pools_with_tanh_of_its_pooler_and_takes_token_types():
    enc = build(
        position="learned",
        norm_placement="post",
        embedding_norm=True,
        type_vocab_size=2,
        pooling="pooler",
    )
    assert isinstance(enc.norm, torch.nn.Identity)  # post-norm blocks end normalized
    tokens = torch.randint(0, 30, (2, 5))
    types = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])
    hidden, pooled = enc(tokens, lengths=torch.tensor([5, 4]), token_types=types)
    torch.testing.assert_close(pooled, torch.tanh(enc.pooler(hidden[:, 0])))
    other, _ = enc(tokens, lengths=torch.tensor([5, 4]))
    assert not torch.allclose(hidden, other)  # the types reach the hidden states
    with pytest.raises(ValueError, match=r"token_types has shape \(2, 4\) but tokens have"):
        enc(tokens, token_types=types[:, :4])
    with pytest.raises(ValueError, match="token_types has token id 2 outside"):
        enc(tokens, token_types=types + 1)
    with pytest.raises(ValueError, match="no token types"):
        build()(tokens, token_types=types)
