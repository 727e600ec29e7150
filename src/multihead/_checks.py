"""Small helpers that turn bad input into errors naming the argument, what came and what was
expected. Used by every public entry point so that messages read the same everywhere."""

from __future__ import annotations

import torch


def shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def require_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_rank(name: str, t: torch.Tensor, rank: int | tuple[int, ...], layout: str) -> None:
    ranks = (rank,) if isinstance(rank, int) else rank
    if t.dim() not in ranks:
        raise ValueError(f"{name} has shape {shape(t)} ({t.dim()}-D) but {layout} is expected")


def require_floating(name: str, t: torch.Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def require_same(names: tuple[str, ...], tensors: tuple[torch.Tensor, ...]) -> None:
    """All tensors share one dtype and one device."""
    first_name, first = names[0], tensors[0]
    for name, t in zip(names[1:], tensors[1:]):
        if t.dtype != first.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}; "
                "they must match"
            )
        if t.device != first.device:
            raise ValueError(
                f"{name} is on device {t.device} but {first_name} is on {first.device}; "
                "they must be on one device"
            )


def require_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def require_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


# Errors that are also the exception torch raises for the same mistake. Where multihead mirrors a
# torch API (compat.MultiheadAttention), a bad input raises one of these: our message, naming the
# argument and what was expected, and an ``except`` clause written for torch still catches it.
class ValueAssertionError(ValueError, AssertionError):
    """A bad value where torch raises AssertionError (ranks, widths, mask shapes it asserts)."""


class TypeAssertionError(TypeError, AssertionError):
    """A bad type where torch raises AssertionError (an integer mask)."""


class ValueRuntimeError(ValueError, RuntimeError):
    """A bad value where torch raises RuntimeError (attn_mask shape, batch sizes, devices)."""


class TypeRuntimeError(TypeError, RuntimeError):
    """A bad dtype where torch raises RuntimeError (inputs, masks or parameters that differ)."""


class ValueIndexError(ValueError, IndexError):
    """A bad rank where torch fails indexing a dimension that is not there (IndexError)."""


class ValueAssertionRuntimeError(ValueError, AssertionError, RuntimeError):
    """A bad value where torch raises AssertionError on one path and RuntimeError on another
    (its inference fast path), e.g. a key_padding_mask of the wrong shape."""


class TypeAssertionRuntimeError(TypeError, AssertionError, RuntimeError):
    """A bad dtype where torch raises AssertionError on one path and RuntimeError on another."""
