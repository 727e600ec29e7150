"""The few-row linear (multihead.linear) against F.linear, and what it does to decoding.

Part 1, the products: for each weight shape of a SmolLM-135M-shaped decoder (30 layers,
width 576, 9 query and 3 KV heads, FFN 1536, vocab 49152) and of all-MiniLM-L6-v2 (width 384,
FFN 1536), and each row count n, one pass multiplies n rows by ``copies`` distinct copies of
the weight (more bytes than the caches hold, as in a decode step, which reads every weight
once), through ``F.linear`` and in the transposed form ``(W @ x^T)^T``
(``multihead.linear.transposed``); the last column says whether this CPU's rule
(``multihead.linear.ROW_RANGES``) takes that form for n. Part 2: greedy decoding of the
random-weight SmolLM-shaped ``DecoderLM`` (32 new tokens after 16 prompt tokens) with this
CPU's rule on and off (``multihead.linear.MAX_ROWS = 0``), packed weights off
(benchmarks/packed_linear.py measures those), the tokens checked equal.

Interleaved rounds in shuffled order, in one process (multihead_apps.bench.timing); each
speed-up is the median of the per-round ratios, with their range.

    python benchmarks/few_row_linear.py [--rounds 5] [--threads 2] [--copies 30]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

import multihead.linear as few
from multihead import packed_weights
from multihead.models import DecoderConfig, DecoderLM
from multihead_apps.bench.timing import interleave

SHAPES = {
    "SmolLM q/k/v (960 x 576)": (960, 576),
    "SmolLM out (576 x 576)": (576, 576),
    "SmolLM gate/up (3072 x 576)": (3072, 576),
    "SmolLM down (576 x 1536)": (576, 1536),
    "SmolLM LM head (49152 x 576)": (49152, 576),
    "MiniLM q/k/v (1152 x 384)": (1152, 384),
    "MiniLM down (384 x 1536)": (384, 1536),
}
ROWS = (1, 2, 4, 8, 16, 32, 48, 64, 128)


def products(rounds: int, copies: int) -> list[tuple[str, int, float, float, float, str]]:
    out = []
    for name, (o, i) in SHAPES.items():
        count = copies if o * i < 10**7 else 2  # the head alone is larger than any cache
        weights = [torch.randn(o, i) for _ in range(count)]
        calls = {}
        for n in ROWS:
            x = torch.randn(n, i)

            def plain(x=x, weights=weights):
                for w in weights:
                    F.linear(x, w)

            def ours(x=x, weights=weights):
                for w in weights:
                    few.transposed(x, w)

            calls[f"plain{n}"], calls[f"ours{n}"] = plain, ours
        with torch.no_grad():
            t = interleave(calls, rounds=rounds)
        for n in ROWS:
            lo, hi = t.ratio_range(f"plain{n}", f"ours{n}")
            speedup = 1.0 / t.ratio(f"ours{n}", f"plain{n}")
            per = 1e6 / count  # microseconds per product
            plain_us, ours_us = t.median(f"plain{n}") * per, t.median(f"ours{n}") * per
            out.append((name, n, plain_us, ours_us, speedup, f"{lo:.2f}-{hi:.2f}"))
    return out


def smollm_decoder() -> DecoderLM:
    """The random-weight SmolLM-135M-shaped DecoderLM (seed 0) the decoding parts time."""
    cfg = DecoderConfig(
        vocab_size=49152,
        max_seq_len=2048,
        d_model=576,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        ffn_dim=1536,
        activation="swiglu",
        norm="rmsnorm",
        bias=False,
        position="rope",
        tie_embeddings=True,
    )
    torch.manual_seed(0)
    return DecoderLM(cfg).eval()


def decoding(rounds: int) -> list[tuple[int, float, float, float, str]]:
    model = smollm_decoder()
    out = []
    rule = few.rows_for(few.cpu_vendor())
    packed_weights.ENABLED = False  # packed weights would take these products over
    for b in (1, 8):
        prompt = torch.randint(0, 49152, (b, 16), generator=torch.Generator().manual_seed(b))
        results = {}

        def run(rows: tuple[int, int], key: str, p=prompt, results=results) -> None:
            few.MIN_ROWS, few.MAX_ROWS = rows
            results[key] = model.generate(p, max_new_tokens=32)

        calls = {"on": lambda: run(rule, "on"), "off": lambda: run((0, 0), "off")}
        t = interleave(calls, rounds=rounds)
        few.MIN_ROWS, few.MAX_ROWS = rule
        if results["on"] != results["off"]:
            raise AssertionError(f"greedy tokens differ with and without the rule at batch {b}")
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
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="timed interleaved rounds")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--copies", type=int, default=30, help="distinct copies of each weight")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    rows = products(args.rounds, args.copies)
    dec = decoding(max(3, args.rounds // 2))
    vendor = few.cpu_vendor() or "unknown"
    lo, hi = few.rows_for(few.cpu_vendor())
    print(
        f"torch {torch.__version__}, {args.threads} threads, fp32; load average {load}; CPU "
        f"vendor {vendor}: the rule takes the transposed form for "
        + (f"{lo}-{hi} rows" if hi else "no row count")
        + "\n"
    )
    print(
        "| weight | rows n | F.linear us | (W x^T)^T us | speed-up | per-round range "
        "| rule takes it here |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for name, n, plain, ours, speedup, rng in rows:
        taken = "yes" if max(lo, 2) <= n <= hi else "no"
        print(f"| {name} | {n} | {plain:.0f} | {ours:.0f} | {speedup:.2f}x | {rng} | {taken} |")
    print(
        "\n| greedy decode, SmolLM-shaped | rule off, tokens/s | rule on, tokens/s | speed-up "
        "| per-round range |"
    )
    print("| --- | ---: | ---: | ---: | --- |")
    for b, off, on, speedup, rng in dec:
        print(f"| batch {b} | {off:.1f} | {on:.1f} | {speedup:.2f}x | {rng} |")


if __name__ == "__main__":
    main()
