"""The weights of a Hugging Face-format directory, read tensor by tensor from safetensors.

A directory holds ``model.safetensors``, or shards listed in ``model.safetensors.index.json``
(``{"weight_map": {tensor name: shard file}}``). Pickled weights (``pytorch_model.bin``,
``*.pt``...) are refused without being opened: unpickling can run arbitrary code, and
safetensors cannot. Tensors are read one at a time from the memory-mapped files, so loading a
model never holds a second full copy of it.

Example:
    >>> import tempfile, pathlib, torch
    >>> from safetensors.torch import save_file
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> save_file({"w": torch.ones(2, 3)}, d / "model.safetensors")
    >>> files = WeightFiles(d)
    >>> sorted(files.names), files.shape("w"), files.dtype("w")
    (['w'], (2, 3), torch.float32)
    >>> (d / "model.safetensors").unlink(); _ = (d / "pytorch_model.bin").write_bytes(b"x")
    >>> WeightFiles(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    ValueError: ... holds only pickled weights (pytorch_model.bin); ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from multihead.convert.packaged import require_sha256

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
# Pickle formats checkpoints come in; named in the refusal, never opened.
_PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "*.bin", "*.pt", "*.pth", "*.ckpt")
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _pickled_files(folder: Path) -> list[str]:
    found: list[str] = []
    for pattern in _PICKLED:
        found += [p.name for p in sorted(folder.glob(pattern)) if p.name not in found]
    return found


def _shard_map(folder: Path) -> dict[str, str]:
    """Tensor name -> shard file name, from the index (checked: names are plain file names)."""
    index = folder / INDEX
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{index} is not valid JSON ({err}); expected a shard index") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index} has no 'weight_map' object mapping tensor names to shard files")
    for name, file in weight_map.items():
        if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
            raise ValueError(
                f"{index} maps {name!r} to {file!r}; shard entries must be file names in the "
                "same directory"
            )
    return weight_map


class WeightFiles:
    """The safetensors files of a checkpoint directory, opened lazily (memory-mapped).

    Args:
        folder: the checkpoint directory.
        verify: the sha256 each weight file must have: one hex digest for a single
            ``model.safetensors``, or ``{file name: digest}`` (shards); None checks nothing.

    Raises:
        FileNotFoundError: no weights at all, or a shard the index names is missing.
        ValueError: only pickled weights (refused, not opened), a damaged file or index, a
            sha256 mismatch.
    """

    def __init__(self, folder: str | os.PathLike, *, verify: str | Mapping[str, str] | None = None):
        from safetensors import SafetensorError, safe_open

        self.folder = Path(folder)
        if (self.folder / SINGLE).is_file():
            self._where = None
            files = [SINGLE]
        elif (self.folder / INDEX).is_file():
            self._where = _shard_map(self.folder)
            files = sorted(set(self._where.values()))
            missing = [f for f in files if not (self.folder / f).is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{self.folder / INDEX} names shards {missing} that are missing from "
                    f"{str(self.folder)!r}"
                )
        else:
            pickled = _pickled_files(self.folder)
            if pickled:
                raise ValueError(
                    f"{str(self.folder)!r} holds only pickled weights ({', '.join(pickled)}); "
                    "multihead reads weights only from safetensors, because loading a pickle can "
                    "run arbitrary code, so the file was not opened. Convert it where you trust "
                    "it: transformers' AutoModel.from_pretrained(dir).save_pretrained(dir) "
                    "writes model.safetensors"
                )
            raise FileNotFoundError(
                f"no {SINGLE} or {INDEX} in {str(self.folder)!r}; expected a Hugging Face-format "
                "checkpoint directory"
            )
        self.files = [self.folder / f for f in files]
        self._check_digests(verify)
        self._handles: dict[str, Any] = {}
        for file in files:
            path = self.folder / file
            try:
                self._handles[file] = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError) as err:
                raise ValueError(self._damaged(path, err)) from None
        if self._where is None:
            self._where = {n: SINGLE for n in self._handles[SINGLE].keys()}  # noqa: SIM118 (not a dict)
        else:
            for name, file in self._where.items():
                if name not in self._handles[file].keys():  # noqa: SIM118 (not a dict)
                    raise ValueError(f"{INDEX} puts {name!r} in {file}, which does not hold it")
        self.names = frozenset(self._where)

    def _check_digests(self, verify: str | Mapping[str, str] | None) -> None:
        if verify is None:
            return
        if isinstance(verify, str):
            if len(self.files) != 1:
                raise ValueError(
                    f"verify is one sha256 but {str(self.folder)!r} has {len(self.files)} shards; "
                    "give {file name: sha256} for each"
                )
            verify = {self.files[0].name: verify}
        if not isinstance(verify, Mapping):
            raise TypeError(
                f"verify must be None, a sha256 hex digest or {{file name: digest}}, got "
                f"{type(verify).__name__}"
            )
        unknown = sorted(set(verify) - {f.name for f in self.files})
        if unknown:
            raise ValueError(
                f"verify names {unknown}, which are not weight files of this checkpoint"
            )
        for name, digest in verify.items():
            require_sha256(self.folder / name, digest)

    @staticmethod
    def _damaged(path: Path, err: Exception) -> str:
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(b"PK\x03\x04") or (len(head) > 1 and head[0] == 0x80):
            return (
                f"{path} holds a pickle (a torch.save archive), not safetensors; multihead does "
                "not unpickle weights, so it was not loaded"
            )
        return f"{path} is not a readable safetensors file ({err}); it is damaged or truncated"

    def _slice(self, name: str) -> Any:
        return self._handles[self._where[name]].get_slice(name)

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of tensor ``name`` (read from the header, no data)."""
        return tuple(self._slice(name).get_shape())

    def dtype(self, name: str) -> torch.dtype:
        code = self._slice(name).get_dtype()
        if code not in _DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {code}, which multihead cannot read")
        return _DTYPES[code]

    def get(self, name: str) -> torch.Tensor:
        """Tensor ``name``, read into memory."""
        return self._handles[self._where[name]].get_tensor(name)
