"""Attention backends: a small registry of interchangeable implementations.

Every backend has the same signature::

    forward(q, k, v, *, mask, scale, dropout_p, need_weights) -> (out, weights | None)

with q ``(B, Hq, Tq, D)``, k ``(B, Hkv, Tk, D)``, v ``(B, Hkv, Tk, Dv)``, ``mask`` an
:class:`~multihead.masks.AttentionMask` (True = may attend) and out ``(B, Hq, Tq, Dv)``. Inputs
arrive validated by :func:`multihead.functional.attention`. A backend that returns weights
natively says so with ``returns_weights``; for the others the functional core computes the
weights separately so the output stays on the fast path.

``unsupported(request)`` returns None when the backend can serve a request, else a sentence
saying why not; ``auto`` picks among the backends that can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from multihead.masks import AttentionMask


@dataclass(frozen=True)
class Request:
    """What an attention call asks of a backend (sizes and features, no data)."""

    batch: int
    q_heads: int
    kv_heads: int
    q_len: int
    k_len: int
    head_dim: int
    v_dim: int
    dtype: torch.dtype
    device: torch.device
    mask: AttentionMask
    dropout_p: float
    need_weights: bool
    requires_grad: bool


@dataclass(frozen=True)
class Backend:
    name: str
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
    unsupported: Callable[[Request], str | None]
    returns_weights: bool = False
    description: str = ""


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add (or replace) a backend under ``backend.name``."""
    if backend.name == "auto":
        raise ValueError("'auto' is reserved for automatic backend selection")
    _REGISTRY[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; expected 'auto' or one of {sorted(_REGISTRY)}"
        ) from None


def available_backends() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _register_builtin() -> None:
    from multihead.backends import blockwise, math, sdpa

    for module in (math, sdpa, blockwise):
        register_backend(module.BACKEND)


_register_builtin()
