"""Head analysis: capture beside the fast path, scores and roles, importance, pruning.

Layers are numbered as :func:`attention_layers` numbers them, everywhere in this package.
"""

from __future__ import annotations

# Capture, scores, roles, redundancy, the report (issue 10, first half).
from multihead.analysis import scores
from multihead.analysis.analyze import analyze, head_ids
from multihead.analysis.layers import attention_layers, resolve_layers
from multihead.analysis.record import Recording, record
from multihead.analysis.redundancy import js_divergence, pairwise_js, redundant_clusters
from multihead.analysis.report import HeadEntry, HeadReport
from multihead.analysis.roles import ROLES, RoleThresholds, assign_roles, head_roles
from multihead.analysis.summary import HeadSummary

__all__ = [
    "ROLES",
    "HeadEntry",
    "HeadReport",
    "HeadSummary",
    "Recording",
    "RoleThresholds",
    "analyze",
    "assign_roles",
    "attention_layers",
    "head_ids",
    "head_roles",
    "js_divergence",
    "pairwise_js",
    "record",
    "redundant_clusters",
    "resolve_layers",
    "scores",
]

# ---- importance, pruning (helper "prune")
from multihead.analysis.flops import attended_pairs, attention_flops, forward_flops
from multihead.analysis.importance import ablation_importance, gradient_importance, lm_loss
from multihead.analysis.iterative import PruningCurve, PruningPoint, prune_iteratively
from multihead.analysis.prune import (
    attention_parameters,
    importance_by_head,
    lowest_heads,
    original_heads,
    parse_head_spec,
    prune_heads,
    save_pruned,
)
from multihead.analysis.timing import median_seconds, seconds_per_forward

__all__ += [
    "PruningCurve",
    "PruningPoint",
    "ablation_importance",
    "attended_pairs",
    "attention_flops",
    "attention_parameters",
    "forward_flops",
    "gradient_importance",
    "importance_by_head",
    "lm_loss",
    "lowest_heads",
    "median_seconds",
    "original_heads",
    "parse_head_spec",
    "prune_heads",
    "prune_iteratively",
    "save_pruned",
    "seconds_per_forward",
]
