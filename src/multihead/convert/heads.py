"""Per-layer head layouts of whole models: keep a layout (through ``select_heads``), or spread
a pruned model back over the unpruned layout with the removed heads zeroed.

transformers' BERT and Llama-family configs hold one head count for all layers
(``num_attention_heads``, ``num_key_value_heads``; transformers 5 has no ``pruned_heads``
either), so a pruned model is written for them in the unpruned layout: each kept head in the
slot of its original id, every removed head with zero query/key/value rows and zero output
columns. A removed head then adds exactly nothing — its output columns are zero whatever it
attends to — so the padded model computes what the pruned one does, and transformers loads it.

Legend: L layers, E model width, D head dim.

Example:
    >>> import torch
    >>> from multihead.models import EncoderConfig, Encoder
    >>> _ = torch.manual_seed(0)
    >>> full = Encoder(EncoderConfig(vocab_size=20, d_model=16, num_layers=2, num_heads=4)).eval()
    >>> tokens = torch.randint(0, 20, (1, 5))
    >>> masked, _ = full(tokens, head_mask=torch.tensor([[1.0, 0, 1, 0], [1, 1, 1, 1]]))
    >>> pruned = select_layer_heads(full, [[0, 2], [0, 1, 2, 3]])
    >>> pruned.config.layer_head_counts
    (2, 4)
    >>> torch.allclose(pruned(tokens)[0], masked, atol=1e-5)
    True
    >>> padded = expand_heads(pruned)
    >>> padded.config.uniform_heads, torch.allclose(padded(tokens)[0], masked, atol=1e-5)
    (True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from multihead.attention import MultiHeadAttention
from multihead.models import TransformerStack


def check_heads_match_config(model: TransformerStack) -> None:
    """Raise ValueError unless every layer's attention holds the heads its config says
    (``select_heads`` called on a module directly leaves the config behind)."""
    cfg = model.config
    for i, block in enumerate(model.blocks):
        heads, attn = cfg.heads_of(i), block.attn
        kv_index = None if attn.kv_index is None else tuple(attn.kv_index.tolist())
        if (attn.num_heads, attn.num_kv_heads, kv_index) != (
            heads.num_q,
            heads.num_kv,
            heads.kv_index,
        ):
            raise ValueError(
                f"layer {i} holds {attn.num_heads} query and {attn.num_kv_heads} KV heads but "
                f"its config keeps {heads.num_q} and {heads.num_kv} (layer_heads[{i}]="
                f"{list(heads.query)}); prune through the config's layer_heads (e.g. "
                "multihead.convert.select_layer_heads), not select_heads on one module"
            )


def select_layer_heads(
    model: TransformerStack,
    layer_heads: Sequence[Sequence[int]],
    layer_kv_heads: Sequence[Sequence[int]] | None = None,
) -> TransformerStack:
    """Keep in each layer the listed heads, as ORIGINAL head ids (those of
    ``config.layer_heads``), in place, through each attention's ``select_heads``; the
    model's config becomes the pruned one. Returns the model.

    Args:
        layer_heads: per layer, the original query-head ids to keep (a subset of those the
            layer keeps now), in their new order.
        layer_kv_heads: per layer, the original KV-head ids to keep (default: those the kept
            query heads use).

    Raises:
        ValueError: an invalid layout (the config says which), or one asking for a head the
            layer no longer has. Nothing changes on error.
    """
    check_heads_match_config(model)
    old = model.config
    new = dataclasses.replace(old, layer_heads=layer_heads, layer_kv_heads=layer_kv_heads)
    plans = []
    for i in range(old.num_layers):
        before, after = old.heads_of(i), new.heads_of(i)
        gone = sorted(set(after.query) - set(before.query))
        if gone:
            raise ValueError(
                f"layer_heads[{i}] keeps heads {gone}, which layer {i} no longer has (it keeps "
                f"{list(before.query)})"
            )
        q = [before.query.index(h) for h in after.query]
        kv = [before.kv.index(h) for h in after.kv]
        plans.append((q, kv))
    for block, (q, kv) in zip(model.blocks, plans):
        block.attn.select_heads(q, kv)
    model.config = new
    return model


def _copy_heads(src: MultiHeadAttention, dst: MultiHeadAttention, query, kv) -> None:
    """Write ``src``'s heads into ``dst``'s slots ``query`` (query heads) and ``kv`` (KV heads)
    through the per-head views; every other slot of ``dst`` is zero."""
    for p in dst.parameters():
        p.zero_()
    if src.out_proj.bias is not None:
        dst.out_proj.bias.copy_(src.out_proj.bias)  # (E,): per output, not per head
    views = [("W_Q", query), ("W_O", query), ("b_Q", query)]
    views += [(name, kv) for name in ("W_K", "W_V", "b_K", "b_V")]
    for name, slots in views:
        source, target = getattr(src, name), getattr(dst, name)
        if source is None:
            continue
        for j, slot in enumerate(slots):
            target[slot] = source[j]  # (E, D), (D, E) or (D,): one head


def expand_heads(model: TransformerStack) -> TransformerStack:
    """A copy of ``model`` in its unpruned layout (``layer_heads=None``): kept heads in the
    slots of their original ids, removed heads zeroed, every other parameter copied. It
    computes what ``model`` computes. An unpruned model is copied as it is.
    """
    check_heads_match_config(model)
    cfg = model.config
    full_cfg = dataclasses.replace(cfg, layer_heads=None, layer_kv_heads=None)
    p = next(model.parameters())
    full = type(model)(full_cfg).to(device=p.device, dtype=p.dtype)
    pairs = dict(model.named_modules())
    with torch.no_grad():
        for name, dst in full.named_modules():
            src = pairs[name]
            if isinstance(dst, MultiHeadAttention):
                layer = next(i for i, b in enumerate(full.blocks) if b.attn is dst)
                heads = cfg.heads_of(layer)
                _copy_heads(src, dst, heads.query, heads.kv)
                continue
            if isinstance(src, MultiHeadAttention) or _inside_attention(name, full):
                continue
            for local, tensor in dst.named_parameters(recurse=False):
                tensor.copy_(getattr(src, local))
            for local, tensor in dst.named_buffers(recurse=False):
                if tensor is not None:
                    tensor.copy_(getattr(src, local))
    full.train(model.training)
    if hasattr(model, "hf_config"):  # the config.json a converted model came from
        full.hf_config = model.hf_config
    return full


def _inside_attention(name: str, model: nn.Module) -> bool:
    """Whether module ``name`` belongs to an attention module (its projections, its parts)."""
    parts = name.split(".")
    return any(
        isinstance(model.get_submodule(".".join(parts[:k])), MultiHeadAttention)
        for k in range(1, len(parts))
    )
