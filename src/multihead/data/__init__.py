"""Data for training: byte-level text corpora and synthetic algorithmic tasks."""

from multihead.data.synthetic import IGNORE, TASKS, SyntheticTask
from multihead.data.text import ByteCorpus, decode, encode, stdlib_sources

__all__ = ["IGNORE", "TASKS", "ByteCorpus", "SyntheticTask", "decode", "encode", "stdlib_sources"]
