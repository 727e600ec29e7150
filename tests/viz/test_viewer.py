"""The viewer page without a browser: self-contained (no URL, no external resource, a
no-network Content-Security-Policy), the embedded data decodes to the encoding, hostile
tokens cannot break out of the page, bad arguments get clear errors. The browser tests are
in test_viewer_browser.py."""

from __future__ import annotations

import base64
import html
import json
import re

import pytest
import torch

from multihead.viz import Viewer, render_viewer
from multihead.viz.encoding import encode_attention
from multihead.viz.tokens import readable_tokens
from tests.viz.data import bidirectional_softmax, causal_softmax, toy_decoder


def _block(page: str, block_id: str) -> str:
    match = re.search(rf'<script type="[^"]+" id="{block_id}">(.*?)</script>', page, re.S)
    assert match, block_id
    return match.group(1)


def test_the_page_is_self_contained():
    tokens, weights, report = toy_decoder()
    page = render_viewer(tokens, weights, report=report)
    for outside in ("src=", "href=", "url(", "@import", "://", "<link", "<iframe", "import("):
        assert outside not in page, outside
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in page
    assert page.count("<script") == 7  # the start mark, the data blocks and the app


def test_embedded_data_decodes_to_the_encoding():
    tokens, weights, report = toy_decoder()
    page = render_viewer(tokens, weights, report=report, top_k=4)
    enc = encode_attention(weights, top_k=4)
    for block_id, data in (
        ("mh-index", enc.index),
        ("mh-weight", enc.weight),
        ("mh-rest", enc.rest),
        ("mh-thumbs", enc.thumbs),
    ):
        assert base64.b64decode(_block(page, block_id)) == data
    meta = json.loads(_block(page, "mh-meta"))
    assert meta["enc"] == enc.meta()
    assert meta["tokens"]["q"] == readable_tokens(tokens).labels
    assert meta["tokens"]["k"] is None  # self-attention: the keys are the queries
    assert meta["layers"] == [{"ids": [0, 1, 2, 3]}] * 3
    assert meta["report"]["scores"] == ["entropy", "previous_token"]
    assert [(h["layer"], h["head"]) for h in meta["report"]["heads"]] == [
        (h["layer"], h["head"]) for h in report["heads"]
    ]


def test_hostile_tokens_and_titles_stay_text():
    evil = ["</script><script>alert(1)</script>", "<b>&amp;", "\u2028"]
    page = render_viewer(evil, [causal_softmax(1, 3, seed=0)], title="<i>x</i></title>")
    assert page.count("<script") == 7 and "alert(1)</script>" not in page
    assert "<title>&lt;i&gt;x&lt;/i&gt;&lt;/title&gt;</title>" in page
    meta = json.loads(_block(page, "mh-meta"))
    assert meta["tokens"]["qt"][0] == repr(evil[0])


def test_report_is_cleaned_for_the_page():
    report = {
        "model": {"name": "m"},
        "heads": [
            {"layer": 0, "head": 1, "roles": ["sink"], "scores": {"a": float("nan")}},
            {"layer": 0, "head": 0, "kv_head": 0, "scores": {"b": 2}, "importance": 0.5},
        ],
    }
    page = render_viewer(["a", "b"], [causal_softmax(2, 2, seed=0)], report=report)
    heads = json.loads(_block(page, "mh-meta"))["report"]["heads"]
    assert heads[0] == {
        "layer": 0,
        "head": 1,
        "kv_head": None,
        "roles": ["sink"],
        "scores": {"a": None},  # NaN is not JSON
        "importance": None,
    }
    assert heads[1]["scores"] == {"b": 2.0} and heads[1]["importance"] == 0.5
    assert "name <code>m</code>" in page


def test_summary_names_the_kind_of_attention():
    causal = render_viewer(list("abc"), [causal_softmax(2, 3, seed=0)])
    assert "causal (decoder)" in causal and "<b>2</b> heads each" in causal
    both = render_viewer(list("abc"), [bidirectional_softmax(2, 3, 3, seed=0)] * 2)
    assert "bidirectional (encoder)" in both and "<b>2</b> layers" in both
    cross = render_viewer(["q"], [bidirectional_softmax(2, 1, 3, seed=0)], key_tokens=list("abc"))
    assert "cross-attention" in cross
    pruned = render_viewer(
        list("ab"),
        [causal_softmax(3, 2, seed=0), causal_softmax(1, 2, seed=1)],
        head_ids=[[0, 1, 2], [2]],
    )
    assert "heads per layer <b>3, 1</b>" in pruned
    assert json.loads(_block(pruned, "mh-meta"))["layers"] == [{"ids": [0, 1, 2]}, {"ids": [2]}]


def test_footer_states_what_the_encoding_lost():
    full = render_viewer(list("abc"), [causal_softmax(1, 3, seed=0)])
    assert "every weight is kept" in full
    part = render_viewer(list("abcdefghij"), [causal_softmax(1, 10, seed=0)], top_k=3)
    assert "the 3 largest of the 10 weights of every query are kept" in part


def test_viewer_saves_and_displays_in_jupyter(tmp_path):
    viewer = Viewer(["x", "y"], [causal_softmax(1, 2, seed=0)], title="j")
    path = viewer.save(tmp_path / "deep" / "v.html")
    assert path.read_text(encoding="utf-8") == viewer.html
    frame = viewer._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in frame
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame).group(1)
    assert html.unescape(srcdoc) == viewer.html
    assert render_viewer(["x", "y"], [causal_softmax(1, 2, seed=0)], title="j") == viewer.html


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tokens": ["a"]}, ValueError, "tokens has 1 tokens but weights have Tq=3"),
        ({"weights": [bidirectional_softmax(1, 2, 3, seed=0)]}, ValueError, "pass key_tokens"),
        (
            {"weights": [bidirectional_softmax(1, 3, 4, seed=0)], "key_tokens": ["a"]},
            ValueError,
            "key_tokens has 1 tokens but weights have Tk=4",
        ),
        ({"head_ids": [[0, 1], [0]]}, ValueError, "head ids of each of the 1 layers"),
        ({"head_ids": [[0, 0]]}, ValueError, r"head_ids\[0\] must be 2 distinct integers"),
        ({"title": 3}, TypeError, "title must be a str"),
        ({"report": [1]}, TypeError, "report must be a mapping"),
        ({"report": {"heads": [{"head": 0}]}}, ValueError, "integer 'layer'"),
        (
            {"report": {"heads": [{"layer": 0, "head": 0, "roles": "sink"}]}},
            TypeError,
            "list of strings",
        ),
        (
            {"report": {"heads": [{"layer": 0, "head": 0, "scores": {"a": "x"}}]}},
            TypeError,
            "must be a number",
        ),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    args = {"tokens": ["a", "b", "c"], "weights": [causal_softmax(2, 3, seed=0)]}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        render_viewer(args.pop("tokens"), args.pop("weights"), **args)


def test_weights_from_a_recorded_batch_of_one():
    w = causal_softmax(2, 3, seed=0)
    assert render_viewer(list("abc"), [w[None]]) == render_viewer(list("abc"), [w])
    assert torch.equal(w, causal_softmax(2, 3, seed=0))
