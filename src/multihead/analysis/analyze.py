"""``analyze(model, batches)``: record every head over some data and build the head report.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(num_layers=2, d_model=32, num_heads=2, vocab_size=20))
    >>> batches = [torch.randint(0, 20, (4, 16)) for _ in range(2)]
    >>> report = analyze(model, batches, progress=False)
    >>> len(report.heads), sorted(report.heads[0].to_dict())
    (4, ['head', 'importance', 'kv_head', 'layer', 'roles', 'scores'])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from multihead import _checks
from multihead.analysis.layers import attention_layers, resolve_layers
from multihead.analysis.record import Recording, record
from multihead.analysis.redundancy import pairwise_js, redundant_clusters
from multihead.analysis.report import HeadEntry, HeadReport
from multihead.analysis.roles import RoleThresholds, assign_roles
from multihead.analysis.scores import token_frequencies

Forward = Callable[[nn.Module, Any], Any]


def default_forward(model: nn.Module, batch: Any) -> Any:
    """Run one batch: a tensor of token ids ``(B, T)``, a tuple ``(x, y, ...)`` (its ``x``,
    as :class:`~multihead.data.SyntheticTask` yields them) or a dict ``{"tokens": ...,
    **keyword arguments}`` (e.g. ``lengths=`` for an Encoder)."""
    if isinstance(batch, torch.Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        kwargs = dict(batch)
        if "tokens" not in kwargs:
            raise ValueError(f"a dict batch needs 'tokens', got keys {sorted(kwargs)}")
        return model(kwargs.pop("tokens"), **kwargs)
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return model(batch[0])
    raise TypeError(
        "a batch must be a token tensor (B, T), a tuple (x, y, ...) or a dict with 'tokens', "
        f"got {type(batch).__name__}"
    )


def _tokens_of(batch: Any) -> torch.Tensor | None:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        return batch.get("tokens")
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    return None


def head_ids(model: nn.Module, layer: int) -> tuple[list[int], list[int]]:
    """Original query-head ids of layer ``layer``'s heads and the original KV head of each:
    from ``model.config.heads_of`` when the model has a per-layer head config (pruned models),
    else their positions in the module."""
    mha = attention_layers(model)[layer][1]
    kv_pos = mha.kv_heads_of_queries()
    config = getattr(model, "config", None)
    if hasattr(config, "heads_of") and getattr(config, "num_layers", None) == len(
        attention_layers(model)
    ):
        heads = config.heads_of(layer)
        if heads.num_q == mha.num_heads:
            return list(heads.query), [heads.kv[k] for k in kv_pos]
    return list(range(mha.num_heads)), kv_pos


def analyze(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    mode: str = "summary",
    layers: object = None,
    heads: object = None,
    progress: bool = True,
    special_tokens: Sequence[int] | None = None,
    frequencies: torch.Tensor | None = None,
    thresholds: RoleThresholds | None = None,
    exclude_first: bool = False,
    block: int = 256,
    redundancy: float | None = None,
    forward: Forward = default_forward,
    max_bytes: int | None = None,
) -> HeadReport:
    """Score and classify every head of ``model`` over ``batches``.

    Args:
        model: a module with MultiHeadAttention layers; run in eval mode under no_grad.
        batches: an iterable of batches as :func:`default_forward` takes them.
        mode: ``"summary"`` (per-head sums, O(T) memory) or ``"weights"`` (keeps the maps;
            which ``redundancy`` compares across layers). Both give the same scores.
        layers, heads: what to analyse, as :func:`~multihead.analysis.record` takes them.
        progress: show a tqdm bar over the batches.
        special_tokens: token ids for the ``special_token`` score (e.g. [CLS], [SEP]).
        frequencies: ``(V,)`` token counts for ``rare_token``; default: counted from
            ``batches`` when it is a list or tuple (otherwise no rare-token score).
        thresholds: role thresholds (:class:`~multihead.analysis.roles.RoleThresholds`).
        exclude_first: leave the first token out of the pattern scores (TransformerLens's
            ``exclude_bos``).
        block: query rows per block in summary mode.
        redundancy: a JSD threshold (nats): clusters of near-duplicate heads go into
            ``report.model["redundant_clusters"]`` as ``[[layer, head], ...]`` lists. Weights
            mode compares every two heads of the model; summary mode the heads of each layer
            (accumulated block by block, about H times the cost of the other statistics).
        forward: ``forward(model, batch)`` runs one batch.
        max_bytes: the weights-mode memory limit (see :func:`record`).

    Raises:
        ValueError: no MultiHeadAttention, layers/heads out of range, ``batches`` yields
            nothing.
    """
    ids = resolve_layers(model, layers)
    if redundancy is not None:
        _checks.require_number("redundancy", redundancy, minimum=0.0)
    if frequencies is None and isinstance(batches, (list, tuple)):
        frequencies = _count(model, batches)
    options = dict(special_tokens=special_tokens, frequencies=frequencies)
    options.update(exclude_first=exclude_first, block=block, max_bytes=max_bytes)
    options["pairs"] = redundancy is not None and mode == "summary"
    was_training = model.training
    model.eval()
    try:
        with (
            torch.no_grad(),
            record(model, layers=ids, heads=heads, mode=mode, summarize=True, **options) as rec,
        ):
            count = _run(model, batches, forward, progress)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("batches yielded no batch; there is nothing to analyse")
    info = _model_info(model, ids, mode, count, exclude_first, thresholds, redundancy)
    report = HeadReport(info, _entries(model, rec, thresholds))
    if redundancy is not None:
        report.model["redundant_clusters"] = _clusters(model, rec, redundancy)
    return report


def _model_info(
    model: nn.Module,
    ids: list[int],
    mode: str,
    count: int,
    exclude_first: bool,
    thresholds: RoleThresholds | None,
    redundancy: float | None,
) -> dict[str, Any]:
    """The report's ``model`` section: what was analysed and how."""
    info = {
        "class": type(model).__name__,
        "num_layers": len(attention_layers(model)),
        "layers": ids,
        "mode": mode,
        "batches": count,
        "exclude_first": exclude_first,
        "thresholds": dataclasses.asdict(thresholds or RoleThresholds()),
    }
    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        info["config"] = config.to_dict()
    if redundancy is not None:
        info["redundancy"] = {
            "threshold": redundancy,
            "scope": "model" if mode == "weights" else "layer",
        }
    return info


