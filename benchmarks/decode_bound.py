"""The memory-bandwidth bound of batch-1 decoding on this machine.

A batch-1 decode step of a SmolLM-135M-shaped model reads each of its 121 weights once (538
MB in fp32). Measured here, medians of interleaved rounds: the read bandwidth of a sum over
256 MiB, a copy of 256 MiB (read + write), and one pass of one-row products over the 121
weights (``F.linear``), which bounds batch-1 decoding from above whatever the rest of a
step costs.

    python benchmarks/decode_bound.py [--rounds 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from packed_linear import LAYER  # benchmarks/ is on sys.path when run as a script

from multihead_apps.bench.timing import interleave

SHAPES = LAYER * 30 + [(49152, 576)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15, help="timed interleaved rounds")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    x = torch.randn(2**26)  # 256 MiB
    y = torch.empty_like(x)
    weights = [torch.randn(s) for s in SHAPES]
    rows = {576: torch.randn(1, 576), 1536: torch.randn(1, 1536)}
    nbytes = sum(w.numel() * 4 for w in weights)

    def gemv() -> None:
        for w in weights:
            F.linear(rows[w.shape[1]], w)

    calls = {"sum": lambda: x.sum(), "copy": lambda: y.copy_(x), "gemv": gemv}
    with torch.no_grad():
        t = interleave(calls, rounds=args.rounds)
    read = x.numel() * 4 / t.median("sum") / 1e9
    copy = 2 * x.numel() * 4 / t.median("copy") / 1e9
    step = t.median("gemv")
    print(f"torch {torch.__version__}, {args.threads} threads, fp32; load average {load}\n")
    print("| measurement | value |")
    print("| --- | ---: |")
    print(f"| read bandwidth (sum of 256 MiB) | {read:.1f} GB/s |")
    print(f"| copy bandwidth (256 MiB, read + write) | {copy:.1f} GB/s |")
    print(
        f"| one-row products over all 121 weights ({nbytes / 1e6:.0f} MB) | {step * 1e3:.1f} ms |"
    )
    print(f"| bound on batch-1 decoding from those products alone | {1 / step:.1f} tokens/s |")
    print(f"| bound from the read bandwidth | {read * 1e9 / nbytes:.1f} tokens/s |")


if __name__ == "__main__":
    main()
