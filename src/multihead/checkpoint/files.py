"""File operations checkpoints are built from: new files and directories get the permissions the
umask gives (0o666 / 0o777 masked, as ``open`` and ``mkdir`` do, not mkstemp's 0o600), they are
made durable with fsync before anything points at them, and each lands with one atomic rename
(or, to replace a directory, one atomic exchange)."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from multihead.checkpoint.errors import CheckpointError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
_renameat2: Callable[..., int] | bool | None = False  # False: not looked up yet


def create_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file (it must not exist yet) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (making its new entries and renames durable)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # directories cannot be opened on some systems; nothing more can be done there
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, tmp: Path) -> None:
    """Replace ``path`` with ``data`` atomically, writing through the temporary ``tmp``."""
    create_file(tmp, data)
    os.replace(tmp, path)
    fsync_path(path.parent)


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the C library, kernel or file system cannot (then nothing changed).
    """
    global _renameat2
    if _renameat2 is False:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            path_at = [ctypes.c_int, ctypes.c_char_p]
            fn.argtypes = [*path_at, *path_at, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            _renameat2 = None
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def install_dir(tmp: Path, final: Path, aside: Path) -> Path | None:
    """Put the complete directory ``tmp`` at ``final`` in one atomic step.

    Returns where the directory previously at ``final`` now is (for the caller to delete), or
    None if there was none. Without an atomic exchange a replacement takes two renames; a kill
    between them leaves ``final`` missing and its old contents at ``aside``: readers find it
    there and :func:`~multihead.checkpoint.remove_stale_temporaries` moves it back.
    """
    if not os.path.lexists(final):
        os.rename(tmp, final)
        return None
    if exchange(tmp, final):
        return tmp
    os.rename(final, aside)
    os.rename(tmp, final)
    return aside


def prepare_output_dir(directory: str | os.PathLike) -> Path:
    """Create the checkpoint (output) directory if needed and check that it can be written.

    Call it before training starts, so that a bad ``--out`` fails at once rather than at the
    first checkpoint; :func:`~multihead.checkpoint.save_checkpoint` calls it too.

    Raises:
        CheckpointError: the path is an existing file (or under one), or cannot be created or
            written; the message names the path and the reason.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> prepare_output_dir(d / "runs" / "a").is_dir()
        True
        >>> (d / "notes.txt").write_text("x")
        1
        >>> prepare_output_dir(d / "notes.txt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multihead.checkpoint.errors.CheckpointError: output directory '...notes.txt' is an ...
    """
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise CheckpointError(
            f"output directory {str(root)!r} is an existing file, not a directory; give the path "
            "of a directory (it is created if missing)"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = err.strerror or str(err)
        if isinstance(err, (FileExistsError, NotADirectoryError)):
            reason = "a part of the path is an existing file, not a directory"
        raise CheckpointError(f"cannot create output directory {str(root)!r}: {reason}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CheckpointError(f"output directory {str(root)!r} is not writable by this user")
    return root
