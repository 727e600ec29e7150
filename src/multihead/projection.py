"""Head layout of the projections: ``(B, T, H*D)`` <-> ``(B, H, T, D)`` and the packed
``[W_q; W_k; W_v]`` projection shared by MultiHeadAttention and the torch drop-in.

Legend: B batch, T sequence length, H heads, D head dim, E input width.
"""

from __future__ import annotations

import torch

from multihead.linear import linear


def split_heads(x: torch.Tensor, heads: int, head_dim: int | None = None) -> torch.Tensor:
    """``(B, T, H*D)`` -> ``(B, H, T, D)`` (a view); ``head_dim`` is needed when H is 0."""
    b, t, hd = x.shape
    d = hd // heads if head_dim is None else head_dim
    return x.view(b, t, heads, d).transpose(1, 2)  # (B, H, T, D)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, D)`` -> ``(B, T, H*D)``."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)  # (B, T, H*D)


def project_packed(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sizes: tuple[int, int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project q, k, v with one packed ``[W_q; W_k; W_v]`` weight ``(sum(sizes), E)``.

    Self-attention (query is key is value) is one matmul; key is value (encoder-decoder
    attention) is two; otherwise three, each with its slice of the weight (views, no copies).
    """
    nq, nk, nv = sizes
    if query is key and key is value:
        return linear(query, weight, bias).split(sizes, dim=-1)
    w_q, w_k, w_v = weight.split(sizes, dim=0)
    b_q, b_k, b_v = bias.split(sizes) if bias is not None else (None, None, None)
    q = linear(query, w_q, b_q)
    if key is value:
        kv_bias = bias[nq:] if bias is not None else None
        k, v = linear(key, weight[nq:], kv_bias).split((nk, nv), dim=-1)
        return q, k, v
    return q, linear(key, w_k, b_k), linear(value, w_v, b_v)
