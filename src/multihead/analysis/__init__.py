"""Head analysis: capture beside the fast path, scores and roles, importance, pruning.

Layers are numbered as :func:`attention_layers` numbers them, everywhere in this package.
"""

from __future__ import annotations

from multihead.analysis.layers import attention_layers, resolve_layers

__all__ = ["attention_layers", "resolve_layers"]

# ---- importance, pruning (helper "prune")
from multihead.analysis.importance import ablation_importance, gradient_importance, lm_loss
from multihead.analysis.prune import (
    attention_parameters,
    lowest_heads,
    original_heads,
    parse_head_spec,
    prune_heads,
    save_pruned,
)

__all__ += [
    "ablation_importance",
    "attention_parameters",
    "gradient_importance",
    "lm_loss",
    "lowest_heads",
    "original_heads",
    "parse_head_spec",
    "prune_heads",
    "save_pruned",
]
