"""Physical head pruning: remove heads for good, through
:meth:`MultiHeadAttention.select_heads <multihead.attention.MultiHeadAttention.select_heads>`
(the one place that slices head weights).

Legend: L attention layers (numbered as :func:`~multihead.analysis.layers.attention_layers`
numbers them), H_l layer l's query heads.

**Head ids are original ids**: the ids heads had in the unpruned model. A model with a
:class:`~multihead.models.config.TransformerConfig` (DecoderLM, Encoder) keeps them in
``config.layer_heads``; position ``i`` of layer ``l`` holds original head
``config.heads_of(l).query[i]``. So pruning twice names heads the same way both times, and a
head that is already gone is an error naming the heads still there. For a module without such
a config the ids are the current positions ``0 .. H_l - 1``.

GQA: a KV head is removed when the last query head reading it goes; groups may become uneven
(the module then carries a ``kv_index``). An emptied layer (allowed only with
``allow_empty_layer=True``) has 0 query heads: its attention adds ``out_proj``'s bias and
nothing else, as a fully head-masked layer would.

The result is recorded in ``model.config.layer_heads`` / ``layer_kv_heads`` (a new, validated
config object), so ``multihead.checkpoint`` saves the pruned model, ``from_checkpoint``
rebuilds it and training resumes on it.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, d_model=32, num_layers=2, num_heads=4,
    ...                                 num_kv_heads=2))
    >>> _ = prune_heads(model, parse_head_spec("0:1,3;1:0"))
    >>> model.config.layer_heads, model.config.layer_kv_heads
    (((0, 2), (1, 2, 3)), ((0, 1), (0, 1)))
    >>> _ = prune_heads(model, {1: [2, 3]})        # original ids, as before the first pruning
    >>> model.config.layer_heads, [m.num_kv_heads for m in (b.attn for b in model.blocks)]
    (((0, 2), (1,)), [2, 1])
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multihead import _checks
from multihead.analysis.layers import attention_layers
from multihead.models.config import TransformerConfig

HeadSpec = Mapping[int, Sequence[int]]


def _config(model: nn.Module) -> TransformerConfig | None:
    """The model's TransformerConfig when its layers are its blocks (DecoderLM, Encoder)."""
    config = getattr(model, "config", None)
    if not isinstance(config, TransformerConfig):
        return None
    if len(attention_layers(model)) != config.num_layers:
        return None
    return config


def original_heads(model: nn.Module) -> list[list[int]]:
    """Per layer, the original id of the head at each position (see the module doc)."""
    layers = attention_layers(model)
    config = _config(model)
    if config is None:
        return [list(range(m.num_heads)) for _, m in layers]
    return [list(config.heads_of(i).query) for i in range(len(layers))]


def _original_kv(model: nn.Module) -> list[list[int]]:
    config = _config(model)
    if config is None:
        return [list(range(m.num_kv_heads)) for _, m in attention_layers(model)]
    return [list(config.heads_of(i).kv) for i in range(config.num_layers)]


def _check_spec(spec: object, heads: list[list[int]]) -> dict[int, list[int]]:
    """``{layer: [original ids]}`` validated against ``heads``; positions to remove out."""
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"heads must be a mapping {{layer: [head ids to remove]}}, got {type(spec).__name__}"
        )
    out: dict[int, list[int]] = {}
    for layer, ids in spec.items():
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
            raise TypeError(f"heads keys must be layer numbers (int), got {layer!r}")
        if not 0 <= layer < len(heads):
            raise ValueError(
                f"heads names layer {layer} but the model has {len(heads)} attention layers "
                f"(0 .. {len(heads) - 1})"
            )
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, torch.Tensor)):
            raise TypeError(f"heads[{layer}] must be a sequence of head ids, got {ids!r}")
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        positions = []
        for h in ids:
            if isinstance(h, bool) or not isinstance(h, numbers.Integral):
                raise TypeError(f"heads[{layer}] holds {h!r}, not an integer head id")
            if ids.count(h) > 1:
                raise ValueError(f"heads[{layer}] lists head {h} twice; list each head once")
            if h not in heads[layer]:
                raise ValueError(
                    f"head {h} of layer {layer} is not in the model: layer {layer} has heads "
                    f"{heads[layer]} (original ids; pruned heads are gone)"
                )
            positions.append(heads[layer].index(int(h)))
        out[int(layer)] = positions
    return out


