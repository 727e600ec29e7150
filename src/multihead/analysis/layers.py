"""The one numbering of attention layers used by the whole analysis API and the report.

Layer ``i`` is the ``i``-th :class:`~multihead.attention.MultiHeadAttention` in
``model.modules()`` order (registration order, depth first). For :class:`DecoderLM` and
:class:`Encoder` that is block order; for a user's own module it is whatever order its
attention modules were registered in. A MultiHeadAttention nested inside another one's
submodules is counted once, where it is met.

Example:
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(num_layers=3, d_model=32, num_heads=4))
    >>> [name for name, _ in attention_layers(model)]
    ['blocks.0.attn', 'blocks.1.attn', 'blocks.2.attn']
"""

from __future__ import annotations

from torch import nn

from multihead.attention import MultiHeadAttention


def attention_layers(model: nn.Module) -> list[tuple[str, MultiHeadAttention]]:
    """``[(qualified name, module), ...]`` of every MultiHeadAttention in ``model`` (``model``
    itself included when it is one), numbered as the analysis API numbers layers."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)]


def resolve_layers(model: nn.Module, layers: object = None) -> list[int]:
    """Validate a ``layers`` argument (None = all, an int, or a sequence of ints; negative ids
    count from the end) against ``model``'s attention layers; returns sorted unique ids."""
    count = len(attention_layers(model))
    if count == 0:
        raise ValueError(f"model {type(model).__name__} has no MultiHeadAttention layer to analyse")
    if layers is None:
        return list(range(count))
    items = [layers] if isinstance(layers, int) and not isinstance(layers, bool) else layers
    try:
        items = list(items)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"layers must be None, an int or a sequence of ints, got {layers!r}"
        ) from None
    out = set()
    for i in items:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"layers must hold ints, got {i!r} in {layers!r}")
        if not -count <= i < count:
            raise ValueError(f"layer {i} is out of range: the model has {count} attention layers")
        out.add(i % count)
    return sorted(out)
