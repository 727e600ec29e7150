"""Small attention maps with known structure for the viz tests (plain tensors, no model)."""

from __future__ import annotations

import torch


def causal_softmax(heads: int, t: int, *, seed: int, sharp: float = 2.0) -> torch.Tensor:
    """``(H, T, T)`` random causal attention (rows sum to 1, future keys 0)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(heads, t, t, generator=g) * sharp  # (H, T, T)
    future = ~torch.ones(t, t, dtype=torch.bool).tril()  # (T, T) True = masked
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


def bidirectional_softmax(heads: int, tq: int, tk: int, *, seed: int) -> torch.Tensor:
    """``(H, Tq, Tk)`` random attention over every key."""
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(heads, tq, tk, generator=g) * 2.0, dim=-1)


def previous_token(t: int) -> torch.Tensor:
    """``(T, T)``: query i attends only to key i - 1 (query 0 to itself)."""
    w = torch.zeros(t, t)
    w[0, 0] = 1.0
    w[torch.arange(1, t), torch.arange(t - 1)] = 1.0
    return w


TOKENS = ["The", " cat", " sat", " on", " the", " mat", ".", " The", " cat", " sat"]


def toy_decoder() -> tuple[list[str], list[torch.Tensor], dict]:
    """3 layers x 4 heads on TOKENS; layer 0 head 1 is an exact previous-token head; and a
    report in the HeadReport JSON surface with made-up scores."""
    t = len(TOKENS)
    weights = [causal_softmax(4, t, seed=layer) for layer in range(3)]
    weights[0][1] = previous_token(t)
    heads = []
    for layer in range(3):
        for head in range(4):
            roles = ["previous_token"] if (layer, head) == (0, 1) else []
            if (layer, head) == (1, 2):
                roles = ["induction"]
            heads.append(
                {
                    "layer": layer,
                    "head": head,
                    "kv_head": head // 2,
                    "roles": roles,
                    "scores": {
                        "entropy": round(0.3 + 0.17 * ((layer * 4 + head) * 7 % 12), 3),
                        "previous_token": 0.98 if (layer, head) == (0, 1) else 0.05 * head,
                    },
                    # distinct, not in head order, so sorting is visible
                    "importance": round(((layer * 4 + head) * 5 % 12) / 11, 3),
                }
            )
    report = {"model": {"name": "toy", "layers": 3, "heads": 4}, "heads": heads}
    return TOKENS, weights, report
