"""_hugepages.zeros: zero, contiguous, writable, freed with the tensor, plain when it must."""

import gc
from pathlib import Path

import pytest
import torch

from multihead import _hugepages as hp


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_large_buffers_are_zero_writable_and_aligned(dtype):
    t = hp.zeros((3, 5, 1 << 20), dtype=dtype)
    assert t.shape == (3, 5, 1 << 20) and t.dtype == dtype and t.is_contiguous()
    assert not t.any()
    t[1, 2, 7] = 3.0
    assert float(t.sum()) == 3.0
    if hp.available():
        assert t.data_ptr() % hp.HUGE_PAGE == 0  # the kernel backs aligned ranges only
    torch.testing.assert_close(t + 1, torch.ones_like(t) + (t != 0) * 3)


def test_buffers_are_freed_with_their_tensors():
    if not hp.available():
        pytest.skip("no transparent huge pages: zeros is torch.zeros")
    gc.collect()
    before = rss_mib()
    for _ in range(40):  # 40 x 16 MiB written: 640 MiB if the mappings leaked
        hp.zeros((4 << 20,), dtype=torch.float32).fill_(1.0)
    gc.collect()
    assert rss_mib() - before < 160


def test_small_buffers_other_devices_and_no_huge_pages_take_torch_zeros(monkeypatch, tmp_path):
    # An ordinary torch tensor has a resizable storage; a mapped buffer's is fixed.
    if hp.available():
        assert not hp.zeros((hp.MIN_BYTES,), dtype=torch.uint8).untyped_storage().resizable()
    assert hp.zeros((4, 4), dtype=torch.float32).untyped_storage().resizable()
    assert hp.zeros((hp.MIN_BYTES,), dtype=torch.uint8, device="meta").device.type == "meta"
    setting = tmp_path / "enabled"
    monkeypatch.setattr(hp, "_SETTING", setting)
    for text, expected in (
        ("always madvise [never]\n", False),
        ("always [madvise] never\n", True),
        ("[always] madvise never\n", True),
    ):
        setting.write_text(text)
        monkeypatch.setattr(hp, "_available", None)
        assert hp.available() is (expected and hasattr(__import__("mmap"), "MADV_HUGEPAGE"))
    monkeypatch.setattr(hp, "_SETTING", tmp_path / "missing")
    monkeypatch.setattr(hp, "_available", None)
    assert hp.available() is False
    big = hp.zeros((hp.MIN_BYTES,), dtype=torch.uint8)
    assert big.untyped_storage().resizable() and not big.any()  # an ordinary torch tensor


def test_a_refused_mapping_falls_back_to_torch_zeros(monkeypatch):
    if not hp.available():
        pytest.skip("no transparent huge pages: zeros is torch.zeros anyway")

    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(hp.mmap, "mmap", refuse)
    t = hp.zeros((hp.MIN_BYTES,), dtype=torch.uint8)
    assert t.untyped_storage().resizable() and not t.any()
