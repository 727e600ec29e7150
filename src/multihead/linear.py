"""Linear layers for few rows: decoding multiplies a handful of token vectors by each weight.

``x @ W^T`` for ``x`` of n rows is what ``nn.functional.linear`` computes. When n is small
(a decode step of B sequences has n = B), that product is bound by reading W, and the BLAS
kernel behind ``F.linear`` reads it slowly on some CPUs: on this project's machine (MKL on an
AMD EPYC, fp32, 2 threads) ``F.linear`` at n = 2 to 64 ran up to 3x slower than the same
product written ``(W @ x^T)^T``, which the BLAS serves with another kernel, and greedy
decoding of a 135M-parameter Llama at batch 8 went from 28 to 42 tokens/s
(benchmarks/RESULTS.md, "After the few-row linear and the decode no_grad fix").
:func:`linear` takes that form for 2 to :data:`MAX_ROWS` rows. It is a fixed rule, not a
per-call timing, so that the same input always gives the same output; set ``MAX_ROWS = 0``
to turn it off.

Only inference on the CPU takes this path: autograd, compiled graphs, other devices, mixed
dtypes, one row and more than :data:`MAX_ROWS` rows use ``F.linear`` unchanged. The two forms
sum in different orders, so they agree to rounding (about 1e-6 relative in fp32), not bit for
bit.

Legend: n rows (all leading dimensions of x flattened), E input width, O output width.

Example:
    >>> import torch
    >>> from multihead.linear import Linear
    >>> layer = Linear(8, 3)
    >>> x = torch.randn(4, 8)
    >>> with torch.no_grad():
    ...     torch.allclose(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias),
    ...                    atol=1e-6)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Products of 2 to MAX_ROWS rows take the transposed form; 0 turns it off.
MAX_ROWS = 64


def _few_rows(x: torch.Tensor, weight: torch.Tensor) -> int:
    """n when ``x`` takes the transposed form, else 0."""
    if x.device.type != "cpu" or x.dtype != weight.dtype or x.dim() == 0:
        return 0
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return 0
    if torch.compiler.is_compiling() or x.shape[-1] != weight.shape[1] or x.shape[-1] == 0:
        return 0
    n = x.numel() // x.shape[-1]
    return n if 1 < n <= MAX_ROWS else 0


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: x ``(..., E)``, weight ``(O, E)``, bias ``(O,)`` ->
    ``(..., O)``; a few rows in inference on the CPU take the transposed form (module doc)."""
    n = _few_rows(x, weight)
    if not n:
        return F.linear(x, weight, bias)
    y = (weight @ x.reshape(n, x.shape[-1]).T).T.contiguous()  # (O, n) -> (n, O)
    if bias is not None:
        y = y + bias
    return y.view(*x.shape[:-1], weight.shape[0])  # (..., O)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, state dict and hooks) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
