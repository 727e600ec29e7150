"""A diverged step: a non-finite loss or gradient norm stops the run at that step (or is
skipped, within ``TrainConfig.skip_nonfinite``), and non-finite weights are never evaluated or
checkpointed.

Every process decides alike: the loss is averaged over the processes and the gradients are
all-reduced before the check, so a NaN in one process is a NaN in all of them, and the weights'
check is reduced over the processes too (:func:`weights_finite`). All of them therefore raise
at the same step, and none waits in a collective the others never reach.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from multihead.train.world import World, all_mean


class NonFiniteError(RuntimeError):
    """Training diverged at ``step`` (1-based): a non-finite loss, gradient norm or weights.

    The message says what was not finite and which checkpoint is the last good one.
    """

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


def grad_norm(parameters: list[torch.nn.Parameter], clip: float) -> torch.Tensor:
    """The global L2 norm of the gradients ``()``, clipping them to ``clip`` first if
    ``clip > 0`` (then the norm is the one before clipping)."""
    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(parameters, clip)
    norms = [p.grad.detach().norm() for p in parameters if p.grad is not None]
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(norms))  # (n,) -> ()


def weights_finite(model: torch.nn.Module, world: World) -> bool:
    """Whether every parameter is finite in every process."""
    ok = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    flag = torch.tensor(float(ok), device=world.device)
    return bool(all_mean(flag, world) == 1.0)


def _text(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else str(float(x))


def last_good(checkpoint: Path | None, saved: int, start: int) -> str:
    """Where the run can be resumed from, in words."""
    if checkpoint is not None:
        return f"the last good checkpoint is {checkpoint} (step {saved})"
    if start > 0:
        return f"the last good checkpoint is the one this run resumed from (step {start})"
    return "no checkpoint was written before it"


def _hint() -> str:
    return (
        "lower the learning rate and resume from there, or let up to N such steps be skipped "
        "with skip_nonfinite=N (multihead train --skip-nonfinite N)"
    )


def bad_step(
    step: int, steps: int, loss: float, norm: float, *, skipped: int, allowed: int, where: str
) -> NonFiniteError | None:
    """The error that stops the run at ``step`` (1-based), whose loss or gradient norm is not
    finite, or None when it may be skipped (``skipped`` counts the bad steps so far, this one
    included)."""
    if skipped <= allowed:
        return None
    what = f"the loss is {_text(loss)} and the gradient norm {_text(norm)}"
    budget = f" ({skipped} non-finite steps, skip_nonfinite allows {allowed})" if allowed else ""
    return NonFiniteError(
        f"training diverged at step {step} of {steps}: {what}{budget}; the run stopped without "
        f"updating the weights, and {where}. To continue, {_hint()}",
        step=step,
    )


def bad_weights(step: int, steps: int, *, where: str) -> NonFiniteError:
    """The error for weights that an optimizer step made non-finite (they are not saved)."""
    return NonFiniteError(
        f"training diverged at step {step} of {steps}: the weights are not finite after the "
        f"optimizer step (the loss and gradients were finite, so the update overflowed: the "
        f"learning rate is far too large); they were not saved, and {where}. To continue, "
        f"{_hint()}",
        step=step,
    )


def record(step: int, loss: float, norm: float, action: str) -> dict[str, object]:
    """The log record of a bad step (non-finite values as text: JSON has no NaN)."""
    return {
        "type": "nonfinite",
        "step": step,
        "loss": _text(loss),
        "grad_norm": _text(norm),
        "action": action,
    }
