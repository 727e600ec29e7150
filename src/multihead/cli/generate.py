"""``multihead generate``: continue a prompt with a trained DecoderLM, streaming the output.

Example::

    multihead generate --checkpoint runs/small --prompt "def main(" --max-new-tokens 200

Every argument is checked (against the checkpoint's vocabulary too) before anything is
written, so an error never follows a half-written output.
"""

from __future__ import annotations

import argparse
import codecs
import itertools
import sys

import torch

from multihead import _checks
from multihead.checkpoint import load_checkpoint
from multihead.cli.helptext import DefaultsFormatter, escape, field_docs
from multihead.models import DecoderConfig, DecoderLM
from multihead.models.generation import Sampling

# The command's flag for each Sampling field, to name it in errors.
_SAMPLING_FLAGS = {
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "stop_tokens": "--stop",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a checkpoint",
        description="Stream a continuation of --prompt. Text models read and write bytes "
        "(shown as UTF-8); synthetic-task models read and write space-separated token ids.",
        formatter_class=DefaultsFormatter,
    )
    docs = {name: escape(text.removesuffix(".")) for name, text in field_docs(Sampling).items()}
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="directory written by multihead train (its newest step), or a step directory",
    )
    p.add_argument(
        "--prompt",
        required=True,
        help="text to continue: its bytes as given (UTF-8; bytes that are not valid UTF-8 are "
        "kept as they are); for a synthetic-task model, space-separated token ids",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=200,
        metavar="N",
        help="tokens (bytes, for a text model) to generate at most; fewer if a --stop token "
        "comes first",
    )
    p.add_argument("--temperature", type=float, default=0.8, metavar="T", help=docs["temperature"])
    p.add_argument("--top-k", type=int, default=None, metavar="K", help=docs["top_k"])
    p.add_argument("--top-p", type=float, default=None, metavar="P", help=docs["top_p"])
    p.add_argument(
        "--stop",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help=f"{docs['stop_tokens']}; a token id, repeat the flag for several",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the sampling")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the whole prefix at every step instead of using a KV cache (slower; "
        "the same tokens)",
    )
    p.set_defaults(func=run)


def _prompt(args: argparse.Namespace, text: bool, task: str) -> list[int]:
    """The prompt's token ids (its bytes, for a text model)."""
    if text:
        # Arguments reach Python decoded as UTF-8 with undecodable bytes as surrogate escapes
        # (PEP 383): encoding back the same way recovers exactly the bytes that were given,
        # and the model is byte-level, so every byte sequence is a valid prompt.
        try:
            data = args.prompt.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"--prompt holds a character that is not text ({err.object[err.start]!r} at "
                f"position {err.start}): give text or bytes"
            ) from None
        return list(data)
    try:
        ids = [int(tok) for tok in args.prompt.split()]
    except ValueError:
        raise ValueError(
            f"this checkpoint was trained on task {task!r}: --prompt must be space-separated "
            f"token ids, got {args.prompt!r}"
        ) from None
    return ids


def _sampling(args: argparse.Namespace, vocab: int) -> Sampling:
    try:
        sampling = Sampling(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            stop_tokens=args.stop,
        )
    except (TypeError, ValueError) as err:
        flag = next((f for name, f in _SAMPLING_FLAGS.items() if str(err).startswith(name)), "")
        raise type(err)(f"{flag}: {err}" if flag else str(err)) from None
    bad = [t for t in sampling.stop_tokens if t >= vocab]
    if bad:
        raise ValueError(
            f"--stop {bad[0]} is outside this checkpoint's vocabulary: token ids are in "
            f"[0, {vocab})"
        )
    return sampling


def run(args: argparse.Namespace) -> int:
    _checks.require_int("--max-new-tokens", args.max_new_tokens, minimum=0)
    model = DecoderLM.from_checkpoint(args.checkpoint)
    task = load_checkpoint(args.checkpoint, kind=DecoderConfig.kind).meta.get("task", "text")
    text = task == "text"
    prompt = _prompt(args, text, task)
    vocab = model.config.vocab_size
    if not prompt:
        raise ValueError("--prompt is empty")
    bad = [t for t in prompt if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"--prompt has token ids {bad[:5]} outside the vocabulary [0, {vocab})")
    stream = model.stream(
        [prompt],
        max_new_tokens=args.max_new_tokens,
        sampling=_sampling(args, vocab),
        use_cache=not args.no_cache,
        generator=torch.Generator().manual_seed(args.seed),
    )
    # The stream checks the rest (e.g. the length against learned positions) when it starts:
    # take its first token before writing anything.
    first = next(stream, None)
    out = sys.stdout
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out.write(decoder.decode(bytes(prompt)) if text else " ".join(map(str, prompt)))
    for step in itertools.chain(() if first is None else (first,), stream):
        tok = int(step[0])
        if tok < 0:
            break
        out.write(decoder.decode(bytes([tok])) if text else f" {tok}")
        out.flush()
    if text:
        out.write(decoder.decode(b"", final=True))
    out.write("\n")
    return 0
