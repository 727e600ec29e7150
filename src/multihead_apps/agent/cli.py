"""``multihead agent``: train and evaluate the 3-head trading agent.

multihead agent train --out runs/agent
multihead agent eval --checkpoint runs/agent

Registered through the ``multihead.commands`` entry point (see :mod:`multihead.cli`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from multihead.cli.helptext import DefaultsFormatter, escape, field_docs
from multihead_apps.agent.env import EnvConfig
from multihead_apps.agent.evaluate import evaluate, format_report
from multihead_apps.agent.policy import TradingPolicy
from multihead_apps.agent.reinforce import EVAL_SEED_START, ReinforceConfig, train, training_state


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden must be comma-separated layer widths like 64,64, got {text!r}"
        ) from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"--hidden widths must be positive, got {text!r}")
    return widths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="train or evaluate the multi-head trading agent",
        description="A policy with side, leverage and risk heads on one trunk, trained with "
        "REINFORCE on a synthetic regime-switching market (Gymnasium env).",
    )
    sub = parser.add_subparsers(dest="agent_command", required=True, metavar="ACTION")

    d = ReinforceConfig()
    doc = {k: escape(v.removesuffix(".")) for k, v in field_docs(ReinforceConfig).items()}
    env_doc = {k: escape(v.removesuffix(".")) for k, v in field_docs(EnvConfig).items()}
    tr = sub.add_parser(
        "train", help="train a policy and save a checkpoint", formatter_class=DefaultsFormatter
    )
    tr.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    tr.add_argument("--iterations", type=int, default=d.iterations, help=doc["iterations"])
    tr.add_argument("--envs", type=int, default=d.num_envs, help=doc["num_envs"])
    tr.add_argument("--horizon", type=int, default=EnvConfig().horizon, help=env_doc["horizon"])
    tr.add_argument("--lr", type=float, default=d.lr, help=doc["lr"])
    tr.add_argument("--gamma", type=float, default=d.gamma, help=doc["gamma"])
    tr.add_argument("--entropy-coef", type=float, default=d.entropy_coef, help=doc["entropy_coef"])
    tr.add_argument(
        "--hidden",
        type=_widths,
        default=d.hidden,
        metavar="W,W,...",
        help=f"{doc['hidden']}, comma-separated (default: {','.join(map(str, d.hidden))})",
    )
    tr.add_argument("--seed", type=int, default=d.seed, help=doc["seed"])
    tr.add_argument("--save-every", type=int, default=100, help="iterations between saves")
    tr.add_argument("--threads", type=int, default=1, help="torch threads")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    tr.set_defaults(func=_train)

    ev = sub.add_parser(
        "eval",
        help="compare a checkpoint with random and buy-and-hold",
        formatter_class=DefaultsFormatter,
    )
    ev.add_argument("--checkpoint", required=True, type=Path, help="directory from train")
    ev.add_argument("--episodes", type=int, default=200, help="held-out episodes")
    ev.add_argument(
        "--seed-start",
        type=int,
        default=None,
        help=f"first held-out seed (default: {EVAL_SEED_START}, past every training seed)",
    )
    ev.add_argument(
        "--sample", action="store_true", help="sample actions instead of each head's mode"
    )
    ev.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    ev.add_argument("--threads", type=int, default=1, help="torch threads")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev.set_defaults(func=_eval)


def _set_threads(n: int) -> None:
    if n < 1:
        raise ValueError(f"--threads must be a positive integer, got {n}")
    torch.set_num_threads(n)


def _train(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    if args.save_every < 1:
        raise ValueError(f"--save-every must be a positive integer, got {args.save_every}")
    env_kwargs = {} if args.horizon is None else {"horizon": args.horizon}
    env_config = EnvConfig(**env_kwargs)
    config = ReinforceConfig(
        iterations=args.iterations,
        num_envs=args.envs,
        lr=args.lr,
        gamma=args.gamma,
        entropy_coef=args.entropy_coef,
        hidden=args.hidden,
        seed=args.seed,
    )
    trainer = asdict(config)

    def save(policy, step, history, state=None):
        recent = [h["mean_return"] for h in history[-20:]]
        meta = {
            "mean_return_last_20": sum(recent) / max(len(recent), 1),
            "history": [
                {k: round(v, 6) for k, v in h.items()}
                for h in history[:: max(1, len(history) // 200)]
            ],
        }
        policy.save(args.out, step=step, trainer=trainer, state=state, meta=meta)

    history: list[dict[str, float]] = []

    def callback(it, policy, stats):
        history.append(stats)
        if (it + 1) % args.save_every == 0 and it + 1 < config.iterations:
            save(policy, it + 1, history)

    result = train(config, env_config=env_config, progress=not args.no_progress, callback=callback)
    save(result.policy, config.iterations, history, training_state(result))
    recent = [h["mean_return"] for h in history[-20:]]
    print(
        f"trained {config.iterations} iterations x {config.num_envs} episodes; mean training "
        f"return over the last {len(recent)} iterations: {sum(recent) / len(recent):+.4f}; "
        f"checkpoint: {args.out}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    if args.episodes < 2:
        raise ValueError(f"--episodes must be at least 2, got {args.episodes}")
    policy = TradingPolicy.load(args.checkpoint)
    report = evaluate(
        policy,
        episodes=args.episodes,
        seed_start=EVAL_SEED_START if args.seed_start is None else args.seed_start,
        greedy=not args.sample,
        progress=not args.no_progress,
    )
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
