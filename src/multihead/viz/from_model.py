"""``view(model, tokens)``: run a model on one input, capture every head's attention and
render the offline viewer (:mod:`multihead.viz.viewer`) for it.

Legend: T tokens, H_l query heads of layer l.

The other viz functions take plain data; this one bridges from a model. It captures the
weights through the attention modules' observation points (the forward itself stays on the
fast backend) with :func:`multihead.analysis.record` when that is available, else through
``mha.add_observer`` directly. Layers are numbered as
:func:`multihead.analysis.attention_layers` numbers them, and a pruned model's heads keep
their original ids (``config.heads_of``), so report rows match the heads shown.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> from multihead.viz import view
    >>> model = DecoderLM(DecoderConfig(vocab_size=256, d_model=32, num_layers=2,
    ...                                 num_heads=4)).eval()
    >>> page = view(model, "The cat sat.")          # byte-level: one token per character
    >>> page.startswith("<!DOCTYPE html>") and "://" not in page
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from multihead.analysis.layers import attention_layers
from multihead.viz.viewer import render_viewer

Tokens = str | bytes | Sequence[int] | torch.Tensor


def token_ids(
    model: nn.Module, tokens: Tokens, tokenizer: Any = None
) -> tuple[torch.Tensor, list[str] | bytes]:
    """The input ``(1, T)`` and its labels for the viewer.

    ``tokens`` is a text (encoded by ``tokenizer``, or as UTF-8 bytes for a byte-level model
    with vocabulary 256 and no tokenizer), ``bytes`` (one byte-level token per byte), or
    token ids (a sequence of ints, ``(T,)`` or ``(1, T)``). Byte-level inputs are labelled by
    the characters they spell; ids by the tokenizer's tokens, or by their numbers.
    """
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    byte_level = vocab == 256 and (tokenizer is None or type(tokenizer).__name__ == "ByteTokenizer")
    if isinstance(tokens, str):
        if tokenizer is None and not byte_level:
            raise ValueError(
                f"tokens is a text but the model (vocab_size={vocab}) is not byte-level and no "
                "tokenizer was given; pass a tokenizer, or token ids (multihead view --ids)"
            )
        if byte_level:
            tokens = tokens.encode("utf-8")
        else:
            enc = tokenizer.encode(tokens)
            return enc.ids[:1], list(enc.tokens[0])  # (1, T)
    if isinstance(tokens, (bytes, bytearray)):
        ids = torch.tensor(list(tokens), dtype=torch.long)
        return _checked(ids, vocab)[None], bytes(tokens)  # (1, T)
    ids = torch.as_tensor(tokens, dtype=torch.long) if not torch.is_tensor(tokens) else tokens
    if ids.dim() == 2 and ids.shape[0] == 1:
        ids = ids[0]  # (T,)
    if ids.dim() != 1 or ids.is_floating_point():
        raise ValueError(
            f"tokens must be a text, bytes, or token ids of shape (T,) or (1, T), got shape "
            f"{tuple(ids.shape)} ({ids.dtype})"
        )
    ids = _checked(ids.long(), vocab)
    if byte_level:
        return ids[None], bytes(ids.tolist())
    if tokenizer is not None:
        return ids[None], [tokenizer.id_to_token(int(i)) for i in ids]
    return ids[None], [str(int(i)) for i in ids]


def _checked(ids: torch.Tensor, vocab: int | None) -> torch.Tensor:
    if ids.numel() == 0:
        raise ValueError("tokens is empty; the viewer needs at least one token")
    if vocab is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(
            f"token ids must be in [0, vocab_size={vocab}), got ids from {int(ids.min())} to "
            f"{int(ids.max())}"
        )
    return ids


def capture_weights(model: nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """Every attention layer's weights ``(H_l, T, T)`` for the one input ``ids`` ``(1, T)``
    (float32, CPU), from a forward under ``torch.no_grad()`` in eval mode."""
    layers = attention_layers(model)
    if not layers:
        raise ValueError(f"model {type(model).__name__} has no MultiHeadAttention layer to view")
    was_training = model.training
    model.eval()
    try:
        weights = _record(model, ids)
    finally:
        model.train(was_training)
    return [w[0].float().cpu() for w in weights]  # (H_l, T, T) each


def _record(model: nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    try:
        from multihead.analysis import record
    except ImportError:
        record = None
    if record is not None:
        with torch.no_grad(), record(model, mode="weights") as rec:
            model(ids)
        return list(rec.weights)
    return observe_weights(model, ids)


def observe_weights(model: nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """Every attention layer's weights ``(B, H_l, T, T)`` for ``model(ids)``, through
    ``mha.add_observer`` (what :func:`capture_weights` uses without the analysis package)."""
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for i, (_, mha) in enumerate(attention_layers(model)):

        def keep(points: Any, i: int = i) -> None:
            seen[i] = points.weights().detach()  # (B, H_l, T, T)

        handles.append(mha.add_observer(keep))
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i in range(len(handles)) if i not in seen]
    if missing:
        raise ValueError(f"attention layers {missing} were not run by model(tokens)")
    return [seen[i] for i in range(len(handles))]


def _head_ids(model: nn.Module, weights: list[torch.Tensor]) -> list[list[int]] | None:
    config = getattr(model, "config", None)
    heads_of = getattr(config, "heads_of", None)
    if heads_of is None or getattr(config, "num_layers", None) != len(weights):
        return None
    ids = [list(heads_of(layer).query) for layer in range(len(weights))]
    return ids if [len(i) for i in ids] == [w.shape[0] for w in weights] else None


def model_info(model: nn.Module) -> dict[str, Any]:
    """What the viewer's header shows about ``model``: kind and sizes from its config."""
    info: dict[str, Any] = {"model": type(model).__name__}
    config = getattr(model, "config", None)
    for name in ("num_layers", "num_heads", "d_model", "vocab_size", "position"):
        if hasattr(config, name):
            info[name] = getattr(config, name)
    if getattr(config, "attention_only", False):
        info["blocks"] = "attention-only"
    info["parameters"] = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return info


def view(
    model: nn.Module,
    tokens: Tokens,
    *,
    tokenizer: Any = None,
    report: Any = None,
    title: str | None = None,
    top_k: int | None = None,
) -> str:
    """The viewer page (HTML, self-contained) of ``model`` on one input.

    Args:
        model: a :class:`~multihead.models.DecoderLM`, :class:`~multihead.models.Encoder`
            or any module built from MultiHeadAttention that ``model(ids)`` runs.
        tokens: a text, ``bytes`` or token ids (see :func:`token_ids`).
        tokenizer: a :class:`~multihead.convert.Tokenizer` or ByteTokenizer to encode a text
            and label ids (None: byte-level models show characters, others the ids).
        report: a head report (``HeadReport`` or its JSON dict) shown as the sortable table;
            its ``"model"`` entry defaults to the model's sizes.
        title: page title (default: the model's class name).
        top_k: keys kept per query (see :class:`~multihead.viz.Viewer`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    ids, labels = token_ids(model, tokens, tokenizer)
    weights = capture_weights(model, ids.to(device))
    if report is not None and hasattr(report, "to_dict"):
        report = report.to_dict()
    if report is not None and isinstance(report, Mapping) and not report.get("model"):
        report = {**report, "model": model_info(model)}
    return render_viewer(
        labels,
        weights,
        report=report,
        title=title if title is not None else type(model).__name__,
        head_ids=_head_ids(model, weights),
        top_k=top_k,
    )
