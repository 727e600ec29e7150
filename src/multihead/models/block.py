"""The transformer block: pre-norm ``x + attn(norm(x))``, then ``x + ffn(norm(x))``; or
post-norm ``norm(x + attn(x))``, then ``norm(x + ffn(x))``. With ``ffn_dim=0`` the block is
attention-only: the first half alone, no feed-forward and no second norm.

Legend: B batch, T sequence length, E model width, H_l the block's query heads.

Pre-norm (Xiong et al. 2020, "On layer normalization in the Transformer architecture") keeps the
residual stream un-normalized, which trains stably without a long warmup. Post-norm is the
original Transformer's (Vaswani et al. 2017) and BERT's layout, there for pretrained models.

Example:
    >>> import torch
    >>> from multihead import masks
    >>> from multihead.models import DecoderConfig, TransformerBlock
    >>> block = TransformerBlock(DecoderConfig(d_model=32, num_heads=4, position="none"))
    >>> x, weights = block(torch.randn(2, 7, 32), mask=masks.causal(), need_weights=True)
    >>> x.shape, weights.shape                          # (B, T, E), (B, H_l, T, T)
    (torch.Size([2, 7, 32]), torch.Size([2, 4, 7, 7]))
"""

from __future__ import annotations

import torch
from torch import nn

from multihead.attention import KVCacheLayer, MultiHeadAttention, PositionalRotation
from multihead.masks import AttentionMask
from multihead.models.config import TransformerConfig
from multihead.models.feedforward import FeedForward
from multihead.positional import ALiBi, alibi_slopes
from multihead.unpadding import Unpadded


def make_norm(config: TransformerConfig) -> nn.Module:
    """LayerNorm, or RMSNorm (Zhang and Sennrich 2019: rescale only, no centering)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)


def make_attention(
    config: TransformerConfig, layer: int, *, rotary: PositionalRotation | None
) -> MultiHeadAttention:
    """Layer ``layer``'s self-attention with the heads the config keeps there
    (:meth:`~multihead.models.config.TransformerConfig.heads_of`): its own query and KV head
    counts, the query-to-KV mapping when pruning made the groups uneven, and, with ALiBi, its
    own heads' slopes (the attention adds the bias itself)."""
    heads = config.heads_of(layer)
    alibi = None
    if config.position == "alibi":
        # Each layer owns its slopes: the slopes of its original heads (Press et al. 2022),
        # rebuilt from the config, so checkpoints need not carry them.
        alibi = ALiBi(slopes=alibi_slopes(config.num_heads)[list(heads.query)], persistent=False)
    return MultiHeadAttention(
        config.d_model,
        heads.num_q,
        num_kv_heads=heads.num_kv,
        head_dim=config.head_size,
        bias=config.has_qkv_bias,
        out_bias=config.has_out_bias,
        dropout=config.attn_dropout,
        drophead=config.drophead,
        backend=config.backend,
        rotary=rotary,
        kv_index=heads.kv_index,
        position_bias=alibi,
    )


class TransformerBlock(nn.Module):
    """One block: self-attention and feed-forward, each with a residual connection, the norms
    before them (``config.norm_placement="pre"``) or after each residual sum (``"post"``).

    Args:
        config: sizes and options (see :class:`~multihead.models.config.TransformerConfig`).
        layer: which layer of the config this block is (it picks the layer's heads).
        rotary: the position rotation shared by all layers (RoPE), or None.

    Call: ``block(x, mask=..., positions=..., cache=..., head_mask=..., need_weights=...)``
    with x ``(B, T, E)``; mask an :class:`~multihead.masks.AttentionMask` (True = may
    attend); head_mask ``(H_l,)`` or ``(B, H_l)`` multiplying each head's output (1 keeps,
    0 removes; differentiable). Returns ``(x, weights)``: ``(B, T, E)`` and the attention
    weights ``(B, H_l, T, Tk)`` when ``need_weights`` else None. With ``unpadded=`` (an
    :class:`~multihead.unpadding.Unpadded`), x and the returned x are the real tokens
    ``(N, E)`` of a ``(B, T)`` batch: everything but the attention itself computes on them.

    An attention-only block (``config.ffn_dim=0``) has ``ffn`` and ``norm2`` set to None:
    ``x + attn(norm1(x))`` (pre-norm) or ``norm1(x + attn(x))`` (post-norm).
    """

    def __init__(
        self,
        config: TransformerConfig,
        *,
        layer: int = 0,
        rotary: PositionalRotation | None = None,
    ) -> None:
        super().__init__()
        self.post_norm = config.norm_placement == "post"
        self.norm1 = make_norm(config)
        self.attn = make_attention(config, layer, rotary=rotary)
        self.norm2: nn.Module | None = None
        self.ffn: FeedForward | None = None
        if not config.attention_only:
            self.norm2 = make_norm(config)
            self.ffn = FeedForward(
                dim=config.d_model,
                hidden_dim=config.ffn_size,
                activation=config.activation,
                bias=config.has_mlp_bias,
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
        head_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        unpadded: Unpadded | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(
            x if self.post_norm else self.norm1(x),
            mask=mask,
            positions=positions,
            cache=cache,
            head_mask=head_mask,
            need_weights=need_weights,
            unpadded=unpadded,
        )
        if self.post_norm:
            x = self.norm1(x + self.dropout(a))
            if self.ffn is not None:
                x = self.norm2(x + self.ffn(x))
            return x, weights  # (B, T, E) or (N, E), (B, H_l, T, Tk) | None
        x = x + self.dropout(a)
        if self.ffn is not None:
            x = x + self.ffn(self.norm2(x))
        return x, weights  # (B, T, E) or (N, E), (B, H_l, T, Tk) | None
