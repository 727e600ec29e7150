"""Capture and restore the global random number generators a training run depends on."""

from __future__ import annotations

import random
from typing import Any

import torch


def rng_state() -> dict[str, Any]:
    """Every global RNG state a training run depends on (torch CPU/CUDA, Python ``random``).

    Example:
        >>> import torch
        >>> saved = rng_state()
        >>> a = torch.rand(2)
        >>> set_rng_state(saved)
        >>> bool((torch.rand(2) == a).all())
        True
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
