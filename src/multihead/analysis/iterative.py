"""Iterative pruning (Michel, Levy and Neubig 2019, section 6.1): score the heads, remove the
least important ``step_fraction`` of the original heads globally, optionally score again, and
repeat until a metric falls below a given fraction of the unpruned model's.

Legend: N the model's query heads before pruning. Head ids in the curve are original ids (as
:func:`~multihead.analysis.prune.prune_heads` takes them).

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> from multihead.analysis.importance import lm_loss
    >>> _ = torch.manual_seed(0)
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, d_model=16, num_layers=2, num_heads=4))
    >>> data = [torch.randint(0, 16, (4, 9))]                       # (B, T) tokens
    >>> loss = lambda m: float(lm_loss(m, data[0]).mean())
    >>> curve = prune_iteratively(model, data, loss, step_fraction=0.25,
    ...                           higher_is_better=False, progress=False)
    >>> [p.heads for p in curve.points]           # each layer keeps its best head
    [8, 6, 4, 2]
    >>> curve.points[1].removed                   # original ids removed at that step
    {0: [0, 1]}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from multihead import _checks
from multihead.analysis.flops import attention_flops, forward_flops
from multihead.analysis.importance import LossFn, evaluating, gradient_importance
from multihead.analysis.layers import attention_layers
from multihead.analysis.prune import original_heads, prune_heads
from multihead.analysis.timing import seconds_per_forward

ImportanceFn = Callable[[nn.Module, list], list[torch.Tensor]]


@dataclass
class PruningPoint:
    """One point of a pruning curve.

    Attributes:
        fraction: share of the original N query heads removed so far.
        heads: query heads left.
        metric: ``eval_fn(model)`` at this point.
        params: the model's parameters (each counted once).
        attention_flops: attention FLOPs of one forward of ``seq_len`` tokens
            (:func:`~multihead.analysis.flops.attention_flops`).
        forward_flops: the whole forward's FLOPs at ``seq_len``.
        seconds: measured seconds per forward of ``timing_tokens`` (None without them).
        removed: the heads removed to reach this point, ``{layer: [original ids]}``.
    """

    fraction: float
    heads: int
    metric: float
    params: int
    attention_flops: int
    forward_flops: int
    seconds: float | None
    removed: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class PruningCurve:
    """The points of :func:`prune_iteratively`, the first one the unpruned model."""

    points: list[PruningPoint]
    higher_is_better: bool = True

    @property
    def fractions(self) -> list[float]:
        return [p.fraction for p in self.points]

    @property
    def metrics(self) -> list[float]:
        return [p.metric for p in self.points]

    def speedups(self) -> list[float] | None:
        """Measured forward speed-up of each point over the first (None without timings)."""
        if any(p.seconds is None for p in self.points):
            return None
        return [self.points[0].seconds / p.seconds for p in self.points]

    def predicted_speedups(self) -> list[float]:
        """Forward speed-up predicted by the FLOP counts."""
        return [self.points[0].forward_flops / p.forward_flops for p in self.points]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (layer keys of ``removed`` become strings in JSON)."""
        return {
            "higher_is_better": self.higher_is_better,
            "points": [asdict(p) for p in self.points],
        }


def _point(
    model: nn.Module,
    eval_fn: Callable[[nn.Module], float],
    total: int,
    seq_len: int,
    timing_tokens: torch.Tensor | None,
    removed: dict[int, list[int]],
) -> PruningPoint:
    with evaluating(model), torch.no_grad():
        metric = eval_fn(model)
    if isinstance(metric, torch.Tensor):
        metric = float(metric)
    if not isinstance(metric, (int, float)) or not math.isfinite(metric):
        raise ValueError(f"eval_fn returned {metric!r}; a finite number is expected")
    heads = sum(m.num_heads for _, m in attention_layers(model))
    seconds = None if timing_tokens is None else seconds_per_forward(model, timing_tokens)
    return PruningPoint(
        fraction=(total - heads) / total,
        heads=heads,
        metric=float(metric),
        params=sum(p.numel() for p in model.parameters()),
        attention_flops=attention_flops(model, seq_len),
        forward_flops=forward_flops(model, seq_len),
        seconds=seconds,
        removed=removed,
    )


def _ranked(model: nn.Module, scores: list[torch.Tensor]) -> dict[tuple[int, int], float]:
    """``{(layer, original id): score}`` for the heads the model holds now."""
    ids = original_heads(model)
    if [len(x) for x in ids] != [s.numel() for s in scores]:
        raise ValueError(
            f"importance_fn returned {[s.numel() for s in scores]} scores per layer for a "
            f"model with {[len(x) for x in ids]} heads per layer"
        )
    return {(i, ids[i][p]): float(s[p]) for i, s in enumerate(scores) for p in range(s.numel())}