def _count(model: nn.Module, batches: Sequence[Any]) -> torch.Tensor | None:
    tokens = [t for t in (_tokens_of(b) for b in batches) if t is not None]
    if not tokens or any(t.is_floating_point() for t in tokens):
        return None
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    vocab = vocab or int(max(int(t.max()) for t in tokens)) + 1
    return token_frequencies(tokens, vocab)


def _run(model: nn.Module, batches: Iterable[Any], forward: Forward, progress: bool) -> int:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = len(batches) if hasattr(batches, "__len__") else None
        bar = tqdm(total=total, unit="batch", desc="analyze", dynamic_ncols=True)
    count = 0
    try:
        for batch in batches:
            forward(model, batch)
            count += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return count


def _entries(model: nn.Module, rec: Recording, thresholds) -> list[HeadEntry]:
    entries = []
    for layer in rec.layers:
        summary = rec.summary[layer]
        if summary is None:  # the layer never ran
            continue
        scores = {k: v for k, v in summary.scores().items() if v.dim() == 1}
        roles = assign_roles(scores, thresholds)
        original, kv = head_ids(model, layer)
        for n, h in enumerate(rec.heads[layer]):
            values = {k: float(v[n]) for k, v in scores.items()}
            entries.append(HeadEntry(layer, original[h], kv[h], roles[n], values))
    return entries


def _clusters(model: nn.Module, rec: Recording, threshold: float) -> list[list[list[int]]]:
    if any(s is not None and s.pairs for s in rec.summary):
        ids, d = _within_layers(rec)
    else:
        ids, d = pairwise_js(rec.weights)
    names = {}
    for layer in rec.layers:
        original, _ = head_ids(model, layer)
        for n, h in enumerate(rec.heads[layer]):
            names[(layer, n)] = original[h]
    groups = redundant_clusters(ids, d, threshold=threshold)
    return [[[layer, names[(layer, n)]] for layer, n in g] for g in groups]


def _within_layers(rec: Recording) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """The summaries' per-layer divergences as one block-diagonal matrix (NaN across
    layers: never linked)."""
    ids = [(i, n) for i in rec.layers if rec.summary[i] for n in range(len(rec.heads[i]))]
    d = torch.full((len(ids), len(ids)), float("nan"), dtype=torch.float64)
    start = 0
    for i in rec.layers:
        if rec.summary[i] is None:
            continue
        h = len(rec.heads[i])
        d[start : start + h, start : start + h] = rec.summary[i].divergence()
        start += h
    return ids, d
