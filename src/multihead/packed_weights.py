"""Weights packed once for decoding: MKL's packed GEMM for products of exactly B rows.

A decode step of B sequences multiplies B token vectors by every weight of the model. For
so few rows a BLAS call spends much of its time laying the weight out for its kernel, again
at every call. MKL can do that layout once (``cblas_sgemm_pack``), for one row count; torch
exposes it as ``torch.ops.mkl._mkl_reorder_linear_weight`` / ``torch.ops.mkl._mkl_linear``,
the pair its inductor compiler uses for frozen CPU linears. Greedy decoding packs every
weight for its batch size B and multiplies by the packed copy at each step.

Measured on an Intel Xeon (2 threads, fp32, the 121 weights of a 135M-parameter Llama,
``python benchmarks/packed_linear.py``; benchmarks/RESULTS.md,
"Packed weights and compiled decoding"):
one pass over all weights took 1.08-1.19x less time packed at 1 row, 0.95-1.01x at 2 (no
gain), 1.07-1.6x at 4 to 64 rows, against :func:`multihead.linear.linear`'s best form;
greedy decoding gained 1.12x at batch 1 and 1.22x at batch 8.

Costs, and the rules that bound them:

- Memory: a packed copy is about the size of its weight, so packing doubles the weights'
  memory. A model's packs are kept between calls (packing all weights costs about as much as
  several decode steps), for one row count at a time, and never more than :data:`BUDGET` of
  the memory the kernel reports available when packing starts; weights past the budget keep
  the unpacked path. They are freed with the model, or by :func:`release`.
- Time: generation packs only when the call decodes at least :data:`MIN_TOKENS` tokens in all
  (B x max_new_tokens), or when the model already holds packs for B rows.
- Numbers: the packed kernel sums in another order than ``F.linear``, so the two agree to
  rounding (about 1e-6 relative in fp32), not bit for bit. A packed weight is used only while
  the tensor is unchanged: an in-place update (an optimizer step, ``load_state_dict``) bumps
  its version and the next call packs it again.

Only ``nn.Parameter`` weights of dtype float32 on the CPU are packed (a sliced or computed
weight is a new tensor at each call), only in inference (no autograd through the packed op),
outside compiled code, and only when torch has the MKL ops (probed once at import with a
small product checked against ``F.linear``). Anything else takes the usual path.

Legend: n rows (all leading dimensions of x flattened), E input width, O output width.

Example:
    >>> import torch
    >>> from multihead import packed_weights
    >>> from multihead.linear import Linear, linear
    >>> layer = Linear(16, 4)
    >>> x = torch.randn(3, 16)
    >>> with torch.no_grad(), packed_weights.use(layer, rows=3):
    ...     y = linear(x, layer.weight, layer.bias)
    >>> bool(torch.allclose(y, torch.nn.functional.linear(x, layer.weight, layer.bias),
    ...                     atol=1e-5))
    True
    >>> packed_weights.release(layer)
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Generation packs for batches of up to MAX_ROWS rows (measured from 1 to 64).
MAX_ROWS = 64
# Generation packs when it decodes at least this many tokens in all (B x max_new_tokens).
MIN_TOKENS = 128
# Packs never take more than this share of MemAvailable (read when a model's packs start).
BUDGET = 0.25
# Set ENABLED = False to never pack.
ENABLED = True
_MEMINFO = Path("/proc/meminfo")


def _probe() -> bool:
    """True when torch has MKL's packed linear and it computes ``F.linear``."""
    mkl = getattr(torch.ops, "mkl", None)
    try:
        if not torch.backends.mkl.is_available() or mkl is None:
            return False
        w = torch.randn(24, 16, generator=torch.Generator().manual_seed(0))
        x, b = torch.randn(5, 16), torch.randn(24)
        packed = mkl._mkl_reorder_linear_weight(w, 5)
        y = mkl._mkl_linear(x, packed, w, b, 5)
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.allclose(y, F.linear(x, w, b), rtol=1e-5, atol=1e-5))


