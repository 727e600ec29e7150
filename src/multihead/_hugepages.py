"""Large CPU buffers on transparent huge pages, where the kernel offers them.

Writing a fresh buffer costs one page fault per page the first time each page is touched.
A kept attention map of 32 MiB is 8192 faults of 4 KiB; on this project's machine (a
virtual machine) first-touching it took 18 ms, against 10 ms on 2 MiB huge pages
(benchmarks/RESULTS.md, "Kept maps on huge pages"). PyTorch's allocator asks for huge
pages only when ``THP_MEM_ALLOC_ENABLE=1`` is set before its first allocation, which a
library cannot arrange; :func:`zeros` maps the memory itself and asks the kernel with
``madvise(MADV_HUGEPAGE)``.

The tensor owns the mapping (``torch.frombuffer`` keeps it alive) and frees it with the
tensor. Anywhere huge pages are off or unknown (not Linux, ``never``, small buffers), it is
``torch.zeros``.
"""

from __future__ import annotations

import ctypes
import math
import mmap
from pathlib import Path

import torch

HUGE_PAGE = 2 << 20  # bytes; x86-64 and arm64 (4 KiB base pages) use 2 MiB
MIN_BYTES = 4 * HUGE_PAGE  # smaller buffers gain little and would waste up to a huge page
_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_available: bool | None = None


def available() -> bool:
    """Whether the kernel gives huge pages to a region that asks (``madvise`` or ``always``
    selected in /sys/kernel/mm/transparent_hugepage/enabled)."""
    global _available
    if _available is None:
        try:
            text = _SETTING.read_text()
        except OSError:
            text = ""
        chosen = text[text.find("[") + 1 : text.find("]")] if "[" in text else ""
        _available = chosen in ("madvise", "always") and hasattr(mmap, "MADV_HUGEPAGE")
    return _available


def zeros(
    shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A tensor of zeros of ``shape`` and ``dtype``, contiguous: on huge pages when on the
    CPU, :func:`available` and at least :data:`MIN_BYTES`, else ``torch.zeros``. Fresh
    anonymous memory reads as zero, so the huge-page path writes nothing: a caller that
    fills part of the buffer pays only for the part it writes."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    nbytes = math.prod(shape) * itemsize
    if torch.device(device).type != "cpu" or nbytes < MIN_BYTES or not available():
        return torch.zeros(shape, dtype=dtype, device=device)
    try:
        region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        region.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # no address space or a kernel that refuses the advice: torch's memory
        return torch.zeros(shape, dtype=dtype, device=device)
    start = ctypes.addressof(ctypes.c_char.from_buffer(region))
    offset = -start % HUGE_PAGE  # the kernel backs only 2 MiB-aligned ranges with huge pages
    flat = torch.frombuffer(region, dtype=torch.uint8, count=nbytes, offset=offset)
    return flat.view(dtype).view(shape)
