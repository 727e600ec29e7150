"""The model a subcommand reads: ``--checkpoint DIR`` (a multihead checkpoint or a Hugging
Face directory) or ``--model NAME`` (a packaged model), with ``--no-verify``. One definition,
shared by ``analyze`` and ``view``."""

from __future__ import annotations

import argparse
from typing import Any

MODELS = ("minilm",)


def add_model_source(p: argparse.ArgumentParser) -> None:
    """``--checkpoint DIR | --model NAME`` (one required) and ``--no-verify``."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", metavar="DIR", help="a multihead checkpoint or Hugging Face directory"
    )
    source.add_argument("--model", choices=MODELS, help="a packaged model")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the SHA-256 check of a multihead checkpoint's files against its manifest "
        "(faster on large files you trust)",
    )


def load_source(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(model, tokenizer or None)`` of the source :func:`add_model_source` parsed."""
    from multihead.convert import load_model, minilm

    if args.model == "minilm":
        return minilm()
    return load_model(args.checkpoint, verify=not args.no_verify)
