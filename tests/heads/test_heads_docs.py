"""The Python examples in docs/heads.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "heads.md"


def test_docs_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # the examples write a checkpoint under runs/
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(DOC), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "HeadOutputs(side: (4, 2), leverage: (4, 100)" in printed
    assert (tmp_path / "runs" / "multitask" / "LATEST").exists()
