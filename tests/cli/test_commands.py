"""How ``multihead`` finds its subcommands: the built-in ones and installed entry points."""

from __future__ import annotations

import argparse
from importlib.metadata import EntryPoint

import pytest

from multihead import cli


def register_hello(subparsers: argparse._SubParsersAction) -> None:
    """A subcommand an installed application could provide."""
    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("--name", default="world")
    p.set_defaults(func=lambda args: print(f"hello {args.name}"))


def register_shadow(subparsers: argparse._SubParsersAction) -> None:
    raise AssertionError("an entry point must not replace a built-in subcommand")


def installed(monkeypatch, **values: str) -> None:
    """Pretend that the installed entry points of ``cli.GROUP`` are ``values``."""
    eps = [EntryPoint(name, value, cli.GROUP) for name, value in values.items()]
    monkeypatch.setattr(cli, "entry_points", lambda *, group: eps if group == cli.GROUP else [])


def test_an_installed_entry_point_becomes_a_subcommand(monkeypatch, capsys):
    installed(monkeypatch, hello=f"{__name__}:register_hello")
    assert list(cli.commands()) == [*cli.BUILTIN, "hello"]
    assert cli.main(["hello", "--name", "heads"]) == 0
    assert capsys.readouterr().out == "hello heads\n"


def test_without_entry_points_only_the_builtins_exist(monkeypatch, capsys):
    installed(monkeypatch)
    assert list(cli.commands()) == list(cli.BUILTIN)
    with pytest.raises(SystemExit):
        cli.main(["hello"])
    assert "invalid choice: 'hello'" in capsys.readouterr().err


def test_an_entry_point_cannot_replace_a_builtin(monkeypatch):
    installed(monkeypatch, train=f"{__name__}:register_shadow")
    cli.build_parser()  # register_shadow would raise
    from multihead.cli import train

    assert cli.commands()["train"]() is train.register


def test_a_broken_entry_point_is_listed_and_named_but_breaks_nothing(monkeypatch, capsys):
    installed(monkeypatch, broken="no_such_module_xyz.cli:register")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = capsys.readouterr().out
    assert "broken" in listed and "unavailable: ModuleNotFoundError" in listed
    assert cli.main(["broken", "anything", "--flag"]) == 2
    err = capsys.readouterr().err
    assert "multihead broken: error: this command could not be loaded" in err
    assert "no_such_module_xyz" in err
    with pytest.raises(SystemExit) as exit_:  # the built-ins still parse
        cli.main(["generate", "--help"])
    assert exit_.value.code == 0
