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

# Importance and pruning (issue 10, second half) go below, extending __all__.
