"""Saving and loading checkpoint steps (the layout is described in :mod:`multihead.checkpoint`)."""

from __future__ import annotations

import hashlib
import json
import operator
import os
import shutil
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model

from multihead.checkpoint.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    UnverifiedCheckpointWarning,
    require_bool,
)
from multihead.checkpoint.files import (
    create_file,
    fsync_path,
    install_dir,
    prepare_output_dir,
    remove_tree,
    replace_file,
)
from multihead.checkpoint.layout import (
    CONFIG,
    FORMAT_VERSION,
    LATEST,
    MANIFEST,
    STATE,
    STEP_NAME,
    WEIGHTS,
    step_name,
)
from multihead.checkpoint.manifest import (
    Entry,
    check_digest,
    check_file,
    manifest_bytes,
    read_manifest,
)
from multihead.checkpoint.readers import read_safetensors, read_torch_state
from multihead.checkpoint.temporaries import SaveLock, remove_stale_temporaries


def _config_bytes(
    kind: str, config: dict[str, Any], step: int, meta: dict[str, Any] | None
) -> bytes:
    doc = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "step": step,
        "meta": meta or {},
        "manifest": MANIFEST,
    }
    try:
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    except (TypeError, ValueError) as err:
        raise TypeError(f"config and meta must be JSON-serializable: {err}") from None


def _step_number(step: object) -> int:
    """``step`` as an int >= 0; integer scalars (numpy, 0-d tensors) are accepted."""
    try:
        number = -1 if isinstance(step, bool) else operator.index(step)  # type: ignore[arg-type]
    except TypeError:
        number = -1
    if number < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    return number


def _write_step(
    tmp: Path, model: torch.nn.Module, doc: bytes, state: dict[str, Any] | None
) -> None:
    """Every file of a step, then its manifest, all durable before anything points at them."""
    os.mkdir(tmp)  # 0o777 minus the umask, unlike mkdtemp's 0o700
    create_file(tmp / CONFIG, doc)  # 0o666 minus the umask
    save_model(model, str(tmp / WEIGHTS))
    # safetensors writes through a 0o600 temporary file: give it the mode the umask gave ours.
    os.chmod(tmp / WEIGHTS, stat.S_IMODE(os.stat(tmp / CONFIG).st_mode))
    fsync_path(tmp / WEIGHTS)
    names = [WEIGHTS, CONFIG]
    if state is not None:
        with open(tmp / STATE, "xb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        names.append(STATE)
    create_file(tmp / MANIFEST, manifest_bytes(tmp, names))
    fsync_path(tmp)


def _drop_old_steps(root: Path, keep: int, final: Path, lock: SaveLock) -> None:
    steps = [p for p in root.iterdir() if STEP_NAME.fullmatch(p.name) and p.is_dir()]
    steps.sort(key=lambda p: int(p.name[5:]))
    for p in steps[: max(0, len(steps) - keep)]:
        if p != final:
            # Renamed first: a kill during the deletion must not leave half a step under a real
            # name; the temporary name is removed by a later cleanup if this one dies.
            doomed = lock.temp(p.name)
            os.rename(p, doomed)
            shutil.rmtree(doomed, ignore_errors=True)


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    model: torch.nn.Module,
    kind: str,
    config: dict[str, Any],
    step: int = 0,
    state: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    keep: int | None = 2,
) -> Path:
    """Write one checkpoint step into ``directory`` atomically and point ``LATEST`` at it.

    Temporaries that killed saves left in ``directory`` are removed first
    (:func:`remove_stale_temporaries`); new files and directories get the umask's permissions.

    Args:
        model: its ``state_dict`` goes to safetensors (tied weights are stored once).
        kind: what the config describes (e.g. ``"decoder_lm"``); checked again on load.
        config: JSON-serializable configuration needed to rebuild the model.
        step: training step (>= 0), names the step directory.
        state: optional training state (optimizer/scheduler state dicts, RNG states, counters);
            tensors, numbers, strings, lists, tuples and dicts only, so that it loads with
            ``torch.load(weights_only=True)``.
        meta: optional JSON-serializable extras (metrics, versions).
        keep: how many step directories to keep (oldest removed first); None keeps all.

    Returns:
        The path of the step directory written.

    Raises:
        CheckpointError: ``directory`` is an existing file or cannot be created or written.
    """
    step = _step_number(step)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise ValueError(f"keep must be None or an integer >= 0, got {keep!r}")
    doc = _config_bytes(kind, config, step, meta)
    root = prepare_output_dir(directory)
    name = step_name(step)
    final = root / name
    with SaveLock(root) as lock:
        remove_stale_temporaries(root)
        tmp = lock.temp(name)
        _write_step(tmp, model, doc, state)
        old = install_dir(tmp, final, lock.temp(name, "old"))
        fsync_path(root)
        replace_file(root / LATEST, (name + "\n").encode(), lock.temp(LATEST))
        if old is not None:
            remove_tree(old)
        if keep is not None:
            _drop_old_steps(root, keep, final, lock)
    return final


