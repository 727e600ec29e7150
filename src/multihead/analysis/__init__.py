"""Head analysis: capture beside the fast path, scores and roles, importance, pruning.

Layers are numbered as :func:`attention_layers` numbers them, everywhere in this package.
"""

from __future__ import annotations

from multihead.analysis.layers import attention_layers, resolve_layers

__all__ = ["attention_layers", "resolve_layers"]
