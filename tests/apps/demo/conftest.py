"""The demo's tests share one small run of the whole pipeline (module scope), and the viewer
tests' offline Chromium (tests/viz/conftest.py)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from tests.viz.conftest import browser, open_viewer, screenshot_dir  # noqa: F401


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """``(out directory, stdout, exit code)`` of ``python -m multihead_apps.demo --size small``."""
    from multihead_apps.demo.cli import main

    out = tmp_path_factory.mktemp("demo")
    threads = torch.get_num_threads()
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            code = main(["--size", "small", "--out", str(out), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    return out, stdout.getvalue(), code
