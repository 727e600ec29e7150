"""Unpadded tokens: the real tokens of a padded batch, laid out flat.

Legend: B batch, T padded length, N real tokens (N <= B * T), E width.

A padded batch ``(B, T, E)`` spends every token-wise layer (projections, feed-forward,
norms) on its padding too. :class:`Unpadded` keeps only the real tokens, ``(N, E)``, for
those layers, and puts them back in the padded layout for the one step that needs it:
attention, which reads each sequence as a whole (MultiHeadAttention's ``unpadded=``).
Padding is filled with zeros there; a key-padding mask (True = may attend) keeps it from
being attended, so the real tokens get the values they get padded, up to float rounding
(BLAS sums rows of different counts in different blocks).

Example:
    >>> import torch
    >>> real = torch.tensor([[True, True, False], [True, False, False]])   # (B, T)
    >>> u = Unpadded.from_mask(real)
    >>> x = torch.arange(6.0).view(2, 3, 1)                                 # (B, T, E=1)
    >>> u.unpad(x).flatten().tolist()                                       # (N=3, E)
    [0.0, 1.0, 3.0]
    >>> u.pad(u.unpad(x)).flatten().tolist()                                # (B, T, E)
    [0.0, 1.0, 0.0, 3.0, 0.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from multihead import _checks


@dataclass(frozen=True)
class Unpadded:
    """Where the real tokens of a ``(B, T)`` batch sit.

    Attributes:
        index: ``(N,)`` int64, the flat index ``b * T + t`` of each real token, increasing.
        batch: B.
        length: T.
    """

    index: torch.Tensor
    batch: int
    length: int

    @staticmethod
    def from_mask(real: torch.Tensor) -> Unpadded:
        """From ``real`` ``(B, T)`` bool, **True = a real token** (the key-padding mask's
        polarity: True = may be attended)."""
        _checks.require_tensor("real", real)
        if real.dim() != 2 or real.dtype != torch.bool:
            raise ValueError(
                f"real must be a (B, T) bool mask with True = real token, got "
                f"{tuple(real.shape)} {real.dtype}"
            )
        b, t = real.shape
        index = real.reshape(b * t).nonzero().squeeze(1)  # (N,)
        return Unpadded(index, b, t)

    @property
    def count(self) -> int:
        """N, the number of real tokens."""
        return self.index.numel()

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, ...)`` -> ``(N, ...)``: the real tokens' rows."""
        self._check(x, (self.batch, self.length), "(B, T, ...)")
        flat = x.reshape(self.batch * self.length, *x.shape[2:])  # (B*T, ...)
        return flat.index_select(0, self.index)  # (N, ...)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, ...)`` -> ``(B, T, ...)`` with zeros at the padding (differentiable)."""
        self._check(x, (self.count,), "(N, ...)")
        out = x.new_zeros(self.batch * self.length, *x.shape[1:])  # (B*T, ...)
        out = out.index_copy(0, self.index, x)
        return out.view(self.batch, self.length, *x.shape[1:])  # (B, T, ...)

    def _check(self, x: object, lead: tuple[int, ...], layout: str) -> None:
        _checks.require_tensor("x", x)
        if tuple(x.shape[: len(lead)]) != lead:  # type: ignore[union-attr]
            raise ValueError(
                f"x has shape {tuple(x.shape)} but these {self.count} real tokens of a "  # type: ignore[union-attr]
                f"({self.batch}, {self.length}) batch expect {layout} with leading {lead}"
            )
