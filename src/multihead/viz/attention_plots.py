"""Attention maps as figures: one head with token labels, and every head of a model as a
layers x heads grid of thumbnails.

Example:
    >>> import torch
    >>> w = torch.softmax(torch.randn(2, 3, 6, 6), -1)  # (L, H, Tq, Tk)
    >>> fig = attention_heatmap(w[0, 1], list("abcdef"))
    >>> fig = attention_grid(w)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from multihead.viz.encoding import THUMB_SIDE, as_layers, thumbnails
from multihead.viz.figures import new_axes
from multihead.viz.tokens import readable_tokens


def _as_map(weights: object) -> np.ndarray:
    try:
        w = torch.as_tensor(weights)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"weights must be a tensor or array, got {type(weights).__name__}") from err
    if w.dim() != 2:
        raise ValueError(
            f"weights has shape {tuple(w.shape)} but one head's (Tq, Tk) map is expected "
            "(select it: weights[layer][head])"
        )
    if not w.is_floating_point():
        raise TypeError(f"weights must be floating point, got dtype {w.dtype}")
    return w.detach().to("cpu", torch.float64).numpy()


def _tick_labels(labels: list[str], limit: int) -> tuple[list[int], list[str]]:
    """Every label, or every n-th when there are more than ``limit``."""
    step = max(1, -(-len(labels) // limit))
    positions = list(range(0, len(labels), step))
    return positions, [labels[i] for i in positions]


def attention_heatmap(
    weights: object,
    tokens: Sequence[str] | bytes | None = None,
    *,
    key_tokens: Sequence[str] | bytes | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "Blues",
    max_labels: int = 64,
    colorbar: bool = True,
) -> Figure:
    """One head's attention map ``(Tq, Tk)`` as an image: row i = query i, column j = key
    j, colour = weight (linear, from 0 to the largest weight, with a colour bar).

    Args:
        weights: ``(Tq, Tk)`` tensor or array, e.g. ``weights[layer][head]``.
        tokens: query labels (and key labels when ``key_tokens`` is None and Tq == Tk);
            strings, or ``bytes`` for a byte-level model.
        max_labels: at most this many tick labels per axis (every n-th token beyond).
    """
    w = _as_map(weights)
    tq, tk = w.shape
    fig, ax = new_axes(ax, (min(12.0, 2.0 + 0.22 * tk), min(12.0, 1.6 + 0.22 * tq)))
    vmax = float(w.max()) if w.size and w.max() > 0 else 1.0
    image = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest", aspect="auto")
    queries = readable_tokens(tokens).labels if tokens is not None else None
    if key_tokens is not None:
        keys = readable_tokens(key_tokens).labels
    else:
        keys = queries if tq == tk else None
    for labels, n, name in ((queries, tq, "tokens"), (keys, tk, "key_tokens")):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} tokens but weights has shape {w.shape}")
    if queries is not None:
        ax.set_yticks(*_tick_labels(queries, max_labels), fontsize=8)
    if keys is not None:
        ax.set_xticks(*_tick_labels(keys, max_labels), fontsize=8, rotation=90)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attends from)")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label="attention weight")
    return fig


def attention_grid(
    weights: object,
    *,
    ax: Axes | None = None,
    head_ids: Sequence[Sequence[int]] | None = None,
    title: str | None = None,
    cmap: str = "Blues",
) -> Figure:
    """Every head's map as a thumbnail in a layers x heads mosaic, drawn as one image in
    one Axes.

    Each thumbnail is the map pooled to at most 64 x 64 cells (cell = mean over its queries
    of the summed weight on its keys) and coloured by the square root of that mass, so broad
    heads stay visible next to sharp ones. Layers may have different head counts (pruned
    models): missing cells stay blank.

    Args:
        weights: per layer ``(H_l, Tq, Tk)`` (a sequence, or one ``(L, H, Tq, Tk)`` tensor).
        head_ids: per layer, the id written on each head's thumbnail (default 0..H_l-1).
    """
    layers = as_layers(weights)
    tq, tk = layers[0].shape[1:]
    sq, sk = min(tq, THUMB_SIDE), min(tk, THUMB_SIDE)
    gap = max(1, max(sq, sk) // 8)
    widest = max(1, max(w.shape[0] for w in layers))
    rows, cols = len(layers), widest
    mosaic = np.full((rows * (sq + gap) - gap, cols * (sk + gap) - gap), np.nan)
    for l, w in enumerate(layers):
        if w.shape[0]:
            thumbs = thumbnails(w, (sq, sk)).numpy()  # (H_l, Sq, Sk)
        for h in range(w.shape[0]):
            r, c = l * (sq + gap), h * (sk + gap)
            mosaic[r : r + sq, c : c + sk] = thumbs[h]
    fig, ax = new_axes(ax, (min(14.0, 1.0 + 1.0 * cols), min(14.0, 0.8 + 1.0 * rows)))
    palette = matplotlib_colormap(cmap).with_extremes(bad="white")
    ax.imshow(
        mosaic,
        cmap=palette,
        norm=colors.PowerNorm(0.5, vmin=0.0, vmax=1.0),
        interpolation="nearest",
    )
    for l, w in enumerate(layers):  # a thin frame shows where each thumbnail ends
        for h in range(w.shape[0]):
            corner = (h * (sk + gap) - 0.5, l * (sq + gap) - 0.5)
            ax.add_patch(Rectangle(corner, sk, sq, fill=False, lw=0.6, ec="0.8"))
    ax.set_xticks([h * (sk + gap) + (sk - 1) / 2 for h in range(cols)], range(cols))
    ax.set_yticks([l * (sq + gap) + (sq - 1) / 2 for l in range(rows)], range(rows))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if head_ids is not None:
        _label_heads(ax, head_ids, layers, (sq, sk, gap))
    if title:
        ax.set_title(title)
    return fig


def matplotlib_colormap(name: str) -> colors.Colormap:
    from matplotlib import colormaps

    try:
        return colormaps[name]
    except KeyError as err:
        raise ValueError(f"cmap {name!r} is not a matplotlib colormap") from err


def _label_heads(ax: Axes, head_ids, layers, geometry) -> None:
    sq, sk, gap = geometry
    if len(head_ids) != len(layers):
        raise ValueError(f"head_ids has {len(head_ids)} layers but weights has {len(layers)}")
    ax.set_xlabel("head position (ids on the thumbnails)")
    for l, (ids, w) in enumerate(zip(head_ids, layers)):
        if len(ids) != w.shape[0]:
            raise ValueError(
                f"head_ids[{l}] has {len(ids)} ids but weights[{l}] has {w.shape[0]} heads"
            )
        for h, head in enumerate(ids):
            ax.text(
                h * (sk + gap),
                l * (sq + gap),
                str(head),
                fontsize=7,
                va="top",
                ha="left",
                color="0.25",
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
            )
