"""Presets: the small preset autocasts to bf16 only where the machine runs bf16 natively."""

import pytest
import torch

from multihead.train import presets
from multihead.train.presets import fast_bf16, preset


def test_small_uses_bf16_exactly_where_it_is_fast():
    _, train = preset("small")
    assert train.bf16 == fast_bf16()
    _, tiny = preset("tiny")
    assert tiny.bf16 is False


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        ("flags\t\t: fpu sse avx2 fma\n", False),
        ("flags\t\t: fpu avx2 avx512f avx512_bf16\n", True),
        ("flags\t\t: fpu avx2 amx_bf16 amx_tile\n", True),
        (OSError("no /proc"), False),
    ],
)
def test_fast_bf16_reads_the_cpu_flags(monkeypatch, cpuinfo, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def read_text(self):
        if isinstance(cpuinfo, OSError):
            raise cpuinfo
        return cpuinfo

    monkeypatch.setattr(presets.Path, "read_text", read_text)
    assert fast_bf16.__wrapped__() is expected


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match=r"preset must be one of \('tiny', 'small'\), got 'big'"):
        preset("big")
