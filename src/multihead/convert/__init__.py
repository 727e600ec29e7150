"""Hugging Face checkpoints and multihead: BERT-family and Llama-family models from and to
Hugging Face-format directories (safetensors only), tokenizers from tokenizer.json, the
packaged all-MiniLM-L6-v2 model and its sentence embeddings, and the map from word pieces to
words used by head analysis. transformers is not needed for any of it.

Example:
    >>> from multihead.convert import ByteTokenizer
    >>> ByteTokenizer().encode("Hi").ids.tolist()
    [[72, 105]]
"""

from multihead.convert.byte_tokenizer import ByteTokenizer
from multihead.convert.encoding import Encoded, align_words
from multihead.convert.export import to_pretrained
from multihead.convert.heads import expand_heads, select_layer_heads
from multihead.convert.loading import checkpoint_format, load_model
from multihead.convert.packaged import MINILM_SHA256, file_sha256, minilm_path, require_sha256
from multihead.convert.pretrained import SUPPORTED_MODEL_TYPES, from_pretrained
from multihead.convert.sentences import (
    SentenceSettings,
    minilm,
    sentence_embeddings,
    sentence_settings,
)
from multihead.convert.tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "MINILM_SHA256",
    "SUPPORTED_MODEL_TYPES",
    "ByteTokenizer",
    "Encoded",
    "SentenceSettings",
    "Tokenizer",
    "align_words",
    "checkpoint_format",
    "expand_heads",
    "file_sha256",
    "from_pretrained",
    "load_model",
    "load_tokenizer",
    "minilm",
    "minilm_path",
    "require_sha256",
    "select_layer_heads",
    "sentence_embeddings",
    "sentence_settings",
    "to_pretrained",
]
