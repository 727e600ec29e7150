"""``multihead view``: the offline attention viewer of a model on one input, as one HTML file.

Example::

    multihead view --checkpoint runs/demo/model --ids "3 14 15 9 2 6 14 15 9" --out v.html
    multihead view --checkpoint runs/small --text "def main():" --out v.html
    multihead view --model minilm --text "The cat sat on the mat." --out v.html

The file is self-contained (no network request of any kind); open it in any browser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from multihead.cli.helptext import DefaultsFormatter
from multihead.cli.source import add_model_source, load_source


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "view",
        help="write the offline attention viewer of a model on one input (HTML)",
        formatter_class=DefaultsFormatter,
        description="Run the model on one input, capture every head's attention and write the "
        "viewer: head view, model view and (with --report) the sortable head report, in one "
        "self-contained HTML file that makes no network request.",
    )
    add_model_source(p)
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--text",
        help="the input text (tokenized by the model's tokenizer; bytes for a byte-level model)",
    )
    given.add_argument(
        "--ids",
        metavar="'ID ID ...'",
        help="the input as token ids, separated by spaces or "
        "commas (for models without a tokenizer, such as synthetic-task models)",
    )
    p.add_argument("--out", required=True, metavar="FILE.html", help="where to write the page")
    p.add_argument(
        "--report", metavar="FILE.json", help="a head report (multihead analyze's JSON) to show"
    )
    p.add_argument("--title", metavar="TEXT", help="page title (default: the model's class)")
    p.add_argument(
        "--top-k", type=int, metavar="K", help="keys kept per query (default: automatic)"
    )
    p.set_defaults(func=run)


def parse_ids(text: str) -> list[int]:
    """``"3 14, 15"`` -> ``[3, 14, 15]``; ValueError naming ``--ids`` otherwise.

    >>> parse_ids("3 14, 15")
    [3, 14, 15]
    """
    parts = text.replace(",", " ").split()
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"--ids must be integers separated by spaces or commas, got {text!r}"
        ) from None
    if not ids:
        raise ValueError("--ids is empty; give at least one token id")
    return ids


def _report(path: str | None) -> dict | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--report {path!r} does not exist")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--report {path!r} is not a JSON head report: {err}") from None


def run(args: argparse.Namespace) -> int:
    from multihead.viz import view

    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    tokens = args.text if args.ids is None else parse_ids(args.ids)
    report = _report(args.report)
    model, tokenizer = load_source(args)
    page = view(
        model, tokens, tokenizer=tokenizer, report=report, title=args.title, top_k=args.top_k
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0
