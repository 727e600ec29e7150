"""Bits per byte of a trained byte-level DecoderLM on its validation text, next to what
``gzip -9`` and ``xz -9`` reach on the same text, plus the run's validation curve and a
generated sample.

Usage::

    multihead train --preset small --out runs/small
    python benchmarks/lm_bpb.py --checkpoint runs/small --output benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import math
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from multihead.checkpoint import load_checkpoint
from multihead.data import ByteCorpus, decode, encode
from multihead.models import DecoderConfig, DecoderLM


def compressed_bits(tool: str, data: bytes) -> tuple[int, str]:
    """Size in bits of ``data`` compressed at level 9, by the command-line tool if present."""
    exe = shutil.which(tool)
    if exe is not None:
        out = subprocess.run([exe, "-9", "-c"], input=data, capture_output=True, check=True)
        return 8 * len(out.stdout), f"`{tool} -9`"
    if tool == "gzip":
        return 8 * len(gzip.compress(data, 9)), "Python gzip level 9"
    return 8 * len(lzma.compress(data, preset=9)), "Python lzma preset 9"


@torch.no_grad()
def model_bits(model: DecoderLM, corpus: ByteCorpus, seq_len: int) -> tuple[float, int]:
    total, count = 0.0, 0
    for x, y in corpus.windows("val", batch_size=32, seq_len=seq_len):
        logits = model(x).float()  # (b, T, V)
        total += float(F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1), reduction="sum"))
        count += y.numel()
    return total / math.log(2), count


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prompt", default="import os\n\n\ndef ")
    p.add_argument("--output", default=None)
    args = p.parse_args()
    ckpt = load_checkpoint(args.checkpoint, kind=DecoderConfig.kind)
    train_cfg = ckpt.config["train"]
    model = DecoderLM.from_checkpoint(args.checkpoint)
    corpus = ByteCorpus.from_paths(train_cfg["data"], val_fraction=train_cfg["val_fraction"])
    bits, n = model_bits(model, corpus, train_cfg["seq_len"])
    val = bytes(corpus.val.tolist())
    scored = val[1 : 1 + n]  # exactly the bytes the model predicted
    g_bits, g_name = compressed_bits("gzip", scored)
    x_bits, x_name = compressed_bits("xz", scored)
    # The same compressors limited to the model's context: each window compressed alone.
    t = train_cfg["seq_len"]
    wins = [scored[i : i + t] for i in range(0, len(scored), t)]
    gw_bits = sum(8 * len(gzip.compress(w, 9)) for w in wins)
    xw_bits = sum(8 * len(lzma.compress(w, preset=9)) for w in wins)
    log = Path(args.checkpoint) / "log.jsonl"
    curve = []
    if log.exists():
        records = [json.loads(x) for x in log.read_text().splitlines()]
        curve = [r for r in records if r["type"] == "eval"]
        trains = [r for r in records if r["type"] == "train"]
    torch.manual_seed(0)
    sample = model.generate(
        [encode(args.prompt)],
        max_new_tokens=model.config.max_seq_len - len(encode(args.prompt)),
        temperature=0.8,
        top_k=40,
        generator=torch.Generator().manual_seed(0),
    )[0]
    cmd = "python " + " ".join(["benchmarks/lm_bpb.py", *sys.argv[1:]])
    lines = [
        "### Byte-level LM on the standard library (`multihead train --preset small`)",
        "",
        f"`{cmd}`; validation text: {len(scored):,} bytes of {corpus.source} "
        f"(val_fraction {train_cfg['val_fraction']}), scored in non-overlapping windows of "
        f"{train_cfg['seq_len']} bytes.",
        "",
        "| predictor | bits per byte |",
        "| --- | --- |",
        f"| DecoderLM, step {ckpt.step} ({model.num_parameters():,} parameters) "
        f"| **{bits / n:.3f}** |",
        f"| {g_name} | {g_bits / len(scored):.3f} |",
        f"| {x_name} | {x_bits / len(scored):.3f} |",
        f"| gzip level 9, each {t}-byte window alone (the model's context) "
        f"| {gw_bits / len(scored):.3f} |",
        f"| xz preset 9, each {t}-byte window alone | {xw_bits / len(scored):.3f} |",
        "",
    ]
    if curve:
        last_train = trains[-1] if trains else {}
        lines += [
            "Validation curve during training (first "
            f"{curve[-1].get('val_tokens', 0):,} validation bytes; elapsed from the log):",
            "",
            "| step | val bpb |",
            "| --- | --- |",
            *[f"| {r['step']} | {r['val_bpb']:.3f} |" for r in curve],
            "",
            f"Training: {last_train.get('step', '?')} steps in "
            f"{last_train.get('elapsed_s', float('nan')):.0f} s.",
            "",
        ]
    lines += [
        f"Sample (prompt {args.prompt!r}, temperature 0.8, top-k 40):",
        "",
        "```python",
        args.prompt + decode(sample),
        "```",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        path = Path(args.output)
        old = path.read_text() if path.exists() else "# Benchmark results\n"
        path.write_text(old.rstrip("\n") + "\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
