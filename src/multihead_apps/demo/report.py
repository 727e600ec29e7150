"""The demo's outputs: the head report (the HeadReport JSON surface), the figures
(``runs/demo/*.png``), ``report.html`` (viewer, figures, head table, in one offline file) and
the summary table printed in the terminal."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import torch

from multihead import viz
from multihead.viz.from_model import capture_weights, model_info
from multihead_apps.demo.pipeline import Demo
from multihead_apps.demo.recipe import TASK

SCORES = ("previous_token", "induction", "duplicate_token")
# The page's own policy: inline styles and scripts (the viewer's, in its srcdoc frame, which
# inherits this policy), images from data: URIs, nothing from anywhere else.
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


def head_report(demo: Demo) -> dict[str, Any]:
    """The library's head report (the HeadReport JSON surface: roles, scores, importance),
    with the run in ``"model"`` and ``"kept"`` per head (after pruning)."""
    report = demo.report.to_dict()
    report["model"] = {
        **model_info(demo.model),
        **report["model"],
        "task": TASK,
        "steps": demo.recipe.steps,
    }
    for row in report["heads"]:
        row["kept"] = row["head"] in demo.keep.get(row["layer"], ())
    return report


def _score(demo: Demo, role: str) -> float:
    layer, head = demo.named[role]
    return float(demo.report.head(layer, head).scores[role])


def example(demo: Demo) -> torch.Tensor:
    """One held-out ``induction_random`` input ``(T,)``: noise, a segment, the segment again."""
    return demo.batches[0][0][0]


def figures(demo: Demo, report: dict[str, Any], tokens: torch.Tensor) -> dict[str, Path]:
    """Write the PNGs into ``demo.out``; returns name -> path."""
    out = demo.out
    labels = [str(int(t)) for t in tokens]
    weights = capture_weights(demo.model, tokens[None])  # per layer (H, T, T)
    files = {
        "loss_curve": viz.save(
            viz.loss_curve(demo.log, title="training loss (induction phase change dashed)"),
            out / "loss_curve.png",
        ),
        "head_scores": viz.save(
            viz.head_scores(report, scores=list(SCORES)), out / "head_scores.png"
        ),
        "importance": viz.save(viz.head_importance(report), out / "importance.png"),
        "pruning_curve": viz.save(
            viz.pruning_curve(
                [f for f, _ in demo.curve],
                [v for _, v in demo.curve],
                metric_name="loss on the repeated half",
                baseline=demo.base_loss,
            ),
            out / "pruning_curve.png",
        ),
        "attention_grid": viz.save(
            viz.attention_grid(weights, title="every head, one input"), out / "attention_grid.png"
        ),
    }
    for role, (layer, head) in demo.named.items():
        title = f"layer {layer} head {head}: {role.replace('_', '-')} head"
        fig = viz.attention_heatmap(weights[layer][head], labels, title=title)
        files[role] = viz.save(fig, out / f"{role}_head.png")
    return files


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
    )


def _table_html(report: dict[str, Any]) -> str:
    head = "".join(
        f"<th>{h}</th>" for h in ("layer", "head", "roles", *SCORES, "importance", "after pruning")
    )
    body = []
    for row in report["heads"]:
        cells = [row["layer"], row["head"], ", ".join(row["roles"]) or "–"]
        cells += [f"{row['scores'].get(s, math.nan):.2f}" for s in SCORES]
        cells += [f"{row['importance']:.2f}", "kept" if row["kept"] else "pruned"]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>multihead demo: induction heads</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #1d2430; padding: 0 16px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
td, th {{ border: 1px solid #d8dde5; padding: 3px 9px; text-align: right; }}
th {{ background: #f2f4f7; }}
figure {{ display: inline-block; margin: 8px 12px 8px 0; vertical-align: top; }}
img {{ max-width: 560px; border: 1px solid #e3e6eb; }}
figcaption {{ font-size: 12px; color: #555; }}
.key {{ font-size: 15px; }}
</style></head><body>
<h1>Induction heads in a 2-layer attention-only model</h1>
<p class="key">{summary}</p>
<h2>Heads</h2>{table}
<h2>Figures</h2>{figures}
<h2>Viewer</h2>
<p>One held-out input (noise, a segment, the segment again). Pick layer 0 for the
previous-token head, layer 1 for the induction head; hover a token to see where it looks.</p>
{viewer}
</body></html>
"""


def _others(demo: Demo, role: str) -> str:
    layer, head = demo.named[role]
    rest = [h for h in demo.report.heads if h.layer == layer and h.head != head]
    return ", ".join(f"{h.scores.get(role, math.nan):.2f}" for h in rest) or "none"


