"""Transformer models built on :class:`multihead.MultiHeadAttention`.

``DecoderLM`` (GPT-style causal LM with ``generate``) and ``Encoder`` (bidirectional, padding
mask, pooled output), assembled from ``FeedForward`` and pre-norm ``TransformerBlock`` and
configured by validated dataclasses.
"""

from multihead.models.block import TransformerBlock, make_norm
from multihead.models.config import DecoderConfig, EncoderConfig, TransformerConfig
from multihead.models.decoder import DecoderLM, sample_next
from multihead.models.dynamic import dynamic_token_nll
from multihead.models.encoder import Encoder
from multihead.models.feedforward import FeedForward

__all__ = [
    "DecoderConfig",
    "DecoderLM",
    "Encoder",
    "EncoderConfig",
    "FeedForward",
    "TransformerBlock",
    "TransformerConfig",
    "dynamic_token_nll",
    "make_norm",
    "sample_next",
]
