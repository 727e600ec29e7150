"""``multihead prune``: remove attention heads from a DecoderLM checkpoint for good.

Examples::

    multihead prune --checkpoint runs/small --fraction 0.5 --out runs/small-half
    multihead prune --checkpoint runs/ind --heads "0:1,3;1:0" --out runs/ind-pruned
    multihead train --resume runs/small-half --steps 1200     # keep training the pruned model

``--fraction`` removes the heads with the lowest gradient importance (Michel et al. 2019),
ranked across layers on per-layer normalized scores, each layer keeping at least one head
unless ``--allow-empty-layer``; ``--heads`` names them (original head ids, as the checkpoint's
unpruned model numbered them). Heads are scored and the loss measured on the checkpoint's own
task and data unless ``--task`` or ``--data`` says otherwise. The pruned checkpoint keeps the
checkpoint's step and training config (with a fresh optimizer state), so ``multihead train
--resume`` continues it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from pathlib import Path

import torch

from multihead.analysis import (
    forward_flops,
    gradient_importance,
    lowest_heads,
    parse_head_spec,
    prune_heads,
    save_pruned,
    seconds_per_forward,
)
from multihead.checkpoint import load_checkpoint
from multihead.cli.helptext import DefaultsFormatter
from multihead.data import TASKS
from multihead.models import DecoderConfig, DecoderLM
from multihead.train import TrainConfig
from multihead.train.data import TrainData
from multihead.train.evaluate import evaluating, score_batches


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prune",
        help="remove attention heads from a checkpoint (by importance or by name)",
        description="Write a pruned copy of a DecoderLM checkpoint and print its loss and "
        "forward speed before and after.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="directory written by multihead train (its newest step) or a step directory",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--fraction",
        type=float,
        metavar="F",
        help="remove this share of all heads, those of lowest gradient importance, in [0, 1]",
    )
    which.add_argument(
        "--heads",
        metavar="SPEC",
        help='remove these heads: "layer:head,head;layer:head" (e.g. "0:1,3;1:0"), original '
        "head ids",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the checkpoint")
    p.add_argument(
        "--allow-empty-layer",
        action="store_true",
        help="allow removing every head of a layer (its attention then adds only its bias)",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument(
        "--task",
        choices=("text", *TASKS),
        default=None,
        help="score on this task instead of the checkpoint's own",
    )
    data.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="score on this text file or folder (byte-level) instead of the checkpoint's data",
    )
    p.add_argument(
        "--batches",
        type=int,
        default=4,
        metavar="N",
        help="training batches the importance is computed on (with --fraction)",
    )
    p.add_argument(
        "--eval-tokens",
        type=int,
        default=16384,
        metavar="N",
        help="validation tokens the loss is measured on",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _train_config(saved: dict | None, args: argparse.Namespace) -> TrainConfig:
    """The checkpoint's training config with the scoring data the flags ask for."""
    base = TrainConfig.from_dict(saved) if saved else TrainConfig()
    changes: dict = {"eval_tokens": args.eval_tokens}
    if args.data is not None:
        changes.update(task="text", data=args.data)
    elif args.task is not None:
        changes["task"] = args.task
    return dataclasses.replace(base, **changes)


def _loss(model: DecoderLM, batches: list) -> float:
    """Loss in nats per scored token."""
    with evaluating(model):
        return score_batches(model, batches).loss


def _speeds(a: DecoderLM, b: DecoderLM, tokens: torch.Tensor, rounds: int = 5) -> list[float]:
    """Seconds per forward of ``a`` and ``b``, timed alternately (so a busy machine slows
    both alike), the fastest of ``rounds`` each."""
    for model in (a, b):
        seconds_per_forward(model, tokens, repeats=1, warmup=0)  # warm-up, untimed
    best = [math.inf, math.inf]
    for _ in range(rounds):
        for i, model in enumerate((a, b)):
            best[i] = min(best[i], seconds_per_forward(model, tokens, repeats=1, warmup=0))
    return best


def _spec(args: argparse.Namespace, model: DecoderLM, data: TrainData) -> dict[int, list[int]]:
    if args.heads is not None:
        return parse_head_spec(args.heads)
    if not 0 <= args.fraction <= 1:
        raise ValueError(f"--fraction must be in [0, 1], got {args.fraction}")
    if args.batches < 1:
        raise ValueError(f"--batches must be >= 1, got {args.batches}")
    batches = [data.batch(10**9 + i) for i in range(args.batches)]  # not the run's steps
    scores = gradient_importance(model, batches, progress=not args.quiet)
    return lowest_heads(
        scores, args.fraction, model=model, allow_empty_layer=args.allow_empty_layer
    )


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint, kind=DecoderConfig.kind)
    if Path(args.out).resolve() in (ckpt.path.resolve(), ckpt.path.resolve().parent):
        raise ValueError(
            f"--out {args.out} is the checkpoint being pruned; write the pruned model elsewhere"
        )
    saved_train = ckpt.config.get("train") if "model" in ckpt.config else None
    model = DecoderLM.from_checkpoint(args.checkpoint)
    if args.eval_tokens < 1:
        raise ValueError(f"--eval-tokens must be >= 1, got {args.eval_tokens}")
    scoring = _train_config(saved_train, args)
    data = TrainData(scoring, model.config)
    val = list(data.eval_batches())
    x = val[0][0]  # (B, T): the batch timed
    spec = _spec(args, model, data)
    heads_before = list(model.config.layer_head_counts)
    flops_before = forward_flops(model, x.shape[1])
    loss_before = _loss(model, val)
    unpruned = copy.deepcopy(model)
    prune_heads(model, spec, allow_empty_layer=args.allow_empty_layer)
    loss_after = _loss(model, val)
    s_before, s_after = _speeds(unpruned, model, x)
    train_config = TrainConfig.from_dict(saved_train) if saved_train else None
    path = save_pruned(
        model,
        args.out,
        train_config=train_config,
        step=ckpt.step,
        meta={"pruned_from": str(ckpt.path), "removed": {str(k): v for k, v in spec.items()}},
    )
    removed = sum(len(v) for v in spec.values())
    shown = "; ".join(f"{k}:{','.join(map(str, v))}" for k, v in sorted(spec.items())) or "none"
    predicted = flops_before / forward_flops(model, x.shape[1])
    print(f"removed {removed} of {sum(heads_before)} heads ({shown})")
    print(f"heads per layer: {heads_before} -> {list(model.config.layer_head_counts)}")
    print(f"loss ({scoring.task} validation, nats/token): {loss_before:.4f} -> {loss_after:.4f}")
    if scoring.task == "text":  # one token per byte
        bpb = [v / math.log(2) for v in (loss_before, loss_after)]
        print(f"bits per byte: {bpb[0]:.4f} -> {bpb[1]:.4f}")
    print(
        f"forward of a {tuple(x.shape)} batch (fastest of 5, timed alternately): "
        f"{1e3 * s_before:.2f} ms -> {1e3 * s_after:.2f} ms ({s_before / s_after:.2f}x; FLOPs "
        f"predict {predicted:.2f}x)"
    )
    print(f"wrote {path}")
    if train_config is not None:
        print(f"continue training: multihead train --resume {args.out} --steps N (N > {ckpt.step})")
    return 0
