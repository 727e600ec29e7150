"""Reading checkpoint files safely: one CheckpointError naming the file and what is wrong,
never a traceback from inside safetensors or torch, never a suggestion to unpickle."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from multihead.checkpoint.errors import CheckpointError

_ZIP = b"PK\x03\x04"  # torch.save's archive format
_SAFE_CONTENTS = "tensors, numbers, strings, lists, tuples and dicts"


def _looks_pickled(head: bytes) -> str | None:
    if head.startswith(_ZIP):
        return "a torch.save archive (pickle)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a pickle"
    return None


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (loading it never runs code)."""
    try:
        return load_file(str(path))
    except SafetensorError as err:
        what = _looks_pickled(_head(path))
        if what is not None:
            raise CheckpointError(
                f"checkpoint file {path} holds {what}, not safetensors; multihead reads weights "
                "only from safetensors and does not unpickle them"
            ) from None
        reason = str(err).removeprefix("Error while deserializing header: ")
        raise CheckpointError(
            f"checkpoint file {path} is not a readable safetensors file ({reason}): it is "
            "truncated or damaged"
        ) from None
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint file {path}: {err.strerror}") from None


def _refusal(err: Exception) -> str:
    """What torch's safe unpickler refused, without its advice to load unsafely."""
    for line in str(err).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        skip = (
            "weights_only" in line.lower()
            or "Weights only" in line
            or "issue" in line
            or "documentation" in line
        )
        if line and not skip:
            return line.rstrip(".")
    return "objects outside the safe set"


def read_torch_state(path: Path) -> Any:
    """A training state saved with ``torch.save``, loaded with ``weights_only=True``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: not for users
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        if str(err).startswith("Weights only load failed"):
            raise CheckpointError(
                f"checkpoint file {path} holds objects that a safe load refuses "
                f"({_refusal(err)}); a training state may hold only {_SAFE_CONTENTS}, so it "
                "was not loaded and none of its code ran"
            ) from None
        raise CheckpointError(
            f"checkpoint file {path} is not a readable torch.save archive: it is truncated or "
            "damaged"
        ) from None
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint file {path}: {err.strerror}") from None
    except Exception:  # RuntimeError, EOFError... from a damaged archive
        raise CheckpointError(
            f"checkpoint file {path} is not a readable torch.save archive: it is truncated or "
            "damaged"
        ) from None
