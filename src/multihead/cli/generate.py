"""``multihead generate``: continue a prompt with a DecoderLM, streaming the output.

``--checkpoint`` is a directory written by ``multihead train`` or a Hugging Face-format one
(Llama, SmolLM, Mistral, Qwen2: config.json, model.safetensors and tokenizer.json); both are
read by :func:`multihead.convert.load_model`.

Example::

    multihead generate --checkpoint runs/small --prompt "def main(" --max-new-tokens 200
    multihead generate --checkpoint ~/models/SmolLM-135M --prompt "The capital of France is"

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
from multihead.cli.helptext import DefaultsFormatter, escape, field_docs
from multihead.convert import ByteTokenizer, load_model
from multihead.models import DecoderLM
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
        description="Stream a continuation of --prompt. Byte-level text models read and write "
        "bytes (shown as UTF-8); Hugging Face checkpoints use their tokenizer.json; "
        "synthetic-task models read and write space-separated token ids.",
        formatter_class=DefaultsFormatter,
    )
    docs = {name: escape(text.removesuffix(".")) for name, text in field_docs(Sampling).items()}
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="directory written by multihead train (its newest step), a step directory, or a "
        "Hugging Face-format directory (config.json, model.safetensors, tokenizer.json)",
    )
    p.add_argument(
        "--prompt",
        required=True,
        help="text to continue: for a byte-level model its bytes as given (UTF-8; bytes that "
        "are not valid UTF-8 are kept as they are); for a Hugging Face checkpoint, encoded by "
        "its tokenizer.json; for a synthetic-task model, space-separated token ids",
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
        help=f"{docs['stop_tokens']}; a token id, repeat the flag for several (a tokenizer's "
        "end-of-sequence token always stops)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the sampling")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the whole prefix at every step instead of using a KV cache (slower; "
        "the same tokens)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="run each decode step as one compiled graph (torch.compile with frozen weights): "
        "faster steps after a compile of seconds to minutes; worth it for long outputs",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the SHA-256 check of a multihead checkpoint's files against its manifest "
        "(faster on large files you trust)",
    )
    p.set_defaults(func=run)


def _prompt(args: argparse.Namespace, tokenizer) -> list[int]:
    """The prompt's token ids: its bytes for a byte-level model, its tokenizer's ids for a
    Hugging Face checkpoint, or the ids given for a synthetic-task model (no tokenizer)."""
    if isinstance(tokenizer, ByteTokenizer):
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
    if tokenizer is not None:
        return tokenizer.encode([args.prompt]).ids[0].tolist()
    try:
        return [int(tok) for tok in args.prompt.split()]
    except ValueError:
        raise ValueError(
            "this checkpoint has no tokenizer (a synthetic-task model): --prompt must be "
            f"space-separated token ids, got {args.prompt!r}"
        ) from None


def _sampling(args: argparse.Namespace, vocab: int, eos: int | None) -> Sampling:
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
    if eos is not None and eos < vocab and eos not in sampling.stop_tokens:
        sampling = Sampling(
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            stop_tokens=(*sampling.stop_tokens, eos),
        )
    return sampling


class _Printer:
    """Writes generated tokens as they come: bytes through an incremental UTF-8 decoder,
    word pieces by decoding the whole continuation and printing what is new (a piece's text
    can depend on the pieces around it), token ids as numbers."""

    def __init__(self, tokenizer, out) -> None:
        self.tokenizer, self.out = tokenizer, out
        self.ids: list[int] = []
        self.shown = ""
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, tok: int) -> None:
        if self.tokenizer is None:
            self.out.write(f" {tok}")
        elif isinstance(self.tokenizer, ByteTokenizer):
            self.out.write(self.utf8.decode(bytes([tok])))
        else:
            self.ids.append(tok)
            text = self.tokenizer.decode(self.ids)
            if not text.endswith("\ufffd"):  # an unfinished multi-byte character waits
                self.out.write(text[len(self.shown) :] if text.startswith(self.shown) else "")
                self.shown = text
        self.out.flush()

    def finish(self) -> None:
        if isinstance(self.tokenizer, ByteTokenizer):
            self.out.write(self.utf8.decode(b"", final=True))
        elif self.tokenizer is not None:
            text = self.tokenizer.decode(self.ids)
            self.out.write(text[len(self.shown) :] if text.startswith(self.shown) else "")
        self.out.write("\n")


def run(args: argparse.Namespace) -> int:
    _checks.require_int("--max-new-tokens", args.max_new_tokens, minimum=0)
    if args.compile and args.no_cache:
        raise ValueError("--compile compiles the cached decode step; it cannot go with --no-cache")
    model, tokenizer = load_model(args.checkpoint, verify=not args.no_verify)
    if not isinstance(model, DecoderLM):
        raise ValueError(
            f"--checkpoint {args.checkpoint!r} holds a {type(model).__name__}; generate needs a "
            "decoder language model"
        )
    prompt = _prompt(args, tokenizer)
    vocab = model.config.vocab_size
    if not prompt:
        raise ValueError("--prompt is empty")
    bad = [t for t in prompt if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"--prompt has token ids {bad[:5]} outside the vocabulary [0, {vocab})")
    stream = model.stream(
        [prompt],
        max_new_tokens=args.max_new_tokens,
        sampling=_sampling(args, vocab, getattr(tokenizer, "eos", None)),
        use_cache=not args.no_cache,
        generator=torch.Generator().manual_seed(args.seed),
        compile=args.compile,
    )
    # The stream checks the rest (e.g. the length against learned positions) when it starts:
    # take its first token before writing anything.
    first = next(stream, None)
    out = sys.stdout
    printer = _Printer(tokenizer, out)
    if isinstance(tokenizer, ByteTokenizer):
        out.write(printer.utf8.decode(bytes(prompt)))
    else:
        out.write(args.prompt if tokenizer is not None else " ".join(map(str, prompt)))
    for step in itertools.chain(() if first is None else (first,), stream):
        tok = int(step[0])
        if tok < 0:
            break
        printer.add(tok)
    printer.finish()
    return 0
