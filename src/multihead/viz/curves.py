"""Curves: the training loss (with the steepest drop marked, where an induction phase change
shows; Olsson et al. 2022) and the pruning curve (metric and speed-up vs fraction pruned).

Example:
    >>> import math
    >>> log = [(s, 4.0 - 3.0 / (1 + math.exp(-(s - 300) / 20))) for s in range(0, 600, 10)]
    >>> phase_change([s for s, _ in log], [v for _, v in log])
    300
    >>> fig = loss_curve(log)
    >>> fig = pruning_curve([0.0, 0.25, 0.5], [1.00, 1.02, 1.31], speedup=[1.0, 1.2, 1.6])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from multihead.viz.figures import new_axes

LOG_NAME = "log.jsonl"  # what `multihead train` writes into its --out directory


def read_log(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{"train": [(step, loss)], "eval": [(step, val_loss)]}`` from a training
    ``log.jsonl`` (or the directory holding it); lines that are not JSON are skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {str(path)!r}")
    out: dict[str, list[tuple[int, float]]] = {"train": [], "eval": []}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or "step" not in record:
            continue
        if record.get("type", "train") == "train" and "loss" in record:
            out["train"].append((int(record["step"]), float(record["loss"])))
        elif record.get("type") == "eval" and "val_loss" in record:
            out["eval"].append((int(record["step"]), float(record["val_loss"])))
    if not out["train"]:
        raise ValueError(f"{str(path)!r} has no training-loss records ({{'step', 'loss'}})")
    return out


def _points(name: str, points: object) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence):
        raise TypeError(
            f"{name} must be a list of (step, loss) pairs or a log.jsonl path, "
            f"got {type(points).__name__}"
        )
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a list of (step, loss) pairs: {err}") from err
    if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise ValueError(
            f"{name} has shape {array.shape} but (N, 2) (step, loss) pairs are expected"
        )
    return array[:, 0], array[:, 1]


def phase_change(steps: Sequence[float], losses: Sequence[float]) -> int | None:
    """The step where the loss falls fastest: the most negative slope of the loss after a
    centred moving average over about 1/25 of the points (noise would otherwise win). None
    for fewer than 5 points or a loss that never falls."""
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 5:
        return None
    width = max(1, len(x) // 25) | 1  # odd, so the average is centred on a point
    half = width // 2
    smooth = np.convolve(y, np.ones(width) / width, mode="valid")  # (N - width + 1,)
    at = x[half : len(x) - half]
    if len(at) < 3:
        return None
    slope = np.gradient(smooth, at)
    best = int(np.argmin(slope))
    return int(np.rint(at[best])) if slope[best] < 0 else None


def loss_curve(
    log: object,
    *,
    ax: Axes | None = None,
    mark_phase_change: bool = True,
    title: str | None = "training loss",
    logy: bool = False,
) -> Figure:
    """The training loss against the step, the validation loss as dots when the log has it,
    and a dashed line at the steepest drop (:func:`phase_change`).

    Args:
        log: a list of ``(step, loss)`` pairs, or a ``log.jsonl`` path (or its directory) as
            ``multihead train`` writes it.
    """
    if not isinstance(mark_phase_change, bool):
        raise TypeError(f"mark_phase_change must be a bool, got {mark_phase_change!r}")
    evals: list[tuple[int, float]] = []
    if isinstance(log, (str, os.PathLike)):
        records = read_log(log)
        log, evals = records["train"], records["eval"]
    steps, losses = _points("log", log)
    fig, ax = new_axes(ax, (6.0, 3.4))
    ax.plot(steps, losses, color="#2d6eb2", lw=1.4, label="train loss")
    if evals:
        e_steps, e_losses = _points("eval records", evals)
        ax.plot(e_steps, e_losses, "o", color="#d1495b", ms=4, label="validation loss")
    if mark_phase_change:
        step = phase_change(steps, losses)
        if step is not None:
            ax.axvline(step, color="0.35", ls="--", lw=1)
            ax.annotate(
                f"steepest drop\nstep {step}",
                (step, 0.95),
                xycoords=("data", "axes fraction"),
                xytext=(4, 0),
                textcoords="offset points",
                va="top",
                fontsize=8,
                color="0.25",
            )
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if evals:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _series(name: str, values: object, n: int | None) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a sequence of numbers: {err}") from err
    if n is not None and len(array) != n:
        raise ValueError(f"{name} has {len(array)} values but fraction has {n}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values: {array.tolist()}")
    return array


def pruning_curve(
    fraction: Sequence[float],
    metric: Sequence[float],
    *,
    speedup: Sequence[float] | None = None,
    metric_name: str = "loss",
    baseline: float | None = None,
    ax: Axes | None = None,
    title: str | None = "pruning curve",
) -> Figure:
    """The metric against the fraction of heads pruned, and the measured speed-up on a
    second y axis when given.

    Args:
        fraction: fraction of heads removed at each point, in [0, 1].
        metric: the metric at each point (e.g. the loss on held-out data).
        speedup: the measured speed-up at each point (x times the unpruned model).
        baseline: the unpruned model's metric, drawn as a dotted line.
    """
    x = _series("fraction", fraction, None)
    if len(x) == 0 or x.min() < 0 or x.max() > 1:
        raise ValueError(f"fraction must be non-empty values in [0, 1], got {x.tolist()}")
    y = _series("metric", metric, len(x))
    fig, ax = new_axes(ax, (5.4, 3.4))
    handles = ax.plot(100 * x, y, "o-", color="#2d6eb2", lw=1.5, ms=4, label=metric_name)
    if baseline is not None:
        if (
            isinstance(baseline, bool)
            or not isinstance(baseline, (int, float))
            or not math.isfinite(baseline)
        ):
            raise ValueError(f"baseline must be a finite number, got {baseline!r}")
        handles += [ax.axhline(baseline, color="0.4", ls=":", lw=1, label="unpruned")]
    ax.set_xlabel("heads pruned (%)")
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    if speedup is not None:
        s = _series("speedup", speedup, len(x))
        twin = ax.twinx()
        handles += twin.plot(100 * x, s, "s--", color="#d1495b", lw=1.2, ms=4, label="speed-up")
        twin.set_ylabel("speed-up (×)")
    if len(handles) > 1:
        ax.legend(handles=handles, fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return fig
