"""Position-wise feed-forward networks: GELU MLP and SwiGLU.

Legend: B batch, T sequence length, E model width, F hidden width.

Example:
    >>> import torch
    >>> from multihead.models import FeedForward
    >>> ffn = FeedForward(dim=16, hidden_dim=32, activation="swiglu")
    >>> ffn(torch.randn(2, 5, 16)).shape                 # (B, T, E)
    torch.Size([2, 5, 16])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from multihead import _checks
from multihead.linear import Linear
from multihead.models.config import ACTIVATIONS
from multihead.roles import MATRIX, RESIDUAL, Role


class FeedForward(nn.Module):
    """``down(act(up(x)))`` with GELU, or SwiGLU ``down(silu(gate(x)) * up(x))``
    (Shazeer 2020, "GLU variants improve Transformer").

    Args:
        dim: E.
        hidden_dim: F.
        activation: ``"gelu"`` (exact erf GELU, as ``torch.nn.TransformerEncoderLayer``) or
            ``"swiglu"``.
        bias: biases on the linear layers.
        dropout: dropout on the output in training.

    Parameters: ``up`` ``(F, E)`` for GELU; for SwiGLU ``up`` is packed ``[W_gate; W_up]``
    ``(2F, E)`` so both come from one matmul; ``down`` ``(E, F)``.
    """

    def __init__(
        self,
        *,
        dim: int,
        hidden_dim: int,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _checks.require_positive_int("dim", dim)
        _checks.require_positive_int("hidden_dim", hidden_dim)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.hidden_dim = hidden_dim
        gated = activation == "swiglu"
        self.up = Linear(dim, hidden_dim * (2 if gated else 1), bias=bias)
        self.down = Linear(hidden_dim, dim, bias=bias)
        self.dropout = nn.Dropout(_checks.require_probability("dropout", dropout))

    def parameter_roles(self) -> list[tuple[nn.Parameter, Role]]:
        """``up`` is a hidden matrix (for SwiGLU two packed ones, ``[gate; up]``); ``down``
        writes the residual stream. Biases get the default role."""
        up = (
            MATRIX.packed((self.hidden_dim, self.hidden_dim))
            if self.activation == "swiglu"
            else MATRIX
        )
        return [(self.up.weight, up), (self.down.weight, RESIDUAL)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)  # (B, T, F) or (B, T, 2F)
        if self.activation == "swiglu":
            gate, up = h.chunk(2, dim=-1)  # (B, T, F) each
            h = F.silu(gate) * up
        else:
            h = F.gelu(h)
        return self.dropout(self.down(h))  # (B, T, E)
