"""What capturing attention costs: ``record`` against the plain forward (issue 10 targets).

On a 12-layer, width 512, 8-head DecoderLM (byte vocabulary), one thread, no_grad:

- ``mode="weights"`` at T=1024: at most 1.3x the plain forward's time;
- ``mode="summary"`` at T=8192: at most 1.5x the plain forward's time and peak memory.

Times are interleaved shuffled rounds in one process (:func:`multihead_apps.bench.timing.
interleave`): the ratio is the median of per-round ratios, with its range. Peak memory is each
case run alone in a fresh subprocess (one warm-up forward at T=16, then the case): its peak
resident set (VmHWM; ``ru_maxrss`` would report the parent's peak), and the same minus the
peak before the case (the model and libraries), so the ratio of what the forward itself adds
is shown too.

Command (the lead's quiet-machine run; appends to benchmarks/RESULTS.md)::

    PYTHONPATH=src python benchmarks/analysis.py --rounds 5 --append

A quick check that it works (small settings, prints only)::

    PYTHONPATH=src python benchmarks/analysis.py --layers 2 --t-weights 128 --t-summary 256 \
        --rounds 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from multihead.analysis import record
from multihead.models import DecoderConfig, DecoderLM
from multihead_apps.bench.timing import interleave

RESULTS = Path(__file__).with_name("RESULTS.md")


def build(layers: int, width: int, heads: int, t: int) -> DecoderLM:
    torch.manual_seed(0)
    cfg = DecoderConfig(
        num_layers=layers, d_model=width, num_heads=heads, vocab_size=256, max_seq_len=t
    )
    return DecoderLM(cfg).eval()


def case(model: DecoderLM, kind: str, tokens: torch.Tensor, block: int):
    """A zero-argument call running one forward as ``kind`` does."""

    def forward() -> None:
        with torch.no_grad():
            model(tokens)

    def weights() -> None:
        with torch.no_grad(), record(model, mode="weights") as rec:
            model(tokens)
        assert rec.weights[0] is not None

    def summary() -> None:
        with torch.no_grad(), record(model, mode="summary", block=block) as rec:
            model(tokens)
        assert rec.summary[0] is not None

    return {"forward": forward, "weights": weights, "summary": summary}[kind]


def peak_kib() -> int:
    """This process's peak resident set in KiB: VmHWM from /proc (it starts afresh at exec,
    while ``ru_maxrss`` keeps the forking parent's peak on Linux), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(args: argparse.Namespace) -> None:
    """Run one case in this (fresh) process and print its peak memory as JSON."""
    torch.set_num_threads(args.threads)
    model = build(args.layers, args.d_model, args.heads, args.t)
    case(model, args.kind, torch.randint(0, 256, (1, 16)), args.block)()  # warm-up, small
    before = peak_kib()
    t0 = time.perf_counter()
    case(model, args.kind, torch.randint(0, 256, (1, args.t)), args.block)()
    seconds = time.perf_counter() - t0
    peak = peak_kib()
    print(json.dumps({"peak_kib": peak, "before_kib": before, "seconds": seconds}))


def peak_memory(args: argparse.Namespace, kind: str, t: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--t",
        str(t),
        "--layers",
        str(args.layers),
        "--d-model",
        str(args.d_model),
        "--heads",
        str(args.heads),
        "--threads",
        str(args.threads),
        "--block",
        str(args.block),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def timing(args: argparse.Namespace, kind: str, t: int) -> dict:
    model = build(args.layers, args.d_model, args.heads, t)
    tokens = torch.randint(0, 256, (1, t))
    calls = {k: case(model, k, tokens, args.block) for k in ("forward", kind)}
    result = interleave(calls, rounds=args.rounds, warmup=1)
    if result.failed:
        raise RuntimeError(f"a case failed: {result.failed}")
    lo, hi = result.ratio_range(kind, "forward")
    return {
        "forward_s": result.median("forward"),
        f"{kind}_s": result.median(kind),
        "ratio": result.ratio(kind, "forward"),
        "range": (lo, hi),
        "rounds": result.rounds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=12, help="decoder layers")
    p.add_argument("--d-model", type=int, default=512, help="model width")
    p.add_argument("--heads", type=int, default=8, help="attention heads")
    p.add_argument("--t-weights", type=int, default=1024, help="length for mode='weights'")
    p.add_argument("--t-summary", type=int, default=8192, help="length for mode='summary'")
    p.add_argument("--block", type=int, default=256, help="summary query rows per block")
    p.add_argument("--rounds", type=int, default=5, help="timed interleaved rounds")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--append", action="store_true", help="append the results to RESULTS.md")
    p.add_argument("--child", choices=("forward", "weights", "summary"), help=argparse.SUPPRESS)
    p.add_argument("--t", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.kind = args.child
        child(args)
        return 0
    torch.set_num_threads(args.threads)
    lines = []
    for kind, t in (("weights", args.t_weights), ("summary", args.t_summary)):
        tm = timing(args, kind, t)
        mem = {k: peak_memory(args, k, t) for k in ("forward", kind)}
        f, c = mem["forward"], mem[kind]
        total = c["peak_kib"] / f["peak_kib"]
        added_f = f["peak_kib"] - f["before_kib"]
        # The peak only grows: a forward under the process's earlier peak adds nothing.
        added = "n/a" if added_f < 1024 else f"{(c['peak_kib'] - c['before_kib']) / added_f:.3f}"
        lines.append(
            f"| {kind} | {t} | {tm['forward_s']:.3f} | {tm[f'{kind}_s']:.3f} | "
            f"{tm['ratio']:.3f} ({tm['range'][0]:.3f}-{tm['range'][1]:.3f}, "
            f"{tm['rounds']} rounds) | {f['peak_kib'] / 1024:.0f} / {c['peak_kib'] / 1024:.0f}"
            f" MiB = {total:.3f} | {added} |"
        )
        print(lines[-1], flush=True)
    header = [
        "",
        f"## Attention capture cost (benchmarks/analysis.py, {time.strftime('%Y-%m-%d')})",
        "",
        f"`PYTHONPATH=src python benchmarks/analysis.py {' '.join(argv or sys.argv[1:])}` -- "
        f"DecoderLM {args.layers} layers, width {args.d_model}, {args.heads} heads, "
        f"{args.threads} thread(s), batch 1, no_grad; targets: weights <= 1.3x time at "
        "T=1024, summary <= 1.5x time and peak memory at T=8192.",
        "",
        "| mode | T | forward s | record s | time ratio (range) | peak RSS forward / record "
        "| added-memory ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    if args.append:
        with RESULTS.open("a") as f:
            f.write("\n".join(header + lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
