"""The offline attention viewer: one self-contained HTML file (inline JS and CSS, no network
request of any kind: a Content-Security-Policy of ``default-src 'none'`` enforces it).

Views: the head view (tokens on both sides, lines weighted by attention; choose the layer and
heads; hover or click a token), the model view (every head's map as a thumbnail; click one to
open it) and, given a report, the head report table (sortable; click a row to open the head).
The weights are embedded as described in :mod:`multihead.viz.encoding`.

Example:
    >>> import torch
    >>> from multihead.viz import Viewer, render_viewer
    >>> tokens = ["The", " cat", " sat"]
    >>> causal = torch.ones(3, 3).tril()
    >>> layer = (causal / causal.sum(-1, keepdim=True)).expand(4, 3, 3)  # (H, Tq, Tk)
    >>> page = render_viewer(tokens, [layer, layer], title="two layers of four heads")
    >>> page.startswith("<!DOCTYPE html>"), "src=" in page, "://" in page
    (True, False, False)
    >>> Viewer(tokens, [layer, layer]).save("/tmp/multihead-doctest-viewer.html").suffix
    '.html'
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from multihead.viz.encoding import EncodedAttention, encode_attention
from multihead.viz.tokens import readable_tokens

_JS_FILES = ("data.js", "headview.js", "headside.js", "modelview.js", "report.js", "app.js")
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>{title}</title>
<script>performance.mark("mh-start");</script>
<style>
{css}</style>
</head>
<body>
<header><h1>{title}</h1><p class="summary">{summary}</p>{model}</header>
<noscript>This viewer needs JavaScript.</noscript>
<div id="mh-app"></div>
<footer>{footer}</footer>
<script type="application/json" id="mh-meta">{meta}</script>
<script type="application/octet-stream" id="mh-index">{index}</script>
<script type="application/octet-stream" id="mh-weight">{weight}</script>
<script type="application/octet-stream" id="mh-rest">{rest}</script>
<script type="application/octet-stream" id="mh-thumbs">{thumbs}</script>
<script>
(function () {{
"use strict";
{js}
}})();
</script>
</body>
</html>
"""


@cache
def _asset(name: str) -> str:
    text = (resources.files("multihead.viz") / "static" / name).read_text(encoding="utf-8")
    if "</script" in text.lower() or "</style" in text.lower():
        raise RuntimeError(f"viewer asset {name} must not contain a closing script/style tag")
    return text


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element (no '<', '>' or '&' characters left)."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
    return float(value) if math.isfinite(value) else None


def _report_meta(report: object) -> dict | None:
    """The report's JSON surface (issue 10), checked and cleaned for the page."""
    if report is None:
        return None
    if not isinstance(report, Mapping) or not isinstance(report.get("heads"), Sequence):
        raise TypeError(
            'report must be a mapping {"model": {...}, "heads": [...]}, got '
            f"{type(report).__name__}"
        )
    heads, names = [], []
    for n, row in enumerate(report["heads"]):
        where = f"report['heads'][{n}]"
        if not isinstance(row, Mapping):
            raise TypeError(f"{where} must be a mapping, got {type(row).__name__}")
        for key in ("layer", "head"):
            if isinstance(row.get(key), bool) or not isinstance(row.get(key), int):
                raise ValueError(f"{where} needs an integer {key!r}, got {row.get(key)!r}")
        scores = row.get("scores") or {}
        if not isinstance(scores, Mapping):
            raise TypeError(f"{where}['scores'] must be a mapping, got {type(scores).__name__}")
        roles = row.get("roles") or []
        if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
            raise TypeError(f"{where}['roles'] must be a list of strings, got {roles!r}")
        names += [str(k) for k in scores if str(k) not in names]
        kv = row.get("kv_head")
        heads.append(
            {
                "layer": row["layer"],
                "head": row["head"],
                "kv_head": kv if isinstance(kv, int) and not isinstance(kv, bool) else None,
                "roles": list(roles),
                "scores": {
                    str(k): _finite(v, f"{where}['scores'][{k!r}]") for k, v in scores.items()
                },
                "importance": _finite(row.get("importance"), f"{where}['importance']"),
            }
        )
    model = report.get("model") or {}
    if not isinstance(model, Mapping):
        raise TypeError(f"report['model'] must be a mapping, got {type(model).__name__}")
    return {"model": model, "heads": heads, "scores": names}