AVAILABLE = _probe()


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo in bytes; 0 when it cannot be read (no packing)."""
    try:
        with _MEMINFO.open() as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Packs:
    """One model's packed weights for products of ``rows`` rows, within ``budget`` bytes."""

    def __init__(self, rows: int, budget: int) -> None:
        self.rows, self.budget, self.used = rows, budget, 0
        # id(weight) -> (weak reference to it, its version when packed, the packed copy,
        # the bytes counted against the budget: the weight's, which the copy about equals)
        self._entries: dict[int, tuple[weakref.ref, int, torch.Tensor, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def packed(self, weight: torch.Tensor) -> torch.Tensor | None:
        """The packed copy of ``weight`` ``(O, E)``, packing it now if needed; None when it
        is not packable or the budget is spent."""
        key = id(weight)
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0]() is weight and entry[1] == weight._version:
                return entry[2]
            del self._entries[key]  # changed in place, or another tensor at a reused id
            self.used -= entry[3]
        if not _packable(weight) or self.used + weight.nbytes > self.budget:
            return None
        packed = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), self.rows)
        self._entries[key] = (weakref.ref(weight), weight._version, packed, weight.nbytes)
        self.used += weight.nbytes
        return packed


def _packable(weight: torch.Tensor) -> bool:
    return (
        isinstance(weight, nn.Parameter)
        and weight.dim() == 2
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and weight.is_contiguous()
    )


# module -> its Packs; an entry goes when the module is garbage-collected.
_PACKS: weakref.WeakKeyDictionary[nn.Module, Packs] = weakref.WeakKeyDictionary()
_ACTIVE: contextvars.ContextVar[Packs | None] = contextvars.ContextVar("packs", default=None)


def packs_of(module: nn.Module) -> Packs | None:
    """The packs ``module`` holds, or None."""
    return _PACKS.get(module)


def release(module: nn.Module) -> None:
    """Free the packed copies of ``module``'s weights (they are rebuilt when next needed)."""
    _PACKS.pop(module, None)


def worth_packing(module: nn.Module, rows: int, tokens: int) -> bool:
    """Whether generation of ``tokens`` tokens in all at ``rows`` rows per step should pack
    ``module``'s weights (module docstring)."""
    if not (ENABLED and AVAILABLE and 1 <= rows <= MAX_ROWS):
        return False
    held = _PACKS.get(module)
    return tokens >= MIN_TOKENS or (held is not None and held.rows == rows)


@contextlib.contextmanager
def use(module: nn.Module, *, rows: int) -> Iterator[Packs]:
    """Within the block, :func:`multihead.linear.linear` multiplies ``rows``-row inputs by
    the packed copies of ``module``'s weights (packed at first use, kept on the module)."""
    packs = _PACKS.get(module)
    if packs is None or packs.rows != rows:
        packs = _PACKS[module] = Packs(rows, int(available_bytes() * BUDGET))
    token = _ACTIVE.set(packs)
    try:
        yield packs
    finally:
        _ACTIVE.reset(token)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """``F.linear(x, weight, bias)`` by the active packed copy of ``weight``: x ``(..., E)``,
    weight ``(O, E)``, bias ``(O,)`` -> ``(..., O)``; None when no pack applies (no active
    :func:`use`, another row count, autograd, compiled code, an unpackable weight)."""
    if torch.compiler.is_compiling():  # first: compiled code never reads the context
        return None
    packs = _ACTIVE.get()
    if packs is None or not x.dim():
        return None
    e = x.shape[-1]
    if not e or e != weight.shape[-1] or x.numel() // e != packs.rows:
        return None
    if x.dtype != weight.dtype:
        return None
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return None
    packed = packs.packed(weight)
    if packed is None:
        return None
    n = packs.rows
    y = torch.ops.mkl._mkl_linear(x.reshape(n, e), packed, weight, bias, n)  # (n, O)
    return y.view(*x.shape[:-1], weight.shape[0])  # (..., O)
