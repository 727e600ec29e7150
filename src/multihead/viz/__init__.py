"""Seeing heads: matplotlib plots and an offline HTML attention viewer.

* :func:`render_viewer` / :class:`Viewer`: one self-contained HTML file (no network) with the
  head view, the model view and the head report; see :mod:`multihead.viz.viewer` and, for
  how the weights are stored, :mod:`multihead.viz.encoding`.
* :func:`view`: run a model on one input and render that viewer for it
  (:mod:`multihead.viz.from_model`).
* Plots (need matplotlib, the ``viz`` extra; Agg, no pyplot state): :func:`attention_heatmap`,
  :func:`attention_grid`, :func:`head_scores`, :func:`head_importance`,
  :func:`pruning_curve`, :func:`loss_curve` (with :func:`read_log` and :func:`phase_change`),
  and :func:`save` (PNG, SVG or PDF by suffix). Each plot returns the matplotlib Figure and
  takes an optional Axes to draw into.

Everything but :func:`view` takes plain data (tensors or arrays, the head report dict),
never a model.
See ``docs/viz.md`` for a guide.
"""

from __future__ import annotations

from importlib import import_module

from multihead.viz.from_model import view
from multihead.viz.tokens import readable_tokens
from multihead.viz.viewer import Viewer, render_viewer

_PLOTS = {
    "attention_heatmap": "multihead.viz.attention_plots",
    "attention_grid": "multihead.viz.attention_plots",
    "head_scores": "multihead.viz.head_plots",
    "head_importance": "multihead.viz.head_plots",
    "pruning_curve": "multihead.viz.curves",
    "loss_curve": "multihead.viz.curves",
    "read_log": "multihead.viz.curves",
    "phase_change": "multihead.viz.curves",
    "save": "multihead.viz.figures",
}


def __getattr__(name: str):
    # The plots import matplotlib, an optional dependency: load them on first use so the
    # viewer works without it.
    if name in _PLOTS:
        try:
            module = import_module(_PLOTS[name])
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] == "matplotlib":
                raise ImportError(
                    f"multihead.viz.{name} needs matplotlib: pip install 'multihead[viz]'"
                ) from err
            raise
        return getattr(module, name)
    raise AttributeError(f"module 'multihead.viz' has no attribute {name!r}")


__all__ = ["Viewer", "readable_tokens", "render_viewer", "view", *_PLOTS]
