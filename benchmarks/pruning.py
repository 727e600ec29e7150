"""Importance and pruning speed, measured in one process with interleaved shuffled rounds.

1. Gradient importance of one batch (``gradient_importance``: per-example gates through
   forward pre-hooks, ``autograd.grad`` with respect to the gates) against a plain
   forward + backward of the same batch (target: at most 1.2x).
2. Half the heads of every layer pruned (``prune_heads``) against the unpruned model: the
   measured forward (no_grad) and training-step (forward + backward + AdamW) speed-ups next to
   the speed-up the FLOP counts predict (``forward_flops``; target: at least 80 % of it).

Model: DecoderLM, 12 layers, width 512, 8 heads, RoPE, byte vocabulary, 1 thread by default.
Each competitor runs once per round in a seeded random order drawn afresh each round; medians
over rounds, ratios as the median of per-round ratios, with the smallest and largest
per-round value.

Usage (the lead's full run, on a quiet machine)::

    python benchmarks/pruning.py --threads 1 --rounds 7 --repeat 2 --output benchmarks/RESULTS.md

A quick check at small settings::

    python benchmarks/pruning.py --threads 1 --rounds 3 --layers 2 --seq-len 256
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import torch

from multihead.analysis import forward_flops, gradient_importance, lm_loss, prune_heads
from multihead.models import DecoderConfig, DecoderLM
from multihead_apps.bench.results import write_section
from multihead_apps.bench.timing import Timings, shuffled_rounds


def build(args: argparse.Namespace) -> DecoderLM:
    torch.manual_seed(0)
    cfg = DecoderConfig(
        vocab_size=256,
        max_seq_len=args.seq_len,
        d_model=args.d_model,
        num_layers=args.layers,
        num_heads=args.heads,
        position="rope",
    )
    return DecoderLM(cfg)


def step_call(model: DecoderLM, x: torch.Tensor):
    """One training step: forward, backward, AdamW."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def call() -> None:
        lm_loss(model, x).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return call


def calls(args: argparse.Namespace) -> tuple[dict, dict]:
    full = build(args)
    half = build(args)
    remove = list(range(1, args.heads, 2))  # every other head: half of each layer
    prune_heads(half, {layer: remove for layer in range(args.layers)})
    x = torch.randint(0, 256, (args.batch, args.seq_len + 1))  # (B, T + 1): inputs + targets

    def fwd_bwd() -> None:
        lm_loss(full, x).mean().backward()
        full.zero_grad(set_to_none=True)

    def importance() -> None:
        gradient_importance(full, [x], progress=False)

    def forward(model: DecoderLM):
        def call() -> None:
            with torch.no_grad():
                model(x[:, :-1])

        return call

    t = args.seq_len
    info = {
        "predicted": forward_flops(full, t) / forward_flops(half, t),
        "params": (full.num_parameters(), half.num_parameters()),
    }
    return {
        "fwd_bwd": fwd_bwd,
        "importance": importance,
        "forward_full": forward(full),
        "forward_half": forward(half),
        "step_full": step_call(full, x),
        "step_half": step_call(half, x),
    }, info


def timed(fns: dict, rounds: int, repeat: int) -> Timings:
    """One warm-up call each, then ``rounds`` rounds in a fresh seeded random order each; in a
    round each competitor runs ``repeat`` times in a row and keeps its fastest (a shared
    machine's interruptions only ever add time)."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for order in shuffled_rounds(list(fns), rounds):
        for key in order:
            best = math.inf
            for _ in range(repeat):
                t0 = time.perf_counter()
                fns[key]()
                best = min(best, time.perf_counter() - t0)
            samples[key].append(best)
    return Timings(samples)


def fmt(t: Timings, key: str, ref: str) -> str:
    lo, hi = t.ratio_range(key, ref)
    return f"{t.ratio(key, ref):.3f}x ({lo:.3f}-{hi:.3f})"


def saving(measured: float, predicted: float) -> float:
    """Share of the predicted time saving (1 - 1/speed-up) that was measured."""
    return (1 - 1 / measured) / (1 - 1 / predicted)


def report(t: Timings, info: dict, args: argparse.Namespace) -> str:
    pred = info["predicted"]
    fwd = t.ratio("forward_full", "forward_half")
    step = t.ratio("step_full", "step_half")
    cmd = "python " + " ".join(["benchmarks/pruning.py", *sys.argv[1:]])
    ms = {k: 1e3 * t.median(k) for k in t.samples}
    config = (
        f"DecoderLM {args.layers} layers, width {args.d_model}, {args.heads} heads, RoPE, "
        f"B={args.batch}, T={args.seq_len}"
    )
    lines = [
        f"### Pruning: importance cost and half-heads speed-up ({config}, "
        f"{torch.get_num_threads()} thread(s))",
        "",
        f"`{cmd}` — torch {torch.__version__}, {platform.machine()}, medians of {t.rounds} "
        f"interleaved rounds (a seeded random order each round, the fastest of {args.repeat} "
        "calls per competitor in each); ratios: the median of the "
        "per-round ratios (smallest-largest per-round value). Parameters "
        f"{info['params'][0]:,} -> {info['params'][1]:,}.",
        "",
        "| measurement | ms (median) | ratio (rounds) | target |",
        "| --- | --- | --- | --- |",
        f"| gradient importance, one batch vs plain forward+backward | {ms['importance']:.1f} "
        f"vs {ms['fwd_bwd']:.1f} | {fmt(t, 'importance', 'fwd_bwd')} | <= 1.2x |",
        f"| forward speed-up, half the heads pruned | {ms['forward_full']:.1f} -> "
        f"{ms['forward_half']:.1f} | {fmt(t, 'forward_full', 'forward_half')} | "
        f"FLOPs predict {pred:.3f}x; measured/predicted {fwd / pred:.1%} (>= 80 %) |",
        f"| training-step speed-up, half the heads pruned | {ms['step_full']:.1f} -> "
        f"{ms['step_half']:.1f} | {fmt(t, 'step_full', 'step_half')} | "
        f"FLOPs predict {pred:.3f}x; measured/predicted {step / pred:.1%} (>= 80 %) |",
        "",
        f"Share of the predicted time saving realised: forward {saving(fwd, pred):.0%}, "
        f"training step {saving(step, pred):.0%}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="timed rounds")
    p.add_argument("--repeat", type=int, default=2, help="calls per round, the fastest kept")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--layers", type=int, default=12, help="transformer layers")
    p.add_argument("--d-model", type=int, default=512, help="model width")
    p.add_argument("--heads", type=int, default=8, help="query heads per layer (even)")
    p.add_argument("--batch", type=int, default=1, help="sequences per batch")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence")
    p.add_argument("--output", default=None, help="write (replace) this section in this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fns, info = calls(args)
    t = timed(fns, args.rounds, args.repeat)
    text = report(t, info, args)
    print(text)
    if args.output:
        write_section(args.output, text, heading=text.splitlines()[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
