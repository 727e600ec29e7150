"""The stack both models share: ``embed -> blocks -> final norm``.

Legend: B batch, T sequence length, E model width, L layers, H_l layer l's query heads.

:class:`DecoderLM` and :class:`Encoder` are this stack plus what reads its hidden states
(a language-model head; pooling). They subclass it, rather than holding it as a child, so
their parameters keep the names checkpoints have always used (``embed.*``, ``blocks.*``,
``norm.*``). A variant architecture (post-norm blocks, token types, an embedding norm, a
pooler) changes the parts built here, not the loop.

Example:
    >>> import torch
    >>> from multihead import masks
    >>> from multihead.models import EncoderConfig
    >>> stack = TransformerStack(EncoderConfig(vocab_size=20, d_model=16, num_layers=2,
    ...                                        num_heads=2), mask=masks.none())
    >>> stack.transform(torch.randint(0, 20, (3, 5)), torch.arange(5)).shape     # (B, T, E)
    torch.Size([3, 5, 16])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from multihead.cache import KVCache
from multihead.masks import AttentionMask
from multihead.models.block import TransformerBlock, make_norm
from multihead.models.config import TransformerConfig
from multihead.models.embeddings import Embeddings
from multihead.models.head_mask import HeadMask, split_head_mask
from multihead.positional import RotaryEmbedding
from multihead.roles import parameter_roles
from multihead.unpadding import Unpadded


def make_rotary(config: TransformerConfig) -> RotaryEmbedding | None:
    """The RoPE rotation all layers share (it holds no per-head state), or None."""
    if config.position != "rope":
        return None
    return RotaryEmbedding(
        config.head_size,
        base=config.rope_base,
        rotary_dim=config.rotary_dim,
        interleaved=config.rope_interleaved,
        scaling=config.rope_scaling,
    )


def init_weights(model: nn.Module, num_layers: int) -> None:
    """GPT-2 initialization by parameter role (:mod:`multihead.roles`): N(0, 0.02) matrices
    and embeddings, zero biases, norms as built, and the matrices that write the residual
    stream scaled by ``1 / sqrt(2 L)`` so its variance does not grow with depth (Radford et
    al. 2019)."""
    residual_std = 0.02 / math.sqrt(2 * num_layers)
    with torch.no_grad():
        for _, p, role in parameter_roles(model):
            if role.kind == "bias":
                p.zero_()
            elif role.kind != "norm":
                p.normal_(0.0, residual_std if role.residual else 0.02)


class TransformerStack(nn.Module):
    """Token embedding, ``config.num_layers`` blocks, final norm (none after post-norm
    blocks, which end normalized: ``norm`` is then an ``nn.Identity``).

    Args:
        config: sizes and options; layer ``l`` gets the heads ``config.heads_of(l)`` keeps.
        mask: the structural mask every layer uses (causal, window; True = may attend).
            Built once from the config, so a compiled forward does not trace its
            construction.
    """

    def __init__(self, config: TransformerConfig, *, mask: AttentionMask) -> None:
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.rotary = make_rotary(config)
        self.blocks = nn.ModuleList(
            TransformerBlock(config, layer=i, rotary=self.rotary) for i in range(config.num_layers)
        )
        self.norm = make_norm(config) if config.norm_placement == "pre" else nn.Identity()
        self.mask: AttentionMask = mask

    @property
    def layer_heads(self) -> tuple[int, ...]:
        """Query heads of each layer, as the modules hold them now."""
        return tuple(block.attn.num_heads for block in self.blocks)

    def transform(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        *,
        mask: AttentionMask | None = None,
        cache: KVCache | None = None,
        head_mask: HeadMask | None = None,
        token_types: torch.Tensor | None = None,
        real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states ``(B, T, E)`` after the final norm.

        Args:
            tokens: ``(B, T)`` token ids (checked by the caller).
            positions: ``(T,)`` or ``(B, T)`` positions of the tokens.
            mask: the attention mask (True = may attend); default ``self.mask``.
            cache: a KV cache with one layer per block, or None.
            head_mask: per-layer head masks, any form :func:`split_head_mask` takes.
            token_types: ``(B, T)`` token type ids (checked by the caller), or None.
            real: ``(B, T)`` bool, **True = a real token**, when the padding is known (and
                ``mask`` keeps it from being attended): the layers then compute on the real
                tokens only (:mod:`multihead.unpadding`; not with a cache) and the hidden
                states are 0 at the padding.
        """
        mask = self.mask if mask is None else mask
        per_layer = split_head_mask(head_mask, heads=self.layer_heads, batch=tokens.shape[0])
        x = self.embed(tokens, positions, token_types)  # (B, T, E)
        unpadded = None
        if real is not None and cache is None and not bool(real.all()):
            unpadded = Unpadded.from_mask(real)
            x = unpadded.unpad(x)  # (N, E)
        for i, block in enumerate(self.blocks):
            x, _ = block(
                x,
                mask=mask,
                positions=positions,
                cache=None if cache is None else cache.layers[i],
                head_mask=per_layer[i],
                unpadded=unpadded,
            )
        x = self.norm(x)  # (B, T, E) or (N, E)
        return x if unpadded is None else unpadded.pad(x)  # (B, T, E)

    def check_length(self, t: int) -> None:
        """Learned positions stop at ``max_seq_len``; other schemes have no limit."""
        if self.config.position == "learned" and t > self.config.max_seq_len:
            raise ValueError(
                f"tokens has {t} positions but learned positions stop at "
                f"max_seq_len={self.config.max_seq_len}"
            )
