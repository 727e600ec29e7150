"""``multihead train``: train a DecoderLM from a preset, any field overridden by a flag.

Examples::

    multihead train --preset tiny --steps 100 --out runs/tiny
    multihead train --preset small --out runs/small --data path/to/text --d-model 256
    multihead train --task induction --steps 500 --out runs/ind
    multihead train --resume runs/small --steps 1200          # continue, same configs
    torchrun --nproc_per_node 2 -m multihead.cli train --preset tiny --out runs/ddp

Every model and training flag is a field of :class:`~multihead.models.DecoderConfig` or
:class:`~multihead.train.TrainConfig`; its help is that field's entry in the class docstring
and its shown default is the value the run will use: the chosen preset's (``--preset small
--help``), or the checkpoint's with ``--resume DIR --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Any

from multihead.checkpoint import load_checkpoint
from multihead.cli.helptext import escape, field_docs, show
from multihead.data import TASKS
from multihead.models import DecoderConfig
from multihead.models.config import ACTIVATIONS, NORMS, POSITIONS
from multihead.optim import OPTIMIZERS
from multihead.train import PRESETS, RESUMABLE_CHANGES, NonFiniteError, TrainConfig, preset, train
from multihead.train.config import DEVICES, DROPHEAD_SCHEDULES, SCHEDULES

# Fields whose values form a closed set: argparse lists them and refuses others by name.
_CHOICES = {
    "task": ("text", *TASKS),
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "drophead_schedule": DROPHEAD_SCHEDULES,
    "device": DEVICES,
    "position": POSITIONS,
    "activation": ACTIVATIONS,
    "norm": NORMS,
}
_DEFAULT_PRESET = "tiny"


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


def _shown(value: Any, name: str) -> str:
    if isinstance(value, bool):
        return _flag(name) if value else "--no-" + name.replace("_", "-")
    return show(value)


def _add_fields(
    group: argparse._ArgumentGroup, cls: type, defaults: dict[str, Any], notes: dict[str, str]
) -> None:
    """A flag per field of ``cls`` that a command line can give, its help from the docstring
    and ``defaults`` shown (with ``notes`` after some); flags that are not given leave no
    attribute (so an explicit ``none`` is told apart from nothing)."""
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        kind = str(f.type).replace(" ", "")
        optional = kind.endswith("|None")
        kind = kind.removesuffix("|None")
        if kind not in ("int", "float", "str", "bool"):
            continue  # e.g. per-layer head ids: they come from a pruned checkpoint, not flags
        shown = _shown(defaults.get(f.name), f.name) + notes.get(f.name, "")
        text = escape(f"{docs[f.name].removesuffix('.')} (default: {shown})")
        common = {"default": argparse.SUPPRESS, "help": text, "dest": f.name}
        if kind == "bool":
            group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **common)
        elif f.name in _CHOICES:
            group.add_argument(_flag(f.name), choices=_CHOICES[f.name], **common)
        else:
            hint = f"{kind.upper()}{'|none' if optional else ''}"
            group.add_argument(
                _flag(f.name), type=_parse_value(kind, optional), metavar=hint, **common
            )


def _configure(
    p: argparse.ArgumentParser, model: dict, training: dict, source: str, *, resuming: bool
) -> None:
    p.add_argument(
        "-h",
        "--help",
        action="store_true",
        help="show this help, with the defaults of the --preset given (or of the --resume "
        "checkpoint), and exit",
    )
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="the starting configs, which the flags below override: tiny (seconds on a CPU) "
        f"or small (five minutes on a CPU) (default: {_DEFAULT_PRESET}; not with --resume)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="directory for the checkpoints and log.jsonl (required, except with --resume: "
        "then the resumed directory)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run checkpointed in DIR (or in one of its step directories) with "
        f"its configs; only {', '.join(map(_flag, sorted(RESUMABLE_CHANGES)))} may differ",
    )
    p.add_argument(
        "--allow-finished",
        action="store_true",
        help="with --resume: exit 0 without training when the checkpoint already has --steps "
        "steps (a restarted job), instead of an error",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    title = f"defaults: {source}"
    # A new run's max_seq_len follows --seq-len (build_configs); a resumed one keeps its own.
    notes = {} if resuming else {"max_seq_len": ", or --seq-len if that is larger"}
    group = p.add_argument_group(f"model (DecoderConfig; {title})")
    _add_fields(group, DecoderConfig, model, notes)
    group = p.add_argument_group(f"training (TrainConfig; {title})")
    _add_fields(group, TrainConfig, training, {})


def _preset_configs(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    m, t = preset(name)
    # to_dict() leaves out fields at their defaults (so old files stay readable); help shows
    # every field's value.
    full = {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}
    return {**full, **m.to_dict()}, t.to_dict()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a decoder language model (one process or torchrun DDP)",
        description=_DESCRIPTION,
        add_help=False,  # --help shows the defaults of the --preset given, wherever it is
    )
    model, training = _preset_configs(_DEFAULT_PRESET)
    _configure(p, model, training, f"preset {_DEFAULT_PRESET}", resuming=False)
    p.set_defaults(func=run)


_DESCRIPTION = (
    "Train a DecoderLM on byte-level text or a synthetic task. Start from a preset; every "
    "model and training flag below overrides it. A resumed run continues with the "
    "checkpoint's configs."
)


def help_text(args: argparse.Namespace) -> str:
    """``multihead train --help`` with the defaults this command line would use."""
    model, training, source = _bases(args)
    p = argparse.ArgumentParser(prog="multihead train", description=_DESCRIPTION, add_help=False)
    _configure(p, model, training, source, resuming=args.resume is not None)
    return p.format_help()


def _given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def _bases(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The configs the flags override: the checkpoint's when resuming, else the preset's."""
    if args.resume is None:
        name = args.preset or _DEFAULT_PRESET
        return (*_preset_configs(name), f"preset {name}")
    if args.preset is not None:
        raise ValueError(
            f"--preset {args.preset} cannot be combined with --resume: a resumed run continues "
            "with the checkpoint's configs (drop --preset, or start a new run with --out)"
        )
    ckpt = load_checkpoint(args.resume, kind=DecoderConfig.kind)
    return ckpt.config["model"], ckpt.config["train"], f"the checkpoint {ckpt.path}"


