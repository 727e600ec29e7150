"""Encoder: a bidirectional transformer with a key-padding mask and a pooled output.

Legend: B batch, T sequence length, E model width.

Example:
    >>> import torch
    >>> from multihead.models import Encoder, EncoderConfig
    >>> enc = Encoder(EncoderConfig(vocab_size=50, d_model=32, num_layers=2, num_heads=4))
    >>> tokens = torch.randint(0, 50, (2, 6))             # (B, T)
    >>> hidden, pooled = enc(tokens, lengths=torch.tensor([6, 3]))
    >>> hidden.shape, pooled.shape
    (torch.Size([2, 6, 32]), torch.Size([2, 32]))
"""

from __future__ import annotations

import torch
from torch import nn

from multihead import masks
from multihead.models.block import TransformerBlock, make_norm
from multihead.models.config import EncoderConfig
from multihead.models.decoder import Embeddings, check_tokens, init_weights


class Encoder(nn.Module):
    """``tokens (B, T) -> embedding -> bidirectional blocks -> norm -> (hidden, pooled)``.

    Every token attends to every real token (optionally within a two-sided window of
    ``config.window``: keys at distance < W); padded keys are masked. ``pooled`` is the mean
    over real tokens (``pooling="mean"``) or the first token (``"first"``).

    Args:
        config: an :class:`~multihead.models.config.EncoderConfig`.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if not isinstance(config, EncoderConfig):
            raise TypeError(f"config must be an EncoderConfig, got {type(config).__name__}")
        self.config = config
        self.embed = Embeddings(config)
        self.blocks = nn.ModuleList(
            TransformerBlock(config, rotary=self.embed.rotary) for _ in range(config.num_layers)
        )
        self.norm = make_norm(config)
        init_weights(self, config.num_layers)
        mask = masks.none()
        if config.window is not None:
            mask = mask & masks.sliding_window(config.window, causal=False)
        if self.embed.alibi is not None:
            mask = mask & masks.bias(self.embed.alibi)
        self.mask = mask

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        lengths: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode.

        Args:
            tokens: ``(B, T)`` token ids.
            lengths: ``(B,)`` real lengths (tokens ``[0, len)`` are real), or
            padding_mask: ``(B, T)`` bool with **True = real token (may be attended)**.

        Returns:
            ``(hidden, pooled)``: ``(B, T, E)`` and ``(B, E)``. Hidden states at padded
            positions are computed but meaningless.
        """
        check_tokens("tokens", tokens, self.config.vocab_size)
        _b, t = tokens.shape
        if lengths is not None and padding_mask is not None:
            raise ValueError("pass lengths or padding_mask, not both")
        if self.config.position == "learned" and t > self.config.max_seq_len:
            raise ValueError(
                f"tokens has {t} positions but learned positions stop at "
                f"max_seq_len={self.config.max_seq_len}"
            )
        mask = self.mask
        real = None
        if lengths is not None:
            mask = mask & masks.key_padding(lengths=lengths)
            real = torch.arange(t, device=tokens.device) < lengths.view(-1, 1)  # (B, T)
        elif padding_mask is not None:
            mask = mask & masks.key_padding(mask=padding_mask)
            real = padding_mask
        positions = torch.arange(t, device=tokens.device)  # (T,)
        x = self.embed(tokens, positions)  # (B, T, E)
        for block in self.blocks:
            x = block(x, mask=mask, positions=positions)
        x = self.norm(x)  # (B, T, E)
        if self.config.pooling == "first":
            return x, x[:, 0]
        if real is None:
            return x, x.mean(dim=1)
        w = real.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        return x, (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)  # (B, E)

    def hidden_states(
        self, tokens: torch.Tensor, *, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The final hidden states ``(B, T, E)``; ``padding_mask`` ``(B, T)`` has
        **True = real token**. The uniform trunk interface shared with DecoderLM."""
        return self(tokens, padding_mask=padding_mask)[0]
