"""The applications reach ``multihead`` through entry points that resolve."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from multihead import cli

from .conftest import PYPROJECT, declared_entry_points

APPS = {"agent", "bench", "demo"}


def test_pyproject_declares_every_app_with_an_importable_register():
    declared = {ep.name: ep for ep in declared_entry_points()}
    assert set(declared) == APPS
    for name, ep in declared.items():
        assert ep.module.startswith("multihead_apps."), ep.value
        register = ep.load()
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        register(sub)
        assert name in sub.choices, f"{ep.value} did not add a {name!r} subcommand"


def test_the_command_lists_the_apps(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    for name in (*cli.BUILTIN, *APPS):
        assert f"    {name}" in listed


def _installed_from_this_tree() -> bool:
    try:
        dist = distribution("multihead")
    except PackageNotFoundError:
        return False
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    return url.removeprefix("file://").rstrip("/") == str(PYPROJECT.parent)


@pytest.mark.skipif(
    not _installed_from_this_tree(), reason="multihead is not pip-installed from this tree"
)
def test_the_installed_metadata_is_current():
    """An install older than pyproject.toml would hide subcommands: run `make setup`."""
    installed = {
        ep.name: ep.value for ep in distribution("multihead").entry_points if ep.group == cli.GROUP
    }
    assert installed == {ep.name: ep.value for ep in declared_entry_points()}
