"""The two models multihead is measured against, written the way users write them.

* :class:`TutorialMultiHead` is the per-head ``nn.ModuleList`` model of the "Let's build GPT"
  tutorial (Karpathy, nanoGPT lecture): every head owns ``key``/``query``/``value``
  ``nn.Linear(E, E / H, bias=False)`` layers and a ``tril`` causal buffer, computes
  ``softmax(q k^T * hs**-0.5) v`` with a materialized ``T x T`` score matrix, and the heads are
  concatenated and projected by ``proj``. Dropout is omitted (the benchmark runs p = 0).
* :class:`SdpaLinear` is the fastest plain-PyTorch layer: one fused ``Linear(E, 3E)``,
  ``F.scaled_dot_product_attention`` and ``Linear(E, E)``. It is the reference every ratio
  in the benchmark is taken against.

Legend: B batch, T sequence length, E embedding width, H heads, hs = E / H head size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    """One tutorial attention head; ``causal`` applies the ``tril`` buffer."""

    def __init__(self, embed_dim: int, head_size: int, block_size: int, *, causal: bool = True):
        super().__init__()
        self.key = nn.Linear(embed_dim, head_size, bias=False)
        self.query = nn.Linear(embed_dim, head_size, bias=False)
        self.value = nn.Linear(embed_dim, head_size, bias=False)
        self.causal = causal
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(B, T, E)`` -> ``(B, T, hs)``."""
        _, t, _ = x.shape
        k = self.key(x)  # (B, T, hs)
        q = self.query(x)  # (B, T, hs)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, T)
        if self.causal:
            wei = wei.masked_fill(self.tril[:t, :t] == 0, float("-inf"))  # (B, T, T)
        wei = F.softmax(wei, dim=-1)  # (B, T, T)
        v = self.value(x)  # (B, T, hs)
        return wei @ v  # (B, T, hs)


class TutorialMultiHead(nn.Module):
    """The tutorial's ``MultiHeadAttention``: a ModuleList of :class:`Head` plus ``proj``.

    Example:
        >>> m = TutorialMultiHead(32, 4, block_size=8)
        >>> m(torch.randn(2, 8, 32)).shape
        torch.Size([2, 8, 32])
    """

    def __init__(self, embed_dim: int, num_heads: int, *, block_size: int, causal: bool = True):
        super().__init__()
        head_size = embed_dim // num_heads
        self.heads = nn.ModuleList(
            Head(embed_dim, head_size, block_size, causal=causal) for _ in range(num_heads)
        )
        self.proj = nn.Linear(head_size * num_heads, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(B, T, E)`` -> ``(B, T, E)``."""
        out = torch.cat([h(x) for h in self.heads], dim=-1)  # (B, T, E)
        return self.proj(out)


class SdpaLinear(nn.Module):
    """Fused ``Linear(E, 3E)`` -> ``F.scaled_dot_product_attention`` -> ``Linear(E, E)``.

    ``forward(x, attn_mask=None, is_causal=False)``: x ``(B, T, E)``; ``attn_mask`` is passed
    to SDPA unchanged (bool, **True = may attend**, ``(T, T)``).

    Example:
        >>> m = SdpaLinear(32, 4)
        >>> m(torch.randn(2, 8, 32), is_causal=True).shape
        torch.Size([2, 8, 32])
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        b, t, e = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).split(e, dim=-1)  # each (B, T, E)
        q = q.view(b, t, h, e // h).transpose(1, 2)  # (B, H, T, D)
        k = k.view(b, t, h, e // h).transpose(1, 2)  # (B, H, T, D)
        v = v.view(b, t, h, e // h).transpose(1, 2)  # (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        y = y.transpose(1, 2).reshape(b, t, e)  # (B, T, E)
        return self.proj(y)
