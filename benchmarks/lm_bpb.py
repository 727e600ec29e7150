"""Bits per byte of a trained byte-level DecoderLM on its validation text, next to what
``gzip -9`` and ``xz -9`` reach on the same text, plus the run's validation curve and a
generated sample.

Usage::

    multihead train --preset small --out runs/small
    python benchmarks/lm_bpb.py --checkpoint runs/small --output benchmarks/RESULTS.md

Every validation byte is scored with a sliding window (``DecoderLM.token_nll``), so each
byte after the first window sees at least ``seq_len - stride`` bytes before it; the
compressors see the same bytes.
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

from multihead.checkpoint import load_checkpoint
from multihead.data import ByteCorpus, decode, encode
from multihead.models import DecoderConfig, DecoderLM, dynamic_token_nll
from multihead_apps.bench.results import write_section

HEADING = "### Byte-level LM on the standard library (`multihead train --preset small`)"


def compressed_bits(tool: str, data: bytes) -> tuple[int, str]:
    """Size in bits of ``data`` compressed at level 9, by the command-line tool if present."""
    exe = shutil.which(tool)
    if exe is not None:
        out = subprocess.run([exe, "-9", "-c"], input=data, capture_output=True, check=True)
        return 8 * len(out.stdout), f"`{tool} -9`"
    if tool == "gzip":
        return 8 * len(gzip.compress(data, 9)), "Python gzip level 9"
    return 8 * len(lzma.compress(data, preset=9)), "Python lzma preset 9"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prompt", default="import os\n\n\ndef ")
    p.add_argument("--stride", type=int, default=None, help="default: seq_len // 4")
    p.add_argument(
        "--dynamic-lr",
        type=float,
        action="append",
        default=[],
        help="also score with dynamic evaluation at this Adam lr (repeatable)",
    )
    p.add_argument("--output", default=None, help="replace this file's LM section")
    p.add_argument("--notes", default="", help="text put under the heading (how it was run)")
    args = p.parse_args()
    ckpt = load_checkpoint(args.checkpoint, kind=DecoderConfig.kind)
    train_cfg = ckpt.config["train"]
    model = DecoderLM.from_checkpoint(args.checkpoint).eval()
    corpus = ByteCorpus.from_paths(train_cfg["data"], val_fraction=train_cfg["val_fraction"])
    context = train_cfg["seq_len"]
    stride = args.stride or max(1, context // 4)
    val = bytes(corpus.val.tolist())
    nll = model.token_nll(corpus.val, context=context, stride=stride)  # (n - 1,) nats
    plain = model.token_nll(corpus.val, context=context, stride=context)
    dynamic = {
        lr: dynamic_token_nll(model, corpus.val, lr=lr, context=context, stride=stride)
        for lr in args.dynamic_lr
    }
    n = len(val) - 1  # every byte after the first is predicted; compressors get them all
    scored = val[1:]
    g_bits, g_name = compressed_bits("gzip", scored)
    x_bits, x_name = compressed_bits("xz", scored)
    wins = [scored[i : i + context] for i in range(0, n, context)]
    gw_bits = sum(8 * len(gzip.compress(w, 9)) for w in wins)
    xw_bits = sum(8 * len(lzma.compress(w, preset=9)) for w in wins)
    ln2 = math.log(2)
    # Per validation part (~32 KB of one stretch of the corpus), each compressed alone.
    parts, pos = [], 0
    for size in corpus.val_parts:
        lo, hi = max(pos, 1), pos + size  # bytes lo..hi-1 of val, as predicted targets
        text = val[lo:hi]
        model_bpb = float(nll[lo - 1 : hi - 1].sum()) / ln2 / len(text)
        shown = list(dynamic.values())[:1]  # the per-part table shows the first dynamic lr
        dyn_bpb = [float(d[lo - 1 : hi - 1].sum()) / ln2 / len(text) for d in shown]
        gzip_bpb = 8 * len(gzip.compress(text, 9)) / len(text)
        xz_bpb = 8 * len(lzma.compress(text, preset=9)) / len(text)
        first = text.lstrip()[:48].decode("utf-8", "replace").splitlines()[0]
        parts.append((len(text), model_bpb, dyn_bpb, gzip_bpb, xz_bpb, first))
        pos = hi
    records = []
    log = Path(args.checkpoint) / "log.jsonl"
    if log.exists():
        records = [json.loads(x) for x in log.read_text().splitlines()]
    curve = [r for r in records if r["type"] == "eval"]
    trains = [r for r in records if r["type"] == "train"]
    torch.manual_seed(0)
    prompt = encode(args.prompt)
    sample = model.generate(
        [prompt],
        max_new_tokens=model.config.max_seq_len - len(prompt),
        temperature=0.8,
        top_k=40,
        generator=torch.Generator().manual_seed(0),
    )[0]
    bpb = float(nll.sum()) / ln2 / n
    plain_bpb = float(plain.sum()) / ln2 / n
    verdict = "beats" if bpb < g_bits / n else "does NOT beat"
    cmd = "python " + " ".join(["benchmarks/lm_bpb.py", *sys.argv[1:]])
    cfg = model.config
    lines = [
        f"{HEADING} — {verdict} `gzip -9` ({bpb:.3f} vs {g_bits / n:.3f} bits per byte)",
        "",
        *([args.notes, ""] if args.notes else []),
        f"`{cmd}`. Model: d_model {cfg.d_model}, {cfg.num_layers} layers, {cfg.num_heads} "
        f"heads, {cfg.position} positions, {model.num_parameters():,} parameters, step "
        f"{ckpt.step}. Validation text: all {n:,} predicted bytes of {corpus.source} "
        f"(val_fraction {train_cfg['val_fraction']}: {len(corpus.val_parts)} parts spread "
        "over the corpus).",
        "",
        "| predictor | bits per byte |",
        "| --- | --- |",
        f"| DecoderLM, sliding windows of {context} bytes, stride {stride} | **{bpb:.3f}** |",
        f"| DecoderLM, non-overlapping {context}-byte windows | {plain_bpb:.3f} |",
        *[
            f"| DecoderLM, dynamic evaluation (the windows above in order; after scoring each, "
            f"one Adam step at lr {lr:g} on its new bytes) | {float(d.sum()) / ln2 / n:.3f} |"
            for lr, d in dynamic.items()
        ],
        f"| {g_name} (the whole text at once) | {g_bits / n:.3f} |",
        f"| {x_name} (the whole text at once) | {x_bits / n:.3f} |",
        f"| gzip level 9, each {context}-byte window alone (the model's context) "
        f"| {gw_bits / n:.3f} |",
        f"| xz preset 9, each {context}-byte window alone | {xw_bits / n:.3f} |",
        "",
        "Per validation part (each part compressed alone; the model scores as above):",
        "",
        "| part | bytes | DecoderLM | "
        + "".join(f"dynamic lr {lr:g} | " for lr in args.dynamic_lr[:1])
        + "gzip -9 | xz -9 | starts with |",
        "| --- " * (6 + len(args.dynamic_lr[:1])) + "|",
        *[
            f"| {i} | {size:,} | {m:.3f} | "
            + "".join(f"{d:.3f} | " for d in dyn)
            + f"{g:.3f} | {x:.3f} | `{first.replace('|', '/')}` |"
            for i, (size, m, dyn, g, x, first) in enumerate(parts)
        ],
        "",
    ]
    if curve:
        last = trains[-1] if trains else {}
        lines += [
            f"Validation curve during training ({curve[-1].get('val_tokens', 0):,} bytes in "
            "windows spread over the validation text, non-overlapping):",
            "",
            "| step | val bpb |",
            "| --- | --- |",
            *[f"| {r['step']} | {r['val_bpb']:.3f} |" for r in curve],
            "",
            f"Training: {last.get('step', '?')} steps in {last.get('elapsed_s', float('nan')):.0f}"
            f" s, {last.get('tokens_per_s', float('nan')):,.0f} tokens/s at the end.",
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
        write_section(args.output, text, heading=HEADING)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
