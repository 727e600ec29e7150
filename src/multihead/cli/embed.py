"""``multihead embed``: sentence embeddings as JSON lines, one per text.

Example::

    multihead embed --model minilm "A cat sat on the mat." "Dogs bark."
    multihead embed --checkpoint ~/models/all-MiniLM-L6-v2 "A cat sat on the mat."

Each line is ``{"text": ..., "embedding": [E floats]}``, in the order of the texts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from multihead.cli.helptext import DefaultsFormatter
from multihead.convert import load_model, minilm, sentence_embeddings, sentence_settings
from multihead.models import Encoder

MODELS = ("minilm",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="sentence embeddings of texts (JSON lines)",
        formatter_class=DefaultsFormatter,
        description='Print one JSON line {"text", "embedding"} per TEXT: the encoder\'s '
        "hidden states mean-pooled over real tokens and L2-normalized (as sentence-transformers "
        "does; a sentence-transformers directory's own pooling settings are followed).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", choices=MODELS, help="a packaged model")
    source.add_argument("--checkpoint", help="a BERT-family Hugging Face-format directory")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed")
    p.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="sentences per forward pass"
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the SHA-256 check of a multihead checkpoint's files against its manifest "
        "(faster on large files you trust)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options: dict = {}
    if args.model == "minilm":
        model, tokenizer = minilm()
    else:
        model, tokenizer = load_model(
            args.checkpoint, require_tokenizer=True, verify=not args.no_verify
        )
        if not isinstance(model, Encoder):
            raise ValueError(
                f"--checkpoint {args.checkpoint!r} holds a {type(model).__name__}; embed needs "
                "an encoder"
            )
        if (Path(args.checkpoint) / "modules.json").is_file():
            s = sentence_settings(args.checkpoint)
            options = {"pooling": s.pooling, "normalize": s.normalize, "max_length": s.max_length}
    emb = sentence_embeddings(model, tokenizer, args.texts, batch_size=args.batch_size, **options)
    for text, row in zip(args.texts, emb.tolist()):
        sys.stdout.write(json.dumps({"text": text, "embedding": row}) + "\n")
    return 0
