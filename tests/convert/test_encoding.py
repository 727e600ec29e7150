"""align_words maps tokens to words by character offsets, for any tokenizer's pieces."""

import pytest
import torch

from multihead.convert import ByteTokenizer, align_words
from multihead.convert.encoding import check_ids, check_texts


def test_pieces_of_one_word_map_to_it():
    text = "I don't know"
    offsets = [None, (0, 1), (2, 5), (5, 6), (6, 7), (8, 12), None]
    assert align_words(text, ["I", "don't", "know"], offsets) == [None, 0, 1, 1, 1, 2, None]


def test_leading_space_pieces_map_to_their_word():
    # SentencePiece-style tokens carry the space before the word: "▁the" spans " the".
    text = "go to the sea"
    offsets = [(0, 2), (2, 5), (5, 9), (9, 13)]
    assert align_words(text, text.split(), offsets) == [0, 1, 2, 3]


def test_whitespace_only_and_empty_tokens_map_to_none():
    text = "a  b"
    assert align_words(text, ["a", "b"], [(0, 1), (1, 3), (3, 3), (3, 4)]) == [0, None, None, 1]


def test_token_spanning_two_words_maps_to_the_first():
    assert align_words("ab cd", ["ab", "cd"], [(0, 5)]) == [0]
    assert align_words("ab cd", ["cd"], [(0, 5)]) == [0]  # first word starting inside it


def test_piece_spanning_a_word_and_punctuation_maps_to_the_word():
    text = '"I saw debate.'
    words = ['"', "I", "saw", "debate", "."]
    assert align_words(text, words, [(0, 2), (3, 6), (6, 9), (9, 12), (12, 14)]) == [1, 2, 3, 3, 3]
    assert align_words(text, words, [(0, 1)]) == [0]


def test_token_outside_every_word_maps_to_none():
    assert align_words("ab, cd", ["ab", "cd"], [(0, 2), (2, 3), (4, 6)]) == [0, None, 1]


def test_words_must_occur_in_order():
    with pytest.raises(ValueError, match=r"words\[1\] 'ab' does not occur"):
        align_words("ab cd", ["cd", "ab"], [])
    with pytest.raises(ValueError, match=r"words\[0\] must be a non-empty str"):
        align_words("ab", [""], [])


def test_encoded_lengths_and_real_tokens():
    enc = ByteTokenizer().encode(["abc", "", "de"])
    assert enc.lengths.tolist() == [3, 0, 2]
    assert enc.lengths.dtype == torch.int64
    assert enc.real_tokens(2) == ["d", "e"] and enc.real_tokens(1) == []
    assert len(enc) == 3


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        ([], ValueError, "texts is empty"),
        (["a", 3], TypeError, r"texts\[1\]"),
        (7, TypeError, "texts must be a str or a sequence"),
    ],
)
def test_bad_texts(texts, error, match):
    with pytest.raises(error, match=match):
        check_texts(texts)


@pytest.mark.parametrize(
    "ids", [torch.zeros(2, 3, dtype=torch.int64), torch.zeros(3), [1, 300], [True], "ab"]
)
def test_bad_ids(ids):
    with pytest.raises((ValueError, TypeError), match="ids"):
        check_ids(ids, 256)
