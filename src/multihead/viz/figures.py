"""Figure plumbing shared by the plots: new figures without pyplot (so no global backend
state and no display is ever needed; drawing goes through Agg), and :func:`save`.

Example:
    >>> fig, ax = new_axes(None, (3, 2))
    >>> save(fig, "/tmp/multihead-doctest-figure.svg").stat().st_size > 0
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def root_figure(ax: Axes) -> Figure:
    """The top-level Figure an Axes belongs to (also inside subfigures)."""
    fig = ax.figure
    while not isinstance(fig, Figure):
        fig = fig.figure  # a SubFigure's .figure is its parent
    return fig


def new_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """``(figure, ax)``: the given Axes and its figure, or a new Agg figure of ``size``
    inches with one Axes."""
    if ax is not None:
        if not isinstance(ax, Axes):
            raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
        return root_figure(ax), ax
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path``; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).
    Creates the directory; returns the path."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"path {str(path)!r} has suffix {path.suffix!r}; expected one of {sorted(FORMATS)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=dpi)
    return path
