"""Checkpoints: safetensors weights, a JSON config, and training state, written atomically.

Layout of a checkpoint directory ``DIR``::

    DIR/
      LATEST                 name of the newest complete step directory (replaced atomically)
      step-00000100/
        model.safetensors    weights (safetensors: loading never runs pickled code)
        config.json          {"format": 1, "kind": ..., "config": {...}, "step": ..., "meta": {...}}
        state.pt             optional: optimizer, scheduler, RNG states; loaded weights_only=True

A step directory is written under a temporary name and renamed into place, then ``LATEST`` is
replaced (temp file + ``os.replace``), so a crash at any point leaves the previous checkpoint
intact and never a half-written one under a real name.

Example:
    >>> import tempfile, torch
    >>> from multihead.checkpoint import save_checkpoint, load_checkpoint
    >>> net = torch.nn.Linear(3, 2)
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint(d, model=net, kind="linear", config={"in": 3, "out": 2}, step=7)
    >>> ckpt = load_checkpoint(d)
    >>> ckpt.kind, ckpt.config, ckpt.step
    ('linear', {'in': 3, 'out': 2}, 7)
    >>> ckpt.load_into(torch.nn.Linear(3, 2))
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_model

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "state.pt"
LATEST = "LATEST"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rng_state() -> dict[str, Any]:
    """Every global RNG state a training run depends on (torch CPU/CUDA, Python ``random``)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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

    Args:
        model: its ``state_dict`` goes to safetensors (tied weights are stored once).
        kind: what the config describes (e.g. ``"decoder_lm"``); checked again on load.
        config: JSON-serializable configuration needed to rebuild the model.
        step: training step, names the step directory.
        state: optional training state (optimizer/scheduler state dicts, RNG states, counters);
            tensors, numbers, strings, lists, tuples and dicts only, so that it loads with
            ``torch.load(weights_only=True)``.
        meta: optional JSON-serializable extras (metrics, versions).
        keep: how many step directories to keep (oldest removed first); None keeps all.

    Returns:
        The path of the step directory written.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{int(step):08d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
    try:
        save_model(model, str(tmp / WEIGHTS))
        doc = {
            "format": FORMAT_VERSION,
            "kind": kind,
            "config": config,
            "step": int(step),
            "meta": meta or {},
        }
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        if state is not None:
            torch.save(state, tmp / STATE)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            # Re-saving the same step: move the old one aside first so the rename below is atomic.
            old = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".old"))
            os.replace(final, old / name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _atomic_write_bytes(root / LATEST, (name + "\n").encode())
    if keep is not None:
        steps = sorted(p for p in root.glob("step-*") if p.is_dir())
        for p in steps[: max(0, len(steps) - keep)]:
            if p != final:
                shutil.rmtree(p, ignore_errors=True)
    return final


@dataclass
class Checkpoint:
    """A checkpoint step read from disk. Weights are read lazily by :meth:`state_dict`."""

    path: Path
    kind: str
    config: dict[str, Any]
    step: int
    meta: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.path / WEIGHTS))

    def training_state(self) -> dict[str, Any] | None:
        """The optional training state, loaded with ``weights_only=True`` (no arbitrary code)."""
        f = self.path / STATE
        if not f.exists():
            return None
        return torch.load(f, weights_only=True, map_location="cpu")

    def load_into(self, model: torch.nn.Module) -> None:
        """Load the weights into ``model``; raise ValueError naming every mismatch."""
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
            raise ValueError(
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
        raise FileNotFoundError(f"checkpoint directory {str(root)!r} does not exist")
    if (root / CONFIG).exists():
        return root
    latest = root / LATEST
    if not latest.exists():
        raise FileNotFoundError(
            f"checkpoint directory {str(root)!r} has neither {CONFIG} nor a {LATEST} file; "
            "expected a directory written by multihead.checkpoint.save_checkpoint"
        )
    step_dir = root / latest.read_text().strip()
    if not step_dir.is_dir():
        raise FileNotFoundError(
            f"{latest} points at {step_dir.name!r}, which is missing from {str(root)!r}"
        )
    return step_dir


def load_checkpoint(directory: str | os.PathLike, *, kind: str | None = None) -> Checkpoint:
    """Read the newest checkpoint step in ``directory`` (or the step directory given).

    Raises:
        FileNotFoundError: a file of the checkpoint is missing (names it).
        ValueError: the config is unreadable, of another format, or of another ``kind``.
    """
    path = resolve_step_dir(directory)
    for name in (CONFIG, WEIGHTS):
        if not (path / name).exists():
            raise FileNotFoundError(f"checkpoint {str(path)!r} is missing {name}")
    try:
        doc = json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint config {path / CONFIG} is not valid JSON: {err}") from None
    if doc.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format {doc.get('format')!r}; this multihead reads format "
            f"{FORMAT_VERSION}"
        )
    if kind is not None and doc.get("kind") != kind:
        raise ValueError(
            f"checkpoint {path} holds a {doc.get('kind')!r} but a {kind!r} was expected"
        )
    return Checkpoint(
        path=path,
        kind=doc["kind"],
        config=doc["config"],
        step=int(doc.get("step", 0)),
        meta=doc.get("meta", {}),
    )
