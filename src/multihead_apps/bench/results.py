"""Sections of benchmarks/RESULTS.md: every benchmark (``multihead bench``, the scripts in
benchmarks/) writes its own section and leaves the others as they are."""

from __future__ import annotations

import os
from pathlib import Path

SECTION = "## Attention"


def _heading_level(line: str) -> int:
    """1 for ``# x``, 2 for ``## x``, ...; 0 for a line that is not a Markdown heading."""
    marks = len(line) - len(line.lstrip("#"))
    return marks if marks and line[marks : marks + 1] == " " else 0


def write_section(path: str | Path, section: str, heading: str = SECTION) -> None:
    """Write ``section`` into ``path`` atomically, replacing the section whose heading line
    starts with ``heading`` (it runs to the next heading of the same or a higher level,
    outside code fences) and keeping everything else; append it if there is none."""
    p = Path(path)
    text = p.read_text() if p.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        level, end, fenced = _heading_level(heading), len(lines), False
        for i in range(start + 1, len(lines)):
            if lines[i].startswith("```"):
                fenced = not fenced
            elif not fenced and 0 < _heading_level(lines[i]) <= level:
                end = i
                break
        before = "\n".join(lines[:start]).rstrip("\n")
        after = "\n".join(lines[end:])
        new = (before + "\n\n" if before else "") + section.rstrip("\n") + "\n"
        if after:
            new += "\n" + after.rstrip("\n") + "\n"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, p)
