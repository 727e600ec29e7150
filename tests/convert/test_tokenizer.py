"""load_tokenizer / Tokenizer on small tokenizers built here: ids, padding, specials, offsets,
truncation, and a clear error for every kind of bad input."""

import json

import pytest
import torch

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import decoders, models, pre_tokenizers, processors  # noqa: E402

from multihead.convert import Tokenizer, load_tokenizer  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "don", "'", "t", "."]
VOCAB += ["##s", "go", "!"]


def bert_like() -> "tokenizers.Tokenizer":
    vocab = {w: i for i, w in enumerate(VOCAB)}
    tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return tok


@pytest.fixture
def checkpoint(tmp_path):
    backend = bert_like()
    backend.enable_padding(length=20)  # stored settings that encode must ignore
    backend.enable_truncation(max_length=3)
    backend.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_encode_pads_to_the_longest_and_marks_specials(checkpoint):
    tok = load_tokenizer(checkpoint)
    enc = tok.encode(["The cats sat.", "go!"])
    assert enc.ids.dtype == torch.int64 and enc.ids.shape == (2, 7)
    assert enc.ids.tolist() == [[2, 5, 6, 12, 7, 11, 3], [2, 13, 14, 3, 0, 0, 0]]
    assert enc.attention_mask.tolist()[1] == [True] * 4 + [False] * 3
    assert enc.special_mask.tolist()[1] == [True, False, False, True, False, False, False]
    assert enc.tokens[0] == ["[CLS]", "the", "cat", "##s", "sat", ".", "[SEP]"]
    assert enc.tokens[1][4:] == ["[PAD]"] * 3
    assert enc.word_ids[0] == [None, 0, 1, 1, 2, 3, None]
    assert enc.offsets[0] == [None, (0, 3), (4, 7), (7, 8), (9, 12), (12, 13), None]
    assert enc.word_index(0) == [None, 0, 1, 1, 2, 3, None]
    assert enc.word_index(0, ["The", "cats", "sat."]) == [None, 0, 1, 1, 2, 2, None]


def test_same_ids_as_the_plain_backend(checkpoint):
    backend = bert_like()
    tok = load_tokenizer(checkpoint / "tokenizer.json")
    for text in ["the cat", "Don't!", "", "cat cat cat sat the the"]:
        assert tok.encode(text).ids[0].tolist() == backend.encode(text).ids
        no_special = tok.encode(text, add_special_tokens=False).ids[0].tolist()
        assert no_special == backend.encode(text, add_special_tokens=False).ids


def test_max_length_counts_the_special_tokens(checkpoint):
    tok = load_tokenizer(checkpoint)
    enc = tok.encode(["the cat sat the cat", "go"], max_length=4)
    assert enc.ids.tolist() == [[2, 5, 6, 3], [2, 13, 3, 0]]
    assert tok.encode("the cat sat", max_length=3, add_special_tokens=False).ids.shape == (1, 3)
    with pytest.raises(ValueError, match=r"max_length must be None or an int >= 3"):
        tok.encode("the", max_length=2)


def test_special_token_roles(checkpoint):
    tok = load_tokenizer(checkpoint)
    assert (tok.cls, tok.sep, tok.pad, tok.unk, tok.mask) == (2, 3, 0, 1, 4)
    assert tok.bos is None and tok.eos is None
    assert tok.special_ids == frozenset({0, 1, 2, 3, 4})
    assert tok.vocab_size == len(VOCAB)
    assert "cls=2" in repr(tok)


def test_roles_from_the_directory_files(tmp_path):
    backend = bert_like()
    backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": {"content": "[SEP]"}, "pad_token": "[MASK]", "bos_token": "<zz>"})
    )
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "[CLS]", "model_max_length": 77})
    )
    tok = load_tokenizer(tmp_path)
    assert (tok.eos, tok.pad, tok.bos, tok.pad_id) == (3, 4, 2, 4)
    assert tok.model_max_length == 77


