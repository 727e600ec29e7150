"""The ``multihead`` command: one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning an exit code.

The library's own subcommands are the modules of this package named in ``BUILTIN``.
Applications add theirs without the library ever importing them: an installed distribution
names its ``register`` function in the ``multihead.commands`` entry-point group, as this
repository's pyproject.toml does for its applications (:mod:`multihead_apps`)::

    [project.entry-points."multihead.commands"]
    agent = "multihead_apps.agent.cli:register"

``multihead`` finds them with :func:`importlib.metadata.entry_points`, so they appear once the
distribution is installed (``pip install -e .``; ``make setup`` does it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from functools import partial
from importlib.metadata import entry_points

GROUP = "multihead.commands"
BUILTIN: tuple[str, ...] = ("train", "generate", "embed", "analyze", "prune", "view")

Register = Callable[[argparse._SubParsersAction], None]


def _builtin(name: str) -> Register:
    return importlib.import_module(f"multihead.cli.{name}").register


def commands() -> dict[str, Callable[[], Register]]:
    """Every subcommand's name and a loader of its ``register`` function: the built-in ones,
    then the installed entry points of ``GROUP`` by name (a built-in name cannot be taken)."""
    found: dict[str, Callable[[], Register]] = {name: partial(_builtin, name) for name in BUILTIN}
    for ep in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        found.setdefault(ep.name, ep.load)
    return found


def _unavailable(sub: argparse._SubParsersAction, name: str, err: Exception) -> None:
    """A subcommand whose module cannot be loaded (say, an optional dependency is missing)
    stays listed and says why when run, while every other subcommand keeps working."""
    why = f"{type(err).__name__}: {err}"
    p = sub.add_parser(name, help=f"(unavailable: {why})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        print(f"multihead {name}: error: this command could not be loaded: {why}", file=sys.stderr)
        return 2

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multihead",
        description="Multi-head attention, models, multi-task heads and head analysis.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, load in commands().items():
        try:
            register = load()
        except Exception as err:  # an application's failure must not take the others down
            _unavailable(sub, name, err)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        # Bad input from the command line: one clear line, not a traceback.
        print(f"multihead {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
