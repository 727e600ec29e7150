"""The head report as figures: scores and roles of every head, and importance per head.

Both read the report's JSON surface (issue 10): ``{"model": {...}, "heads": [{"layer",
"head", "kv_head", "roles", "scores", "importance"}, ...]}``.

Example:
    >>> report = {"model": {}, "heads": [
    ...     {"layer": 0, "head": 0, "roles": ["previous_token"],
    ...      "scores": {"previous_token": 0.9, "entropy": 0.4}, "importance": 1.0},
    ...     {"layer": 0, "head": 1, "roles": [],
    ...      "scores": {"previous_token": 0.1, "entropy": 2.1}, "importance": 0.2}]}
    >>> fig = head_scores(report)
    >>> fig = head_importance(report)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from multihead.viz.attention_plots import matplotlib_colormap
from multihead.viz.figures import new_axes

ANNOTATE_LIMIT = 400  # cells; larger heat maps are not annotated with their values


def _number(value: object) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _rows(report: object) -> list[Mapping]:
    if not isinstance(report, Mapping) or not isinstance(report.get("heads"), Sequence):
        raise TypeError(
            'report must be a mapping {"model": {...}, "heads": [...]}, got '
            f"{type(report).__name__}"
        )
    rows = list(report["heads"])
    if not rows:
        raise ValueError("report['heads'] is empty; there is nothing to plot")
    for n, row in enumerate(rows):
        if not isinstance(row, Mapping) or not all(
            isinstance(row.get(k), int) and not isinstance(row.get(k), bool)
            for k in ("layer", "head")
        ):
            raise ValueError(f"report['heads'][{n}] needs integer 'layer' and 'head', got {row!r}")
    return sorted(rows, key=lambda r: (r["layer"], r["head"]))


def _annotate(ax: Axes, values: np.ndarray, shade: np.ndarray, cmap: str) -> None:
    """Write each value in its cell, white on dark colours (``shade`` in [0, 1] is the
    cell's position on ``cmap``)."""
    if values.size > ANNOTATE_LIMIT:
        return
    palette = matplotlib_colormap(cmap)
    for (i, j), v in np.ndenumerate(values):
        if not math.isnan(v):
            r, g, b, _ = palette(float(shade[i, j]))
            dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5  # relative luminance
            text = f"{v:.2f}" if abs(v) < 100 else f"{v:.3g}"
            ax.text(
                j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "0.15"
            )


def head_scores(
    report: Mapping,
    *,
    scores: Sequence[str] | None = None,
    ax: Axes | None = None,
    cmap: str = "Blues",
) -> Figure:
    """A heads x scores heat map; each row is labelled with its head and roles.

    Scores have different ranges (entropy in nats, shares in [0, 1]), so each column's
    colour is scaled to its own min..max; the cells carry the raw values (when there are at
    most 400 cells). Missing scores are blank.

    Args:
        scores: the score names to show, in order (default: every name, in report order).
    """
    rows = _rows(report)
    names = list(scores) if scores is not None else []
    if scores is None:
        for row in rows:
            names += [k for k in (row.get("scores") or {}) if k not in names]
    if not names:
        raise ValueError("the report has no scores to plot")
    values = np.array([[_number((r.get("scores") or {}).get(n)) for n in names] for r in rows])
    lo, hi = np.nanmin(values, 0), np.nanmax(values, 0)  # per column
    shade = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
    fig, ax = new_axes(ax, (2.2 + 0.9 * len(names), 1.0 + 0.24 * len(rows)))
    ax.imshow(
        shade,
        cmap=matplotlib_colormap(cmap).with_extremes(bad="0.93"),
        vmin=0,
        vmax=1,
        aspect="auto",
        interpolation="nearest",
    )
    labels = []
    for r in rows:
        roles = ", ".join(str(x).replace("_", " ") for x in r.get("roles") or [])
        labels.append(f"L{r['layer']} H{r['head']}" + (f"  {roles}" if roles else ""))
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xticks(
        range(len(names)), [n.replace("_", " ") for n in names], rotation=35, ha="right", fontsize=8
    )
    ax.tick_params(length=0)
    _annotate(ax, values, shade, cmap)
    ax.set_title("head scores (colour: scaled per column)", fontsize=10)
    return fig


def _importance_grid(importance: object) -> tuple[np.ndarray, str]:
    """``(L, H)`` importance (NaN where a head is absent) and a colour-bar label."""
    if isinstance(importance, Mapping):
        rows = _rows(importance)
        grid = np.full(
            (max(r["layer"] for r in rows) + 1, max(r["head"] for r in rows) + 1), np.nan
        )
        for r in rows:
            grid[r["layer"], r["head"]] = _number(r.get("importance"))
        if np.isnan(grid).all():
            raise ValueError("the report has no importance values (all null)")
        return grid, "importance"
    if isinstance(importance, (str, bytes)) or not isinstance(
        importance, (Sequence, torch.Tensor, np.ndarray)
    ):
        raise TypeError(
            "importance must be a report mapping, an (L, H) array or a list of per-layer "
            f"values, got {type(importance).__name__}"
        )
    layers = [np.asarray(torch.as_tensor(x, dtype=torch.float64)).reshape(-1) for x in importance]
    if not layers or max(len(x) for x in layers) == 0:
        raise ValueError("importance is empty")
    grid = np.full((len(layers), max(len(x) for x in layers)), np.nan)
    for l, x in enumerate(layers):
        grid[l, : len(x)] = x
    return grid, "importance"


def head_importance(
    importance: object,
    *,
    ax: Axes | None = None,
    cmap: str = "viridis",
    title: str = "head importance",
) -> Figure:
    """Importance of every head as a layers x heads heat map, values written in the cells.

    Args:
        importance: the report mapping (its ``importance`` fields, placed by layer and head
            id; pruned or missing heads are blank), an ``(L, H)`` array, or a list of
            per-layer values (layers may differ in length).
    """
    grid, label = _importance_grid(importance)
    rows, cols = grid.shape
    fig, ax = new_axes(ax, (1.8 + 0.6 * cols, 1.2 + 0.5 * rows))
    image = ax.imshow(
        grid,
        cmap=matplotlib_colormap(cmap).with_extremes(bad="0.93"),
        aspect="auto",
        interpolation="nearest",
    )
    finite = grid[~np.isnan(grid)]
    span = (finite.max() - finite.min()) or 1.0
    _annotate(ax, grid, (grid - finite.min()) / span, cmap)
    ax.set_xticks(range(cols), range(cols))
    ax.set_yticks(range(rows), range(rows))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.tick_params(length=0)
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label=label)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