def test_pad_id_falls_back_to_eos_then_zero():
    vocab = {"<unk>": 0, "a": 1, "</s>": 2}
    tok = Tokenizer(tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unk>")))
    assert tok.pad is None and tok.eos == 2 and tok.pad_id == 2
    tok = Tokenizer(tokenizers.Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a")))
    assert tok.pad_id == 0 and tok.eos is None


def test_explicit_special_tokens():
    tok = Tokenizer(bert_like(), special_tokens={"bos": "[CLS]", "eos": 3})
    assert (tok.bos, tok.eos) == (2, 3)
    with pytest.raises(ValueError, match="unknown role 'start'"):
        Tokenizer(bert_like(), special_tokens={"start": "[CLS]"})
    with pytest.raises(ValueError, match="not in the vocabulary"):
        Tokenizer(bert_like(), special_tokens={"bos": "<s>"})
    with pytest.raises(TypeError, match="tokenizers.Tokenizer"):
        Tokenizer({"model": {}})


def test_the_wrapper_owns_a_copy_of_its_backend():
    backend = bert_like()
    tok = Tokenizer(backend)
    backend.enable_padding(length=9)
    assert tok.encode("the").ids.shape == (1, 3)


def test_decode(checkpoint):
    tok = load_tokenizer(checkpoint)
    ids = tok.encode("The cats sat.").ids[0]
    assert tok.decode(ids) == "the cats sat."
    assert tok.decode(ids.tolist(), skip_special_tokens=False).startswith("[CLS]")
    assert tok.id_to_token(6) == "cat" and tok.token_to_id("sat") == 7
    with pytest.raises(ValueError, match="1-D integer tensor"):
        tok.decode(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"ids\[0\] = 99"):
        tok.decode([99])


def test_missing_path_and_missing_tokenizer_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json in"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(FileNotFoundError, match="it has vocab.txt"):
        load_tokenizer(tmp_path)
    with pytest.raises(TypeError, match="path must be a str"):
        load_tokenizer(3)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"model": ', r"tokenizer.json is not valid JSON \(Expecting value at line 1"),
        (b"\xff\xfe", "is not UTF-8 text"),
        (b"[1, 2]", "not a tokenizer"),
        (b'{"model": {"type": "Nonsense"}}', "not a tokenizer the tokenizers package can load"),
    ],
)
def test_unreadable_tokenizer_json(tmp_path, content, match):
    (tmp_path / "tokenizer.json").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_tokenizer(tmp_path)


def test_unreadable_special_tokens_map(checkpoint):
    (checkpoint / "special_tokens_map.json").write_text("{oops")
    with pytest.raises(ValueError, match="special_tokens_map.json is not valid JSON"):
        load_tokenizer(checkpoint)
    (checkpoint / "special_tokens_map.json").write_text("[]")
    with pytest.raises(ValueError, match="expected an object"):
        load_tokenizer(checkpoint)


@pytest.mark.parametrize("style", ["byte_level", "metaspace"])
def test_word_index_covers_every_annotated_word_for_bpe_tokenizers(style):
    # Llama/GPT-2-style (byte-level BPE) and SentencePiece-style (Metaspace) pieces carry the
    # space before a word; they must still map to the annotation's words.
    from multihead.data import english

    backend = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    if style == "byte_level":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        backend.pre_tokenizer = pre_tokenizers.Metaspace()
        alphabet = []
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=alphabet
    )
    backend.train_from_iterator(english.sentences("score"), trainer=trainer)
    tok = Tokenizer(backend)
    annotations = english.annotations()
    enc = tok.encode([a.text for a in annotations])
    assert (tok.bos, tok.eos, tok.pad_id) == (1, 2, 2)
    for b, a in enumerate(annotations):
        index = enc.word_index(b, a.words)
        content = {i for i, w in enumerate(a.words) if any(c.isalnum() for c in w)}
        assert content <= set(index) - {None}, a.text
        for span, w in zip(enc.offsets[b], index):
            if w is not None:
                start, end = span
                assert set(a.text[start:end].strip()) & set(a.words[w]), (a.text, span)
