"""Capture attention beside the fast path: ``with record(model) as rec: model(tokens)``.

:func:`record` registers an observer on each chosen :class:`~multihead.MultiHeadAttention`
(layers numbered by :func:`~multihead.analysis.attention_layers`); the model's output still
comes from its fast backend. ``mode="weights"`` keeps every map (``rec.weights[i]`` is layer
``i``'s ``(B, Hq, Tq, Tk)``); ``mode="summary"`` computes the weights one block of query rows
at a time and keeps only per-head sums (:class:`~multihead.analysis.summary.HeadSummary`),
memory O(L * H * T), so long inputs work.

The tokens of a model called as ``model(tokens, ...)`` (an integer ``(B, T)`` first argument
or ``tokens=``) are captured for the token scores (duplicate, induction, special, rare); with a
KV cache they are kept by position, so decoding one token at a time still scores them. Padded
queries (a key padding mask in self-attention without a cache, as
:class:`~multihead.models.Encoder` builds it) are left out of the statistics.

Legend: B batch, Hq query heads, Tq queries, Tk keys. Mask polarity: True = may attend.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(num_layers=2, d_model=32, num_heads=4, vocab_size=50))
    >>> tokens = torch.randint(0, 50, (2, 10))
    >>> with record(model, layers=[1]) as rec:
    ...     _ = model(tokens)
    >>> rec.weights[1].shape, rec.weights[0]              # (B, Hq, Tq, Tk); layer 0 not recorded
    (torch.Size([2, 4, 10, 10]), None)
    >>> with torch.no_grad(), record(model, mode="summary", block=4) as rec:
    ...     _ = model(tokens)
    >>> rec.summary[0].scores()["entropy"].shape          # one score per head
    torch.Size([4])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from multihead import _checks
from multihead import _hugepages as hugepages
from multihead.analysis.blocks import select, visible_blocks, weight_map
from multihead.analysis.layers import attention_layers, resolve_layers
from multihead.analysis.summary import HeadSummary, Rows
from multihead.observation import AttentionPoints

MODES = ("weights", "summary")


def default_max_bytes() -> int:
    """The default limit on the maps ``mode="weights"`` keeps: a quarter of physical RAM
    (4 GiB when it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB"


class Recording:
    """What :func:`record` captured.

    Attributes:
        layers: the recorded layer ids.
        heads: per recorded layer, the query heads kept (indices into the module's heads).
        maps: per layer id, the list of per-forward weights ``(B, H_sel, Tq, Tk)`` (weights
            mode); empty for layers not recorded.
        summary: per layer id, a :class:`HeadSummary` over every forward (summary mode, or
            weights mode with ``summarize=True``); None for layers not recorded.
        stored_bytes: bytes of the maps kept so far.
    """

    def __init__(self, num_layers: int, layers: list[int], heads: dict[int, list[int]]) -> None:
        self.layers = layers
        self.heads = heads
        self.maps: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
        self.summary: list[HeadSummary | None] = [None] * num_layers
        self.stored_bytes = 0
        self.forwards = 0

    @property
    def weights(self) -> list[torch.Tensor | None]:
        """Per layer id, the recorded weights ``(B, H_sel, Tq, Tk)`` concatenated over the
        forwards along the batch (None for a layer not recorded)."""
        out: list[torch.Tensor | None] = []
        for i, maps in enumerate(self.maps):
            if not maps:
                out.append(None)
                continue
            shapes = {tuple(m.shape[1:]) for m in maps}
            if len(shapes) > 1:
                raise ValueError(
                    f"layer {i} was recorded with different (H, Tq, Tk) shapes {sorted(shapes)} "
                    "(inputs of different lengths, or cached decoding); read rec.maps[i], the "
                    "list of per-forward maps, instead"
                )
            out.append(maps[0] if len(maps) == 1 else torch.cat(maps, dim=0))
        return out


class _Observer:
    """The per-layer observer: turns one forward's AttentionPoints into maps or sums."""

    def __init__(self, rec: Recording, layer: int, state: _State, spec: dict[str, Any]) -> None:
        self.rec, self.layer, self.state, self.spec = rec, layer, state, spec

    def __call__(self, p: AttentionPoints) -> None:
        with torch.no_grad():
            self._observe(p)

    def _observe(self, p: AttentionPoints) -> None:
        heads = self.rec.heads[self.layer]
        rows = self.state.rows_for(p)
        spec = self.spec
        if spec["mode"] == "weights":
            b, _, tq, _ = p.q.shape
            size = b * len(heads) * tq * p.k.shape[2] * p.q.element_size()
            later = sum(1 for i in self.rec.layers if i >= self.layer)
            need = self.rec.stored_bytes + size * later
            if need > spec["max_bytes"]:
                raise MemoryError(
                    f"mode='weights' would keep about {_gib(need)} of attention maps (layer "
                    f"{self.layer}: {b} x {len(heads)} heads x {tq} x {p.k.shape[2]}) but "
                    f"max_bytes={spec['max_bytes']} ({_gib(spec['max_bytes'])}); use "
                    "mode='summary' (per-head statistics in O(T) memory), fewer layers/heads, "
                    "or raise max_bytes"
                )
            if spec["summarize"]:
                # Written block by block over the keys each block may see (the rest stays 0),
                # summarised on the way.
                shape = (b, len(heads), tq, p.k.shape[2])
                w = hugepages.zeros(shape, dtype=p.q.dtype, device=p.q.device)  # (B, H_sel, Tq, Tk)
                self._blocks(p, rows, w)
            else:  # computed over the visible key blocks only, in cache-sized tiles
                w = weight_map(p, heads, spec["block"])  # (B, H_sel, Tq, Tk)
            self.rec.maps[self.layer].append(w)
            self.rec.stored_bytes += w.numel() * w.element_size()
            return
        self._blocks(p, rows, None)

    def _blocks(self, p: AttentionPoints, rows: Rows, out: torch.Tensor | None) -> None:
        """Compute the weights block by block, summarise them, and write them into ``out``
        ``(B, H_sel, Tq, Tk)`` when given."""
        heads = self.rec.heads[self.layer]
        summary = self._summary(len(heads))
        for q0, q1, k0, k1, w, allowed, known in visible_blocks(p, self.spec["block"]):
            w = select(w, heads)  # (B, H_sel, tq, tk)
            if out is not None:
                out[:, :, q0:q1, k0:k1] = w
            block = rows.block(q0, q1, select(allowed, heads), keys=(k0, k1))
            summary.update(w, block, **{k: select(v, heads) for k, v in known.items()})
            del w  # before the next block is computed

    def _summary(self, num_heads: int) -> HeadSummary:
        s = self.rec.summary[self.layer]
        if s is None:
            names = ("max_offset", "special_tokens", "frequencies", "exclude_first", "pairs")
            s = HeadSummary(num_heads, **{k: self.spec[k] for k in names})
            self.rec.summary[self.layer] = s
        return s


class _State:
    """Tokens captured from the model's input, kept by position across cached forwards."""

    def __init__(self) -> None:
        self.pending: torch.Tensor | None = None
        self.table: torch.Tensor | None = None  # (B, P) token at each position, -1 unknown
        self.fresh = False

    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        tokens = args[0] if args else kwargs.get("tokens")
        ok = isinstance(tokens, torch.Tensor) and tokens.dim() == 2
        self.pending = tokens.detach() if ok and not tokens.is_floating_point() else None
        self.fresh = True

    def rows_for(self, p: AttentionPoints) -> Rows:
        q_pos, k_pos = p.positions()  # (1|B, Tq), (Tk,) | (B, Tk)
        k_pos = k_pos.view(1, -1) if k_pos.dim() == 1 else k_pos  # (1|B, Tk)
        b, _, tq, _ = p.q.shape
        tk = p.k.shape[2]
        cached = p.mask.key_positions is not None
        if self.fresh:
            self.fresh = False
            self._take_tokens(q_pos, b, tq, tk, cached)
        valid = None
        if not cached and tq == tk:
            if p.mask.key_padding is not None:
                valid = p.mask.key_padding.to(torch.bool)  # (B, T): True = real token
            elif p.mask.key_lengths is not None:
                lengths = p.mask.key_lengths.view(-1, 1)  # (B, 1)
                valid = torch.arange(tk, device=q_pos.device) < lengths  # (B, T)
        usable = self.table is not None and self.table.shape[0] in (1, b)
        return Rows(q_pos, k_pos, valid, None, self.table if usable else None)

    def _take_tokens(self, q_pos, b: int, tq: int, tk: int, cached: bool) -> None:
        tokens, self.pending = self.pending, None
        if tokens is None or tokens.shape != (b, tq):
            self.table = None
            return
        if not cached:
            # No cache: the queries sit at 0 .. T-1 (self-attention) and are the tokens.
            self.table = tokens if tq == tk and q_pos.shape[-1] == tq else None
            return
        top = int(q_pos.max()) + 1
        if self.table is None or self.table.shape[0] != b or int(q_pos.min()) == 0:
            self.table = torch.full((b, top), -1, dtype=torch.long, device=tokens.device)
        if self.table.shape[1] < top:
            grow = self.table.new_full((b, top - self.table.shape[1]), -1)
            self.table = torch.cat([self.table, grow], dim=1)  # (B, P)
        self.table.scatter_(1, q_pos.expand(b, -1), tokens.long())


def _resolve_heads(
    modules: list[nn.Module], layers: list[int], heads: object
) -> dict[int, list[int]]:
    """``heads`` (None, a sequence for every layer, or ``{layer: sequence}``) -> per layer."""
    out = {}
    for i in layers:
        count = modules[i].num_heads
        chosen = heads.get(i) if isinstance(heads, Mapping) else heads
        if isinstance(heads, Mapping):
            unknown = sorted(set(heads) - set(layers))
            if unknown:
                raise ValueError(f"heads names layers {unknown} that are not recorded ({layers})")
        if chosen is None:
            out[i] = list(range(count))
            continue
        if isinstance(chosen, int) or not isinstance(chosen, Sequence):
            raise TypeError(f"heads for layer {i} must be a sequence of ints, got {chosen!r}")
        for h in chosen:
            if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < count:
                raise ValueError(
                    f"head {h!r} of layer {i} is out of range: the layer has {count} heads"
                )
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"heads for layer {i} has duplicates: {list(chosen)}")
        out[i] = list(chosen)
    return out


