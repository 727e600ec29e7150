"""``multihead demo`` (and ``python -m multihead_apps.demo``): run the demo pipeline and print
where the report is and what it found.

A failing step prints one line naming it (``multihead demo: error: step 'train' failed:
...``) and exits 1; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from multihead_apps.demo import pipeline
from multihead_apps.demo.recipe import RECIPES

DEFAULT_OUT = "runs/demo"
DESCRIPTION = (
    "Train a 2-layer attention-only model on repeated random tokens, show the induction phase "
    "change, name the previous-token and induction heads, prune the rest, and write "
    "runs/demo/report.html with the viewer and the figures."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output directory (default {DEFAULT_OUT})",
    )
    p.add_argument(
        "--size",
        choices=sorted(RECIPES),
        default="full",
        help="full: the make demo recipe; small: the test's (default full)",
    )
    p.add_argument("--steps", type=int, metavar="N", help="training steps (default: the size's)")
    p.add_argument("--seed", type=int, metavar="N", help="seed (default: the size's)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch threads (default 1: the model's matrices are tiny, and on a busy "
        "machine more threads wait on each other)",
    )
    p.add_argument(
        "--pictures",
        metavar="DIR",
        help="also write the README pictures (small PNGs, a viewer screenshot) here",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train a 2-layer attention-only model, find and keep its induction circuit",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    recipe = RECIPES[args.size]
    changes = {k: getattr(args, k) for k in ("steps", "seed") if getattr(args, k) is not None}
    try:
        recipe = recipe.replace(**changes)
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
    except (TypeError, ValueError) as err:
        print(f"multihead demo: error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        demo = pipeline.run(recipe, args.out, progress=not args.quiet)
        if args.pictures:
            from multihead_apps.demo import pictures

            with pipeline.step("pictures"):
                pictures.write(demo, args.pictures)
    except pipeline.StepFailed as err:
        print(f"multihead demo: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("multihead demo: interrupted", file=sys.stderr)
        return 130
    from multihead_apps.demo.report import head_report, summary_lines, table_text

    print()
    print(table_text(head_report(demo)))
    print()
    for line in summary_lines(demo):
        print(line)
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    print(f"report: {demo.files['report']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m multihead_apps.demo", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
