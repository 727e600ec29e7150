"""``multihead view``'s page in a real browser (offline Chromium, conftest.py): a byte-level
checkpoint's viewer shows its characters, reacts to a head click, sorts its report, requests
nothing from the network and logs no error; the screenshot is not blank."""

from __future__ import annotations

import json

import torch

from multihead.checkpoint import save_checkpoint
from multihead.cli import main
from multihead.models import DecoderConfig, DecoderLM
from tests.viz.test_viewer_browser import LINES, _assert_not_blank, _column, _ready


def test_multihead_view_page_in_a_browser(tmp_path, open_viewer, screenshot_dir):
    torch.manual_seed(0)
    model = DecoderLM(DecoderConfig(vocab_size=256, d_model=32, num_layers=2, num_heads=4))
    ckpt = tmp_path / "ckpt"
    save_checkpoint(
        ckpt,
        model=model,
        kind="decoder_lm",
        config=model.config.to_dict(),
        step=1,
        meta={"task": "text"},
    )
    heads = [
        {
            "layer": layer,
            "head": head,
            "kv_head": head,
            "roles": [],
            "scores": {},
            "importance": (3 * layer + 5 * head) % 7 / 7,
        }
        for layer in range(2)
        for head in range(4)
    ]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"model": {}, "heads": heads}))
    out = tmp_path / "view.html"
    assert (
        main(
            [
                "view",
                "--checkpoint",
                str(ckpt),
                "--text",
                "a cat, a hat",
                "--out",
                str(out),
                "--report",
                str(report),
                "--title",
                "byte model",
            ]
        )
        == 0
    )
    opened = open_viewer(out)
    page = _ready(opened)
    assert page.title() == "byte model"
    labels = page.eval_on_selector_all(
        "#mh-left .tok", "nodes => nodes.map(n => n.lastChild.textContent)"
    )
    assert labels == ["a", "␣", "c", "a", "t", ",", "␣", "a", "␣", "h", "a", "t"]
    before = page.evaluate(LINES)
    page.locator("#mh-chips .chip").nth(2).dblclick()
    assert page.locator("#mh-chips .chip.on").count() == 1
    assert page.evaluate(LINES) != before
    page.screenshot(path=screenshot_dir / "multihead_view.png")
    _assert_not_blank((screenshot_dir / "multihead_view.png").read_bytes())
    page.click("#mh-tab-report")
    column = len(page.locator("#mh-report th").all()) - 1
    page.click("#mh-report th[data-key='importance']")
    values = [float(v) for v in _column(page, column)]
    assert values == sorted(values) and len(values) == 8
    opened.assert_clean()