def summary_lines(demo: Demo) -> list[str]:
    """The findings, one per line (terminal and page)."""
    (pl, ph), (il, ih) = demo.named["previous_token"], demo.named["induction"]
    kept = sum(len(v) for v in demo.keep.values())
    cfg = demo.model.config
    total = cfg.num_layers * cfg.num_heads
    change = 100 * (demo.pruned_loss / demo.base_loss - 1)
    return [
        *_main_lines(demo, pl, ph, il, ih, kept, total, change),
        *_tuned_lines(demo),
    ]


def _main_lines(
    demo: Demo, pl: int, ph: int, il: int, ih: int, kept: int, total: int, change: float
) -> list[str]:
    return [
        f"trained {demo.recipe.steps} steps in {demo.train_seconds:.0f} s; "
        f"phase change (steepest loss drop) at step {demo.phase_step}",
        f"previous-token head: layer {pl} head {ph} "
        f"(score {_score(demo, 'previous_token'):.2f}; the other layer-0 heads: "
        f"{_others(demo, 'previous_token')})",
        f"induction head: layer {il} head {ih} "
        f"(score {_score(demo, 'induction'):.2f}; the other layer-1 heads: "
        f"{_others(demo, 'induction')})",
        f"pruned to {kept} of {total} heads {dict(demo.keep)}: loss on the repeated half "
        f"{demo.base_loss:.3f} -> {demo.pruned_loss:.3f} nats ({change:+.1f} %, "
        f"tolerance {100 * demo.recipe.tolerance:.0f} %)",
        f"the two named heads alone (no retraining): {demo.circuit_loss:.3f} nats "
        f"(a uniform guess: {math.log(demo.recipe.vocab_size):.3f})",
    ]


def _tuned_lines(demo: Demo) -> list[str]:
    if not demo.circuit_tuned:
        return []
    steps, loss = demo.circuit_tuned[-1]
    cfg = demo.model.config
    change = 100 * (loss / demo.base_loss - 1)
    verdict = "within" if loss <= (1 + demo.recipe.tolerance) * demo.base_loss else "outside"
    return [
        f"the two named heads alone, fine-tuned {steps} steps: {loss:.3f} nats "
        f"({change:+.1f} % against all {cfg.num_layers * cfg.num_heads} heads: {verdict} the "
        f"{100 * demo.recipe.tolerance:.0f} % tolerance)"
    ]


def table_text(report: dict[str, Any]) -> str:
    """The head table for the terminal."""
    lines = [
        f"{'layer':>5} {'head':>4} {'prev':>5} {'induct':>6} {'dup':>5} {'import':>6} "
        f"{'kept':>4}  roles"
    ]
    for row in report["heads"]:
        s = {k: row["scores"].get(k, math.nan) for k in SCORES}
        lines.append(
            f"{row['layer']:>5} {row['head']:>4} {s['previous_token']:>5.2f} "
            f"{s['induction']:>6.2f} {s['duplicate_token']:>5.2f} {row['importance']:>6.2f} "
            f"{'yes' if row['kept'] else 'no':>4}  {', '.join(row['roles']) or '-'}"
        )
    return "\n".join(lines)


def write(demo: Demo) -> Path:
    """report.json, the PNGs, viewer.html and report.html in ``demo.out``."""
    report = head_report(demo)
    (demo.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    tokens = example(demo)
    demo.files = figures(demo, report, tokens)
    viewer = viz.Viewer(
        [str(int(t)) for t in tokens],
        capture_weights(demo.model, tokens[None]),
        report=report,
        title="2-layer attention-only model on repeated random tokens",
    )
    demo.files["viewer"] = viewer.save(demo.out / "viewer.html")
    captions = {
        "loss_curve": "Training loss; the dashed line is the phase change",
        "previous_token": "The previous-token head: query i looks at key i-1",
        "induction": "The induction head: in the second copy, query i looks at the token "
        "after the earlier occurrence of token i",
        "attention_grid": "Every head on the same input",
        "head_scores": "Head scores (share of attention on the expected pairs)",
        "importance": "Gradient importance (per layer L2-normalized)",
        "pruning_curve": "Loss on the repeated half as the least important heads go",
    }
    figs = "".join(_img(demo.files[k], v) for k, v in captions.items() if k in demo.files)
    page = _PAGE.format(
        csp=_CSP,
        summary="<br>".join(html.escape(line) for line in summary_lines(demo)),
        table=_table_html(report),
        figures=figs,
        viewer=viewer.iframe(height=860),
    )
    path = demo.out / "report.html"
    path.write_text(page, encoding="utf-8")
    demo.files["report"] = path
    if not all(math.isfinite(v) for v in (demo.base_loss, demo.pruned_loss)):
        raise ValueError("the losses are not finite")
    return path
