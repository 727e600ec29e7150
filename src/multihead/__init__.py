"""multihead: multi-head attention, models, multi-task heads and head analysis on PyTorch."""

from multihead import masks
from multihead.attention import MultiHeadAttention
from multihead.functional import attention
from multihead.masks import AttentionMask

__version__ = "0.1.0"

__all__ = ["AttentionMask", "MultiHeadAttention", "attention", "masks"]
