"""Synthetic sequence tasks with a known algorithm, for studying what heads learn.

Each task makes batches ``(x, y)`` of shape ``(B, T)`` (int64) for next-token prediction;
targets that cannot be predicted are ``IGNORE`` (-100, ``cross_entropy``'s ignore_index), so
the loss scores only the algorithmic part.

- ``induction``: a random sequence repeated twice; the second copy is predictable by an
  induction head (Olsson et al. 2022, "In-context learning and induction heads"). The period
  is the same in every example, so a head attending at that fixed offset solves it too.
- ``induction_random``: random tokens in which a random segment of random length is repeated
  right after itself, at a random place: ``noise A A noise``. Period and position differ
  per example, so no fixed-offset head can solve it; only the two-layer induction circuit
  (a previous-token head, then an induction head reading it) predicts the second ``A``.
- ``copy``: ``a SEP a``; ``reverse``: ``a SEP reversed(a)``.

Example:
    >>> import torch
    >>> from multihead.data import SyntheticTask
    >>> task = SyntheticTask("copy", vocab_size=10, seq_len=9)
    >>> x, y = task.batch("train", batch_size=1, generator=torch.Generator().manual_seed(0))
    >>> x.shape, int((y != -100).sum())                    # the copy after SEP is scored
    (torch.Size([1, 9]), 4)
"""

from __future__ import annotations

import torch

from multihead import _checks

IGNORE = -100
TASKS = ("induction", "induction_random", "copy", "reverse")
# The shortest input length T at which a task scores a token. Induction repeats n = (T+1)//2 + 1
# tokens and scores T - n of them: T = 4 is the first length with one (a0 a1 a2 a0 -> a1).
# Copy and reverse score n = T // 2 tokens after the separator: one at T = 3 (a SEP -> a).
# induction_random repeats a segment of n >= 2 tokens and scores n - 1: T = 3 (a0 a1 a0 -> a1).
_MIN_SEQ_LEN = {"induction": 4, "induction_random": 3, "copy": 3, "reverse": 3}


class SyntheticTask:
    """A synthetic task.

    Args:
        name: ``"induction"``, ``"induction_random"``, ``"copy"`` or ``"reverse"``.
        vocab_size: total vocabulary; ``copy``/``reverse`` reserve the last id as SEP.
        seq_len: T, the model input length.
    """

    def __init__(self, name: str, *, vocab_size: int, seq_len: int) -> None:
        if name not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {name!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 3:
            raise ValueError(f"vocab_size must be an integer >= 3, got {vocab_size!r}")
        self.name = name
        self._check_length(seq_len)
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.sep = vocab_size - 1

    @staticmethod
    def min_seq_len(name: str) -> int:
        """The shortest sequence length at which task ``name`` has a target to score.

        >>> SyntheticTask.min_seq_len("induction"), SyntheticTask.min_seq_len("copy")
        (4, 3)
        """
        _checks.require_choice("task", name, TASKS)
        return _MIN_SEQ_LEN[name]

    def _check_length(self, seq_len: object) -> None:
        _checks.require_int("seq_len", seq_len, minimum=1)
        least = _MIN_SEQ_LEN[self.name]
        if seq_len < least:
            raise ValueError(
                f"task {self.name!r} with seq_len={seq_len} has nothing to score (every target "
                f"is IGNORE); it needs seq_len at least {least}"
            )

    def batch(
        self, split: str, *, batch_size: int, generator: torch.Generator, seq_len: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``, each ``(B, T)``; ``split`` is accepted for symmetry with text corpora
        (train and validation batches differ by the generator's seed only)."""
        del split
        _checks.require_int("batch_size", batch_size, minimum=1)
        t = self.seq_len if seq_len is None else seq_len
        self._check_length(t)
        if self.name == "induction_random":
            return _random_repeat(batch_size, t, self.vocab_size, generator)
        if self.name == "induction":
            n = (t + 1) // 2 + 1  # two copies give at least T + 1 tokens
            a = torch.randint(0, self.vocab_size, (batch_size, n), generator=generator)
            seq = torch.cat((a, a), dim=1)[:, : t + 1]  # (B, T+1)
            y = seq[:, 1:].clone()
            y[:, :n] = IGNORE  # predictable: the second copy from its second token on
            return seq[:, :-1], y
        n = t // 2  # a SEP b: 2n + 1 = T + 1 tokens when T is odd
        a = torch.randint(0, self.vocab_size - 1, (batch_size, n), generator=generator)
        b = a if self.name == "copy" else a.flip(1)
        sep = torch.full((batch_size, 1), self.sep, dtype=torch.long)
        seq = torch.cat((a, sep, b), dim=1)  # (B, 2n+1)
        pad = t + 1 - seq.shape[1]
        if pad > 0:
            seq = torch.cat((seq, torch.full((batch_size, pad), self.sep)), dim=1)  # (B, T+1)
        y = seq[:, 1:].clone()
        y[:, :n] = IGNORE  # before SEP nothing is predictable
        y[:, 2 * n :] = IGNORE  # padding
        return seq[:, :-1], y


def repeat_lengths(seq_len: int) -> tuple[int, int]:
    """The shortest and longest repeated segment ``induction_random`` draws at input length
    ``seq_len``: ``n`` in ``[max(2, m // 2), m]`` with ``m = (seq_len + 1) // 2``, so the period
    varies by a factor of two (a single length only at the shortest inputs).

    >>> repeat_lengths(32), repeat_lengths(3)
    ((8, 16), (2, 2))
    """
    longest = (seq_len + 1) // 2
    return max(2, longest // 2), longest


def _random_repeat(
    b: int, t: int, vocab: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``noise A A noise`` over T + 1 tokens: each row repeats its own segment (length ``n``
    per :func:`repeat_lengths`, start ``p`` uniform in ``[0, T + 1 - 2n]``). Scored: the
    targets inside the second copy, from its second token on (``n - 1`` per row); everything
    else, the noise and the first copy, is unpredictable and IGNORE."""
    lo, hi = repeat_lengths(t)
    seq = torch.randint(0, vocab, (b, t + 1), generator=generator)  # (B, T+1)
    n = torch.randint(lo, hi + 1, (b, 1), generator=generator)  # (B, 1)
    room = t + 2 - 2 * n  # choices of the start p, >= 1
    p = (torch.rand(b, 1, generator=generator) * room).long().clamp(max=room - 1)  # (B, 1)
    pos = torch.arange(t + 1).expand(b, t + 1)  # (B, T+1)
    second = (pos >= p + n) & (pos < p + 2 * n)
    seq = seq.gather(1, torch.where(second, pos - n, pos))  # the second copy reads the first
    y = seq[:, 1:].clone()  # (B, T): target of input i is token i + 1
    target = pos[:, 1:]
    y[~((target > p + n) & (target < p + 2 * n))] = IGNORE
    return seq[:, :-1], y