def prune_heads(model: nn.Module, heads: HeadSpec, *, allow_empty_layer: bool = False) -> nn.Module:
    """Remove the heads ``{layer: [original head ids]}`` from ``model`` in place; returns it.

    Every layer's selection is checked before any layer changes, so a refused spec leaves the
    model as it was. Parameters are replaced: build the optimizer again afterwards.

    Raises:
        TypeError: a spec that is not ``{int: [int, ...]}``.
        ValueError: a model without MultiHeadAttention, a layer or head out of range (or
            already pruned), a head listed twice, a layer left with no head without
            ``allow_empty_layer=True``.
    """
    _checks.require_bool("allow_empty_layer", allow_empty_layer)
    layers = [m for _, m in attention_layers(model)]
    if not layers:
        raise ValueError(f"model {type(model).__name__} has no MultiHeadAttention layer to prune")
    ids, kv_ids = original_heads(model), _original_kv(model)
    remove = _check_spec(heads, ids)
    plans: dict[int, tuple[list[int], list[int]]] = {}
    for layer, positions in remove.items():
        mha = layers[layer]
        keep = [p for p in range(mha.num_heads) if p not in positions]
        if not keep and not allow_empty_layer:
            raise ValueError(
                f"pruning heads {[ids[layer][p] for p in positions]} would leave layer {layer} "
                "without heads; pass allow_empty_layer=True (--allow-empty-layer) to empty it "
                "(its attention then adds only the output bias)"
            )
        kv_map = mha.kv_heads_of_queries()
        kv_keep = list(dict.fromkeys(kv_map[p] for p in keep))  # in order of first use
        plans[layer] = (keep, kv_keep)
    for layer, (keep, kv_keep) in plans.items():
        layers[layer].select_heads(keep, kv_keep)
        ids[layer] = [ids[layer][p] for p in keep]
        kv_ids[layer] = [kv_ids[layer][j] for j in kv_keep]
    config = _config(model)
    if config is not None:
        model.config = dataclasses.replace(
            config,
            layer_heads=tuple(map(tuple, ids)),
            layer_kv_heads=tuple(map(tuple, kv_ids)),
        )
    return model


def parse_head_spec(text: str) -> dict[int, list[int]]:
    """Parse ``"layer:head,head;layer:head"`` (e.g. ``"0:1,3;1:0"``) into ``{0: [1, 3],
    1: [0]}``. Whitespace is ignored.

    Raises:
        ValueError: malformed text, a layer named twice, a head listed twice in a layer.

    Example:
        >>> parse_head_spec("0:1,3; 2:0")
        {0: [1, 3], 2: [0]}
    """
    if not isinstance(text, str):
        raise TypeError(f"spec must be a string like '0:1,3;1:0', got {type(text).__name__}")
    out: dict[int, list[int]] = {}
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts:
        raise ValueError(f"head spec {text!r} names no heads; expected e.g. '0:1,3;1:0'")
    for part in parts:
        layer_text, sep, heads_text = part.partition(":")
        try:
            layer = int(layer_text)
            heads = [int(h) for h in heads_text.split(",") if h.strip()]
        except ValueError:
            heads = []
        if not sep or not heads or layer < 0 or any(h < 0 for h in heads):
            raise ValueError(
                f"head spec part {part!r} is not 'layer:head,head,...' with non-negative "
                f"integers (in {text!r}; expected e.g. '0:1,3;1:0')"
            )
        if layer in out:
            raise ValueError(f"head spec {text!r} names layer {layer} twice; merge its heads")
        dupes = sorted({h for h in heads if heads.count(h) > 1})
        if dupes:
            raise ValueError(f"head spec {text!r} lists heads {dupes} of layer {layer} twice")
        out[layer] = heads
    return out


