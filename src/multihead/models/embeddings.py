"""Token embeddings with the absolute position schemes, shared by DecoderLM and Encoder, and
the token-id check every model entry point runs.

Legend: B batch, T sequence length, E model width, V vocabulary size.

Relative positions are not here: RoPE rotates queries and keys inside attention, and each
layer's attention owns its ALiBi slopes (see :mod:`multihead.models.block`).

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig
    >>> from multihead.models.embeddings import Embeddings, check_tokens
    >>> embed = Embeddings(DecoderConfig(vocab_size=10, d_model=8, position="learned"))
    >>> embed(torch.tensor([[1, 2, 3]]), torch.arange(3)).shape       # (B, T, E)
    torch.Size([1, 3, 8])
    >>> check_tokens("tokens", torch.tensor([[1, 12]]), 10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    ValueError: tokens has token id 12 outside the vocabulary [0, 10) (vocab_size=10; ...
"""

from __future__ import annotations

import torch
from torch import nn

from multihead.models.block import make_norm
from multihead.models.config import TransformerConfig
from multihead.positional import LearnedPositions, SinusoidalPositions
from multihead.roles import EMBEDDING, Role


class Embeddings(nn.Module):
    """``tokens (B, T) -> token embedding (+ token types) (+ learned or sinusoidal positions)
    (-> norm) -> dropout``.

    Args:
        config: sizes, ``position`` (``"learned"`` and ``"sinusoidal"`` are added here;
            the others are relative and live in attention), ``type_vocab_size`` (token types,
            BERT's segments; 0 = none) and ``embedding_norm`` (BERT's embedding LayerNorm).

    Call: ``embed(tokens, positions, token_types=None)`` with tokens ``(B, T)`` int64,
    positions ``(T,)`` or ``(B, T)`` and token_types ``(B, T)`` (None = type 0 everywhere,
    when the model has types); returns ``(B, T, E)``.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.types = (
            nn.Embedding(config.type_vocab_size, config.d_model) if config.type_vocab_size else None
        )
        self.absolute: nn.Module | None = None
        if config.position == "learned":
            self.absolute = LearnedPositions(config.max_seq_len, config.d_model)
        elif config.position == "sinusoidal":
            self.absolute = SinusoidalPositions(config.d_model)
        self.norm = make_norm(config) if config.embedding_norm else None
        self.dropout = nn.Dropout(config.dropout)

    def parameter_roles(self) -> list[tuple[nn.Parameter, Role]]:
        roles = [(self.tokens.weight, EMBEDDING)]
        if self.types is not None:
            roles.append((self.types.weight, EMBEDDING))
        if isinstance(self.absolute, LearnedPositions):
            roles.append((self.absolute.embedding.weight, EMBEDDING))
        return roles

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        token_types: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.tokens(tokens)  # (B, T, E)
        if self.types is not None:
            # Type 0 everywhere (no token_types given) is one row, added without a lookup.
            types = self.types.weight[0] if token_types is None else self.types(token_types)
            x = x + types  # (E,) or (B, T, E) broadcast
        elif token_types is not None:
            raise ValueError(
                "token_types were given but this model has no token types (type_vocab_size=0)"
            )
        if self.absolute is not None:
            x = x + self.absolute(positions).to(x.dtype)  # (T, E) or (B, T, E) broadcast
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


def check_tokens(name: str, tokens: object, vocab_size: int) -> torch.Tensor:
    """Check that ``tokens`` is a ``(B, T)`` integer tensor of ids in ``[0, vocab_size)``
    and return it; the error names the offending id, the ids' range and the vocabulary.

    Under ``torch.compile`` the range check is skipped: it reads a value back from the
    device, which a compiled graph cannot do without breaking (the embedding still fails on
    a bad id, with torch's message).
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(tokens).__name__}")
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"{name} has shape {tuple(tokens.shape)} and dtype {tokens.dtype} but (B, T) "
            "integer token ids are expected"
        )
    if tokens.numel() == 0 or torch.compiler.is_compiling():
        return tokens
    lo, hi = (int(v) for v in torch.aminmax(tokens))
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} has token id {bad} outside the vocabulary [0, {vocab_size}) "
            f"(vocab_size={vocab_size}; {name} hold ids from {lo} to {hi})"
        )
    return tokens
