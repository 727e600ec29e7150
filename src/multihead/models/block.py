"""The pre-norm transformer block: ``x + attn(norm(x))``, then ``x + ffn(norm(x))``.

Legend: B batch, T sequence length, E model width.

Pre-norm (Xiong et al. 2020, "On layer normalization in the Transformer architecture") keeps the
residual stream un-normalized, which trains stably without a long warmup.

Example:
    >>> import torch
    >>> from multihead import masks
    >>> from multihead.models import DecoderConfig, TransformerBlock
    >>> block = TransformerBlock(DecoderConfig(d_model=32, num_heads=4, position="none"))
    >>> block(torch.randn(2, 7, 32), mask=masks.causal()).shape
    torch.Size([2, 7, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from multihead.attention import KVCacheLayer, MultiHeadAttention, PositionalRotation
from multihead.masks import AttentionMask
from multihead.models.config import TransformerConfig
from multihead.models.feedforward import FeedForward


def make_norm(config: TransformerConfig) -> nn.Module:
    """LayerNorm, or RMSNorm (Zhang and Sennrich 2019: rescale only, no centering)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)


class TransformerBlock(nn.Module):
    """One pre-norm block: self-attention and feed-forward, each with a residual connection.

    Args:
        config: sizes and options (see :class:`~multihead.models.config.TransformerConfig`).
        rotary: the position rotation shared by all layers (RoPE), or None.

    Call: ``block(x, mask=..., positions=..., cache=...)`` with x ``(B, T, E)``; mask an
    :class:`~multihead.masks.AttentionMask` (True = may attend); returns ``(B, T, E)``.
    """

    def __init__(
        self, config: TransformerConfig, *, rotary: PositionalRotation | None = None
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = MultiHeadAttention(
            config.d_model,
            config.num_heads,
            num_kv_heads=config.kv_heads,
            head_dim=config.head_size,
            bias=config.bias,
            dropout=config.attn_dropout,
            backend=config.backend,
            rotary=rotary,
        )
        self.norm2 = make_norm(config)
        self.ffn = FeedForward(
            dim=config.d_model,
            hidden_dim=config.ffn_size,
            activation=config.activation,
            bias=config.bias,
            dropout=config.dropout,
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: AttentionMask | None = None,
        positions: torch.Tensor | None = None,
        cache: KVCacheLayer | None = None,
    ) -> torch.Tensor:
        a, _ = self.attn(self.norm1(x), mask=mask, positions=positions, cache=cache)
        x = x + self.dropout(a)
        return x + self.ffn(self.norm2(x))  # (B, T, E)
