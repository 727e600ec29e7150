"""The few-row linear: F.linear's product to rounding in the transposed form, the same output
for the same input, and everything outside inference on a few CPU rows left to F.linear bit
for bit."""

import pytest
import torch
import torch.nn.functional as F

from multihead import linear as few
from multihead.linear import Linear, linear


@pytest.mark.parametrize("shape", [(2, 16), (3, 5, 16), (4, 1, 16), (few.MAX_ROWS, 16)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_a_few_rows_give_f_linear_to_rounding_and_the_same_output_each_time(shape, with_bias):
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


def test_the_rule_can_be_turned_off(monkeypatch):
    w, x = torch.randn(24, 16), torch.randn(4, 16)
    monkeypatch.setattr(few, "MAX_ROWS", 0)
    with torch.no_grad():
        assert torch.equal(linear(x, w), F.linear(x, w))


@pytest.mark.parametrize(
    "case", ["one row", "too many rows", "autograd", "float64 input, float32 weight"]
)
def test_outside_few_cpu_inference_rows_it_is_f_linear_bit_for_bit(case):
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
