"""FeedForward: the SwiGLU formula and the roles its weights declare."""

import torch
from torch import nn

from multihead.models import FeedForward


def test_swiglu_feedforward_formula():
    torch.manual_seed(0)
    ffn = FeedForward(dim=8, hidden_dim=12, activation="swiglu", bias=False)
    x = torch.randn(2, 3, 8)
    gate, up = ffn.up.weight[:12], ffn.up.weight[12:]
    expected = (nn.functional.silu(x @ gate.T) * (x @ up.T)) @ ffn.down.weight.T
    torch.testing.assert_close(ffn(x), expected)
