"""The temporaries of a save, and removing those a killed save left behind.

A save first creates its lock file ``.save-<token>.lock`` in the checkpoint root and holds an
exclusive ``flock(2)`` on it until everything it made is renamed into place or removed. Each
temporary it makes carries the same token: ``.step-00000100.<token>.tmp`` (the step being
written, a step being deleted, or the old contents of a replaced step), ``.LATEST.<token>.tmp``
and ``.step-00000100.<token>.old`` (the old step during a replacement without atomic exchange).

Liveness comes from the lock, not from ages or PID files: the kernel releases a flock when its
process dies however it dies (kill -9 included), PIDs are reused and differ across PID
namespaces, and a slow save of a large model can look as old as a dead one. So a lock that can
be taken means its writer is gone and its temporaries are removed at once; a held lock means a
live save, never touched. Both sides check, while holding the lock, that the lock file is still
the one at that path, so a cleaner cannot take a lock between its creation and its first use.
Age is only the fallback where the lock says nothing: temporaries with no lock file (written by
multihead before locks existed) and file systems without flock. Those are removed once nothing
in them changed for ``min_age`` seconds.

Only names of exactly these patterns directly inside the root are ever touched.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from multihead.checkpoint.errors import CheckpointError
from multihead.checkpoint.files import remove_tree
from multihead.checkpoint.layout import CONFIG, MANIFEST

try:
    import fcntl
except ImportError:  # no flock (Windows): every temporary goes by age
    fcntl = None  # type: ignore[assignment]

# Tokens of versions before locks are mkdtemp's 8 characters; ours are 16 hex digits.
_TEMP = re.compile(r"\.(?P<name>step-\d+|LATEST)\.(?P<token>[A-Za-z0-9_]+)\.(?P<kind>tmp|old)")
_LOCK = re.compile(r"\.save-(?P<token>[0-9a-f]{16})\.lock")
MIN_AGE = 600.0


def _lock(fd: int, *, blocking: bool) -> bool | None:
    """Take an exclusive flock: True taken, False held by another, None flock unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None  # ENOLCK, EOPNOTSUPP...: this file system cannot tell


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class SaveLock:
    """The lock of one save and the names of its temporaries (a context manager).

    On exit it removes whatever temporaries of its own remain (after an error), then its lock.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = ""
        self._fd = -1

    @property
    def lock_path(self) -> Path:
        return self.root / f".save-{self.token}.lock"

    def temp(self, name: str, kind: str = "tmp") -> Path:
        return self.root / f".{name}.{self.token}.{kind}"

    def __enter__(self) -> SaveLock:
        for _ in range(100):
            self.token = secrets.token_hex(8)
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            # A cleaner may have taken and deleted the new file before we locked it: start over.
            if _lock(fd, blocking=True) is not False and _same_file(self.lock_path, fd):
                self._fd = fd
                return self
            os.close(fd)
        raise CheckpointError(f"cannot create a lock file in checkpoint directory {self.root}")

    def __exit__(self, *exc: object) -> None:
        try:
            for entry in os.listdir(self.root):
                m = _TEMP.fullmatch(entry)
                if m and m["token"] == self.token:
                    _discard(self.root, entry, m)
            os.unlink(self.lock_path)
        except OSError:
            pass  # the lock is released below; a later cleanup removes what is left
        finally:
            os.close(self._fd)


def _discard(root: Path, entry: str, m: re.Match[str]) -> Path:
    """Remove one temporary; an ``.old`` step whose real name is missing is moved back."""
    path, final = root / entry, root / m["name"]
    if m["kind"] == "old" and m["name"].startswith("step-") and not os.path.lexists(final):
        # A kill between the two renames of a replacement: this is the only copy of the step.
        nested = path / m["name"]  # versions before this one kept the step one level down
        os.rename(nested if nested.is_dir() else path, final)
        if path.exists():
            remove_tree(path)
        return final
    remove_tree(path)
    return path


def _age(path: Path) -> float:
    """Seconds since anything in ``path`` (itself or, for a directory, its entries) changed."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in os.scandir(path):
            newest = max(newest, child.stat(follow_symlinks=False).st_mtime)
    return time.time() - newest


def _probe(lock: Path) -> tuple[str, int | None]:
    """("free", fd holding the lock) if its writer is gone; else "held", "gone" or "unknown"."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return "gone", None
    except OSError:
        return "unknown", None
    taken = _lock(fd, blocking=False)
    if taken and _same_file(lock, fd):
        return "free", fd
    os.close(fd)
    return {True: "gone", False: "held", None: "unknown"}[taken], None


def remove_stale_temporaries(
    directory: str | os.PathLike, *, min_age: float = MIN_AGE
) -> list[Path]:
    """Remove what killed saves left in a checkpoint directory; never what a live save writes.

    Every :func:`~multihead.checkpoint.save_checkpoint` calls this; call it yourself when
    resuming a run. ``directory`` is the checkpoint root or one of its step directories.

    Args:
        min_age: seconds without change after which temporaries that no lock describes (see
            the module docstring) count as abandoned. Locked temporaries never wait for it.

    Returns:
        The paths removed (or, for a step a killed replacement had moved aside, restored).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / ".save-0123456789abcdef.lock").touch()   # nobody holds it: writer is gone
        >>> (root / ".step-00000003.0123456789abcdef.tmp").mkdir()
        >>> (root / "notes.tmp").touch()                      # not ours: never touched
        >>> sorted(p.name for p in remove_stale_temporaries(root))
        ['.save-0123456789abcdef.lock', '.step-00000003.0123456789abcdef.tmp']
        >>> sorted(p.name for p in root.iterdir())
        ['notes.tmp']
    """
    root = Path(directory)
    if (root / CONFIG).exists() or (root / MANIFEST).exists():
        root = root.parent
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    temps: dict[str, list[tuple[str, re.Match[str]]]] = {}
    locks = set()
    for entry in entries:
        if m := _TEMP.fullmatch(entry):
            temps.setdefault(m["token"], []).append((entry, m))
        elif m := _LOCK.fullmatch(entry):
            locks.add(m["token"])
    removed: list[Path] = []
    for token in sorted(locks | set(temps)):
        items = temps.get(token, [])
        lock = root / f".save-{token}.lock"
        state, fd = _probe(lock) if token in locks else ("unknown", None)
        try:
            if state == "unknown":
                aged = [root / e for e, _ in items] + ([lock] if token in locks else [])
                if not all(_age(p) >= min_age for p in aged):
                    continue
            elif state != "free":
                continue  # a live save, or one that just finished
            removed += [_discard(root, entry, m) for entry, m in items]
            if token in locks:
                os.unlink(lock)
                removed.append(lock)
        except OSError:
            continue  # vanished or not ours to remove: leave it for another time
        finally:
            if fd is not None:
                os.close(fd)
    return removed
