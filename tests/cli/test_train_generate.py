"""The stable CLI surface: ``multihead train`` and ``multihead generate``."""

import json

import pytest

from multihead.checkpoint import load_checkpoint
from multihead.cli import main

TINY = ["--preset", "tiny", "--quiet", "--d-model", "32", "--eval-tokens", "256"]


@pytest.fixture
def corpus(tmp_path):
    f = tmp_path / "code.py"
    f.write_text("def add(a, b):\n    return a + b\n\n" * 300)
    return str(f)


def test_train_then_generate_text(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "4", "--out", str(out), "--data", corpus]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.step == 4 and ckpt.config["model"]["d_model"] == 32
    assert ckpt.config["train"]["data"] == corpus
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert {"train", "eval"} <= {r["type"] for r in records}
    capsys.readouterr()
    args = ["generate", "--checkpoint", str(out), "--prompt", "def ", "--max-new-tokens", "5"]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("def ")


def test_resume_from_the_command_line(tmp_path, corpus):
    out = tmp_path / "run"
    main(["train", *TINY, "--steps", "2", "--out", str(out), "--data", corpus])
    assert main(["train", "--resume", str(out), "--steps", "3", "--quiet"]) == 0
    assert load_checkpoint(out).step == 3


def test_resume_into_a_different_config_is_a_clear_error(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    main(["train", *TINY, "--steps", "2", "--out", str(out), "--data", corpus])
    assert main(["train", "--resume", str(out), "--num-layers", "3", "--quiet"]) == 2
    assert "--num-layers 3 (the checkpoint has 2)" in capsys.readouterr().err


def test_synthetic_task_prompt_is_token_ids(tmp_path, capsys):
    out = tmp_path / "copy"
    args = ["train", *TINY, "--steps", "2", "--out", str(out), "--task", "copy", "--seq-len", "9"]
    assert main(args) == 0
    capsys.readouterr()
    gen = ["generate", "--checkpoint", str(out), "--max-new-tokens", "3", "--temperature", "0"]
    assert main([*gen, "--prompt", "1 2 3 255"]) == 0
    assert len(capsys.readouterr().out.split()) == 7
    assert main([*gen, "--prompt", "not ids"]) == 2
    assert "space-separated token ids" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-heads", "3"], "num_heads=3 does not divide d_model=32"),
        (["--window", "0"], "window must be a positive integer"),
        (["--data", "/no/such/corpus"], "does not exist"),
    ],
)
def test_bad_training_input(tmp_path, capsys, args, message):
    argv = ["train", *TINY, "--steps", "1", "--out", str(tmp_path / "o"), *args]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_out_is_required(capsys):
    assert main(["train", *TINY, "--steps", "1"]) == 2
    assert "--out is required" in capsys.readouterr().err


def test_generate_from_a_missing_checkpoint(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path), "--prompt", "x"]) == 2
    assert "LATEST" in capsys.readouterr().err
