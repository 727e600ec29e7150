"""ByteTokenizer: ids are UTF-8 bytes, tokens are shown as characters, words follow
split_words; it has the interface of Tokenizer."""

import pytest
import torch

from multihead.convert import ByteTokenizer, Tokenizer
from multihead.data import english

TOK = ByteTokenizer()


def test_ids_are_utf8_bytes_and_decode_back():
    texts = [*english.sentences()[:50], "naïve café — Zürich\n\tok", ""]
    enc = TOK.encode(texts)
    assert enc.ids.dtype == torch.int64 and enc.attention_mask.dtype == torch.bool
    longest = max(len(t.encode()) for t in texts)
    assert enc.ids.shape == (len(texts), longest)
    for i, text in enumerate(texts):
        data = text.encode()
        assert enc.ids[i, : len(data)].tolist() == list(data)
        assert enc.attention_mask[i].tolist() == [True] * len(data) + [False] * (
            longest - len(data)
        )
        assert (enc.ids[i, len(data) :] == TOK.pad_id).all()
        assert TOK.decode(enc.ids[i, : len(data)]) == text
    assert not enc.special_mask.any()


def test_tokens_are_characters():
    enc = TOK.encode("aé\n€")
    assert enc.tokens[0] == ["a", "é", "\\xa9", "\\n", "€", "\\x82", "\\xac"]
    assert enc.offsets[0] == [(0, 1), (1, 2), (1, 2), (2, 3), (3, 4), (3, 4), (3, 4)]
    assert TOK.id_to_token(65) == "A" and TOK.id_to_token(0xC3) == "\\xc3"
    assert TOK.id_to_token(10) == "\\n"
    assert TOK.token_to_id("A") == 65 and TOK.token_to_id("é") is None


def test_word_ids_are_split_words():
    for a in english.annotations()[:40]:
        enc = TOK.encode(a.text)
        covered = {w for w in enc.word_ids[0] if w is not None}
        assert covered == set(range(len(a.words)))
        assert enc.word_index(0, a.words) == enc.word_ids[0]
        for piece, w in zip(enc.tokens[0], enc.word_ids[0]):
            if w is not None and len(piece) == 1:
                assert piece in a.words[w]


def test_max_length_truncates_bytes():
    enc = TOK.encode(["abcdef", "ab"], max_length=4)
    assert enc.ids.tolist() == [[97, 98, 99, 100], [97, 98, 0, 0]]
    with pytest.raises(ValueError, match="max_length"):
        TOK.encode("a", max_length=0)


def test_invalid_utf8_decodes_with_replacement():
    assert TOK.decode([0xC3]) == "\ufffd"
    assert TOK.decode(b"ok") == "ok"


def test_bad_arguments():
    with pytest.raises(TypeError, match="add_special_tokens must be a bool"):
        TOK.encode("a", add_special_tokens=1)
    with pytest.raises(ValueError, match="not a token id"):
        TOK.decode([256])


def test_same_interface_as_tokenizer():
    public = {"encode", "decode", "id_to_token", "token_to_id"}
    attrs = {"vocab_size", "pad_id", "special_ids", "model_max_length"}
    roles = {"cls", "sep", "pad", "bos", "eos", "unk", "mask"}
    for name in public | attrs | roles:
        assert hasattr(TOK, name), name
    for name in public:
        assert hasattr(Tokenizer, name), name
    assert all(getattr(TOK, r) is None for r in roles)
