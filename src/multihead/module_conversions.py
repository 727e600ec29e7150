"""Build a :class:`~multihead.attention.MultiHeadAttention` with equal outputs from other
modules: ``torch.nn.MultiheadAttention`` and the tutorial layout (one query/key/value Linear
per head). Reached as ``MultiHeadAttention.from_torch`` and ``MultiHeadAttention.from_head_list``;
``cls`` is the class to build (a subclass works too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from multihead.attention import MultiHeadAttention


def from_torch(
    cls: type[MultiHeadAttention], module: nn.MultiheadAttention, **kwargs
) -> MultiHeadAttention:
    """Copy a ``torch.nn.MultiheadAttention`` into a (batch-first) MultiHeadAttention with
    equal outputs. Feed it ``(B, T, E)`` whatever the source's ``batch_first`` was.

    Raises ValueError for ``add_bias_kv``/``add_zero_attn``, which this module does not
    model (use :class:`multihead.compat.MultiheadAttention` for those).
    """
    if not isinstance(module, nn.MultiheadAttention):
        raise TypeError(
            f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}"
        )
    if module.bias_k is not None or module.add_zero_attn:
        raise ValueError(
            "module uses add_bias_kv or add_zero_attn, which MultiHeadAttention does not "
            "model; use multihead.compat.MultiheadAttention instead"
        )
    w = module.in_proj_weight if module._qkv_same_embed_dim else module.q_proj_weight
    new = cls(
        module.embed_dim,
        module.num_heads,
        kdim=module.kdim,
        vdim=module.vdim,
        bias=module.in_proj_bias is not None,
        out_bias=module.out_proj.bias is not None,
        dropout=module.dropout,
        device=w.device,
        dtype=w.dtype,
        **kwargs,
    )
    with torch.no_grad():
        if module._qkv_same_embed_dim:
            new.in_proj.weight.copy_(module.in_proj_weight)
            if module.in_proj_bias is not None:
                new.in_proj.bias.copy_(module.in_proj_bias)
        else:
            biases = (
                module.in_proj_bias.chunk(3)
                if module.in_proj_bias is not None
                else (None, None, None)
            )
            for proj, weight, b in zip(
                (new.q_proj, new.k_proj, new.v_proj),
                (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight),
                biases,
            ):
                proj.weight.copy_(weight)
                if b is not None:
                    proj.bias.copy_(b)
        new.out_proj.weight.copy_(module.out_proj.weight)
        if module.out_proj.bias is not None:
            new.out_proj.bias.copy_(module.out_proj.bias)
    return new


def from_head_list(
    cls: type[MultiHeadAttention],
    heads: nn.ModuleList | list[nn.Module],
    proj: nn.Linear,
    **kwargs,
) -> MultiHeadAttention:
    """Fuse a tutorial-style per-head model into one module with equal outputs.

    ``heads[i]`` has ``query``, ``key`` and ``value`` ``nn.Linear(E, E / H)`` layers and
    computes ``softmax(q k^T / sqrt(E / H)) v``; ``proj`` is the ``nn.Linear(E, E)``
    applied to the concatenated heads. A causal tutorial model (a ``tril`` buffer) matches
    ``forward(x, is_causal=True)``.
    """
    heads = list(heads)
    if not heads:
        raise ValueError("heads is empty; expected at least one per-head module")
    for i, h in enumerate(heads):
        for name in ("query", "key", "value"):
            lin = getattr(h, name, None)
            if not isinstance(lin, nn.Linear):
                raise TypeError(
                    f"heads[{i}] has no nn.Linear attribute {name!r}; expected the "
                    "tutorial layout with query/key/value Linear(E, E / H) per head"
                )
    first = heads[0].query
    embed_dim, head_dim = first.in_features, first.out_features
    if proj.in_features != head_dim * len(heads):
        raise ValueError(
            f"proj takes {proj.in_features} features but {len(heads)} heads of width "
            f"{head_dim} give {head_dim * len(heads)}"
        )
    if proj.out_features != embed_dim:
        raise ValueError(
            f"proj gives {proj.out_features} features but the heads read width "
            f"{embed_dim}; the fused module maps E -> E"
        )
    has_bias = first.bias is not None
    new = cls(
        embed_dim,
        len(heads),
        head_dim=head_dim,
        bias=has_bias,
        out_bias=proj.bias is not None,
        device=first.weight.device,
        dtype=first.weight.dtype,
        **kwargs,
    )
    with torch.no_grad():
        parts = []
        for name in ("query", "key", "value"):
            parts.append(torch.cat([getattr(h, name).weight for h in heads], dim=0))
        new.in_proj.weight.copy_(torch.cat(parts, dim=0))
        if has_bias:
            biases = [
                torch.cat([getattr(h, name).bias for h in heads])
                for name in ("query", "key", "value")
            ]
            new.in_proj.bias.copy_(torch.cat(biases))
        new.out_proj.weight.copy_(proj.weight)
        if proj.bias is not None:
            new.out_proj.bias.copy_(proj.bias)
    return new