def _next_spec(
    model: nn.Module, scores: dict[tuple[int, int], float], count: int, allow_empty_layer: bool
) -> dict[int, list[int]]:
    """The ``count`` lowest-scored heads still in the model, each layer's last head spared
    unless ``allow_empty_layer``; ties broken by (layer, id)."""
    ids = original_heads(model)
    left = {i: len(x) for i, x in enumerate(ids)}
    present = [(scores[(i, h)], i, h) for i, x in enumerate(ids) for h in x]
    spec: dict[int, list[int]] = {}
    for _, i, h in sorted(present):
        if len(spec.get(i, [])) + (0 if allow_empty_layer else 1) >= left[i]:
            continue
        spec.setdefault(i, []).append(h)
        count -= 1
        if count == 0:
            break
    return {i: sorted(hs) for i, hs in sorted(spec.items())}


def _below(metric: float, base: float, stop_below: float | None, higher: bool) -> bool:
    """Has the metric fallen below ``stop_below`` of the base (quality ratio
    ``metric / base``, or ``base / metric`` for a lower-is-better metric)?"""
    if stop_below is None:
        return False
    ratio = metric / base if higher else base / metric if metric else math.inf
    return ratio < stop_below


def prune_iteratively(
    model: nn.Module,
    batches: Iterable[Any],
    eval_fn: Callable[[nn.Module], float],
    *,
    step_fraction: float = 0.1,
    stop_below: float | None = None,
    rescore: bool = True,
    higher_is_better: bool = True,
    loss_fn: LossFn | None = None,
    importance_fn: ImportanceFn | None = None,
    allow_empty_layer: bool = False,
    max_fraction: float = 1.0,
    seq_len: int = 256,
    timing_tokens: torch.Tensor | None = None,
    progress: bool = True,
) -> PruningCurve:
    """Prune ``model`` in place step by step; returns the curve (first point: unpruned).

    Args:
        batches: data to score heads on (read into a list; see
            :func:`~multihead.analysis.importance.gradient_importance`).
        eval_fn: ``eval_fn(model) -> float``, called in eval mode under no_grad at each point.
        step_fraction: share of the original N heads removed per step (at least one head).
        stop_below: stop after the first point whose quality ratio (``metric / base``, or
            ``base / metric`` when ``higher_is_better=False``) is below this; None = go on
            until ``max_fraction`` or no head can be removed.
        rescore: score the heads again after every step (Michel et al. find it helps little;
            without it the first ranking is used throughout).
        loss_fn: the loss the default importance differentiates.
        importance_fn: ``importance_fn(model, batches) -> [(H_l,)]``; default normalized
            gradient importance.
        allow_empty_layer: let a step remove a layer's last head.
        max_fraction: stop once this share of the heads is gone.
        seq_len: sequence length of the FLOP counts.
        timing_tokens: ``(B, T)`` tokens timed by a forward at every point (None: no timing).
        progress: a tqdm bar over the steps.
    """
    _checks.require_number("step_fraction", step_fraction, above=0, maximum=1)
    _checks.require_number("max_fraction", max_fraction, minimum=0, maximum=1)
    if stop_below is not None:
        _checks.require_number("stop_below", stop_below, minimum=0)
    for name, flag in (("rescore", rescore), ("higher_is_better", higher_is_better)):
        _checks.require_bool(name, flag)
    data = list(batches)
    if importance_fn is None:

        def importance_fn(m: nn.Module, b: list) -> list[torch.Tensor]:
            return gradient_importance(m, b, loss_fn, progress=False)

    total = sum(m.num_heads for _, m in attention_layers(model))
    if total == 0:
        raise ValueError("the model has no attention heads to prune")
    per_step = max(1, math.floor(step_fraction * total + 0.5))
    points = [_point(model, eval_fn, total, seq_len, timing_tokens, {})]
    scores = _ranked(model, importance_fn(model, data))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=math.ceil(total * max_fraction / per_step), desc="pruning", leave=False)
    while points[-1].fraction < max_fraction - 1e-12:
        budget = min(per_step, math.floor(max_fraction * total + 1e-9) - (total - points[-1].heads))
        spec = _next_spec(model, scores, budget, allow_empty_layer) if budget > 0 else {}
        if not spec:
            break
        prune_heads(model, spec, allow_empty_layer=allow_empty_layer)
        points.append(_point(model, eval_fn, total, seq_len, timing_tokens, spec))
        if bar is not None:
            bar.update(1)
        if _below(points[-1].metric, points[0].metric, stop_below, higher_is_better):
            break
        if rescore and points[-1].heads:
            scores = _ranked(model, importance_fn(model, data))
    if bar is not None:
        bar.close()
    return PruningCurve(points, higher_is_better)
