"""`multihead bench` end to end on a tiny case (timing only; memory is tested elsewhere)."""

from __future__ import annotations

from multihead.cli import main
from multihead_apps.bench import cases


def test_bench_writes_results(tmp_path, monkeypatch, capsys):
    tiny = cases.Case("tiny", 1, 16, 32, 4, "causal")
    monkeypatch.setattr(cases, "CASES", (tiny,))
    out = tmp_path / "RESULTS.md"
    assert (
        main(["bench", "--cases", "tiny", "--rounds", "1", "--no-memory", "--output", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    text = out.read_text()
    assert "## Attention" in text and "### Targets" in text
    assert f"--output {out}" in text and "--cases tiny --rounds 1 --no-memory" in text
    assert "tutorial per-head ModuleList" in printed


def test_bench_rejects_unknown_case(capsys):
    assert main(["bench", "--cases", "nope", "--no-memory"]) == 2
    assert "unknown case 'nope'" in capsys.readouterr().err


def test_bench_list(capsys):
    assert main(["bench", "--list"]) == 0
    assert "t16384-window256" in capsys.readouterr().out
