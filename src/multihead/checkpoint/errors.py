"""The errors a checkpoint reports: one exception naming the file and what is wrong with it."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read: damaged, incomplete, unsafe or mismatched.

    The message names the file and says what is wrong; it never carries a traceback from
    inside safetensors or torch, and never suggests loading unsafely.
    """


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint directory or one of its files is missing.

    Also a FileNotFoundError, so ``except FileNotFoundError`` written before this class existed
    keeps working.
    """


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint written before manifests existed: it loads, but its files cannot be verified."""


def require_bool(name: str, value: object) -> bool:
    # TODO(lead): replace with _checks.require_bool once `core` lands it.
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {value!r}")
    return value
