"""The head report: plain dataclasses with a stable JSON surface, CSV and Markdown.

JSON (what other tools read, e.g. :func:`multihead.viz.render_viewer`)::

    {"model": {...},
     "heads": [{"layer": int, "head": int, "kv_head": int, "roles": [str, ...],
                "scores": {name: float}, "importance": float | null}, ...]}

``layer`` is numbered as :func:`~multihead.analysis.attention_layers` numbers layers;
``head`` and ``kv_head`` are the *original* head ids (a pruned model's
``config.layer_heads``), so reports of a model before and after pruning line up. Scores that
could not be computed (NaN) are left out of ``scores``.

Example:
    >>> r = HeadReport({"name": "toy"}, [HeadEntry(0, 1, 0, ["previous_token"],
    ...                                             {"previous_token": 0.91, "sink": 0.02})])
    >>> r = r.with_importance({(0, 1): 0.5})
    >>> HeadReport.from_dict(r.to_dict()) == r
    True
    >>> print(r.to_markdown())
    | layer | head | kv_head | roles | top scores | importance |
    |---|---|---|---|---|---|
    | 0 | 1 | 0 | previous_token | previous_token=0.91, sink=0.02 | 0.5 |
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# Scores that are shares of attention (comparable, 0..1): what "top scores" ranks.
SHARE_SCORES = (
    "previous_token",
    "next_token",
    "positional",
    "induction",
    "duplicate_token",
    "sink",
    "special_token",
    "rare_token",
)


@dataclass
class HeadEntry:
    """One head: its layer, original head id and KV head id, roles, scores, importance."""

    layer: int
    head: int
    kv_head: int
    roles: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    importance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": int(self.layer),
            "head": int(self.head),
            "kv_head": int(self.kv_head),
            "roles": list(self.roles),
            "scores": {k: float(v) for k, v in self.scores.items() if not math.isnan(float(v))},
            "importance": None if self.importance is None else float(self.importance),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> HeadEntry:
        missing = {"layer", "head", "kv_head", "roles", "scores"} - set(d)
        if missing:
            raise ValueError(f"a head entry needs {sorted(missing)}; got keys {sorted(d)}")
        imp = d.get("importance")
        return HeadEntry(
            int(d["layer"]),
            int(d["head"]),
            int(d["kv_head"]),
            [str(r) for r in d["roles"]],
            {str(k): float(v) for k, v in d["scores"].items()},
            None if imp is None else float(imp),
        )

    def top_scores(self, n: int = 3) -> str:
        """The ``n`` largest share scores, ``"name=value, ..."`` (positional with its k)."""
        shares = [(k, v) for k, v in self.scores.items() if k in SHARE_SCORES and v == v]
        shares.sort(key=lambda kv: -kv[1])
        out = []
        for k, v in shares[:n]:
            if k == "positional" and "positional_offset" in self.scores:
                k = f"positional(k={int(self.scores['positional_offset'])})"
            out.append(f"{k}={v:.2f}")
        return ", ".join(out)


@dataclass
class HeadReport:
    """Every analysed head of a model. ``model`` holds what describes the run (model class,
    layer count, data, mode; ``redundant_clusters`` when computed)."""

    model: dict[str, Any]
    heads: list[HeadEntry]

    def to_dict(self) -> dict[str, Any]:
        return {"model": dict(self.model), "heads": [h.to_dict() for h in self.heads]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> HeadReport:
        if not isinstance(d, Mapping) or not {"model", "heads"} <= set(d):
            raise ValueError('a head report is a mapping {"model": {...}, "heads": [...]}')
        return HeadReport(dict(d["model"]), [HeadEntry.from_dict(h) for h in d["heads"]])

    @staticmethod
    def from_json(text: str) -> HeadReport:
        return HeadReport.from_dict(json.loads(text))

    def head(self, layer: int, head: int) -> HeadEntry:
        """The entry of original head ``head`` of layer ``layer``."""
        for h in self.heads:
            if h.layer == layer and h.head == head:
                return h
        raise KeyError(f"the report has no head {head} in layer {layer}")

    def with_importance(self, importance: Mapping[tuple[int, int], float]) -> HeadReport:
        """A copy with ``importance[(layer, head)]`` (original head ids) set; heads not given
        keep theirs. Unknown heads are an error."""
        known = {(h.layer, h.head) for h in self.heads}
        unknown = sorted(set(importance) - known)
        if unknown:
            raise KeyError(f"importance names heads {unknown} that the report does not have")
        heads = [
            replace(h, importance=float(importance[(h.layer, h.head)]))
            if (h.layer, h.head) in importance
            else replace(h)
            for h in self.heads
        ]
        return HeadReport(dict(self.model), heads)

    def score_names(self) -> list[str]:
        names: dict[str, None] = {}
        for h in self.heads:
            names.update(dict.fromkeys(h.scores))
        return list(names)

    def to_csv(self) -> str:
        """One row per head: layer, head, kv_head, roles (``;``-separated), importance, then
        every score (blank when a head lacks it)."""
        names = self.score_names()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["layer", "head", "kv_head", "roles", "importance", *names])
        for h in self.heads:
            d = h.to_dict()
            imp = "" if d["importance"] is None else repr(d["importance"])
            scores = [repr(d["scores"][n]) if n in d["scores"] else "" for n in names]
            writer.writerow([h.layer, h.head, h.kv_head, ";".join(h.roles), imp, *scores])
        return buf.getvalue()

    def to_markdown(self, top: int = 3) -> str:
        """A Markdown table: layer, head, kv_head, roles, the ``top`` largest share scores,
        importance."""
        lines = [
            "| layer | head | kv_head | roles | top scores | importance |",
            "|---|---|---|---|---|---|",
        ]
        for h in self.heads:
            imp = "" if h.importance is None else f"{h.importance:.4g}"
            roles = ", ".join(h.roles) or "-"
            lines.append(
                f"| {h.layer} | {h.head} | {h.kv_head} | {roles} | {h.top_scores(top)} | {imp} |"
            )
        return "\n".join(lines)
