"""The Python examples in docs/models.md run as written, in order, in one namespace
(docs/attention.md is a doctest collected by pytest; docs/heads.md has its own test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("name", ["models.md"])
def test_docs_examples_run(name, tmp_path, monkeypatch):
    doc = DOCS / name
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) >= 4, f"{name} has {len(blocks)} python examples"
    monkeypatch.chdir(tmp_path)  # anything an example writes lands here
    namespace: dict = {"__name__": "docs"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"<{name} example {i + 1}>", "exec"), namespace)
