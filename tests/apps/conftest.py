"""The applications' subcommands, found as an installed package finds them.

``multihead`` discovers application subcommands through installed entry-point metadata. The
tests must not depend on when the working environment was last installed, so here
:func:`importlib.metadata.entry_points` answers with what pyproject.toml declares: the tests
run the real discovery code on the real declarations (tests/apps/test_entry_points.py checks
that an installed copy declares the same).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from multihead import cli

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared_entry_points() -> list[EntryPoint]:
    """The ``multihead.commands`` entry points pyproject.toml declares."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    table = project.get("entry-points", {}).get(cli.GROUP, {})
    return [EntryPoint(name, value, cli.GROUP) for name, value in table.items()]


@pytest.fixture(autouse=True)
def declared_commands(monkeypatch):
    declared = declared_entry_points()

    def entry_points(*, group: str):
        return [ep for ep in declared if ep.group == group]

    monkeypatch.setattr(cli, "entry_points", entry_points)
    return declared
