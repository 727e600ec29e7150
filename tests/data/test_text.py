"""Byte corpora: default standard-library corpus, deterministic split, batches, bad input."""

import gzip
import os
import sys

import pytest
import torch

from multihead.data import ByteCorpus, decode, encode, stdlib_sources


def test_stdlib_corpus_is_found_and_split_deterministically():
    files = stdlib_sources()
    assert any(f.name == "os.py" for f in files)
    assert not any("site-packages" in f.parts for f in files)
    small = files[:40]
    a = ByteCorpus.from_paths(small, val_fraction=0.1)
    b = ByteCorpus.from_paths(small, val_fraction=0.1)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    total = sum(len(f.read_bytes()) for f in small)
    assert len(a.train) + len(a.val) == total
    assert 0.05 < len(a.val) / total < 0.15


def test_batches_are_shifted_windows_and_reproducible():
    corpus = ByteCorpus(bytes(range(256)) * 40, val_fraction=0.1)
    x, y = corpus.batch(
        "train", batch_size=4, seq_len=16, generator=torch.Generator().manual_seed(3)
    )
    x2, _ = corpus.batch(
        "train", batch_size=4, seq_len=16, generator=torch.Generator().manual_seed(3)
    )
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x, x2)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_eval_windows_cover_the_split_without_overlap():
    corpus = ByteCorpus(b"abcdefghij" * 100, val_fraction=0.5)
    seen = torch.cat([y.flatten() for _, y in corpus.windows("val", batch_size=3, seq_len=7)])
    assert len(seen) == (len(corpus.val) - 1) // 7 * 7
    assert torch.equal(seen, corpus.val[1 : 1 + len(seen)].long())


def test_capped_eval_windows_are_spread_over_the_split():
    data = bytes(range(256)) * 8  # every byte's position is recoverable from its value
    corpus = ByteCorpus(data, val_fraction=0.5)
    val = corpus.val.long()
    batches = list(corpus.windows("val", batch_size=2, seq_len=10, max_tokens=50))
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    assert xs.shape == (5, 10)
    total = (len(val) - 1) // 10
    starts = [round(i * (total - 1) / 4) * 10 for i in range(5)]
    assert starts[0] == 0 and starts[-1] == (total - 1) * 10  # first and last window
    for row, s in enumerate(starts):
        assert torch.equal(xs[row], val[s : s + 10])
        assert torch.equal(ys[row], val[s + 1 : s + 11])


def test_folder_reading_skips_binary_files(tmp_path):
    (tmp_path / "a.txt").write_text("hello ")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("world")
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")
    corpus = ByteCorpus.from_paths(tmp_path, val_fraction=0.5)
    assert sorted(decode(torch.cat((corpus.train, corpus.val)).tolist())) == sorted("hello world")


def test_encode_decode_round_trip():
    assert decode(encode("héllo")) == "héllo"


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        ByteCorpus.from_paths(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="is empty"):
        ByteCorpus.from_paths(tmp_path)


def test_missing_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ByteCorpus.from_paths(tmp_path / "nope")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_corpus(tmp_path):
    f = tmp_path / "secret.txt"
    f.write_text("x")
    f.chmod(0)
    with pytest.raises(ValueError, match="unreadable"):
        ByteCorpus.from_paths(f)


def test_unreadable_corpus_directory_entry(tmp_path):
    # A dangling symlink inside a folder cannot be read whoever runs the test.
    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    with pytest.raises(ValueError, match=r"dangling.txt' is unreadable"):
        ByteCorpus.from_paths(tmp_path)


def test_corpus_too_small_for_seq_len():
    corpus = ByteCorpus(b"x" * 100, val_fraction=0.1)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        corpus.batch("val", batch_size=1, seq_len=64, generator=torch.Generator())
    with pytest.raises(ValueError, match="split must be one of"):
        corpus.split("test")
    with pytest.raises(ValueError, match="val_fraction"):
        ByteCorpus(b"x", val_fraction=0.9)


def test_batch_sizes_and_lengths_must_be_positive():
    corpus = ByteCorpus(b"abcdefgh" * 50, val_fraction=0.1)
    g = torch.Generator()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        corpus.batch("train", batch_size=0, seq_len=8, generator=g)
    with pytest.raises(ValueError, match="seq_len must be an integer >= 1, got 0"):
        corpus.batch("train", batch_size=2, seq_len=0, generator=g)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        next(corpus.windows("val", batch_size=0, seq_len=4))
    with pytest.raises(ValueError, match="max_tokens must be an integer >= 1, got 0"):
        next(corpus.windows("val", batch_size=1, seq_len=4, max_tokens=0))


def test_a_binary_file_is_named_binary_with_the_reason(tmp_path):
    blob = tmp_path / "model.bin"
    blob.write_bytes(b"PK\3\4" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"model.bin' is binary, not text: a NUL byte at offset 4"):
        ByteCorpus.from_paths(blob)
    zipped = tmp_path / "notes.gz"
    zipped.write_bytes(gzip.compress(b"some text " * 1000))
    with pytest.raises(ValueError, match=r"notes.gz' is binary, not text: a NUL byte at offset"):
        ByteCorpus.from_paths(zipped)
    # A folder of nothing but binary files says so, rather than "empty".
    with pytest.raises(ValueError, match=r"no text: all 2 file\(s\) are binary \(e.g. .*model.bin"):
        ByteCorpus.from_paths(tmp_path)
    # Text in a legacy encoding is not UTF-8 but is text, for a byte-level model too.
    koi8 = tmp_path / "koi8.txt"
    koi8.write_bytes("Привет, мир. ".encode("koi8-r") * 20)
    assert len(ByteCorpus.from_paths(koi8, val_fraction=0.5).train) > 0
