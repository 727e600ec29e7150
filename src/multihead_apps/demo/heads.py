"""The demo's data and measure: held-out task batches, the repeated-random-tokens probe the
heads are scored on, and the loss on the repeated half under a head mask. (Scores, roles,
importance and pruning are the library's: :mod:`multihead.analysis`.)

Legend: B batch, T sequence length, L layers, H heads per layer, n the repeat period.

Example:
    >>> probe = repeated_tokens(16, 12, batch_size=4, seed=0)     # (B, 2n) = (4, 12)
    >>> bool((probe[:, :6] == probe[:, 6:]).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from multihead import _checks
from multihead.data import IGNORE, SyntheticTask
from multihead.models import DecoderLM

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


def task_batches(
    task: str, *, vocab_size: int, seq_len: int, batch_size: int, count: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` held-out ``(x, y)`` batches of ``task``, both ``(B, T)``."""
    _checks.require_int("count", count, minimum=1)
    data = SyntheticTask(task, vocab_size=vocab_size, seq_len=seq_len)
    g = torch.Generator().manual_seed(seed * 1_000_003 + 2**41)  # apart from training's
    return [data.batch("val", batch_size=batch_size, generator=g) for _ in range(count)]


def repeated_tokens(vocab_size: int, seq_len: int, *, batch_size: int, seed: int) -> torch.Tensor:
    """``(B, 2n)`` with ``n = seq_len // 2``: random tokens ``A`` followed by ``A`` again, the
    probe TransformerLens scores induction heads on."""
    n = seq_len // 2
    _checks.require_int("seq_len // 2", n, minimum=2)
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, vocab_size, (batch_size, n), generator=g)  # (B, n)
    return torch.cat((a, a), dim=1)  # (B, 2n)


def repeated_half_loss(
    model: DecoderLM, batches: Batches, head_mask: torch.Tensor | None = None
) -> float:
    """Mean next-token loss (nats) over the scored targets of ``batches`` (the second copy of
    ``induction_random``), with ``head_mask`` ``(L, H)`` (1 keeps a head, 0 removes it)."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            logits = model(x, head_mask=head_mask)  # (B, T, V)
            total += float(
                F.cross_entropy(
                    logits.flatten(0, 1),  # (B*T, V)
                    y.flatten(),  # (B*T,)
                    ignore_index=IGNORE,
                    reduction="sum",
                )
            )
            tokens += int((y != IGNORE).sum())
    if tokens == 0:
        raise ValueError("the batches have no scored targets: nothing to measure")
    return total / tokens


def removal_mask(
    num_layers: int, num_heads: int, removed: Sequence[tuple[int, int]]
) -> torch.Tensor:
    """``(L, H)`` head mask: 0 for the ``(layer, head)`` pairs in ``removed``, 1 elsewhere."""
    mask = torch.ones(num_layers, num_heads)
    for layer, head in removed:
        mask[layer, head] = 0.0
    return mask
