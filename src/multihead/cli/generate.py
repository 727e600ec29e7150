"""``multihead generate``: continue a prompt with a trained DecoderLM, streaming the output.

Example::

    multihead generate --checkpoint runs/small --prompt "def main(" --max-new-tokens 200
"""

from __future__ import annotations

import argparse
import codecs
import sys

import torch

from multihead.checkpoint import load_checkpoint
from multihead.data import encode
from multihead.models import DecoderConfig, DecoderLM


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a checkpoint",
        description="Stream a continuation of --prompt. Text models read and write UTF-8 "
        "bytes; synthetic-task models read and write space-separated token ids.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="directory written by multihead train")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop at this token id")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="recompute the prefix each step")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = DecoderLM.from_checkpoint(args.checkpoint)
    task = load_checkpoint(args.checkpoint, kind=DecoderConfig.kind).meta.get("task", "text")
    text = task == "text"
    if text:
        prompt = encode(args.prompt)
    else:
        try:
            prompt = [int(tok) for tok in args.prompt.split()]
        except ValueError:
            raise ValueError(
                f"this checkpoint was trained on task {task!r}: --prompt must be space-separated "
                f"token ids, got {args.prompt!r}"
            ) from None
    vocab = model.config.vocab_size
    if not prompt:
        raise ValueError("--prompt is empty")
    bad = [t for t in prompt if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"--prompt has token ids {bad[:5]} outside the vocabulary [0, {vocab})")
    try:
        stops = [int(s) for s in args.stop]
    except ValueError:
        raise ValueError(f"--stop takes token ids, got {args.stop!r}") from None
    stream = model.stream(
        [prompt],
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop_tokens=stops,
        use_cache=not args.no_cache,
        generator=torch.Generator().manual_seed(args.seed),
    )
    out = sys.stdout
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out.write(args.prompt if text else " ".join(map(str, prompt)))
    for step in stream:
        tok = int(step[0])
        if tok < 0:
            break
        out.write(decoder.decode(bytes([tok])) if text else f" {tok}")
        out.flush()
    if text:
        out.write(decoder.decode(b"", final=True))
    out.write("\n")
    return 0
