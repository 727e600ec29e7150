"""The viewer in a real browser (Chromium through Playwright, no network; see conftest.py):
the views react to clicks and hovers as they should, the report sorts, nothing is requested
from the network, nothing logs an error, and a 512-token 12 x 12 page stays small and fast.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from multihead.viz import Viewer
from tests.viz.data import bidirectional_softmax, causal_softmax, previous_token, toy_decoder

LINES = "document.getElementById('mh-lines').toDataURL()"


def _ready(opened):
    opened.page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    return opened.page


def open_tab(frame, name: str) -> None:
    """Click the viewer's ``name`` tab in ``frame`` (a page or frame locator) and wait until
    it shows. Under a loaded CI machine a click on a page inside an iframe once landed
    beside the tab (the frame's layout moved after Playwright's stability check), so a tab
    that did not open in 5 s is clicked once more before failing."""
    shown = frame.locator(f"body[data-tab={name}]")
    frame.locator(f"#mh-tab-{name}").click()
    try:
        shown.wait_for(timeout=5_000)
    except Exception:  # playwright's TimeoutError: click again, then wait for real
        frame.locator(f"#mh-tab-{name}").click()
        shown.wait_for(timeout=20_000)


def _assert_not_blank(png: bytes) -> None:
    """Not one colour: many distinct colours and a clear pixel spread."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    distinct = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert pixels.std() > 10.0 and distinct > 50, (pixels.std(), distinct)


def _column(page, n: int) -> list[str]:
    return page.eval_on_selector_all(
        "#mh-report tbody tr", f"rows => rows.map(r => r.children[{n}].textContent)"
    )


def test_head_view_model_view_and_report(tmp_path, open_viewer, screenshot_dir):
    tokens, weights, report = toy_decoder()
    path = Viewer(tokens, weights, report=report, title="Toy decoder").save(tmp_path / "v.html")
    opened = open_viewer(path)
    page = _ready(opened)
    assert page.title() == "Toy decoder"
    assert "causal (decoder)" in page.inner_text("header")

    # Clicking a head changes the view: double-click solos head 1 (the previous-token head).
    chips = page.locator("#mh-chips .chip")
    assert chips.count() == 4 and page.locator("#mh-chips .chip.on").count() == 4
    before = page.evaluate(LINES)
    chips.nth(1).dblclick()
    assert page.locator("#mh-chips .chip.on").count() == 1
    assert chips.nth(1).get_attribute("aria-pressed") == "true"
    assert page.evaluate(LINES) != before
    assert "Layer 0, head 1" in page.inner_text("#mh-focus")

    # Hover query 5: its one key (4) lights up, a future key does not, the details say so.
    page.hover("#mh-left .tok[data-index='5']")
    assert page.evaluate("document.body.dataset.active") == "q5"
    style = "(i) => document.querySelector(`#mh-right .tok[data-index='${i}']`).style.background"
    assert page.evaluate(style, 4) != "" and page.evaluate(style, 6) == ""
    assert page.evaluate(style, 3) == ""
    detail = page.inner_text("#mh-detail")
    assert "Query #5" in detail and "#4 1.00" in detail
    # ... and hovering key 4 on the right shows query 5 as the one attending to it.
    page.hover("#mh-right .tok[data-index='4']")
    assert page.evaluate("document.body.dataset.active") == "k4"
    assert "#5 1.00" in page.inner_text("#mh-detail")
    page.screenshot(path=screenshot_dir / "head_view.png")
    _assert_not_blank((screenshot_dir / "head_view.png").read_bytes())

    # Model view: a grid of 3 x 4 thumbnails; clicking one opens it in the head view.
    page.click("#mh-tab-model")
    assert page.locator("#mh-grid .cell").count() == 12
    page.screenshot(path=screenshot_dir / "model_view.png")
    _assert_not_blank((screenshot_dir / "model_view.png").read_bytes())
    page.click("#mh-grid .cell[data-layer='2'][data-head='3']")
    assert page.is_visible("#mh-head-view") and not page.is_visible("#mh-model-view")
    assert page.input_value("#mh-layer") == "2"
    assert page.locator("#mh-chips .chip.on").all_inner_texts() == ["H3"]
    assert "Layer 2, head 3" in page.inner_text("#mh-focus")

    # Report: sorting by importance orders the rows, again reverses them.
    page.click("#mh-tab-report")
    importance = len(page.locator("#mh-report th").all()) - 1
    page.click("#mh-report th[data-key='importance']")
    ascending = [float(v) for v in _column(page, importance)]
    assert ascending == sorted(ascending) and ascending != [
        h["importance"] for h in report["heads"]
    ]
    page.click("#mh-report th[data-key='importance']")
    descending = [float(v) for v in _column(page, importance)]
    assert descending == sorted(ascending, reverse=True)
    assert page.get_attribute("#mh-report th[data-key='importance']", "aria-sort") == "descending"
    page.screenshot(path=screenshot_dir / "report.png")
    _assert_not_blank((screenshot_dir / "report.png").read_bytes())

    # Clicking the first row (the most important head) opens that head.
    top = max(report["heads"], key=lambda h: h["importance"])
    page.click("#mh-report tbody tr >> nth=0")
    assert page.is_visible("#mh-head-view")
    assert page.input_value("#mh-layer") == str(top["layer"])
    assert page.locator("#mh-chips .chip.on").all_inner_texts() == [f"H{top['head']}"]
    opened.assert_clean()


