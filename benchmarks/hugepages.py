"""What a kept attention map costs to write: fresh memory from torch against huge pages.

A map kept by ``record(mode="weights")`` is fresh memory, so each of its pages is faulted in
the first time it is written. Three ways to get a written 32 MiB buffer (one layer's
``(1, 8, 1024, 1024)`` float32 map), each kept alive for the round as a recording keeps its
maps:

- ``torch.empty(...).fill_(1)``: PyTorch's allocator, 4 KiB pages;
- ``torch.zeros(...)`` and then a write: the same pages written twice;
- ``multihead._hugepages.zeros(...)`` and then a write: 2 MiB transparent huge pages.

Interleaved shuffled rounds in one process (:func:`multihead_apps.bench.timing.interleave`),
one thread; medians, with each ratio against ``torch.empty`` and its per-round range.

Command (appends to benchmarks/RESULTS.md)::

    PYTHONPATH=src python benchmarks/hugepages.py --rounds 15 --append
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from multihead import _hugepages as hugepages
from multihead_apps.bench.timing import interleave

RESULTS = Path(__file__).with_name("RESULTS.md")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=32, help="buffer size in MiB")
    p.add_argument("--keep", type=int, default=12, help="buffers kept alive per round")
    p.add_argument("--rounds", type=int, default=15, help="timed interleaved rounds")
    p.add_argument("--append", action="store_true", help="append the results to RESULTS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n = args.mib << 18  # float32 elements
    kept: list[torch.Tensor] = []

    def run(make):
        def call() -> None:
            kept.clear()
            for _ in range(args.keep):
                kept.append(make())

        return call

    calls = {
        "torch.empty + fill": run(lambda: torch.empty(n).fill_(1.0)),
        "torch.zeros + fill": run(lambda: torch.zeros(n).fill_(1.0)),
        "huge pages + fill": run(lambda: hugepages.zeros((n,), dtype=torch.float32).fill_(1.0)),
    }
    result = interleave(calls, rounds=args.rounds, warmup=1)
    lines = [
        "",
        f"## Kept maps on huge pages (benchmarks/hugepages.py, {time.strftime('%Y-%m-%d')})",
        "",
        f"`PYTHONPATH=src python benchmarks/hugepages.py {' '.join(argv or sys.argv[1:])}` -- "
        f"{args.keep} buffers of {args.mib} MiB written and kept per call, one thread, "
        f"{result.rounds} interleaved rounds; transparent huge pages available: "
        f"{hugepages.available()}.",
        "",
        "| buffer | ms per buffer (median) | ratio to torch.empty (range) |",
        "|---|---|---|",
    ]
    for name in calls:
        lo, hi = result.ratio_range(name, "torch.empty + fill")
        lines.append(
            f"| {name} | {result.median(name) / args.keep * 1e3:.1f} | "
            f"{result.ratio(name, 'torch.empty + fill'):.3f} ({lo:.3f}-{hi:.3f}) |"
        )
    print("\n".join(lines))
    if args.append:
        with RESULTS.open("a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
