"""Applications built on the multihead library, shipped in the same distribution (the way
torchtune keeps ``recipes/`` beside the ``torchtune`` library): they import :mod:`multihead`,
never the reverse (tests/test_layout.py checks it).

* :mod:`multihead_apps.agent`: a trading agent on a multi-task network (``multihead agent``).
* :mod:`multihead_apps.bench`: the attention benchmark with its cases and acceptance targets
  (``multihead bench``), and the RESULTS.md writer that benchmarks/*.py share.

Their subcommands reach the ``multihead`` command through the ``multihead.commands`` entry
points declared in pyproject.toml (see :mod:`multihead.cli`).
"""
