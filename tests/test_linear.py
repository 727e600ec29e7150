"""The few-row linear: F.linear's product to rounding in the transposed form, the same output
for the same input, the row range by CPU vendor, and everything outside inference on the
chosen CPU rows left to F.linear bit for bit."""

import pytest
import torch
import torch.nn.functional as F

from multihead import linear as few
from multihead.linear import Linear, linear


@pytest.fixture
def rule(monkeypatch):
    """The AMD rule (2 to 64 rows) whatever this machine's CPU, so every test takes the
    transposed path where it means to."""
    monkeypatch.setattr(few, "MIN_ROWS", 2)
    monkeypatch.setattr(few, "MAX_ROWS", 64)


@pytest.mark.parametrize("shape", [(2, 16), (3, 5, 16), (4, 1, 16), (few.MAX_ROWS, 16)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_a_few_rows_give_f_linear_to_rounding_and_the_same_output_each_time(shape, with_bias, rule):
    assert few._few_rows(torch.randn(*shape), torch.randn(24, 16)) > 0  # the transposed path
    torch.manual_seed(0)
    w, b = torch.randn(24, 16), torch.randn(24) if with_bias else None
    x = torch.randn(*shape)
    with torch.no_grad():
        y = linear(x, w, b)
        assert torch.equal(y, linear(x, w, b))
    assert y.shape == (*shape[:-1], 24) and y.is_contiguous()
    # fp64 reference; fp32 products of 16 terms agree to ~1e-6 relative
    ref = F.linear(x.double(), w.double(), None if b is None else b.double())
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)


def test_the_rule_can_be_turned_off(monkeypatch, rule):
    w, x = torch.randn(24, 16), torch.randn(4, 16)
    monkeypatch.setattr(few, "MAX_ROWS", 0)
    with torch.no_grad():
        assert torch.equal(linear(x, w), F.linear(x, w))


@pytest.mark.parametrize(
    "case", ["one row", "too many rows", "autograd", "float64 input, float32 weight"]
)
def test_outside_few_cpu_inference_rows_it_is_f_linear_bit_for_bit(case, rule):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(24, 16))
    x = {
        "one row": torch.randn(1, 16),
        "too many rows": torch.randn(few.MAX_ROWS + 1, 16),
        "autograd": torch.randn(4, 16),
        "float64 input, float32 weight": torch.randn(4, 16, dtype=torch.float64),
    }[case]
    if case == "autograd":
        y = linear(x, w)
        assert torch.equal(y, F.linear(x, w))
        y.sum().backward()
        assert w.grad is not None
        return
    with torch.no_grad():
        if case == "float64 input, float32 weight":
            with pytest.raises(RuntimeError):  # F.linear's own dtype error, not a silent cast
                linear(x, w)
            return
        assert torch.equal(linear(x, w), F.linear(x, w))


def test_linear_is_an_nn_linear_with_the_same_state_and_hooks():
    layer = Linear(16, 24)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight", "bias"}
    seen = []
    layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        layer(torch.randn(5, 16))
    assert seen == [torch.Size([5, 24])]


def test_the_row_range_follows_the_cpu_vendor(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(few, "_CPUINFO", info)
    for text, vendor, rows in (
        ("processor\t: 0\nvendor_id\t: AuthenticAMD\n", "AuthenticAMD", (2, 64)),
        ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t: 143\n", "GenuineIntel", (8, 48)),
        ("processor\t: 0\nCPU implementer\t: 0x41\n", "", (0, 0)),  # arm64: none named
    ):
        info.write_text(text)
        assert few.cpu_vendor() == vendor and few.rows_for(vendor) == rows
    monkeypatch.setattr(few, "_CPUINFO", tmp_path / "missing")
    assert few.cpu_vendor() == "" and few.rows_for("SomeOtherVendor") == (0, 0)


def test_row_counts_below_the_range_keep_f_linear(monkeypatch):
    monkeypatch.setattr(few, "MIN_ROWS", 8)
    monkeypatch.setattr(few, "MAX_ROWS", 48)
    w = torch.randn(24, 16)
    with torch.no_grad():
        for n, taken in ((4, False), (7, False), (8, True), (48, True), (49, False)):
            x = torch.randn(n, 16)
            assert (few._few_rows(x, w) > 0) is taken, n
            if not taken:
                assert torch.equal(linear(x, w), F.linear(x, w))


def test_the_transposed_form_is_f_linear_to_rounding_at_any_row_count():
    torch.manual_seed(1)
    w, b = torch.randn(24, 16), torch.randn(24)
    for shape in ((1, 16), (3, 7, 16), (130, 16)):
        x = torch.randn(*shape)
        got = few.transposed(x, w, b)
        assert got.shape == (*shape[:-1], 24)
        ref = F.linear(x.double(), w.double(), b.double())
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
