"""``multihead analyze``: score and classify every attention head, print the head report.

Example::

    multihead analyze --checkpoint runs/induction --task induction --json heads.json
    multihead analyze --model minilm --text "The cat sat on the mat." --markdown heads.md
    multihead analyze --checkpoint runs/small --data notes.txt --csv heads.csv

Data: ``--task induction`` (a random sequence repeated twice, the repeated-random-tokens
input of Olsson et al. 2022), ``--data PATH`` (a UTF-8 text file; one sentence per line for
an encoder, one stream cut into ``--seq-len`` windows for a decoder) or ``--text TEXT``
(repeatable). A checkpoint without a tokenizer (a synthetic-task model) reads its text as
space-separated token ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from multihead import _checks
from multihead.analysis import (
    HeadReport,
    RoleThresholds,
    analyze,
    gradient_importance,
    importance_by_head,
    resolve_layers,
)
from multihead.analysis.fidelity import jacobian_importance
from multihead.cli.helptext import DefaultsFormatter
from multihead.cli.source import add_model_source, load_source
from multihead.data import SyntheticTask
from multihead.models import Encoder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="score every attention head and name its role (head report)",
        formatter_class=DefaultsFormatter,
        description="Run the model over the data while recording every head's attention "
        "(beside the fast backend), print one row per head (layer, head, roles, top "
        "scores) and write the head report as JSON, CSV or Markdown.",
    )
    add_model_source(p)
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--task", choices=("induction",), help="synthetic data: random tokens repeated twice"
    )
    data.add_argument("--data", metavar="PATH", help="a UTF-8 text file to analyse")
    data.add_argument(
        "--text", action="append", metavar="TEXT", help="a text to analyse (repeat the flag)"
    )
    p.add_argument("--batches", type=int, default=8, metavar="N", help="--task batches to run")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="sequences per batch")
    p.add_argument(
        "--seq-len", type=int, default=64, metavar="T", help="tokens per sequence (window)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the --task data")
    p.add_argument(
        "--mode",
        choices=("summary", "weights"),
        default="summary",
        help="summary: per-head sums in O(T) memory; weights: keep the maps (same scores)",
    )
    p.add_argument(
        "--layers", metavar="IDS", help="comma-separated layer ids to analyse (default all)"
    )
    p.add_argument(
        "--exclude-first",
        action="store_true",
        help="leave the first token out of the pattern scores (TransformerLens exclude_bos)",
    )
    p.add_argument("--block", type=int, default=256, help="query rows per block (summary mode)")
    p.add_argument(
        "--redundancy",
        type=float,
        metavar="JSD",
        help="also cluster near-duplicate heads below this Jensen-Shannon divergence (nats): "
        "across layers with --mode weights, within each layer with --mode summary",
    )
    p.add_argument(
        "--importance",
        action="store_true",
        help="also score each head's importance (Michel et al. 2019, |dL/dmask| per example, "
        "L2-normalized per layer): the next-token loss for a decoder; for an encoder, how far "
        "removing the head moves the mean-pooled sentence embedding",
    )
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--csv", metavar="FILE", help="write the report as CSV")
    p.add_argument("--markdown", metavar="FILE", help="write the report as a Markdown table")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _ids(text: str, tokenizer: Any, vocab: int) -> list[int]:
    """Token ids of ``text``: its tokenizer's, or space-separated ids without one."""
    if tokenizer is not None:
        return tokenizer.encode([text], add_special_tokens=False).ids[0].tolist()
    try:
        ids = [int(t) for t in text.split()]
    except ValueError:
        raise ValueError(
            "this checkpoint has no tokenizer (a synthetic-task model): the text must be "
            f"space-separated token ids, got {text[:40]!r}"
        ) from None
    bad = [t for t in ids if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {vocab})")
    return ids


def _texts(args: argparse.Namespace) -> list[str]:
    if args.text is not None:
        return args.text
    path = Path(args.data)
    if not path.is_file():
        raise FileNotFoundError(f"--data {args.data!r} is not a file")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"--data {args.data!r} has no text")
    return lines


