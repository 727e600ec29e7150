"""The manifest of a checkpoint step: the size and SHA-256 of every file, checked on load.

``manifest.json`` is written last, over the finished files; ``config.json`` records that a
manifest belongs to the step, so a deleted manifest is noticed rather than taken for a
checkpoint written before manifests existed::

    {"format": 1, "files": {"config.json": {"bytes": 312, "sha256": "9f86d0..."}, ...}}
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from multihead.checkpoint.errors import CheckpointError, CheckpointNotFoundError
from multihead.checkpoint.layout import CONFIG, MANIFEST, STATE, WEIGHTS

_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
Entry = dict[str, Any]  # {"sha256": str, "bytes": int}


def file_digest(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size in bytes of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def manifest_bytes(step_dir: Path, names: list[str]) -> bytes:
    """The manifest of the files ``names`` in ``step_dir``, as JSON bytes."""
    files = {}
    for name in sorted(names):
        digest, size = file_digest(step_dir / name)
        files[name] = {"sha256": digest, "bytes": size}
    return (json.dumps({"format": 1, "files": files}, indent=2, sort_keys=True) + "\n").encode()


def write_manifest(directory: str | os.PathLike) -> dict[str, Entry]:
    """Recompute ``manifest.json`` over the checkpoint files now in a step directory.

    Only for deliberate edits (a hand-edited ``config.json``, a removed ``state.pt``) or to
    add a manifest to a checkpoint written before manifests existed: whatever the files now
    hold is declared correct. Returns the new entries.
    """
    step_dir = Path(directory)
    names = [n for n in (CONFIG, WEIGHTS, STATE) if (step_dir / n).is_file()]
    if CONFIG not in names:
        raise CheckpointNotFoundError(f"{step_dir} has no {CONFIG}: it is not a checkpoint step")
    tmp = step_dir / f".{MANIFEST}.{secrets.token_hex(8)}.tmp"
    tmp.write_bytes(manifest_bytes(step_dir, names))
    os.replace(tmp, step_dir / MANIFEST)
    return read_manifest(step_dir)  # type: ignore[return-value]


def read_manifest(step_dir: Path) -> dict[str, Entry] | None:
    """The manifest's entries by file name, or None if the step has no manifest."""
    path = step_dir / MANIFEST
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{path} is damaged: it is not valid JSON ({err})") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != 1 or not isinstance(files, dict):
        raise CheckpointError(
            f"{path} is damaged or of an unknown kind: expected {{'format': 1, 'files': {{...}}}}"
        )
    for name, entry in files.items():
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and _HEX64.fullmatch(entry["sha256"])
            and isinstance(entry.get("bytes"), int)
            and entry["bytes"] >= 0
        )
        if name not in (CONFIG, WEIGHTS, STATE) or not ok:
            raise CheckpointError(
                f"{path} is damaged: entry {name!r}: {entry!r} is not a checkpoint file name "
                "with a 64-digit hex sha256 and a byte count"
            )
    return files


def check_digest(path: Path, digest: str, size: int, entry: Entry | None) -> None:
    """Raise CheckpointError unless ``digest`` and ``size`` are those the manifest records."""
    if entry is None:
        raise CheckpointError(
            f"checkpoint file {path} is not listed in {MANIFEST}: it was not written with this "
            "checkpoint"
        )
    if digest == entry["sha256"] and size == entry["bytes"]:
        return
    hint = "damaged"
    if size != entry["bytes"]:
        hint = "shorter than written: truncated?"
        if size > entry["bytes"]:
            hint = "longer than written"
    raise CheckpointError(
        f"checkpoint file {path} does not match {MANIFEST} ({hint}): SHA-256 {digest} "
        f"({size} bytes), expected {entry['sha256']} ({entry['bytes']} bytes)"
    )


def check_file(path: Path, entry: Entry | None) -> None:
    """Raise CheckpointError unless the file's size and SHA-256 are those recorded."""
    try:
        digest, size = file_digest(path)
    except FileNotFoundError:
        raise CheckpointNotFoundError(
            f"checkpoint {str(path.parent)!r} is missing {path.name}, which {MANIFEST} lists"
        ) from None
    check_digest(path, digest, size, entry)