def _conflicts(given: dict[str, Any], saved: dict[str, Any], free: frozenset[str]) -> list[str]:
    return [
        f"{_flag(name)} {show(value)} (the checkpoint has {show(saved.get(name))})"
        for name, value in given.items()
        if name not in free and value != saved.get(name)
    ]


def _name_flags(err: Exception, given: dict[str, Any]) -> Exception:
    """``err`` from a config, with the flags it is about named (``lr must be ... (from --lr
    nan)``)."""
    text = str(err)
    named = [n for n in given if re.search(rf"\b{n}\b", text)]
    if named:
        text += " (from " + " ".join(f"{_flag(n)} {show(given[n])}" for n in named) + ")"
    return type(err)(text)


def build_configs(args: argparse.Namespace) -> tuple[DecoderConfig, TrainConfig]:
    """The preset's configs (or, resuming, the checkpoint's), then the flags given. Resuming,
    a flag that would change what the run computes is an error naming it and both values."""
    model_base, train_base, _ = _bases(args)
    model_over, train_over = _given(args, DecoderConfig), _given(args, TrainConfig)
    if args.resume is not None:
        problems = _conflicts(model_over, model_base, frozenset())
        problems += _conflicts(
            train_over, {**TrainConfig().to_dict(), **train_base}, RESUMABLE_CHANGES
        )
        if problems:
            raise ValueError(
                f"--resume {args.resume} continues with the checkpoint's configs, but these "
                f"flags would change what the run computes: {'; '.join(problems)}. Drop them, "
                "or start a new run with --out"
            )
    try:
        train_cfg = TrainConfig.from_dict({**train_base, **train_over})
    except (TypeError, ValueError) as err:
        raise _name_flags(err, train_over) from None
    model_dict = {**model_base, **model_over}
    if args.resume is None and "max_seq_len" not in model_over:
        model_dict["max_seq_len"] = max(model_dict["max_seq_len"], train_cfg.seq_len)
    try:
        return DecoderConfig.from_dict(model_dict), train_cfg
    except (TypeError, ValueError) as err:
        raise _name_flags(err, {**model_over, **train_over}) from None


def run(args: argparse.Namespace) -> int:
    if args.help:
        print(help_text(args), end="")
        return 0
    model_cfg, train_cfg = build_configs(args)
    out = args.out or args.resume
    if out is None:
        raise ValueError("--out is required (where checkpoints and log.jsonl go)")
    try:
        result = train(
            model_cfg,
            train_cfg,
            out=out,
            resume=args.resume,
            progress=not args.quiet,
            allow_finished=args.allow_finished,
        )
    except NonFiniteError as err:  # not a usage error: exit 1, not 2
        print(f"multihead train: error: {err}", file=sys.stderr)
        return 1
    if not result["losses"]:
        print(
            f"nothing to train: {args.resume} is already at --steps {train_cfg.steps} or past "
            "it (--allow-finished)",
            file=sys.stderr,
        )
    elif result["checkpoint"] is not None:
        last = result["evals"][-1] if result["evals"] else {}
        summary = ", ".join(
            f"{k} {v:.4f}" for k, v in last.items() if k.startswith("val_") and k != "val_tokens"
        )
        print(f"saved {result['checkpoint']} ({summary})", file=sys.stderr)
    return 0