def test_encoder_bytes_and_pruned_layers(tmp_path, open_viewer, screenshot_dir):
    """A bidirectional byte-level input with layers of 3, 2 (heads 0 and 3 kept) and 0
    heads."""
    text = "a b\ncé\x01"
    data = text.encode()
    t = len(data)
    weights = [
        bidirectional_softmax(3, t, t, seed=1),
        bidirectional_softmax(2, t, t, seed=2),
        torch.zeros(0, t, t),
    ]
    path = Viewer(data, weights, head_ids=[[0, 1, 2], [0, 3], []]).save(tmp_path / "enc.html")
    page = _ready(open_viewer(path))
    page.select_option("#mh-layer", "2")  # a layer pruned to nothing
    assert page.locator("#mh-chips .chip").count() == 0
    assert "No head shown" in page.inner_text("#mh-focus")
    page.select_option("#mh-layer", "0")
    assert "bidirectional (encoder)" in page.inner_text("header")
    labels = page.eval_on_selector_all(
        "#mh-left .tok", "nodes => nodes.map(n => n.lastChild.textContent)"
    )
    assert labels == ["a", "␣", "b", "↵", "c", "é", "·", "\\x01"]
    page.click("#mh-tab-model")
    assert page.locator("#mh-grid .cell").count() == 5
    page.click("#mh-grid .cell[data-layer='1'][data-head='3']")
    assert page.input_value("#mh-layer") == "1"
    assert page.locator("#mh-chips .chip.on").all_inner_texts() == ["H3"]
    page.screenshot(path=screenshot_dir / "encoder_bytes.png")
    _assert_not_blank((screenshot_dir / "encoder_bytes.png").read_bytes())


def test_cross_attention_labels_both_sides(tmp_path, open_viewer):
    weights = [bidirectional_softmax(2, 3, 5, seed=3)]
    path = Viewer(["x", "y", "z"], weights, key_tokens=list("abcde")).save(tmp_path / "c.html")
    page = _ready(open_viewer(path))
    assert page.locator("#mh-left .tok").count() == 3
    assert page.locator("#mh-right .tok").count() == 5
    assert "cross-attention" in page.inner_text("header")
    page.hover("#mh-right .tok[data-index='4']")
    assert page.evaluate("document.body.dataset.active") == "k4"


def test_jupyter_display_runs_sandboxed_in_an_iframe(tmp_path, open_viewer):
    """What a notebook does with _repr_html_: the page inside <iframe srcdoc sandbox>."""
    tokens, weights, report = toy_decoder()
    notebook = tmp_path / "notebook.html"
    frame = Viewer(tokens, weights, report=report)._repr_html_()
    notebook.write_text(f"<!DOCTYPE html><html><body><h1>cell</h1>{frame}</body></html>")
    opened = open_viewer(notebook)
    inner = opened.page.frame_locator("iframe")
    inner.locator("body[data-ready=true]").wait_for(timeout=20_000)
    open_tab(inner, "model")
    inner.locator("#mh-grid .cell[data-layer='1'][data-head='2']").click()
    assert inner.locator("#mh-focus").inner_text().startswith("Layer 1, head 2")
    opened.assert_clean()


def test_the_guard_catches_network_requests(tmp_path, open_viewer):
    """The harness itself: a page that asks for anything is reported (so a clean viewer
    run means something)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="http://example.invalid/x.png"><script>nope()</script>')
    opened = open_viewer(bad)
    opened.page.wait_for_timeout(300)
    problems = "\n".join(opened.problems)
    assert "network request: http://example.invalid/x.png" in problems
    assert "page error" in problems
    opened.problems.clear()  # expected: do not fail this test at teardown


@pytest.mark.slow
def test_512_tokens_12_layers_12_heads_small_and_fast(tmp_path, open_viewer, record_property):
    t, layers, heads = 512, 12, 12
    weights = []
    for layer in range(layers):
        w = causal_softmax(heads, t, seed=layer, sharp=3.0)
        w[0] = previous_token(t)
        weights.append(w)
    tokens = (b"The quick brown fox jumps over the lazy dog.\n" * 12)[:t]
    start = time.perf_counter()
    viewer = Viewer(tokens, weights, title="512 tokens, 12 x 12")
    render_s = time.perf_counter() - start
    path = viewer.save(tmp_path / "big.html")
    size_mb = path.stat().st_size / 1e6
    start = time.perf_counter()
    opened = open_viewer(path)
    page = _ready(opened)
    wall_s = time.perf_counter() - start
    interactive_s = (
        page.evaluate("performance.getEntriesByName('mh-interactive')[0].startTime") / 1e3
    )
    # The page must also respond: hovering a late query redraws within a frame or two.
    page.evaluate("document.getElementById('mh-scroll').scrollTop = 400 * 20")
    page.hover("#mh-left .tok[data-index='405']")
    assert page.evaluate("document.body.dataset.active") == "q405"
    record_property("viewer_512x12x12_mb", round(size_mb, 2))
    record_property("viewer_512x12x12_interactive_s", round(interactive_s, 3))
    print(
        f"\n512 tokens x 12 layers x 12 heads: top_k={viewer.encoding.top_k}, "
        f"{size_mb:.2f} MB, render {render_s:.2f} s, interactive {interactive_s:.2f} s "
        f"(performance mark; {wall_s:.2f} s wall clock from goto to ready)"
    )
    assert size_mb < 10.0
    assert interactive_s < 3.0
    assert torch.equal(weights[0][0], previous_token(t))  # the input was not modified