@contextmanager
def record(
    model: nn.Module,
    *,
    layers: object = None,
    heads: object = None,
    mode: str = "weights",
    block: int = 256,
    max_bytes: int | None = None,
    summarize: bool | None = None,
    max_offset: int = 8,
    special_tokens: Sequence[int] | None = None,
    frequencies: torch.Tensor | None = None,
    exclude_first: bool = False,
    pairs: bool = False,
) -> Iterator[Recording]:
    """Record attention of ``model``'s MultiHeadAttention layers while the block runs.

    Args:
        model: any module holding MultiHeadAttention layers.
        layers: layer ids (None = all; negative count from the end).
        heads: query heads to keep: a sequence for every recorded layer, or
            ``{layer: sequence}`` (indices into the layer's current heads).
        mode: ``"weights"`` keeps the maps; ``"summary"`` keeps per-head sums only.
        block: query rows per block (at most; fewer when a block would hold more than
            :data:`~multihead.analysis.blocks.BLOCK_ELEMENTS` scores).
        max_bytes: weights mode refuses (MemoryError, before computing) to keep more maps
            than this; default :func:`default_max_bytes`.
        summarize: also accumulate the summary in weights mode (always on in summary mode).
        max_offset, special_tokens, frequencies, exclude_first, pairs: options of
            :class:`~multihead.analysis.summary.HeadSummary` (``pairs``: the divergence
            between every two heads of a layer).

    Yields:
        a :class:`Recording`. Observers and hooks are removed on exit, exceptions included.
    """
    _checks.require_choice("mode", mode, MODES)
    _checks.require_positive_int("block", block)
    limit = (
        default_max_bytes()
        if max_bytes is None
        else _checks.require_positive_int("max_bytes", max_bytes)
    )
    summarize = mode == "summary" or bool(summarize)
    ids = resolve_layers(model, layers)
    modules = [m for _, m in attention_layers(model)]
    if isinstance(heads, Mapping):  # negative layer ids count from the end here too
        heads = {resolve_layers(model, [k])[0]: v for k, v in heads.items()}
    rec = Recording(len(modules), ids, _resolve_heads(modules, ids, heads))
    state = _State()
    spec = dict(mode=mode, block=block, max_bytes=limit, summarize=summarize)
    spec.update(max_offset=max_offset, special_tokens=special_tokens, frequencies=frequencies)
    spec.update(exclude_first=exclude_first, pairs=pairs)
    handles = [model.register_forward_pre_hook(state.pre_hook, with_kwargs=True)]
    try:
        for i in ids:
            handles.append(modules[i].add_observer(_Observer(rec, i, state, spec)))
        yield rec
    finally:
        for handle in handles:
            handle.remove()
