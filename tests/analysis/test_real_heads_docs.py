"""The Python examples in docs/real_heads.md run as written (on MiniLM, kept small)."""

import re

from tests.analysis.minilm import needs_minilm


@needs_minilm
def test_real_heads_docs_examples_run(run_doc_examples, capsys):
    namespace = run_doc_examples("real_heads.md")
    printed = capsys.readouterr().out
    assert "previous-token head 0 2" in printed and "previous_token" in printed
    assert "same embeddings: True" in printed
    cos = float(re.search(r"held-out mean cosine ([0-9.]+)", printed).group(1))
    assert 0.9 < cos < 1.0
    assert namespace["again"].config.layer_heads == namespace["pruned"].config.layer_heads
    assert "syntactic" in {r for h in namespace["report"].heads for r in h.roles}
