"""The Python examples in docs/multitask.md run as written."""

from __future__ import annotations


def test_docs_examples_run(run_doc_examples, tmp_path, capsys):
    run_doc_examples("multitask.md")
    printed = capsys.readouterr().out
    assert "HeadOutputs(side: (4, 2), leverage: (4, 100)" in printed
    assert (tmp_path / "runs" / "multitask" / "LATEST").exists()
