"""The Python examples in docs/models.md run as written (docs/attention.md is a doctest
collected by pytest; docs/multitask.md is run by tests/multitask/test_docs.py)."""


def test_models_docs_examples_run(run_doc_examples):
    namespace = run_doc_examples("models.md")
    assert namespace["nll"].shape == (299,)
