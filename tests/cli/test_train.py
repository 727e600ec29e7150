"""``multihead train``: what a resumed run takes from the checkpoint, what it refuses, and the
errors and exit codes of runs that cannot or did not train."""

import json

import pytest

from multihead.checkpoint import load_checkpoint
from multihead.cli import main
from multihead.models import DecoderLM
from multihead.train import loop

COPY = ["--quiet", "--task", "copy", "--seq-len", "9", "--d-model", "32", "--eval-tokens", "64"]


@pytest.fixture
def run(tmp_path):
    """A finished 4-step copy-task run trained from the command line."""
    out = tmp_path / "run"
    assert main(["train", *COPY, "--steps", "4", "--out", str(out)]) == 0
    return out


def test_resume_takes_the_checkpoints_configs_and_refuses_a_preset(run, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--preset", "tiny", "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "--preset tiny cannot be combined with --resume" in err
    assert main(["train", "--resume", str(run), "--steps", "5", "--quiet"]) == 0
    ckpt = load_checkpoint(run)
    assert ckpt.step == 5 and ckpt.config["model"]["d_model"] == 32
    assert ckpt.config["train"]["task"] == "copy"


def test_a_conflicting_flag_when_resuming_is_named_with_both_values(run, capsys):
    capsys.readouterr()
    argv = ["train", "--resume", str(run), "--steps", "6", "--lr", "0.5", "--num-kv-heads", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--lr 0.5 (the checkpoint has 0.003)" in err
    assert "--num-kv-heads 2 (the checkpoint has none)" in err
    assert "--steps" not in err.split("computes:")[1]  # steps may change
    # Flags that repeat the checkpoint's values, or are resumable, are fine.
    same = ["--lr", "0.003", "--d-model", "32", "--eval-every", "3", "--skip-nonfinite", "1"]
    assert main(["train", "--resume", str(run), "--steps", "5", *same]) == 0


def test_resuming_a_finished_run_says_so_and_keeps_the_log(run, capsys):
    log = (run / "log.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is at step 4, past steps=2, nothing to train" in err and "--allow-finished" in err
    argv = ["train", "--resume", str(run), "--steps", "4", "--quiet", "--allow-finished"]
    assert main(argv) == 0
    assert "nothing to train" in capsys.readouterr().err
    assert (run / "log.jsonl").read_bytes() == log
    assert load_checkpoint(run).step == 4


def test_a_task_with_nothing_to_score_is_refused(tmp_path, capsys):
    argv = ["train", "--quiet", "--task", "induction", "--seq-len", "3", "--steps", "1"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "seq_len=3 has nothing to score" in err and "at least 4" in err
    assert not (tmp_path / "o" / "log.jsonl").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--lr", "nan"], "(from --lr nan)"),
        (["--lr", "inf"], "(from --lr inf)"),
        (["--min-lr", "1.0"], "(from --min-lr 1.0)"),
        (["--beta2", "1"], "(from --beta2 1.0)"),
    ],
)
def test_a_bad_value_names_its_flag(tmp_path, capsys, flags, named):
    assert main(["train", *COPY, "--steps", "1", "--out", str(tmp_path), *flags]) == 2
    assert named in capsys.readouterr().err


def test_divergence_exits_nonzero_naming_the_step(tmp_path, capsys, monkeypatch):
    class Poisoned(DecoderLM):  # the training forward of step 3 returns NaN logits
        calls = 0

        def forward(self, tokens, **kw):
            out = super().forward(tokens, **kw)
            if self.training:
                type(self).calls += 1
                if type(self).calls == 3:
                    return out * float("nan")
            return out

    monkeypatch.setattr(loop, "DecoderLM", Poisoned)
    out = tmp_path / "run"
    argv = ["train", *COPY, "--steps", "5", "--save-every", "2", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: training diverged at step 3 of 5: the loss is nan" in err
    assert load_checkpoint(out).step == 2
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["type"] == "nonfinite" and records[-1]["action"] == "stopped"


def test_a_huge_learning_rate_exits_nonzero(tmp_path, capsys):
    argv = ["train", *COPY, "--steps", "20", "--lr", "1e30", "--warmup-steps", "0"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 1
    assert "training diverged at step" in capsys.readouterr().err


def test_an_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "notes").write_text("x")
    assert main(["train", *COPY, "--steps", "1", "--out", str(tmp_path / "notes")]) == 2
    assert "is an existing file, not a directory" in capsys.readouterr().err


def test_a_fresh_run_never_writes_over_another_run(run, capsys):
    log = (run / "log.jsonl").read_bytes()
    before = load_checkpoint(run).step
    capsys.readouterr()
    assert main(["train", *COPY, "--steps", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"output directory {str(run)!r} already holds a run (LATEST, log.jsonl)" in err
    assert f"--resume {run}" in err
    assert (run / "log.jsonl").read_bytes() == log
    assert load_checkpoint(run).step == before
