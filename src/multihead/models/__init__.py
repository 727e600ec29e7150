"""Transformer models built on :class:`multihead.MultiHeadAttention`.

``DecoderLM`` (GPT-style causal LM with ``generate``) and ``Encoder`` (bidirectional, padding
mask, pooled output): the same ``embed -> blocks -> norm`` stack (``stack.py``) of
``Embeddings``, pre-norm ``TransformerBlock`` and ``FeedForward``, configured by validated
dataclasses whose layers may each keep their own heads. Generation options are one
``Sampling``; long texts are scored in sliding windows (``scoring.py``).
"""

from multihead.models.block import TransformerBlock, make_norm
from multihead.models.config import DecoderConfig, EncoderConfig, LayerHeads, TransformerConfig
from multihead.models.decoder import DecoderLM
from multihead.models.embeddings import Embeddings, check_tokens
from multihead.models.encoder import Encoder
from multihead.models.feedforward import FeedForward
from multihead.models.generation import Sampling, sample_next
from multihead.models.head_mask import split_head_mask
from multihead.models.scoring import Windows, dynamic_token_nll, token_nll
from multihead.models.stack import TransformerStack, init_weights

__all__ = [
    "DecoderConfig",
    "DecoderLM",
    "Embeddings",
    "Encoder",
    "EncoderConfig",
    "FeedForward",
    "LayerHeads",
    "Sampling",
    "TransformerBlock",
    "TransformerConfig",
    "TransformerStack",
    "Windows",
    "check_tokens",
    "dynamic_token_nll",
    "init_weights",
    "make_norm",
    "sample_next",
    "split_head_mask",
    "token_nll",
]