@dataclass
class Checkpoint:
    """A checkpoint step read from disk. Files other than the config are read lazily.

    With ``verify`` (the default) every file is checked against the step's manifest before it
    is parsed: a mismatch raises CheckpointError naming the file and both SHA-256 digests.
    ``manifest`` is None for checkpoints written before manifests (or when not verifying).
    """

    path: Path
    kind: str
    config: dict[str, Any]
    step: int
    meta: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Entry] | None = None
    verify: bool = True

    def _checked(self, name: str) -> Path:
        f = self.path / name
        if self.verify and self.manifest is not None:
            check_file(f, self.manifest.get(name))
        elif not f.exists():
            raise CheckpointNotFoundError(f"checkpoint {str(self.path)!r} is missing {name}")
        return f

    def verify_files(self) -> None:
        """Check every file the manifest lists now (size and SHA-256), whatever ``verify``."""
        manifest = read_manifest(self.path)
        if manifest is None:
            raise CheckpointNotFoundError(f"checkpoint {self.path} has no {MANIFEST} to verify")
        for name, entry in manifest.items():
            check_file(self.path / name, entry)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The saved tensors by name (from safetensors: loading never runs code)."""
        return read_safetensors(self._checked(WEIGHTS))

    def training_state(self) -> dict[str, Any] | None:
        """The optional training state, loaded with ``weights_only=True`` (no arbitrary code).

        None if the checkpoint was saved without one.
        """
        f = self.path / STATE
        if not f.exists():
            if self.manifest is not None and STATE in self.manifest:
                raise CheckpointNotFoundError(
                    f"checkpoint {self.path} has no training state ({STATE}): the file is "
                    f"missing although {MANIFEST} lists it"
                )
            return None
        return read_torch_state(self._checked(STATE))

    def load_into(self, model: torch.nn.Module) -> None:
        """Load the weights into ``model``; raise CheckpointError naming every mismatch."""
        weights = self.state_dict()
        expected = model.state_dict()
        problems = []
        # Tied parameters are stored once by safetensors.save_model; accept either name.
        shared = _shared_names(model)
        for key, tensor in expected.items():
            source = weights.get(key)
            if source is None:
                source = next((weights[a] for a in shared.get(key, ()) if a in weights), None)
            if source is None:
                problems.append(f"missing tensor {key!r} (shape {tuple(tensor.shape)})")
            elif source.shape != tensor.shape:
                problems.append(
                    f"tensor {key!r} has shape {tuple(source.shape)} in the checkpoint but the "
                    f"model expects {tuple(tensor.shape)}"
                )
        unexpected = sorted(set(weights) - set(expected))
        if unexpected:
            problems.append(f"unexpected tensors {unexpected[:5]}")
        if problems:
            raise CheckpointError(
                f"checkpoint {self.path} does not match the model built from its config: "
                + "; ".join(problems[:8])
            )
        with torch.no_grad():
            for key, tensor in expected.items():
                source = weights.get(key)
                if source is None:
                    source = next(weights[a] for a in shared[key] if a in weights)
                tensor.copy_(source)


def _shared_names(model: torch.nn.Module) -> dict[str, tuple[str, ...]]:
    by_ptr: dict[int, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        by_ptr.setdefault(tensor.data_ptr(), []).append(key)
    return {k: tuple(n for n in names if n != k) for names in by_ptr.values() for k in names}


def resolve_step_dir(directory: str | os.PathLike) -> Path:
    """The step directory a checkpoint path refers to: ``DIR/LATEST`` or a step dir itself."""
    root = Path(directory)
    if not root.exists():
        raise CheckpointNotFoundError(f"checkpoint directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise CheckpointError(f"checkpoint path {str(root)!r} is a file, not a directory")
    if any((root / name).exists() for name in (CONFIG, MANIFEST, WEIGHTS)):
        return root
    latest = root / LATEST
    if not latest.exists():
        raise CheckpointNotFoundError(
            f"checkpoint directory {str(root)!r} has neither {CONFIG} nor a {LATEST} file; "
            "expected a directory written by multihead.checkpoint.save_checkpoint"
        )
    name = latest.read_text(errors="replace").strip()
    if not STEP_NAME.fullmatch(name):
        raise CheckpointError(
            f"{latest} is damaged: it should name a step directory like 'step-00000100' but "
            f"holds {name[:40]!r}"
        )
    step_dir = root / name
    if not step_dir.is_dir():
        # A replacement without atomic exchange stopped between its two renames: the step is
        # complete under its moved-aside name until a cleanup or the next save moves it back.
        for aside in sorted(root.glob(f".{name}.*.old")):
            if (aside / CONFIG).is_file():
                return aside
        raise CheckpointNotFoundError(
            f"{latest} points at {name!r}, which is missing from {str(root)!r}"
        )
    return step_dir


def _read_config(path: Path, manifest: dict[str, Entry] | None) -> dict[str, Any]:
    f = path / CONFIG
    try:
        data = f.read_bytes()
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} is missing {CONFIG}") from None
    if manifest is not None:
        check_digest(f, hashlib.sha256(data).hexdigest(), len(data), manifest.get(CONFIG))
    try:
        doc = json.loads(data)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"checkpoint config {f} is not valid JSON: {err}") from None
    if not isinstance(doc, dict) or not {"kind", "config"} <= doc.keys():
        raise CheckpointError(
            f"checkpoint config {f} is not a multihead checkpoint config: expected an object "
            "with 'format', 'kind' and 'config'"
        )
    if doc.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {doc.get('format')!r}; this multihead reads format "
            f"{FORMAT_VERSION}"
        )
    return doc


def load_checkpoint(
    directory: str | os.PathLike, *, kind: str | None = None, verify: bool = True
) -> Checkpoint:
    """Read the newest checkpoint step in ``directory`` (or the step directory given).

    Args:
        kind: if given, the kind the checkpoint must hold.
        verify: check each file against the step's manifest (size and SHA-256) before
            parsing it: the config here, the weights and training state when read. False
            skips the checks (faster for large models, and loads hand-edited files).

    Raises:
        CheckpointNotFoundError: the directory or a file of the checkpoint is missing (names
            it); also a FileNotFoundError.
        CheckpointError: a file is damaged, unreadable or does not match the manifest, the
            config is of another format or of another ``kind``.
    """
    require_bool("verify", verify)
    path = resolve_step_dir(directory)
    manifest = read_manifest(path) if verify else None
    doc = _read_config(path, manifest)
    if verify and manifest is None:
        if doc.get("manifest"):
            raise CheckpointNotFoundError(
                f"checkpoint {path} is missing {MANIFEST}, which its {CONFIG} records: the "
                "checksums of its files are gone (restore it, or load with verify=False)"
            )
        warnings.warn(
            f"checkpoint {path} has no {MANIFEST} (written before checksums existed): its "
            "files are loaded unverified; multihead.checkpoint.write_manifest adds one",
            UnverifiedCheckpointWarning,
            stacklevel=2,
        )
    if kind is not None and doc.get("kind") != kind:
        raise CheckpointError(
            f"checkpoint {path} holds a {doc.get('kind')!r} but a {kind!r} was expected"
        )
    if not (path / WEIGHTS).exists():
        raise CheckpointNotFoundError(f"checkpoint {str(path)!r} is missing {WEIGHTS}")
    return Checkpoint(
        path=path,
        kind=doc["kind"],
        config=doc["config"],
        step=int(doc.get("step", 0)),
        meta=doc.get("meta", {}),
        manifest=manifest,
        verify=verify,
    )
