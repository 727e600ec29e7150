"""``multihead bench``: the attention benchmark (see :mod:`multihead_apps.bench`).

Registered through the ``multihead.commands`` entry point (see :mod:`multihead.cli`).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from tqdm import tqdm

from multihead_apps.bench import report, results, runner
from multihead_apps.bench.cases import get_cases

# Quick mode: few rounds and a per-row time budget so that the run stays under two minutes.
QUICK_ROUNDS = 3
QUICK_BUDGET_S = 10.0
FULL_BUDGET_S = 240.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark attention against PyTorch's implementations",
        description=(
            "Time multihead's attention (each backend, the compat module) against "
            "F.scaled_dot_product_attention + Linear, torch.nn.MultiheadAttention and a "
            "tutorial per-head model, interleaved in one process; peak memory of each in a "
            "fresh process; a Targets section at the end."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small cases, few rounds (< 2 min)")
    p.add_argument("--output", metavar="PATH", help="write the '## Attention' section here")
    p.add_argument("--cases", metavar="NAME,...", help="run only these cases (see --list)")
    p.add_argument("--rounds", type=int, metavar="N", help="timed rounds per case")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.add_argument(
        "--max-gib",
        type=float,
        default=None,
        metavar="GIB",
        help="skip rows whose estimated peak memory exceeds this (default 8)",
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run."""
    parts = ["multihead", "bench"]
    if args.quick:
        parts.append("--quick")
    if args.cases:
        parts += ["--cases", args.cases]
    if args.rounds is not None:
        parts += ["--rounds", str(args.rounds)]
    if args.no_memory:
        parts.append("--no-memory")
    if args.max_gib is not None:
        parts += ["--max-gib", f"{args.max_gib:g}"]
    if args.output:
        parts += ["--output", args.output]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    cases = get_cases(args.cases, quick=args.quick)
    if args.list:
        for c in get_cases():
            print(f"{c.name:20s} {c.title}{'  (quick)' if c.quick else ''}")
        return 0
    if args.rounds is not None and args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    max_gib = runner.DEFAULT_MEM_LIMIT_GIB if args.max_gib is None else args.max_gib
    if max_gib <= 0:
        raise ValueError(f"--max-gib must be positive, got {args.max_gib}")
    rounds = args.rounds if args.rounds is not None else (QUICK_ROUNDS if args.quick else None)
    bar = tqdm(total=len(cases), desc="bench", unit="case", file=sys.stderr)
    result = runner.run(
        cases,
        rounds=rounds,
        memory_probe=not args.no_memory,
        budget_s=QUICK_BUDGET_S if args.quick else FULL_BUDGET_S,
        mem_limit_bytes=max_gib * 2**30,
        on_step=lambda case, phase: bar.set_postfix_str(f"{case.name} {phase}"),
        on_case_done=lambda case: bar.update(1),
    )
    bar.close()
    section = report.render(result, command=command_line(args))
    print(section)
    if args.output:
        results.write_section(args.output, section)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
