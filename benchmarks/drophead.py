"""DropHead's effect on the small preset: bits per byte, and the pruning curve with and without.

Reads run directories written by ``multihead train`` (their ``log.jsonl`` and checkpoint),
reports each run's final validation bits per byte, then prunes each model iteratively
(Michel et al. 2019: the lowest-importance heads globally, re-scored after every step) and
reports validation bits per byte at each fraction of heads removed. DropHead (Zhou et al.
2020) is expected to make the curve flatter: a model trained to do without any head should
lose less when heads are removed.

The runs (the lead's full measurement; the same seed and data, 1000 steps each)::

    multihead train --preset small --steps 1000 --time-limit 0 --out runs/dh-none
    multihead train --preset small --steps 1000 --time-limit 0 --drophead 0.1 \\
        --drophead-schedule constant --out runs/dh-constant
    multihead train --preset small --steps 1000 --time-limit 0 --drophead 0.1 \\
        --drophead-schedule v --out runs/dh-v
    python benchmarks/drophead.py runs/dh-none runs/dh-constant runs/dh-v \\
        --output benchmarks/RESULTS.md

A quick check (tiny preset, a few steps)::

    multihead train --preset tiny --steps 50 --out /tmp/dh-a
    multihead train --preset tiny --steps 50 --drophead 0.2 --drophead-schedule v --out /tmp/dh-b
    python benchmarks/drophead.py /tmp/dh-a /tmp/dh-b --eval-tokens 4096 --step 0.25
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from multihead.analysis import prune_iteratively
from multihead.checkpoint import load_checkpoint
from multihead.models import DecoderConfig, DecoderLM
from multihead.train import LOG, TrainConfig, score_batches
from multihead.train.data import TrainData
from multihead_apps.bench.results import write_section


def final_eval(run: Path) -> dict:
    records = [json.loads(line) for line in (run / LOG).read_text().splitlines() if line]
    evals = [r for r in records if r.get("type") == "eval"]
    if not evals:
        raise SystemExit(f"{run / LOG} has no evaluation record")
    return evals[-1]


def curve(run: Path, args: argparse.Namespace) -> tuple[dict, list[tuple[float, float]]]:
    """The run's settings and its pruning curve [(fraction removed, validation bpb)]."""
    ckpt = load_checkpoint(run, kind=DecoderConfig.kind)
    train_cfg = TrainConfig.from_dict({**ckpt.config["train"], "eval_tokens": args.eval_tokens})
    model = DecoderLM.from_checkpoint(run)
    data = TrainData(train_cfg, model.config)
    val = list(data.eval_batches())
    batches = [data.batch(10**9 + i) for i in range(args.batches)]  # not the run's own steps

    def bpb(m: DecoderLM) -> float:
        return score_batches(m, val).loss / math.log(2)

    points = prune_iteratively(
        model,
        batches,
        bpb,
        step_fraction=args.step,
        higher_is_better=False,
        seq_len=train_cfg.seq_len,
        progress=False,
    )
    settings = {
        "drophead": model.config.drophead,
        "schedule": train_cfg.drophead_schedule,
        "step": ckpt.step,
    }
    return settings, [(p.fraction, p.metric) for p in points.points]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories of multihead train")
    p.add_argument("--eval-tokens", type=int, default=32768, help="validation tokens scored")
    p.add_argument("--batches", type=int, default=4, help="training batches scoring heads")
    p.add_argument("--step", type=float, default=0.125, help="share of heads removed per step")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--output", default=None, help="write (replace) this section in this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, curves = [], {}
    for run in args.runs:
        settings, points = curve(run, args)
        name = f"{run.name} (drophead {settings['drophead']}, {settings['schedule']})"
        record = final_eval(run)
        rows.append(
            f"| {name} | {settings['step']} | {record.get('val_bpb', float('nan')):.4f} | "
            f"{points[0][1]:.4f} |"
        )
        curves[name] = points
    fractions = sorted({round(f, 4) for pts in curves.values() for f, _ in pts})
    cmd = "python " + " ".join(["benchmarks/drophead.py", *map(str, sys.argv[1:])])
    lines = [
        "### DropHead: bits per byte and pruning curves",
        "",
        f"`{cmd}` — torch {torch.__version__}; validation bits per byte on {args.eval_tokens} "
        "tokens; heads removed by re-scored gradient importance (Michel et al. 2019), "
        f"{args.step:.1%} of them per step, each layer keeping one.",
        "",
        "| run | steps | val bpb (training log) | val bpb (here) |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        "| heads removed | " + " | ".join(curves) + " |",
        "| --- |" + " --- |" * len(curves),
    ]
    for f in fractions:
        cells = [
            next((f"{m:.4f}" for x, m in pts if round(x, 4) == f), "") for pts in curves.values()
        ]
        lines.append(f"| {f:.1%} | " + " | ".join(cells) + " |")
    text = "\n".join([*lines, ""])
    print(text)
    if args.output:
        write_section(args.output, text, heading=lines[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
