"""Model-level head masks: one validation, split into each layer's part.

Legend: B batch, L attention layers, H heads per layer (uniform models), H_l layer l's heads.

Layer ``l`` is the ``l``-th MultiHeadAttention of the model (block order). A head mask
multiplies each head's output before the output projection: 1 keeps the head, 0 removes it,
anything between scales it. It is differentiable, so ``d loss / d head_mask`` scores heads
(Michel et al. 2019, "Are sixteen heads really better than one?").

Accepted forms:

- a tensor ``(L, H)`` or ``(B, L, H)`` when every layer has H heads;
- a sequence of L entries, each None (no mask), ``(H_l,)`` or ``(B, H_l)``;
- a mapping ``{layer: (H_l,) | (B, H_l)}``; layers not named are not masked.

Example:
    >>> import torch
    >>> parts = split_head_mask({1: torch.tensor([1.0, 0.0])}, heads=(3, 2), batch=4)
    >>> parts[0] is None, parts[1].tolist()
    (True, [1.0, 0.0])
    >>> split_head_mask(torch.ones(2, 3), heads=(3, 2), batch=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    ValueError: head_mask has shape (2, 3), but a (L, H) or (B, L, H) tensor needs the same ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

HeadMask = torch.Tensor | Sequence[torch.Tensor | None] | Mapping[int, torch.Tensor]


def split_head_mask(
    head_mask: HeadMask | None, *, heads: Sequence[int], batch: int
) -> list[torch.Tensor | None]:
    """Check ``head_mask`` against a model with ``heads[l]`` query heads in layer ``l`` and a
    batch of ``batch``, and return each layer's mask: None, ``(H_l,)`` or ``(B, H_l)``
    (views of the input, so gradients flow back to it).

    Raises:
        TypeError: not a tensor, sequence or mapping; an entry that is not a tensor.
        ValueError: a shape that does not fit (received and expected shapes named), a layer
            out of range, a sequence of the wrong length.
    """
    num_layers = len(heads)
    if head_mask is None:
        return [None] * num_layers
    if isinstance(head_mask, torch.Tensor):
        return _split_tensor(head_mask, tuple(heads), batch)
    if isinstance(head_mask, Mapping):
        parts: list[torch.Tensor | None] = [None] * num_layers
        for layer, part in head_mask.items():
            if isinstance(layer, bool) or not isinstance(layer, int):
                raise TypeError(
                    f"head_mask keys must be layer numbers (int), got {type(layer).__name__} "
                    f"{layer!r}"
                )
            if not 0 <= layer < num_layers:
                raise ValueError(
                    f"head_mask names layer {layer} but the model has {num_layers} attention "
                    f"layers (0 .. {num_layers - 1})"
                )
            parts[layer] = _check_layer(f"head_mask[{layer}]", part, heads[layer], batch)
        return parts
    if isinstance(head_mask, Sequence) and not isinstance(head_mask, (str, bytes)):
        if len(head_mask) != num_layers:
            raise ValueError(
                f"head_mask has {len(head_mask)} entries but the model has {num_layers} "
                "attention layers; give one entry (None or a tensor) per layer"
            )
        return [
            None if part is None else _check_layer(f"head_mask[{i}]", part, heads[i], batch)
            for i, part in enumerate(head_mask)
        ]
    raise TypeError(
        "head_mask must be a tensor (L, H) or (B, L, H), a sequence of per-layer masks or a "
        f"{{layer: mask}} mapping, got {type(head_mask).__name__}"
    )


def _split_tensor(
    head_mask: torch.Tensor, heads: tuple[int, ...], batch: int
) -> list[torch.Tensor | None]:
    _check_dtype("head_mask", head_mask)
    num_layers = len(heads)
    if len(set(heads)) > 1:
        raise ValueError(
            f"head_mask has shape {tuple(head_mask.shape)}, but a (L, H) or (B, L, H) tensor "
            f"needs the same head count in every layer and this model's layers have {heads} "
            "heads; pass a sequence of per-layer masks or a {layer: mask} mapping"
        )
    h = heads[0] if heads else 0
    expected = ((num_layers, h), (batch, num_layers, h))
    if tuple(head_mask.shape) not in expected:
        raise ValueError(
            f"head_mask has shape {tuple(head_mask.shape)} but (L, H) = {expected[0]} or "
            f"(B, L, H) = {expected[1]} is expected"
        )
    layer_dim = head_mask.dim() - 2
    return list(head_mask.unbind(layer_dim))  # L x ((H,) or (B, H))


def _check_layer(name: str, part: object, heads: int, batch: int) -> torch.Tensor:
    if not isinstance(part, torch.Tensor):
        raise TypeError(f"{name} must be a tensor (H_l,) or (B, H_l), got {type(part).__name__}")
    _check_dtype(name, part)
    if tuple(part.shape) not in ((heads,), (batch, heads)):
        raise ValueError(
            f"{name} has shape {tuple(part.shape)} but this layer has {heads} heads: "
            f"(H_l,) = ({heads},) or (B, H_l) = ({batch}, {heads}) is expected"
        )
    return part


def _check_dtype(name: str, t: torch.Tensor) -> None:
    if not (t.is_floating_point() or t.dtype == torch.bool):
        raise TypeError(
            f"{name} has dtype {t.dtype}; a head mask is floating point (1 keeps a head, 0 "
            "removes it) or bool"
        )
