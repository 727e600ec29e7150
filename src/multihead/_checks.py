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


# ---------------------------------------------------------------------- config values
# One dialect for every config's __post_init__: TypeError when the value has the wrong type
# (a bool where a number is expected, a string where an integer is), ValueError when it has
# the right type but lies outside what is allowed.


def require_bool(name: str, value: object) -> bool:
    """``value`` itself if it is a bool (1, "yes" and None are not).

    >>> require_bool("bf16", "no")
    Traceback (most recent call last):
    ...
    TypeError: bf16 must be a bool (True or False), got 'no' (str)
    """
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be a bool (True or False), got {value!r} ({type(value).__name__})"
        )
    return value


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` itself if it is an int (not a bool) of at least ``minimum``.

    >>> require_int("steps", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: steps must be an integer >= 1, got 0
    """
    wanted = "an integer" + ("" if minimum is None else f" >= {minimum}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def _bounds(minimum, above, maximum, below) -> str:
    """The allowed range in words: " >= 0", " > 0", " in [0, 1)" and the like."""
    low = None if minimum is None and above is None else ("[", minimum, ">=")
    if above is not None:
        low = ("(", above, ">")
    high = None if maximum is None and below is None else ("]", maximum, "<=")
    if below is not None:
        high = (")", below, "<")
    if low and high:
        return f" in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low or high:
        _, bound, op = low or high
        return f" {op} {bound:g}"
    return ""


def require_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    finite: bool = True,
) -> float:
    """``value`` as a float if it is a real number (an int or float, not a bool) that is
    ``>= minimum``, ``> above``, ``<= maximum`` and ``< below`` (each bound optional), and
    finite unless ``finite=False`` (NaN is never allowed).

    >>> require_number("beta1", 1.0, minimum=0, below=1)
    Traceback (most recent call last):
    ...
    ValueError: beta1 must be a finite number in [0, 1), got 1.0
    >>> require_number("lr", float("inf"), minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number >= 0, got inf
    """
    import math

    kind = "a finite number" if finite else "a number"
    wanted = kind + _bounds(minimum, above, maximum, below)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if (
        math.isnan(v)
        or (finite and math.isinf(v))
        or (minimum is not None and not v >= minimum)
        or (above is not None and not v > above)
        or (maximum is not None and not v <= maximum)
        or (below is not None and not v < below)
    ):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return v


def require_choice(name: str, value: object, choices: tuple) -> object:
    """``value`` itself if it is one of ``choices``.

    >>> require_choice("schedule", "step", ("cosine", "linear"))
    Traceback (most recent call last):
    ...
    ValueError: schedule must be one of ('cosine', 'linear'), got 'step'
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def require_nonnegative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


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
