"""Head analysis: capture beside the fast path, scores and roles, importance, pruning.

Layers are numbered as :func:`attention_layers` numbers them, everywhere in this package.
"""

from __future__ import annotations

from multihead.analysis.layers import attention_layers, resolve_layers
from multihead.analysis.record import Recording, record
from multihead.analysis.summary import HeadSummary

__all__ = ["HeadSummary", "Recording", "attention_layers", "record", "resolve_layers"]
