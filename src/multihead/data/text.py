"""Byte-level text corpora: every byte is a token (vocabulary 256), so no tokenizer is needed
and bits per byte compare directly with compressors.

The default corpus is the running Python's own standard-library sources, found through
``sysconfig``: present on every machine, nothing downloaded.

The train/validation split is deterministic: the byte stream is cut into equal parts and every
``1 / val_fraction``-th part goes to validation, so validation text is spread over the whole
corpus instead of being its alphabetically last files.

Example:
    >>> import torch
    >>> from multihead.data import ByteCorpus
    >>> corpus = ByteCorpus(b"def f(x):\\n    return x\\n" * 200, val_fraction=0.1)
    >>> x, y = corpus.batch("train", batch_size=2, seq_len=8, generator=torch.Generator())
    >>> x.shape, bool((x[:, 1:] == y[:, :-1]).all())      # y is x shifted by one
    (torch.Size([2, 8]), True)
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from multihead import _checks

SPLITS = ("train", "val")
# A file is binary when its first _BINARY_PROBE bytes hold a NUL byte: the rule of git and GNU
# grep. Text never contains NUL, while compressed data, images, executables and tensors almost
# always do within a few KiB. Invalid UTF-8 alone is not binary: text in a legacy encoding (the
# standard library's own test/encoded_modules/module_koi8_r.py is mostly such bytes) is text to
# a byte-level model.
_BINARY_PROBE = 8192


def stdlib_sources() -> list[Path]:
    """The ``.py`` files of this Python's standard library (not site-packages), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__"}
    return sorted(p for p in root.rglob("*.py") if not skip.intersection(p.parts) and p.is_file())


