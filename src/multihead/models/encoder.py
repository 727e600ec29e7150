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
from multihead.models.config import EncoderConfig
from multihead.models.embeddings import check_tokens
from multihead.models.head_mask import HeadMask
from multihead.models.packing import PackedBatch
from multihead.models.stack import TransformerStack, init_weights


class Encoder(TransformerStack):
    """``tokens (B, T) -> embedding -> bidirectional blocks -> norm -> (hidden, pooled)``.

    Every token attends to every real token (optionally within a two-sided window of
    ``config.window``: keys at distance < W); padded keys are masked. ``pooled`` is the mean
    over real tokens (``pooling="mean"``), the first token (``"first"``), or BERT's pooler
    ``tanh(pooler(x_0))`` on the first token (``"pooler"``).

    Args:
        config: an :class:`~multihead.models.config.EncoderConfig`; with ``layer_heads`` set,
            each layer has its own heads (a pruned model).
    """

    def __init__(self, config: EncoderConfig) -> None:
        if not isinstance(config, EncoderConfig):
            raise TypeError(f"config must be an EncoderConfig, got {type(config).__name__}")
        mask = masks.none()
        if config.window is not None:
            mask = mask & masks.sliding_window(config.window, causal=False)
        super().__init__(config, mask=mask)
        self.pooler = (
            nn.Linear(config.d_model, config.d_model) if config.pooling == "pooler" else None
        )
        init_weights(self, config.num_layers)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        lengths: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        token_types: torch.Tensor | None = None,
        head_mask: HeadMask | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode.

        Args:
            tokens: ``(B, T)`` token ids in ``[0, vocab_size)``.
            lengths: ``(B,)`` real lengths (tokens ``[0, len)`` are real), or
            padding_mask: ``(B, T)`` bool with **True = real token (may be attended)**.
            token_types: ``(B, T)`` ids in ``[0, type_vocab_size)`` (BERT's segments; None =
                type 0 everywhere); only for models with ``type_vocab_size > 0``.
            head_mask: per-layer head masks, as :meth:`DecoderLM.forward` takes them
                (``(L, H)``, ``(B, L, H)``, a sequence or ``{layer: mask}``; 1 keeps a head).

        Returns:
            ``(hidden, pooled)``: ``(B, T, E)`` and ``(B, E)``. Only the real tokens are
            computed (:mod:`multihead.unpadding`); hidden states at padded positions are 0.
        """
        check_tokens("tokens", tokens, self.config.vocab_size)
        t = tokens.shape[1]
        if token_types is not None:
            self._check_token_types(token_types, tokens.shape)
        if lengths is not None and padding_mask is not None:
            raise ValueError("pass lengths or padding_mask, not both")
        self.check_length(t)
        mask = self.mask
        real = None
        if lengths is not None:
            mask = mask & masks.key_padding(lengths=lengths)
            real = torch.arange(t, device=tokens.device) < lengths.view(-1, 1)  # (B, T)
        elif padding_mask is not None:
            mask = mask & masks.key_padding(mask=padding_mask)
            real = padding_mask
        positions = torch.arange(t, device=tokens.device)  # (T,)
        x = self.transform(
            tokens, positions, mask=mask, head_mask=head_mask, token_types=token_types, real=real
        )  # (B, T, E), 0 at the padding
        if self.pooler is not None:
            return x, torch.tanh(self.pooler(x[:, 0]))  # (B, E)
        if self.config.pooling == "first":
            return x, x[:, 0]
        if real is None:
            return x, x.mean(dim=1)
        w = real.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        return x, (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)  # (B, E)

    def _check_token_types(self, token_types: object, shape: torch.Size) -> None:
        n = self.config.type_vocab_size
        if n == 0:
            raise ValueError(
                "token_types were given but this encoder has no token types (type_vocab_size=0)"
            )
        check_tokens("token_types", token_types, n)
        if token_types.shape != shape:  # type: ignore[union-attr]
            raise ValueError(
                f"token_types has shape {tuple(token_types.shape)} but tokens have "  # type: ignore[union-attr]
                f"{tuple(shape)}; give one type id per token"
            )

    def hidden_states(
        self,
        tokens: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        head_mask: HeadMask | None = None,
    ) -> torch.Tensor:
        """The final hidden states ``(B, T, E)``; ``padding_mask`` ``(B, T)`` has
        **True = real token**. The uniform trunk interface shared with DecoderLM."""
        return self(tokens, padding_mask=padding_mask, head_mask=head_mask)[0]

    def packed_hidden_states(self, packed: PackedBatch) -> torch.Tensor:
        """The final hidden states ``(R, L, E)`` of sequences packed into rows
        (:func:`~multihead.models.packing.pack_sequences`): each token attends to its own
        sequence only (a block-diagonal mask, True = may attend) at positions restarting
        at 0, so each sequence gets the hidden states it has alone, without computing on
        padding (free slots are 0). Token type 0 everywhere."""
        if not isinstance(packed, PackedBatch):
            raise TypeError(f"packed must be a PackedBatch, got {type(packed).__name__}")
        check_tokens("packed.tokens", packed.tokens, self.config.vocab_size)
        self.check_length(int(packed.positions.max()) + 1)
        # The structural mask (a window, if any) compares row slots, which within one
        # sequence differ exactly as its positions do.
        mask = self.mask & masks.dense(packed.allowed())
        real = packed.segments >= 0  # (R, L): free slots are not computed
        return self.transform(packed.tokens, packed.positions, mask=mask, real=real)
