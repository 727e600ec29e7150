"""One rendered mask remembered across the layers of a forward pass.

Every layer of a model attends with a mask built from the same tensors (the query positions
and the KV cache's key positions of this step, or one padding mask), yet each builds its own
:class:`~multihead.masks.AttentionMask` around them. Rendering it densely costs several small
operations per layer, which dominate a decode step of a small model on a CPU. This memo keeps
the last rendering and reuses it when the next mask is made of the *same* tensor objects, not
modified since (``Tensor._version``), with the same structural fields and sizes.

Masks with per-head biases (ALiBi: modules whose buffers may change) are never remembered,
nor are renderings above ``MAX_ELEMENTS`` (the memo must not pin a large tensor), nor
anything while ``torch.compile`` traces (compiled graphs render inside the graph).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from multihead.masks import AttentionMask

MAX_ELEMENTS = 2**22

Rendered = tuple[torch.Tensor | None, torch.Tensor | None]


def _tensors(mask: AttentionMask) -> tuple[torch.Tensor | None, ...]:
    return (
        mask.query_positions,
        mask.key_positions,
        mask.key_lengths,
        mask.key_padding,
        mask.allowed,
        mask.additive,
    )


class RenderMemo:
    """Remembers ``render()`` of the last mask (see the module docstring)."""

    def __init__(self) -> None:
        self._entry: tuple[tuple, tuple, tuple[int, ...], Rendered] | None = None

    def get(self, mask: AttentionMask, sizes: tuple, render: Callable[[], Rendered]) -> Rendered:
        """``render()``'s result for ``mask`` at ``sizes`` (any hashable description of the
        batch, heads, lengths, dtype and device), reused when the last call matches."""
        if mask.head_biases or torch.compiler.is_compiling():
            return render()
        tensors = _tensors(mask)
        if any(t is not None and t.is_inference() for t in tensors):
            return render()  # inference tensors keep no version counter to check
        key = (mask.causal, mask.align, mask.window, mask.also, sizes)
        versions = tuple(-1 if t is None else t._version for t in tensors)
        entry = self._entry
        if (
            entry is not None
            and entry[0] == key
            and entry[2] == versions
            and all(a is b for a, b in zip(entry[1], tensors))
        ):
            return entry[3]
        result = render()
        small = all(t is None or t.numel() <= MAX_ELEMENTS for t in result)
        # The entry holds the tensors themselves, so their ids cannot be reused while it lives.
        self._entry = (key, tensors, versions, result) if small else None
        return result

    def clear(self) -> None:
        self._entry = None
