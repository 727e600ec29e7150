"""Hugging Face checkpoints and multihead: tokenizers from tokenizer.json, the packaged
all-MiniLM-L6-v2 model, and the map from word pieces to words used by head analysis.

Example:
    >>> from multihead.convert import ByteTokenizer
    >>> ByteTokenizer().encode("Hi").ids.tolist()
    [[72, 105]]
"""

from multihead.convert.byte_tokenizer import ByteTokenizer
from multihead.convert.encoding import Encoded, align_words
from multihead.convert.minilm import MINILM_SHA256, file_sha256, minilm_path, require_sha256
from multihead.convert.tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "MINILM_SHA256",
    "ByteTokenizer",
    "Encoded",
    "Tokenizer",
    "align_words",
    "file_sha256",
    "load_tokenizer",
    "minilm_path",
    "require_sha256",
]