def _files_under(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValueError(
            f"corpus file {str(path)!r} is unreadable: {err.strerror or err}"
        ) from None


def binary_reason(data: bytes) -> str | None:
    """Why ``data`` (a file's contents) is binary rather than text, or None if it is text.

    >>> binary_reason(b"def f():\\n    pass\\n") is None
    True
    >>> binary_reason(b"GIF89a\\x01\\x00")
    'a NUL byte at offset 7 (text has none)'
    """
    nul = data.find(b"\0", 0, _BINARY_PROBE)
    return None if nul < 0 else f"a NUL byte at offset {nul} (text has none)"


class ByteCorpus:
    """Bytes split deterministically into train and validation tensors (uint8).

    Args:
        data: the corpus bytes.
        val_fraction: share of the bytes held out for validation, in (0, 0.5].
        source: a description for messages and logs.
    """

    def __init__(self, data: bytes, *, val_fraction: float = 0.01, source: str = "bytes") -> None:
        if not isinstance(val_fraction, (int, float)) or not 0 < val_fraction <= 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5], got {val_fraction!r}")
        if not data:
            raise ValueError(f"corpus {source} is empty; expected some text")
        self.source = source
        self.val_fraction = float(val_fraction)
        stream = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        period = max(2, round(1 / val_fraction))
        # Parts of ~32 KiB (at most 1000 of them), at least one validation part.
        parts = max(period, min(1000, len(data) // 32768))
        bounds = [len(data) * i // parts for i in range(parts + 1)]
        is_val = [i % period == period // 2 for i in range(parts)]
        pieces = {False: [], True: []}
        for i in range(parts):
            pieces[is_val[i]].append(stream[bounds[i] : bounds[i + 1]])
        self.train = torch.cat(pieces[False])
        self.val = torch.cat(pieces[True])
        #: byte length of each validation part, in order (they concatenate to ``val``)
        self.val_parts = [len(piece) for piece in pieces[True]]

    @classmethod
    def from_paths(
        cls, paths: Sequence[str | os.PathLike] | str | os.PathLike | None = None, **kwargs
    ) -> ByteCorpus:
        """Read files and folders (recursively, sorted). None reads the standard-library
        sources. Binary files (:func:`binary_reason`) found in folders are skipped; a binary
        file named directly is an error.

        Raises:
            FileNotFoundError: a path does not exist (named).
            ValueError: a file is unreadable, a file named directly is binary, or no text was
                found (the corpus is empty, or every file is binary).
        """
        named: set[Path] = set()  # files given by name rather than found in a folder
        if paths is None:
            files = stdlib_sources()
            source = f"standard library ({sysconfig.get_paths()['stdlib']})"
        else:
            if isinstance(paths, (str, os.PathLike)):
                paths = [paths]
            files = []
            for p in map(Path, paths):
                if not p.exists():
                    raise FileNotFoundError(f"corpus path {str(p)!r} does not exist")
                if p.is_dir():
                    files += _files_under(p)
                else:
                    files.append(p)
                    named.add(p)
            source = ", ".join(map(str, paths))
        chunks, binary = [], []
        for f in files:
            data = _read(f)
            reason = binary_reason(data)
            if reason is None:
                chunks.append(data)
            elif f in named:
                raise ValueError(
                    f"corpus file {str(f)!r} is binary, not text: {reason}; give text files "
                    "(folders may contain binary files: they are skipped)"
                )
            else:
                binary.append((f, reason))
        data = b"".join(chunks)
        if not data and binary:
            f, reason = binary[0]
            raise ValueError(
                f"corpus {source} has no text: all {len(files)} file(s) are binary (e.g. "
                f"{str(f)!r}: {reason})"
                if len(binary) == len(files)
                else f"corpus {source} has no text: {len(binary)} of its {len(files)} file(s) "
                f"are binary (e.g. {str(f)!r}: {reason}) and the others are empty"
            )
        if not data:
            raise ValueError(f"corpus {source} is empty: its {len(files)} file(s) hold no bytes")
        return cls(data, source=source, **kwargs)

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.train if name == "train" else self.val

    def batch(
        self, split: str, *, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: inputs x ``(B, T)`` and next-byte targets y ``(B, T)``, int64."""
        _checks.require_int("batch_size", batch_size, minimum=1)
        _checks.require_int("seq_len", seq_len, minimum=1)
        data = self.split(split)
        if len(data) < seq_len + 1:
            raise ValueError(
                f"the {split} split of corpus {self.source} has {len(data)} bytes, fewer than "
                f"seq_len + 1 = {seq_len + 1}; use a larger corpus or a smaller seq_len"
            )
        starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
        idx = starts[:, None] + torch.arange(seq_len + 1)  # (B, T+1)
        w = data[idx].long()  # (B, T+1)
        return w[:, :-1], w[:, 1:]

    def windows(
        self, split: str, *, batch_size: int, seq_len: int, max_tokens: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows of the split (for evaluation), in batches ``(b, T)``.

        Without ``max_tokens`` they cover the split end to end. With it, at most
        ``max_tokens`` targets are scored, in windows spread evenly over the whole split
        (always the same ones), so a capped evaluation is not biased towards the split's
        first files.
        """
        _checks.require_int("batch_size", batch_size, minimum=1)
        _checks.require_int("seq_len", seq_len, minimum=1)
        if max_tokens is not None:
            _checks.require_int("max_tokens", max_tokens, minimum=1)
        data = self.split(split)
        total = (len(data) - 1) // seq_len
        chosen = torch.arange(total)
        if max_tokens is not None:
            n = min(total, max(1, max_tokens // seq_len))
            chosen = torch.linspace(0, total - 1, n).round().long()  # (n,), distinct indices
        n = len(chosen)
        for s in range(0, n, batch_size):
            rows = chosen[s : s + batch_size]
            idx = rows[:, None] * seq_len + torch.arange(seq_len + 1)  # (b, T+1)
            w = data[idx].long()
            yield w[:, :-1], w[:, 1:]


def decode(tokens: Sequence[int]) -> str:
    """Bytes to text (invalid UTF-8 replaced)."""
    return bytes(tokens).decode("utf-8", errors="replace")


def encode(text: str) -> list[int]:
    """Text to its UTF-8 bytes."""
    return list(text.encode("utf-8"))