def build_batches(args: argparse.Namespace, model: Any, tokenizer: Any) -> list[Any]:
    """The batches ``analyze`` runs: token tensors, or dicts with a padding mask (encoder)."""
    vocab = model.config.vocab_size
    t = min(args.seq_len, model.config.max_seq_len)
    if args.task is not None:
        task = SyntheticTask(args.task, vocab_size=vocab, seq_len=t)
        g = torch.Generator().manual_seed(args.seed)
        return [
            task.batch("test", batch_size=args.batch_size, generator=g)[0]
            for _ in range(args.batches)
        ]
    texts = _texts(args)
    if isinstance(model, Encoder):
        if tokenizer is None:
            raise ValueError("an encoder without a tokenizer cannot read text; use --task")
        out = []
        for i in range(0, len(texts), args.batch_size):
            enc = tokenizer.encode(texts[i : i + args.batch_size], max_length=t)
            out.append({"tokens": enc.ids, "padding_mask": enc.attention_mask})
        return out
    ids = [i for text in texts for i in _ids(text + "\n", tokenizer, vocab)]  # one stream
    if len(ids) < 2:
        raise ValueError("the text gives fewer than 2 tokens; there is nothing to analyse")
    windows = [ids[i : i + t] for i in range(0, len(ids) - t + 1, t)] or [ids]
    rows = torch.tensor(windows)  # (N, T)
    return list(rows.split(args.batch_size))


def head_importance(model: Any, batches: list[Any], *, progress: bool) -> dict:
    """``{(layer, original head): importance}`` on the analysed batches: gradient importance
    of the next-token loss (decoder), or of the embedding's move (encoder; the fidelity loss
    itself has zero gradient at the unpruned model, see :mod:`multihead.analysis.fidelity`)."""
    if isinstance(model, Encoder):
        pairs = [(b["tokens"], b["padding_mask"]) for b in batches]
        scores = jacobian_importance(model, pairs)  # (L, H)
        scores = scores / scores.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return importance_by_head(model, list(scores))
    return importance_by_head(model, gradient_importance(model, batches, progress=progress))


def format_table(report: HeadReport) -> str:
    """One aligned line per head: layer, head, kv head, roles, top scores, importance."""
    rows = [("layer", "head", "kv", "roles", "top scores", "importance")]
    for h in report.heads:
        imp = "" if h.importance is None else f"{h.importance:.4g}"
        rows.append(
            (
                str(h.layer),
                str(h.head),
                str(h.kv_head),
                ", ".join(h.roles) or "-",
                h.top_scores(),
                imp,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> int:
    for flag in ("batches", "batch_size", "seq_len", "block"):
        _checks.require_positive_int("--" + flag.replace("_", "-"), getattr(args, flag))
    model, tokenizer = load_source(args)
    layers = None
    if args.layers:
        try:
            layers = [int(x) for x in args.layers.split(",")]
        except ValueError:
            raise ValueError(
                f"--layers must be comma-separated ints, got {args.layers!r}"
            ) from None
        layers = resolve_layers(model, layers)
    batches = build_batches(args, model, tokenizer)
    special = sorted(getattr(tokenizer, "special_ids", ()) or ()) or None
    report = analyze(
        model,
        batches,
        mode=args.mode,
        layers=layers,
        progress=not args.no_progress,
        special_tokens=special,
        thresholds=RoleThresholds(),
        exclude_first=args.exclude_first,
        block=args.block,
        redundancy=args.redundancy,
    )
    if args.importance:
        report = report.with_importance(
            head_importance(model, batches, progress=not args.no_progress)
        )
    report.model["source"] = args.checkpoint or args.model
    report.model["data"] = args.task or args.data or "text"
    for path, text in (
        (args.json, report.to_json),
        (args.csv, report.to_csv),
        (args.markdown, report.to_markdown),
    ):
        if path:
            Path(path).write_text(text() + ("" if text is report.to_csv else "\n"))
    sys.stdout.write(format_table(report) + "\n")
    clusters = report.model.get("redundant_clusters")
    if clusters:
        sys.stdout.write(
            "near-duplicate heads (layer, head): "
            + "; ".join(" ".join(f"{l}:{h}" for l, h in g) for g in clusters)
            + "\n"
        )
    return 0