def _head_ids(head_ids: object, heads: tuple[int, ...]) -> list[list[int]]:
    if head_ids is None:
        return [list(range(h)) for h in heads]
    if not isinstance(head_ids, Sequence) or len(head_ids) != len(heads):
        raise ValueError(
            f"head_ids must list the head ids of each of the {len(heads)} layers, got {head_ids!r}"
        )
    out = []
    for layer, (ids, count) in enumerate(zip(head_ids, heads)):
        ids = list(ids)
        if (
            len(ids) != count
            or len(set(ids)) != count
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            raise ValueError(
                f"head_ids[{layer}] must be {count} distinct integers (weights[{layer}] has "
                f"{count} heads), got {ids!r}"
            )
        out.append(ids)
    return out


def _summary(enc: EncodedAttention, cross: bool) -> str:
    layers = len(enc.heads)
    if len(set(enc.heads)) == 1:
        heads = f"<b>{enc.heads[0]}</b> heads each"
    else:
        heads = f"heads per layer <b>{', '.join(map(str, enc.heads))}</b>"
    kind = (
        "cross-attention"
        if cross
        else "causal (decoder)"
        if enc.causal
        else "bidirectional (encoder)"
        if enc.tq == enc.tk
        else "queries attend to a longer key sequence"
    )
    tokens = f"<b>{enc.tq}</b> tokens" + (f" → <b>{enc.tk}</b> keys" if enc.tq != enc.tk else "")
    return f"{tokens} · <b>{layers}</b> layers · {heads} · {kind}"


def _footer(enc: EncodedAttention) -> str:
    kept = (
        "every weight is kept"
        if enc.top_k >= enc.tk
        else f"the {enc.top_k} largest of the {enc.tk} weights of every query are kept; "
        "the rest of each row's mass is kept as one number"
    )
    sq, sk = enc.thumb_shape
    return (
        f"Encoding: {kept}, quantised to steps of 1/255. Thumbnails are pooled to {sq}×{sk} "
        "from the exact weights. This file is self-contained and makes no network requests."
    )


def _model_info(model: Mapping) -> str:
    items = [
        f"{html.escape(str(k))} <code>{html.escape(str(v))}</code>"
        for k, v in model.items()
        if isinstance(v, (str, int, float, bool))
    ][:14]
    return f'<p class="modelinfo">{" · ".join(items)}</p>' if items else ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Viewer:
    """The viewer page for one example: ``html`` (str), ``save(path)``, and ``_repr_html_``
    for Jupyter (an ``<iframe srcdoc>`` with scripts allowed, so it needs no extension and
    keeps its scripts and styles apart from the notebook's).

    Args:
        tokens: the labels of the queries (and keys, for self-attention): a list of strings,
            or ``bytes`` for a byte-level model (characters shown, with visible glyphs for
            spaces, newlines and control bytes; see :mod:`multihead.viz.tokens`).
        weights: per layer ``(H_l, Tq, Tk)`` (or ``(1, H_l, Tq, Tk)``) attention weights of
            one example; layers may have different head counts (pruned models).
        report: the head report's JSON surface ``{"model": {...}, "heads": [{"layer",
            "head", "kv_head", "roles", "scores", "importance"}, ...]}``.
        title: shown at the top and as the page title.
        key_tokens: labels of the keys when they differ from the queries (cross-attention).
        head_ids: per layer, the (original) id of each head in ``weights[l]``; default
            ``0..H_l-1``. Report rows are matched to heads by ``(layer, head id)``.
        top_k: keys kept per query row (None: automatic, see
            :func:`multihead.viz.encoding.auto_top_k`).
    """

    def __init__(
        self,
        tokens: Sequence[str] | bytes,
        weights: Sequence,
        *,
        report: Mapping | None = None,
        title: str = "Attention",
        key_tokens: Sequence[str] | bytes | None = None,
        head_ids: Sequence[Sequence[int]] | None = None,
        top_k: int | None = None,
    ) -> None:
        if not isinstance(title, str):
            raise TypeError(f"title must be a str, got {type(title).__name__}")
        enc = encode_attention(weights, top_k=top_k)
        queries = readable_tokens(tokens)
        keys = None if key_tokens is None else readable_tokens(key_tokens)
        if keys is None and enc.tq != enc.tk:
            raise ValueError(
                f"weights have Tq={enc.tq} queries but Tk={enc.tk} keys; pass key_tokens "
                "for the keys"
            )
        if len(queries.labels) != enc.tq:
            raise ValueError(
                f"tokens has {len(queries.labels)} tokens but weights have Tq={enc.tq} queries"
            )
        if keys is not None and len(keys.labels) != enc.tk:
            raise ValueError(
                f"key_tokens has {len(keys.labels)} tokens but weights have Tk={enc.tk} keys"
            )
        report_meta = _report_meta(report)
        meta = {
            "enc": enc.meta(),
            "layers": [{"ids": ids} for ids in _head_ids(head_ids, enc.heads)],
            "tokens": {
                "q": queries.labels,
                "qt": queries.titles,
                "k": keys.labels if keys else None,
                "kt": keys.titles if keys else None,
            },
            "report": None
            if report_meta is None
            else {k: report_meta[k] for k in ("heads", "scores")},
        }
        self.encoding = enc
        self.html = _TEMPLATE.format(
            csp=_CSP,
            title=html.escape(title),
            css=_asset("viewer.css"),
            summary=_summary(enc, cross=keys is not None),
            model=_model_info(report_meta["model"]) if report_meta else "",
            footer=html.escape(_footer(enc)),
            meta=_script_json(meta),
            index=_b64(enc.index),
            weight=_b64(enc.weight),
            rest=_b64(enc.rest),
            thumbs=_b64(enc.thumbs),
            js="\n".join(_asset(name) for name in _JS_FILES),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page (UTF-8) to ``path``, creating its directory; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        return path

    def iframe(self, height: int = 820) -> str:
        """The page inside an ``<iframe srcdoc>`` (scripts allowed, nothing else)."""
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #e3e6eb" '
            'title="attention viewer"></iframe>'
        )

    def _repr_html_(self) -> str:
        return self.iframe()


def render_viewer(
    tokens: Sequence[str] | bytes,
    weights: Sequence,
    *,
    report: Mapping | None = None,
    title: str = "Attention",
    key_tokens: Sequence[str] | bytes | None = None,
    head_ids: Sequence[Sequence[int]] | None = None,
    top_k: int | None = None,
) -> str:
    """The viewer page as a string; arguments as :class:`Viewer`."""
    return Viewer(
        tokens,
        weights,
        report=report,
        title=title,
        key_tokens=key_tokens,
        head_ids=head_ids,
        top_k=top_k,
    ).html
