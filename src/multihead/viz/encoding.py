"""The compact encoding of attention maps that the HTML viewer embeds.

A full map costs L·H·Tq·Tk numbers (bertviz inlines them all as JSON, which breaks near 512
tokens). The viewer instead stores, for every layer, head and query row:

* the ``top_k`` largest weights of the row as ``uint8`` (``round(w * 255)``: absolute error at
  most 1/510) with their key positions as little-endian ``uint16``, largest first;
* the row's remaining mass (the exact weight of the keys that were not kept) as ``uint8``;
* a thumbnail of every head: the map pooled to at most 64 x 64 cells, cell = mean over the
  cell's queries of the summed weight on the cell's keys (so thumbnail rows still sum to the
  row mass, and every key counts, kept or not), as ``uint8``.

What is lost: weights below the row's ``top_k`` (only their total survives, as the residual),
and precision below 1/510. When ``top_k >= Tk`` every weight is kept. The default ``top_k``
fits the edges into about 4 MB (at least 8 keys per row). Each array is base64 text in the
page (4/3 of the bytes).

Legend: L layers, H heads of a layer, Tq queries, Tk keys, k = top_k, S thumbnail side.

Example:
    >>> import torch
    >>> w = torch.softmax(torch.randn(2, 5, 5), -1)  # (H, Tq, Tk): one layer of two heads
    >>> enc = encode_attention([w], top_k=3)
    >>> enc.top_k, enc.heads, len(enc.index), len(enc.weight), len(enc.rest)
    (3, (2,), 60, 30, 10)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

EDGE_BUDGET = 4_000_000  # bytes of (index, weight) pairs the automatic top_k aims for
MIN_TOP_K = 8
THUMB_SIDE = 64
MAX_KEYS = 65_535  # key positions are stored as uint16


@dataclass(frozen=True)
class EncodedAttention:
    """Quantised sparse attention maps, as the viewer's JavaScript reads them.

    ``index``/``weight`` hold ``k`` entries per row, rows ordered layer, head, query;
    ``rest`` one byte per row; ``thumbs`` ``Sq * Sk`` bytes per head in the same order.
    """

    tq: int
    tk: int
    heads: tuple[int, ...]
    top_k: int
    thumb_shape: tuple[int, int]
    index: bytes
    weight: bytes
    rest: bytes
    thumbs: bytes
    causal: bool

    def meta(self) -> dict:
        return {
            "tq": self.tq,
            "tk": self.tk,
            "heads": list(self.heads),
            "top_k": self.top_k,
            "thumb": list(self.thumb_shape),
            "causal": self.causal,
        }


def as_layers(weights: object) -> list[torch.Tensor]:
    """Validate per-layer weights and return them as float32 CPU tensors ``(H_l, Tq, Tk)``.

    Accepts a sequence of tensors or arrays, each ``(H_l, Tq, Tk)`` or ``(1, H_l, Tq, Tk)``
    (one example of a recorded batch), or one ``(L, H, Tq, Tk)`` tensor.
    """
    if isinstance(weights, torch.Tensor) and weights.dim() == 4:
        weights = list(weights)
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(
            "weights must be a sequence of per-layer (H, Tq, Tk) tensors, got "
            f"{type(weights).__name__}"
        )
    if len(weights) == 0:
        raise ValueError("weights is empty; expected one (H, Tq, Tk) tensor per layer")
    layers = []
    for i, w in enumerate(weights):
        try:
            t = torch.as_tensor(w)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"weights[{i}] must be a tensor or array, got {type(w).__name__}"
            ) from err
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]  # (H, Tq, Tk) of the only example
        if t.dim() != 3:
            raise ValueError(
                f"weights[{i}] has shape {tuple(t.shape)} but (H, Tq, Tk) is expected "
                "(one example: pass weights[l][b] for a batch)"
            )
        if not t.is_floating_point():
            raise TypeError(f"weights[{i}] must be floating point, got dtype {t.dtype}")
        t = t.detach().to("cpu", torch.float32)
        if layers and t.shape[1:] != layers[0].shape[1:]:
            raise ValueError(
                f"weights[{i}] has shape {tuple(t.shape)} but weights[0] has "
                f"{tuple(layers[0].shape)}; every layer needs the same (Tq, Tk)"
            )
        low, high = (float(x) for x in torch.aminmax(t)) if t.numel() else (0.0, 0.0)
        if not (math.isfinite(low) and math.isfinite(high)):  # min/max propagate NaN
            raise ValueError(f"weights[{i}] contains NaN or infinite values")
        if low < -1e-6:
            raise ValueError(f"weights[{i}] has negative weights (min {low:.3g})")
        if high > 1.0 + 1e-4:
            raise ValueError(
                f"weights[{i}] has weights above 1 (max {high:.3g}); attention probabilities "
                "(after the softmax) are expected"
            )
        # rounding noise below zero is clipped, never in place (t may be the caller's tensor)
        layers.append(t.clamp(min=0.0) if low < 0 else t)
    tq, tk = layers[0].shape[1:]
    if tq == 0 or tk == 0:
        raise ValueError(f"weights have Tq={tq}, Tk={tk}; at least one query and key needed")
    if tk > MAX_KEYS:
        raise ValueError(f"weights have Tk={tk} keys; the viewer supports at most {MAX_KEYS}")
    return layers


def auto_top_k(rows: int, tk: int) -> int:
    """The default k: as many keys per row as fit :data:`EDGE_BUDGET` (3 bytes per kept
    weight), at least :data:`MIN_TOP_K`, at most ``tk``.

    >>> auto_top_k(rows=12 * 12 * 512, tk=512), auto_top_k(rows=2 * 4 * 7, tk=7)
    (18, 7)
    """
    fit = EDGE_BUDGET // max(1, 3 * rows)
    return min(tk, max(MIN_TOP_K, fit))


def _bins(n: int, side: int) -> torch.Tensor:
    """One-hot ``(n, side)`` matrix assigning position i to cell floor(i * side / n)."""
    cell = torch.div(torch.arange(n) * side, n, rounding_mode="floor")  # (n,)
    return torch.nn.functional.one_hot(cell, side).to(torch.float32)  # (n, side)


def thumbnails(w: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(H, Sq, Sk)`` pooled maps of ``w (H, Tq, Tk)``: mean over each cell's queries of
    the summed weight on its keys (equal to ``w`` when ``shape == (Tq, Tk)``)."""
    bq, bk = _bins(w.shape[1], shape[0]), _bins(w.shape[2], shape[1])
    summed = w @ bk  # (H, Tq, Sk): mass per key cell
    pooled = bq.t() @ summed  # (H, Sq, Sk): summed over each query cell
    return pooled / bq.sum(0)[:, None]  # (H, Sq, Sk): mean per query cell


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)