def lowest_heads(
    importance: Sequence[torch.Tensor],
    fraction: float,
    *,
    model: nn.Module | None = None,
    allow_empty_layer: bool = False,
) -> dict[int, list[int]]:
    """The ``round(fraction * N)`` least important of the N heads, ranked globally (Michel et
    al. 2019 prune across layers, on per-layer normalized scores), as a spec for
    :func:`prune_heads`.

    Args:
        importance: ``[(H_l,) per layer]``, heads by current position (as
            :func:`~multihead.analysis.importance.gradient_importance` returns them).
        fraction: share of the heads to select, in [0, 1].
        model: when given, positions are translated into the model's original head ids (what
            :func:`prune_heads` takes); without it the spec holds positions.
        allow_empty_layer: if False, a layer's most important head is never selected, so the
            spec never empties a layer (fewer heads may then be returned).

    Ties are broken by (layer, position).

    Example:
        >>> import torch
        >>> lowest_heads([torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.2])], 0.5)
        {0: [1], 1: [1]}
    """
    _checks.require_number("fraction", fraction, minimum=0, maximum=1)
    _checks.require_bool("allow_empty_layer", allow_empty_layer)
    scores = [torch.as_tensor(s).detach().flatten().float().cpu() for s in importance]
    total = sum(s.numel() for s in scores)
    count = math.floor(fraction * total + 0.5)
    protected = set()
    if not allow_empty_layer:
        protected = {(i, int(s.argmax())) for i, s in enumerate(scores) if s.numel()}
    ranked = sorted(
        ((float(s[h]), i, h) for i, s in enumerate(scores) for h in range(s.numel())),
    )
    chosen = [(i, h) for _, i, h in ranked if (i, h) not in protected][:count]
    ids = original_heads(model) if model is not None else None
    if ids is not None and [len(x) for x in ids] != [s.numel() for s in scores]:
        raise ValueError(
            f"importance has {[s.numel() for s in scores]} heads per layer but the model has "
            f"{[len(x) for x in ids]}; score the model as it is now"
        )
    out: dict[int, list[int]] = {}
    for i, h in sorted(chosen):
        out.setdefault(i, []).append(h if ids is None else ids[i][h])
    return out


def importance_by_head(
    model: nn.Module, importance: Sequence[torch.Tensor]
) -> dict[tuple[int, int], float]:
    """``{(layer, original head id): score}`` from per-layer scores by position, e.g. for
    :meth:`HeadReport.with_importance <multihead.analysis.report.HeadReport.with_importance>`.

    Example:
        >>> from multihead import MultiHeadAttention
        >>> importance_by_head(MultiHeadAttention(8, 2), [torch.tensor([0.25, 0.75])])
        {(0, 0): 0.25, (0, 1): 0.75}
    """
    ids = original_heads(model)
    sizes = [torch.as_tensor(s).numel() for s in importance]
    if sizes != [len(x) for x in ids]:
        raise ValueError(
            f"importance has {sizes} heads per layer but the model has {[len(x) for x in ids]}"
        )
    return {
        (i, ids[i][p]): float(torch.as_tensor(s).flatten()[p])
        for i, s in enumerate(importance)
        for p in range(len(ids[i]))
    }


def attention_parameters(model: nn.Module) -> int:
    """Parameters of the model's attention layers (what pruning removes)."""
    return sum(p.numel() for _, m in attention_layers(model) for p in m.parameters())


def save_pruned(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    train_config: object = None,
    step: int = 0,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Save a pruned :class:`~multihead.models.DecoderLM` (or Encoder) as a checkpoint that
    ``from_checkpoint`` reloads; with ``train_config`` (a
    :class:`~multihead.train.TrainConfig`) also a fresh optimizer state at ``step``, so
    ``multihead train --resume OUT --steps N`` continues training the pruned model (the
    optimizer's moments restart: they belonged to the unpruned parameters). Returns the step
    directory."""
    from multihead.checkpoint import save_checkpoint

    config = getattr(model, "config", None)
    if not isinstance(config, TransformerConfig):
        raise TypeError(
            f"model must be a DecoderLM or Encoder (with a TransformerConfig), got "
            f"{type(model).__name__}"
        )
    if train_config is None:
        return save_checkpoint(
            out, model=model, kind=config.kind, config=config.to_dict(), step=step, meta=meta
        )
    from multihead.optim import make_optimizer
    from multihead.train import TrainConfig, state
    from multihead.train.world import World

    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    tc = train_config
    optimizer = make_optimizer(
        model, tc.optimizer, lr=tc.lr, weight_decay=tc.weight_decay, betas=(tc.beta1, tc.beta2)
    )
    device = next(model.parameters()).device
    path = state.save(
        Path(out), model, optimizer, tc, World(0, 1, device), step=step, meta=meta or {}
    )
    assert path is not None  # one process: it is the main one
    return path
