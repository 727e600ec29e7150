"""``multihead train``: train a DecoderLM from a preset, any field overridden by a flag.

Examples::

    multihead train --preset tiny --steps 100 --out runs/tiny
    multihead train --preset small --out runs/small --data path/to/text --d-model 256
    multihead train --task induction --steps 500 --out runs/ind
    multihead train --resume runs/small --steps 1200          # continue, same configs
    torchrun --nproc_per_node 2 -m multihead.cli train --preset tiny --out runs/ddp
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from multihead.checkpoint import load_checkpoint
from multihead.models import DecoderConfig
from multihead.train import PRESETS, TrainConfig, preset, train

# Flags the command defines itself rather than from the config dataclasses.
_OWN = {"task", "data", "steps"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_value(kind: str, optional: bool):
    base = {"int": int, "float": float, "str": str}[kind]

    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        return base(text)

    parse.__name__ = kind  # argparse names the type in its errors
    return parse


def _add_fields(group: argparse._ArgumentGroup, cls: type, skip: set[str]) -> None:
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = str(f.type).replace(" ", "")
        optional = kind.endswith("|None")
        kind = kind.removesuffix("|None")
        if kind not in ("int", "float", "str", "bool"):
            continue  # e.g. per-layer head ids: they come from a pruned checkpoint, not flags
        if kind == "bool":
            group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None)
        else:
            hint = f"{kind.upper()}{'|none' if optional else ''}"
            group.add_argument(
                _flag(f.name), type=_parse_value(kind, optional), default=None, metavar=hint
            )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a decoder language model (one process or torchrun DDP)",
        description="Train a DecoderLM on byte-level text or a synthetic task. Start from a "
        "preset; every model and training field below overrides it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--preset", choices=PRESETS, default=None, help="starting configs (tiny unless resuming)"
    )
    p.add_argument("--steps", type=int, default=None, help="optimizer steps in total")
    p.add_argument("--out", default=None, help="checkpoint and log directory")
    p.add_argument("--data", default=None, help="text file or folder (default: Python stdlib)")
    p.add_argument(
        "--task",
        choices=("text", "induction", "copy", "reverse"),
        default=None,
        help="what to train on",
    )
    p.add_argument("--resume", default=None, help="continue from this checkpoint directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_fields(p.add_argument_group("model (DecoderConfig)"), DecoderConfig, set())
    _add_fields(p.add_argument_group("training (TrainConfig)"), TrainConfig, _OWN)
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name, None) is not None
    }


def build_configs(args: argparse.Namespace) -> tuple[DecoderConfig, TrainConfig]:
    """Preset (or the resumed checkpoint's configs), then the flags given."""
    if args.resume is not None and args.preset is None:
        ckpt = load_checkpoint(args.resume, kind=DecoderConfig.kind)
        model_base, train_base = ckpt.config["model"], ckpt.config["train"]
    else:
        m, t = preset(args.preset or "tiny")
        model_base, train_base = m.to_dict(), t.to_dict()
    model_over = _overrides(args, DecoderConfig)
    train_over = _overrides(args, TrainConfig)
    train_cfg = TrainConfig.from_dict({**train_base, **train_over})
    model_dict = {**model_base, **model_over}
    if "max_seq_len" not in model_over and model_dict["max_seq_len"] < train_cfg.seq_len:
        model_dict["max_seq_len"] = train_cfg.seq_len  # follow --seq-len unless told otherwise
    return DecoderConfig.from_dict(model_dict), train_cfg


def run(args: argparse.Namespace) -> int:
    model_cfg, train_cfg = build_configs(args)
    out = args.out or args.resume
    if out is None:
        raise ValueError("--out is required (where checkpoints and log.jsonl go)")
    result = train(model_cfg, train_cfg, out=out, resume=args.resume, progress=not args.quiet)
    if result["checkpoint"] is not None:
        last = result["evals"][-1] if result["evals"] else {}
        summary = ", ".join(
            f"{k} {v:.4f}" for k, v in last.items() if k.startswith("val_") and k != "val_tokens"
        )
        print(f"saved {result['checkpoint']} ({summary})", file=sys.stderr)
    return 0
