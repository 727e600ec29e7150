"""report.html in a real browser (offline Chromium, tests/viz/conftest.py): no network
request and no console error; the viewer inside it becomes interactive and its model view
opens a head; the screenshot is not blank."""

from __future__ import annotations

import json

import pytest

from tests.viz.test_viewer_browser import _assert_not_blank, open_tab


@pytest.mark.slow
def test_report_page_and_its_viewer_work_offline(small_run, open_viewer, screenshot_dir):
    out, _, code = small_run
    assert code == 0
    opened = open_viewer(out / "report.html")
    page = opened.page
    assert page.title() == "multihead demo: induction heads"
    rows = len(json.loads((out / "report.json").read_text())["heads"])
    assert rows == 8 and page.locator("table tbody tr").count() == rows  # 2 layers x 4 heads
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    viewer = page.frame_locator("iframe")
    viewer.locator("body[data-ready=true]").wait_for(timeout=20_000)
    open_tab(viewer, "model")
    viewer.locator("#mh-grid .cell[data-layer='1'][data-head='0']").click()
    assert viewer.locator("#mh-focus").inner_text().startswith("Layer 1, head 0")
    page.screenshot(path=screenshot_dir / "demo_report.png", full_page=True)
    _assert_not_blank((screenshot_dir / "demo_report.png").read_bytes())
    opened.assert_clean()