def _is_causal(layers: list[torch.Tensor]) -> bool:
    tq, tk = layers[0].shape[1:]
    if tq != tk or tq == 1:
        return False
    return not any(bool(w.triu(1).any()) for w in layers)  # no weight on a future key


def encode_attention(weights: object, *, top_k: int | None = None) -> EncodedAttention:
    """Encode per-layer weights ``(H_l, Tq, Tk)`` (layers may differ in head count) as
    described in the module docstring. ``top_k=None`` picks :func:`auto_top_k`."""
    layers = as_layers(weights)
    tq, tk = layers[0].shape[1:]
    rows = tq * sum(w.shape[0] for w in layers)
    if top_k is None:
        top_k = auto_top_k(rows, tk)
    elif isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    k = min(top_k, tk)
    shape = (min(tq, THUMB_SIDE), min(tk, THUMB_SIDE))
    index, weight, rest, thumbs = [], [], [], []
    for w in layers:
        if w.shape[0] == 0:
            continue
        values, keys = torch.topk(w, k, dim=-1)  # (H, Tq, k) largest first
        index.append(keys.numpy().astype("<u2").tobytes())
        weight.append(_quantise(values).numpy().tobytes())
        residual = w.sum(-1) - values.sum(-1)  # (H, Tq): exact mass not kept
        rest.append(_quantise(residual).numpy().tobytes())
        thumbs.append(_quantise(thumbnails(w, shape)).numpy().tobytes())
    return EncodedAttention(
        tq=tq,
        tk=tk,
        heads=tuple(w.shape[0] for w in layers),
        top_k=k,
        thumb_shape=shape,
        index=b"".join(index),
        weight=b"".join(weight),
        rest=b"".join(rest),
        thumbs=b"".join(thumbs),
        causal=_is_causal(layers),
    )


def encoded_size(enc: EncodedAttention) -> int:
    """Characters the arrays take in the page (base64)."""
    raw = (enc.index, enc.weight, enc.rest, enc.thumbs)
    return sum(4 * math.ceil(len(b) / 3) for b in raw)
