"""The whole demo at the small size: it trains, finds the induction circuit (a previous-token
head in layer 0, an induction head in layer 1), prunes the rest with the loss held, writes
the report; and a failing step is one line and exit code 1."""

from __future__ import annotations

import json
import re

import pytest

from multihead.models import DecoderLM
from multihead_apps.demo import heads
from multihead_apps.demo.cli import main
from multihead_apps.demo.recipe import SMALL, TASK


@pytest.mark.slow
def test_the_small_pipeline_finds_keeps_and_reports_the_circuit(small_run):
    out, stdout, code = small_run
    assert code == 0, stdout
    report = json.loads((out / "report.json").read_text())
    rows = {(r["layer"], r["head"]): r for r in report["heads"]}
    prev = [k for k, r in rows.items() if "previous_token" in r["roles"]]
    induction = [k for k, r in rows.items() if "induction" in r["roles"]]
    assert prev and all(layer == 0 for layer, _ in prev)
    assert induction and all(layer == 1 for layer, _ in induction)
    assert set(report["heads"][0]) >= {"layer", "head", "kv_head", "roles", "scores", "importance"}
    # The pruned checkpoint reloads, keeps the named heads and holds the loss.
    pruned = DecoderLM.from_checkpoint(out / "pruned")
    kept = {(layer, h) for layer, ids in enumerate(pruned.config.layer_heads) for h in ids}
    assert kept == {k for k, r in rows.items() if r["kept"]}
    batches = heads.task_batches(
        TASK,
        vocab_size=SMALL.vocab_size,
        seq_len=SMALL.seq_len,
        batch_size=SMALL.batch_size,
        count=SMALL.eval_batches,
        seed=SMALL.seed,
    )
    full = DecoderLM.from_checkpoint(out / "model")
    base = heads.repeated_half_loss(full, batches)
    assert heads.repeated_half_loss(pruned, batches) <= (1 + SMALL.tolerance) * base
    for name in (
        "loss_curve",
        "head_scores",
        "importance",
        "pruning_curve",
        "attention_grid",
        "previous_token_head",
        "induction_head",
    ):
        assert (out / f"{name}.png").stat().st_size > 5000, name
    page = (out / "report.html").read_text()
    assert "<iframe srcdoc=" in page and "data:image/png;base64," in page
    assert "://" not in re.sub(r"srcdoc=\"[^\"]*\"", "", page)
    # The terminal: the table, the findings and where the report is.
    assert "previous-token head: layer 0 head" in stdout
    assert "induction head: layer 1 head" in stdout
    assert re.search(r"phase change \(steepest loss drop\) at step \d+", stdout)
    assert stdout.strip().endswith(f"report: {out / 'report.html'}")
    # Fine-tuning the named pair alone lowers its loss (the others' share is taken over).
    alone = float(re.search(r"named heads alone \(no retraining\): ([\d.]+)", stdout)[1])
    tuned = re.search(rf"alone, fine-tuned {SMALL.tune_steps} steps: ([\d.]+) nats", stdout)
    assert tuned and float(tuned[1]) < alone


def test_a_failing_step_is_one_line_naming_it(tmp_path, capsys):
    code = main(["--size", "small", "--steps", "2", "--out", str(tmp_path), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("multihead demo: error: step 'train' failed:")
    assert "no induction phase change" in err[0] and "Traceback" not in err[0]


def test_bad_flags(capsys):
    assert main(["--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
    assert main(["--steps", "1"]) == 2
    assert "steps must be an integer >= 2, got 1" in capsys.readouterr().err
