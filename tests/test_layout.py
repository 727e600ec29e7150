"""The library does not depend on its applications: no module under src/multihead imports
multihead_apps (they reach the ``multihead`` command through entry points instead)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
APPS = "multihead_apps"


def _is_apps(name: str | None) -> bool:
    return name is not None and (name == APPS or name.startswith(APPS + "."))


def apps_imports(source: str, filename: str = "<string>") -> list[str]:
    """Every import of the applications package in ``source``, as ``"line: statement"``:
    ``import``/``from`` statements and ``import_module``/``__import__`` calls with a literal."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module] if node.level == 0 else []
        elif isinstance(node, ast.Call):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            literal = node.args[0] if node.args else None
            is_import = called in ("import_module", "__import__")
            names = [literal.value] if is_import and isinstance(literal, ast.Constant) else []
        else:
            continue
        if any(_is_apps(n) for n in names if isinstance(n, str)):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checker_finds_every_form_of_import():
    source = (
        "import multihead_apps\n"
        "import os, multihead_apps.agent as a\n"
        "from multihead_apps.bench import report\n"
        "from multihead_apps import agent\n"
        "importlib.import_module('multihead_apps.agent.cli')\n"
        "__import__('multihead_apps')\n"
        "import multihead_apps_other\n"  # another package, not the apps
        "from . import multihead_apps\n"  # a relative import inside the library
        "'''mentions multihead_apps in text'''\n"
    )
    assert [f.split(":")[0] for f in apps_imports(source)] == ["1", "2", "3", "4", "5", "6"]


def test_the_library_never_imports_the_applications():
    files = sorted((SRC / "multihead").rglob("*.py"))
    assert len(files) > 20
    offenders = [
        f"{path.relative_to(SRC)}:{hit}"
        for path in files
        for hit in apps_imports(path.read_text(), str(path))
    ]
    assert offenders == []
