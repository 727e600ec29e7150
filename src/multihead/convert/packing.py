"""Packed matrices: the one place where separate checkpoint matrices become multihead's packed
ones and back.

multihead packs ``[W_q; W_k; W_v]`` in attention's ``in_proj`` and SwiGLU's ``[W_gate; W_up]``
in the feed-forward's ``up``; Hugging Face checkpoints store each block as its own tensor. The
row count of each block is not guessed here: the module that owns the matrix declares it in
its parameter role (:mod:`multihead.roles`, ``Role.blocks``), and a packed matrix's bias packs
the same blocks.

Example:
    >>> import torch
    >>> from multihead import MultiHeadAttention
    >>> mha = MultiHeadAttention(8, 2, num_kv_heads=1)
    >>> blocks = packed_blocks(mha)
    >>> blocks
    {'in_proj.weight': (8, 4, 4), 'in_proj.bias': (8, 4, 4)}
    >>> q, k, v = torch.randn(8, 8), torch.randn(4, 8), torch.randn(4, 8)
    >>> w = pack_rows("in_proj.weight", [("q", q), ("k", k), ("v", v)], blocks["in_proj.weight"])
    >>> [torch.equal(a, b) for a, b in zip(unpack_rows(w, blocks["in_proj.weight"]), (q, k, v))]
    [True, True, True]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from multihead.roles import parameter_roles


def packed_blocks(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter name -> row blocks, for every packed matrix of ``model`` and its bias."""
    out: dict[str, tuple[int, ...]] = {}
    params = dict(model.named_parameters())
    for name, _, role in parameter_roles(model):
        if role.blocks is None:
            continue
        out[name] = role.blocks
        if name.endswith(".weight") or name == "weight":
            bias = name[: -len("weight")] + "bias"
            if bias in params:
                out[bias] = role.blocks
    return out


def pack_rows(
    name: str, parts: Sequence[tuple[str, torch.Tensor]], blocks: Sequence[int]
) -> torch.Tensor:
    """Stack the blocks ``parts`` (``(source name, tensor)``, top to bottom) into packed
    parameter ``name``, checking each block's rows against the declared ``blocks``.

    Raises:
        ValueError: a block has the wrong number of rows or trailing shape (both named).
    """
    if len(parts) != len(blocks):
        raise ValueError(
            f"{name} packs {len(blocks)} blocks {tuple(blocks)} but {len(parts)} tensors were "
            f"given ({[n for n, _ in parts]})"
        )
    trailing = parts[0][1].shape[1:]
    for (source, t), rows in zip(parts, blocks):
        if t.shape[0] != rows or t.shape[1:] != trailing:
            expected = (rows, *trailing)
            raise ValueError(
                f"{source} has shape {tuple(t.shape)} but {name} needs a block of shape "
                f"{expected} there"
            )
    return torch.cat([t for _, t in parts], dim=0)  # (sum(blocks), ...)


def unpack_rows(tensor: torch.Tensor, blocks: Sequence[int]) -> list[torch.Tensor]:
    """The blocks of a packed matrix (or bias), top to bottom, as contiguous tensors."""
    if tensor.shape[0] != sum(blocks):
        raise ValueError(
            f"a tensor of shape {tuple(tensor.shape)} cannot be split into row blocks "
            f"{tuple(blocks)} (sum {sum(blocks)})"
        )
    return [t.contiguous() for t in tensor.split(list(blocks), dim=0)]
