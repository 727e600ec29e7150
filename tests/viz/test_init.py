"""The viewer works without matplotlib; the plots then say how to get it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import multihead.viz

SCRIPT = """
import sys
sys.modules["matplotlib"] = None  # as if it were not installed
import torch
import multihead.viz as viz
w = torch.ones(1, 2, 2).tril() / torch.tensor([1.0, 2.0])[:, None]
print(len(viz.render_viewer(["a", "b"], [w])) > 1000)
try:
    viz.attention_heatmap
except ImportError as err:
    print(err)
"""


def test_viewer_without_matplotlib():
    src = Path(multihead.viz.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "True",
        "multihead.viz.attention_heatmap needs matplotlib: pip install 'multihead[viz]'",
    ]


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        multihead.viz.nope
    assert set(multihead.viz.__all__) >= {"Viewer", "render_viewer", "save", "phase_change"}
