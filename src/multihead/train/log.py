"""The run's log: ``log.jsonl`` in the output directory, one JSON record per line (``train``
and ``eval`` records), written by the main process only."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, TextIO

LOG = "log.jsonl"


class RunLog:
    """Append records to ``out/log.jsonl``; in the other processes of a run, do nothing.

    A fresh run starts a new log; a resumed one keeps the records up to the step it resumes
    from and drops the later ones (they belonged to the interrupted run).
    """

    def __init__(self, out: Path, *, main: bool, resume_step: int | None = None) -> None:
        self._file: TextIO | None = None
        if not main:
            return
        out.mkdir(parents=True, exist_ok=True)
        path = out / LOG
        if resume_step is not None:
            truncate_log(path, resume_step)
        elif path.exists():
            path.unlink()
        self._file = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def truncate_log(path: Path, keep_until: int) -> None:
    """Drop the records of ``path`` past step ``keep_until`` (atomically)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if json.loads(line).get("step", 0) <= keep_until:
                kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, path)
