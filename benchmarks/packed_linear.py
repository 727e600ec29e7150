"""Packed weights for decoding (multihead.packed_weights) against the eager products.

Part 1, the products: one pass over the 121 weights of a SmolLM-135M-shaped decoder (30
layers of q/k/v 960 x 576, out 576 x 576, gate/up 3072 x 576, down 576 x 1536, and the
49152 x 576 LM head: 538 MB, more than the caches hold, as in a decode step), multiplying n
rows by each, through ``multihead.linear.linear`` (``F.linear`` or this CPU's few-row form)
and through the weights packed for n rows. Part 2: greedy decoding of the random-weight
SmolLM-shaped ``DecoderLM`` (32 new tokens after 16 prompt tokens) with packing on and off,
the packs built before timing (they are kept between calls), the tokens checked equal.

Interleaved rounds in shuffled order, in one process (multihead_apps.bench.timing); each
speed-up is the median of the per-round ratios, with their range.

    python benchmarks/packed_linear.py [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import os

import torch
from few_row_linear import smollm_decoder  # a sibling script: benchmarks/ is on sys.path
from torch import nn

from multihead import packed_weights
from multihead.linear import linear
from multihead_apps.bench.timing import interleave

LAYER = [(960, 576), (576, 576), (3072, 576), (576, 1536)]
ROWS = (1, 2, 4, 8, 16, 32, 64)


def products(rounds: int) -> list[tuple[int, float, float, float, str]]:
    holder = nn.Module()  # packs belong to a module; any module holding the weights does
    weights = nn.ParameterList(
        [nn.Parameter(torch.randn(s), requires_grad=False) for s in LAYER * 30]
        + [nn.Parameter(torch.randn(49152, 576), requires_grad=False)]
    )
    holder.weights = weights
    out = []
    for n in ROWS:
        xs = {576: torch.randn(n, 576), 1536: torch.randn(n, 1536)}

        def plain(xs=xs) -> None:
            for w in weights:
                linear(xs[w.shape[1]], w)

        def packed(xs=xs, n=n) -> None:
            with packed_weights.use(holder, rows=n):
                for w in weights:
                    linear(xs[w.shape[1]], w)

        with torch.no_grad():
            packed()  # pack once, untimed: decoding keeps its packs between calls
            t = interleave({"plain": plain, "packed": packed}, rounds=rounds)
        lo, hi = t.ratio_range("plain", "packed")
        speedup = 1.0 / t.ratio("packed", "plain")
        out.append(
            (n, t.median("plain") * 1e3, t.median("packed") * 1e3, speedup, f"{lo:.2f}-{hi:.2f}")
        )
        packed_weights.release(holder)
    return out


def decoding(rounds: int) -> list[tuple[int, float, float, float, str]]:
    model = smollm_decoder()
    out = []
    for b in (1, 8):
        prompt = torch.randint(0, 49152, (b, 16), generator=torch.Generator().manual_seed(b))
        results = {}

        def run(on: bool, p=prompt, results=results) -> None:
            packed_weights.ENABLED = on
            packed_weights.MIN_TOKENS = 1  # the packs are kept: pack even for 32 tokens
            results[on] = model.generate(p, max_new_tokens=32)

        run(True)  # build the packs for this batch size, untimed
        calls = {"on": lambda run=run: run(True), "off": lambda run=run: run(False)}
        t = interleave(calls, rounds=rounds)
        if results[True] != results[False]:
            raise AssertionError(f"greedy tokens differ with and without packing at batch {b}")
        lo, hi = t.ratio_range("off", "on")
        tokens = b * 32
        out.append(
            (
                b,
                tokens / t.median("off"),
                tokens / t.median("on"),
                1.0 / t.ratio("on", "off"),
                f"{lo:.2f}-{hi:.2f}",
            )
        )
        packed_weights.release(model)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="timed interleaved rounds")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args()
    if not packed_weights.AVAILABLE:
        raise SystemExit("this torch has no MKL packed linear: nothing to measure")
    torch.set_num_threads(args.threads)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    rows = products(args.rounds)
    dec = decoding(max(3, args.rounds // 2))
    print(f"torch {torch.__version__}, {args.threads} threads, fp32; load average {load}\n")
    print("| rows n | all 121 weights, eager ms | packed ms | speed-up | per-round range |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for n, plain, packed, speedup, rng in rows:
        print(f"| {n} | {plain:.1f} | {packed:.1f} | {speedup:.2f}x | {rng} |")
    print(
        "\n| greedy decode, SmolLM-shaped | packing off, tokens/s | on, tokens/s | speed-up "
        "| range |"
    )
    print("| --- | ---: | ---: | ---: | --- |")
    for b, off, on, speedup, rng in dec:
        print(f"| batch {b} | {off:.1f} | {on:.1f} | {speedup:.2f}x | {rng} |")


if __name__ == "__main__":
    main()
