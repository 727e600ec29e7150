"""Did a change make attention slower? ``multihead bench --quick`` of an older source tree and of
this one, run in alternating processes, compared row by row on each row's ``x ref`` (its
time over SDPA + Linear's in the same round of the same process, so machine load cancels).

Usage::

    git worktree add --detach /tmp/old <commit>
    python benchmarks/attention_regression.py --old /tmp/old --runs 2 \
        --output benchmarks/RESULTS.md

Each run is one ``multihead bench --quick --no-memory`` process; runs alternate old, new,
old, new, ... Reported per row: the median ``x ref`` over the runs of each tree and
new / old. A row slower by more than its runs' spread is a regression.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from multihead_apps.bench.results import write_section

HEADING = "### Attention: no regression against an older tree"
NEW = Path(__file__).resolve().parents[1]
# A table row: competitor | median ms | x ref, the ratio followed by its range in newer trees.
ROW = re.compile(r"^\| (?P<name>[^|]+?) \| [\d.,]+ \| (?P<x>[\d.]+)x(?: \([^)]*\))? \|")


def bench_rows(tree: Path) -> dict[tuple[str, str], float]:
    """``{(case heading, competitor): x ref}`` from one quick bench run of ``tree``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.md"
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        code = "import sys; from multihead.cli import main; sys.exit(main(sys.argv[1:]))"
        args = ["bench", "--quick", "--no-memory", "--output", str(out)]
        subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=tmp,
        )
        rows, case = {}, ""
        for line in out.read_text().splitlines():
            if line.startswith("### "):
                case = line[4:].split(" (`")[0]
            m = ROW.match(line)
            if m and case:
                rows[(case, m["name"])] = float(m["x"])
        return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, type=Path, help="the older source tree (has src/)")
    p.add_argument("--runs", type=int, default=2, help="bench processes per tree")
    p.add_argument("--output", help="write the section into this RESULTS.md")
    args = p.parse_args()
    old_runs, new_runs = [], []
    for i in range(args.runs):
        for tree, runs in ((args.old, old_runs), (NEW, new_runs)):
            print(f"run {i + 1}/{args.runs}: {tree}", file=sys.stderr)
            runs.append(bench_rows(tree))
    keys = [k for k in new_runs[0] if all(k in r for r in old_runs + new_runs)]
    lines = [
        HEADING,
        "",
        f"Command: `python benchmarks/attention_regression.py --old <tree of the older commit> "
        f"--runs {args.runs}`; load average at the end: "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
        + ". Each value: the median over runs of the row's `x ref` (time / SDPA + Linear's "
        "in the same round); range = min-max over runs.",
        "",
        "| case | competitor | old x ref (range) | new x ref (range) | new / old |",
        "|---|---|---:|---:|---:|",
    ]
    for case, name in keys:
        o = [r[(case, name)] for r in old_runs]
        n = [r[(case, name)] for r in new_runs]
        mo, mn = statistics.median(o), statistics.median(n)
        lines.append(
            f"| {case} | {name} | {mo:.2f} ({min(o):.2f}-{max(o):.2f}) | "
            f"{mn:.2f} ({min(n):.2f}-{max(n):.2f}) | {mn / mo:.2f} |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    if args.output:
        write_section(args.output, section, HEADING)


if __name__ == "__main__":
    main()
