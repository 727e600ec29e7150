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


def require_bool(name: str, value: object) -> bool:
    """``value`` itself if it is a bool; a TypeError otherwise. Truthiness is not enough:
    ``is_causal="no"`` or ``need_weights=0`` are mistakes, not choices.

    Example:
        >>> require_bool("is_causal", True)
        True
        >>> require_bool("is_causal", "no")
        Traceback (most recent call last):
        ...
        TypeError: is_causal must be a bool (True or False), got str 'no'
    """
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}"
        )
    return value
