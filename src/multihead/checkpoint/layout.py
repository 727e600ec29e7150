"""Names of the files a checkpoint is made of (see :mod:`multihead.checkpoint`)."""

from __future__ import annotations

import re

# Format 1 gained manifest.json later without a bump: older readers ignore the extra file and
# the extra config key, and this reader loads format-1 checkpoints that have neither.
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "state.pt"
MANIFEST = "manifest.json"
LATEST = "LATEST"
STEP_NAME = re.compile(r"step-(\d+)")


def step_name(step: int) -> str:
    """The directory name of a step: ``step-00000100`` (zero-padded so names sort by step)."""
    return f"step-{step:08d}"
