"""Head roles from scores, with the thresholds stated.

A head gets every role whose score reaches its threshold (a head can have several, or none):

- ``previous_token``: score ``previous_token`` (offset 1) >= 0.5, most attention on p(q) - 1;
- ``next_token``: score ``next_token`` (offset -1) >= 0.5, most attention on p(q) + 1;
- ``positional``: score ``positional`` >= 0.5, the best fixed offset k other than +-1 (k is
  the score ``positional_offset``; k = 0 is the token itself), unless the head is an
  induction or duplicate-token head: on a sequence repeated with period n those read the
  fixed offsets n - 1 and n, which the content roles explain;
- ``induction``: score ``induction`` (prefix matching, Olsson et al. 2022) >= 0.2;
- ``duplicate_token``: score ``duplicate_token`` (earlier copies of its token) >= 0.2;
- ``sink``: score ``sink`` (share on the first token, a sink / no-op head) >= 0.5;
- ``broad``: score ``normalized_entropy`` >= 0.8, spread over the keys it may see;
- ``rare_token``: score ``rare_token`` >= 0.5, its top key is the rarest it may see.

The pattern scores are shares of the head's attention (TransformerLens's "mul" score), so 0.5
means "more than half of the head's attention follows the pattern" -- chance on T keys is
about 1/T. Induction and duplicate-token scores are meaningful on inputs with repeats (the
repeated-random-tokens task); their threshold is lower because the first half of such a
sequence has no earlier copy to attend to: at most about half of the rows can follow the
pattern (a perfect head scores about 0.5), while a head that ignores content puts about 1/q
of row q's attention on the one expected key (well under 0.1 beyond the first few rows); 0.2
names a head that puts 40 % of its attention on the copy wherever there is one. Change any
threshold with :class:`RoleThresholds`.

Example:
    >>> head_roles({"previous_token": 0.9, "sink": 0.05, "normalized_entropy": 0.2})
    ['previous_token']
    >>> head_roles({"positional": 0.7, "positional_offset": 2.0})
    ['positional']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from multihead import _checks

ROLES = (
    "previous_token",
    "next_token",
    "positional",
    "induction",
    "duplicate_token",
    "sink",
    "broad",
    "rare_token",
)
# The score each role reads.
ROLE_SCORES = {
    "previous_token": "previous_token",
    "next_token": "next_token",
    "positional": "positional",
    "induction": "induction",
    "duplicate_token": "duplicate_token",
    "sink": "sink",
    "broad": "normalized_entropy",
    "rare_token": "rare_token",
}


@dataclass(frozen=True)
class RoleThresholds:
    """The score at or above which a head gets each role (see the module table)."""

    previous_token: float = 0.5
    next_token: float = 0.5
    positional: float = 0.5
    induction: float = 0.2
    duplicate_token: float = 0.2
    sink: float = 0.5
    broad: float = 0.8
    rare_token: float = 0.5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _checks.require_number(f.name, getattr(self, f.name), minimum=0.0, maximum=1.0)


def head_roles(scores: Mapping[str, float], thresholds: RoleThresholds | None = None) -> list[str]:
    """The roles of one head from its ``{score name: value}`` (missing or NaN scores give no
    role), in :data:`ROLES` order."""
    t = RoleThresholds() if thresholds is None else thresholds
    roles = []
    for role in ROLES:
        value = scores.get(ROLE_SCORES[role])
        if value is None or math.isnan(float(value)):
            continue
        if float(value) >= getattr(t, role):
            roles.append(role)
    if "positional" in roles and {"induction", "duplicate_token"} & set(roles):
        roles.remove("positional")
    return roles


def assign_roles(
    scores: Mapping[str, torch.Tensor], thresholds: RoleThresholds | None = None
) -> list[list[str]]:
    """Roles of every head of a layer from ``{name: (H,) tensor}`` (as
    :meth:`~multihead.analysis.summary.HeadSummary.scores` gives them)."""
    per_head = [
        {name: float(v[h]) for name, v in scores.items() if v.dim() == 1}
        for h in range(_num_heads(scores))
    ]
    return [head_roles(s, thresholds) for s in per_head]


def _num_heads(scores: Mapping[str, torch.Tensor]) -> int:
    sizes = {v.shape[0] for v in scores.values()}
    if len(sizes) != 1:
        raise ValueError(f"scores disagree on the number of heads: {sorted(sizes)}")
    return sizes.pop()
