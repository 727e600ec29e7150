"""Sequence packing: several short sequences share one row, so a bidirectional encoder
computes on real tokens instead of padding.

Legend: N sequences, T their padded length, R packed rows, L row length (capacity),
E model width.

A padded batch of sentences of different lengths spends most of its projections and
feed-forward work on padding. Packing places the sequences first-fit in decreasing length
into rows of ``capacity`` tokens (the longest sequence's length by default, so a row's
attention costs no more than a padded one's), restarts positions at each sequence, and
builds a block-diagonal mask: a token attends to the tokens of its own sequence only, so
each sequence's hidden states are those it has alone (up to float rounding). The few free
slots left at the end of a row attend to themselves only, so no query row is empty.

Example:
    >>> import torch
    >>> ids = torch.tensor([[5, 6, 7], [8, 9, 0], [4, 0, 0]])           # (N, T), right-padded
    >>> packed = pack_sequences(ids, torch.tensor([3, 2, 1]))
    >>> packed.tokens, packed.positions, packed.segments                 # (R, L) each
    (tensor([[5, 6, 7],
            [8, 9, 4]]), tensor([[0, 1, 2],
            [0, 1, 0]]), tensor([[0, 0, 0],
            [1, 1, 2]]))
    >>> packed.allowed()[1, 0].int()                                     # (L, L) of row 1
    tensor([[1, 1, 0],
            [1, 1, 0],
            [0, 0, 1]], dtype=torch.int32)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from multihead import _checks


@dataclass(frozen=True)
class PackedBatch:
    """Sequences packed into rows.

    Attributes:
        tokens: ``(R, L)`` int64 token ids (0 in free slots).
        positions: ``(R, L)`` int64 position of each token within its sequence.
        segments: ``(R, L)`` int64 index of each token's sequence in ``[0, N)``; free slots
            hold ``-1 - slot`` (a distinct negative id each, so they see only themselves).
        lengths: ``(N,)`` int64 lengths of the sequences.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    segments: torch.Tensor
    lengths: torch.Tensor

    def allowed(self) -> torch.Tensor:
        """The block-diagonal mask ``(R, 1, L, L)`` bool, **True = may attend**: tokens of
        the same sequence (and each free slot to itself)."""
        s = self.segments
        return (s[:, :, None] == s[:, None, :]).unsqueeze(1)  # (R, 1, L, L)

    def sequence_means(self, hidden: torch.Tensor) -> torch.Tensor:
        """The mean over each sequence's tokens: ``hidden`` ``(R, L, E)`` -> ``(N, E)``."""
        e = hidden.shape[-1]
        flat = hidden.reshape(-1, e)  # (R*L, E)
        seg = self.segments.reshape(-1)  # (R*L,)
        real = seg >= 0
        n = self.lengths.shape[0]
        sums = hidden.new_zeros(n, e).index_add_(0, seg[real], flat[real])  # (N, E)
        return sums / self.lengths.to(hidden.dtype).clamp_min(1).unsqueeze(1)  # (N, E)


def pack_sequences(
    ids: torch.Tensor, lengths: torch.Tensor, *, capacity: int | None = None
) -> PackedBatch:
    """Pack right-padded sequences ``ids`` ``(N, T)`` of ``lengths`` ``(N,)`` into rows of
    ``capacity`` tokens (default: the longest length), first fit in decreasing length.

    Raises:
        ValueError: shapes that do not match, a length outside ``[1, T]`` or above the
            capacity.
    """
    _checks.require_rank("ids", ids, 2, "(N, T) token ids")
    if lengths.shape != (ids.shape[0],):
        raise ValueError(
            f"lengths has shape {tuple(lengths.shape)} but ids {tuple(ids.shape)} needs (N,) "
            f"= ({ids.shape[0]},)"
        )
    lens = [int(n) for n in lengths.tolist()]
    cap = max(lens, default=1) if capacity is None else capacity
    _checks.require_positive_int("capacity", cap)
    if lens and (min(lens) < 1 or max(lens) > min(cap, ids.shape[1])):
        raise ValueError(
            f"lengths must lie in [1, min(T={ids.shape[1]}, capacity={cap})], got "
            f"{min(lens)} to {max(lens)}"
        )
    free: list[int] = []  # free slots left in each row
    starts: list[tuple[int, int]] = [(0, 0)] * len(lens)  # sequence -> (row, first slot)
    for i in sorted(range(len(lens)), key=lambda j: -lens[j]):
        row = next((r for r, room in enumerate(free) if room >= lens[i]), len(free))
        if row == len(free):
            free.append(cap)
        starts[i] = (row, cap - free[row])
        free[row] -= lens[i]
    rows = max(len(free), 1)
    slots = torch.arange(rows * cap).view(rows, cap)  # (R, L)
    tokens = torch.zeros(rows, cap, dtype=ids.dtype)
    positions = torch.zeros(rows, cap, dtype=torch.long)
    segments = -1 - slots  # (R, L): free slots, each its own
    for i, (row, start) in enumerate(starts):
        n = lens[i]
        tokens[row, start : start + n] = ids[i, :n]
        positions[row, start : start + n] = torch.arange(n)
        segments[row, start : start + n] = i
    device = ids.device
    return PackedBatch(
        tokens.to(device), positions.to(device), segments.to(device), lengths.to(device).long()
    )
