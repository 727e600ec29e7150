"""The Python examples in docs/viz.md run as written and write what they say."""

from __future__ import annotations


def test_viz_docs_examples_run(run_doc_examples, tmp_path, capsys):
    namespace = run_doc_examples("viz.md")
    printed = capsys.readouterr().out
    for name in (
        "heatmap.png",
        "grid.svg",
        "side_by_side.png",
        "scores.png",
        "importance.png",
        "loss.png",
        "pruning.png",
        "viewer.html",
        "pruned.html",
        "cross.html",
    ):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert "steepest drop at step 250" in printed
    assert namespace["viewer"].encoding.top_k == 18
    assert len(namespace["viewer"].html) < 10e6
