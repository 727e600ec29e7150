"""Linear layers for few rows: decoding multiplies a handful of token vectors by each weight.

``x @ W^T`` for ``x`` of n rows is what ``nn.functional.linear`` computes. When n is small
(a decode step of B sequences has n = B), that product is bound by reading W, and for some
row counts the BLAS kernel behind ``F.linear`` reads it slowly, while the same product
written ``(W @ x^T)^T``, which the BLAS serves with another kernel, does not. Which row
counts gain depends on the CPU (MKL takes other code paths on other vendors' CPUs), so the
rule is a table by CPU vendor, each row measured with ``benchmarks/few_row_linear.py``
(MKL, fp32, 2 threads; benchmarks/RESULTS.md, "Few-row linear by CPU"):

- AMD EPYC: ``F.linear`` at n = 2 to 64 ran up to 3x slower than the transposed form, and
  greedy decoding of a 135M-parameter Llama at batch 8 went from 28 to 42 tokens/s;
- Intel Xeon: the transposed form was faster at n = 8 to 48 (up to 2x) but slower at 2 to 4
  and at 64 and more (down to 0.5x), and batch-8 decoding gained 1.10x.

Any other CPU keeps ``F.linear``. :func:`linear` takes the transposed form for
:data:`MIN_ROWS` to :data:`MAX_ROWS` rows. It is a fixed rule, not a per-call timing, so
that the same input always gives the same output on a machine; set ``MAX_ROWS = 0`` to turn
it off.

Only inference on the CPU takes this path: autograd, compiled graphs, other devices, mixed
dtypes and row counts outside the range use ``F.linear`` unchanged. The two forms sum in
different orders, so they agree to rounding (about 1e-6 relative in fp32), not bit for bit.

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

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from multihead import packed_weights

# Row counts (MIN_ROWS, MAX_ROWS) that take the transposed form, by the CPU vendor that
# /proc/cpuinfo names; measured as the module docstring says.
ROW_RANGES = {"AuthenticAMD": (2, 64), "GenuineIntel": (8, 48)}
_CPUINFO = Path("/proc/cpuinfo")


def cpu_vendor() -> str:
    """The CPU vendor id (``"GenuineIntel"``, ``"AuthenticAMD"``...), "" when unknown."""
    try:
        with _CPUINFO.open() as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def rows_for(vendor: str) -> tuple[int, int]:
    """The (MIN_ROWS, MAX_ROWS) of :data:`ROW_RANGES` for ``vendor``; (0, 0): never."""
    return ROW_RANGES.get(vendor, (0, 0))


# Products of MIN_ROWS to MAX_ROWS rows take the transposed form; MAX_ROWS = 0 turns it off.
MIN_ROWS, MAX_ROWS = rows_for(cpu_vendor())


def _few_rows(x: torch.Tensor, weight: torch.Tensor) -> int:
    """n when ``x`` takes the transposed form, else 0. The row count is checked first: most
    calls (one decode row, a long prompt) leave here after a few attribute reads."""
    shape = x.shape
    if not shape or not shape[-1] or shape[-1] != weight.shape[1]:
        return 0
    n = x.numel() // shape[-1]
    if not max(MIN_ROWS, 2) <= n <= MAX_ROWS:
        return 0
    if x.device.type != "cpu" or x.dtype != weight.dtype or torch.compiler.is_compiling():
        return 0
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return 0
    return n


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: x ``(..., E)``, weight ``(O, E)``, bias ``(O,)`` ->
    ``(..., O)``; inside :func:`multihead.packed_weights.use` by the packed weight, else a
    few rows in inference on the CPU take the transposed form (module doc)."""
    y = packed_weights.linear(x, weight, bias)
    if y is not None:
        return y
    n = _few_rows(x, weight)
    if not n:
        return F.linear(x, weight, bias)
    return transposed(x, weight, bias)


def transposed(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed as ``(W @ x^T)^T``, whatever the row count:
    x ``(..., E)``, weight ``(O, E)``, bias ``(O,)`` -> ``(..., O)``."""
    n = x.numel() // x.shape[-1]
    y = (weight @ x.reshape(n, x.shape[-1]).T).T.contiguous()  # (O, n) -> (n, O)
    if bias is not None:
        y = y + bias
    return y.view(*x.shape[:-1], weight.shape[0])  # (..., O)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, state dict and hooks) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
