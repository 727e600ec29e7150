"""Embeddings and check_tokens: token ids are checked against the vocabulary at every model
entry point, with the offending id, the ids' range and the vocabulary size in the error."""

import pytest
import torch

from multihead.models import (
    DecoderConfig,
    DecoderLM,
    Embeddings,
    Encoder,
    EncoderConfig,
    check_tokens,
)

SMALL = {"vocab_size": 10, "max_seq_len": 8, "d_model": 16, "num_layers": 1, "num_heads": 2}


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (
            [[0, 3, 10]],
            r"token id 10 outside the vocabulary \[0, 10\) \(vocab_size=10; "
            r"tokens hold ids from 0 to 10\)",
        ),
        (
            [[4, -3, 2]],
            r"token id -3 outside the vocabulary \[0, 10\) \(vocab_size=10; "
            r"tokens hold ids from -3 to 4\)",
        ),
    ],
)
def test_out_of_range_ids_are_named(ids, message):
    with pytest.raises(ValueError, match=message):
        check_tokens("tokens", torch.tensor(ids), 10)


def test_valid_ids_pass_through_in_either_integer_dtype():
    t = torch.tensor([[0, 9]], dtype=torch.int32)
    assert check_tokens("tokens", t, 10) is t
    assert check_tokens("tokens", torch.zeros(2, 0, dtype=torch.long), 10).shape == (2, 0)
    with pytest.raises(ValueError, match=r"\(B, T\) integer token ids"):
        check_tokens("tokens", torch.zeros(1, 2), 10)
    with pytest.raises(TypeError, match="tokens must be a torch.Tensor of token ids, got list"):
        check_tokens("tokens", [[1]], 10)


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_models_refuse_ids_outside_their_vocabulary(position):
    bad = torch.tensor([[1, 2, 12]])
    decoder = DecoderLM(DecoderConfig(**SMALL, position=position))
    encoder = Encoder(EncoderConfig(**SMALL, position=position))
    for call in (decoder, decoder.hidden_states, encoder, encoder.hidden_states):
        with pytest.raises(ValueError, match="tokens has token id 12 outside the vocabulary"):
            call(bad)


def test_embeddings_add_learned_positions_and_only_those():
    torch.manual_seed(0)
    learned = Embeddings(DecoderConfig(**{**SMALL, "position": "learned"})).eval()
    rope = Embeddings(DecoderConfig(**{**SMALL, "position": "rope"})).eval()
    tokens, pos = torch.tensor([[1, 2, 3]]), torch.arange(3)
    expected = learned.tokens(tokens) + learned.absolute.embedding(pos)
    torch.testing.assert_close(learned(tokens, pos), expected)
    torch.testing.assert_close(rope(tokens, pos), rope.tokens(tokens))  # RoPE lives in attention


def test_token_types_and_embedding_norm_in_bert_order():
    cfg = EncoderConfig(
        vocab_size=10,
        d_model=8,
        num_heads=2,
        position="learned",
        type_vocab_size=2,
        embedding_norm=True,
    )
    embed = Embeddings(cfg)
    tokens, types = torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1, 1]])
    got = embed(tokens, torch.arange(3), types)
    word = embed.tokens.weight[tokens]
    pos = embed.absolute.embedding.weight[:3]
    want = embed.norm(word + embed.types.weight[types] + pos)  # (word + type) + position
    torch.testing.assert_close(got, want)
    # No token types given = type 0 everywhere.
    torch.testing.assert_close(
        embed(tokens, torch.arange(3)), embed(tokens, torch.arange(3), torch.zeros_like(types))
    )
    assert isinstance(embed.norm, torch.nn.LayerNorm)


def test_token_types_on_a_model_without_them_are_refused():
    embed = Embeddings(DecoderConfig(vocab_size=10, d_model=8))
    with pytest.raises(ValueError, match=r"no token types \(type_vocab_size=0\)"):
        embed(torch.tensor([[1]]), torch.arange(1), torch.tensor([[0]]))
