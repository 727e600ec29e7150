"""A diverged step (non-finite loss or gradient) stops the run at that step, keeps the last good
checkpoint and never writes non-finite weights; ``skip_nonfinite`` allows skipping a few."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from multihead.checkpoint import load_checkpoint
from multihead.models import DecoderConfig, DecoderLM
from multihead.train import NonFiniteError, TrainConfig, loop, train

MODEL = DecoderConfig(vocab_size=10, max_seq_len=16, d_model=16, num_layers=1, num_heads=2)


def config(**kw) -> TrainConfig:
    base = dict(task="copy", steps=6, batch_size=4, seq_len=9, eval_every=2, eval_tokens=64)
    return TrainConfig(**{**base, "log_every": 1, "save_every": 1, **kw})


def poison(monkeypatch, *steps: int) -> None:
    """The training forward of these (1-based) steps returns NaN logits: a divergence at a
    known step, whatever the machine."""

    class Poisoned(DecoderLM):
        calls = 0

        def forward(self, tokens, **kw):
            out = super().forward(tokens, **kw)
            if self.training:
                type(self).calls += 1
                if type(self).calls in steps:
                    return out * float("nan")
            return out

    monkeypatch.setattr(loop, "DecoderLM", Poisoned)


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def all_finite(out: Path) -> bool:
    weights = load_checkpoint(out).state_dict()
    return all(bool(torch.isfinite(t).all()) for t in weights.values())


def test_a_nonfinite_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch
):
    poison(monkeypatch, 3)
    with pytest.raises(NonFiniteError, match=r"step 3 of 6: the loss is nan") as err:
        train(MODEL, config(), out=tmp_path, progress=False)
    assert "step-00000002" in str(err.value) and "--skip-nonfinite" in str(err.value)
    assert err.value.step == 3
    assert load_checkpoint(tmp_path).step == 2 and all_finite(tmp_path)
    log = records(tmp_path)
    assert max(r["step"] for r in log if r["type"] == "train") == 2
    assert log[-1] == {
        "type": "nonfinite",
        "step": 3,
        "loss": "nan",
        "grad_norm": "nan",
        "action": "stopped",
    }


def test_skip_nonfinite_skips_the_optimizer_step_within_its_budget(tmp_path, monkeypatch):
    poison(monkeypatch, 3)
    result = train(MODEL, config(skip_nonfinite=1), out=tmp_path, progress=False)
    assert len(result["losses"]) == 6 and math.isnan(result["losses"][2])
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 6 and all_finite(tmp_path)
    adam = ckpt.training_state()["optimizer"]["state"]
    assert {int(s["step"]) for s in adam.values()} == {5}  # 6 steps, one of them skipped
    log = records(tmp_path)
    assert {"type": "nonfinite", "step": 3, "loss": "nan", "grad_norm": "nan"}.items() <= next(
        r for r in log if r["type"] == "nonfinite"
    ).items()
    assert next(r for r in log if r["type"] == "train" and r["step"] == 3)["loss"] is None


def test_more_bad_steps_than_allowed_stop_the_run(tmp_path, monkeypatch):
    poison(monkeypatch, 2, 4)
    with pytest.raises(NonFiniteError, match=r"step 4 of 6.*2 non-finite steps.*allows 1"):
        train(MODEL, config(skip_nonfinite=1), out=tmp_path, progress=False)
    assert load_checkpoint(tmp_path).step == 3


def test_nonfinite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """An optimizer step can turn finite gradients into infinite weights (a huge finite lr):
    the checkpoint of that step is refused, the previous one stays."""
    real = loop.train_step

    def overflowing(run, step):
        out = real(run, step)
        if step + 1 == 4:
            with torch.no_grad():
                run.model.head.weight.fill_(float("inf"))
        return out

    monkeypatch.setattr(loop, "train_step", overflowing)
    with pytest.raises(NonFiniteError, match=r"step 4 of 6: the weights are not finite"):
        train(MODEL, config(), out=tmp_path, progress=False)
    assert load_checkpoint(tmp_path).step == 3 and all_finite(tmp_path)
    assert all(r["step"] <= 3 for r in records(tmp_path) if r["type"] == "eval")


def test_a_huge_learning_rate_stops_instead_of_reporting_nan(tmp_path):
    with pytest.raises(NonFiniteError, match=r"step \d+ of 20: the (loss|weights)"):
        train(MODEL, config(steps=20, lr=1e30, warmup_steps=0), out=tmp_path, progress=False)
    for step_dir in tmp_path.glob("step-*"):
        assert all_finite(step_dir)
    assert all(math.isfinite(r.get("val_loss", 0.0)) for r in records(tmp_path))


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from multihead.models import DecoderConfig, DecoderLM
    from multihead.train import NonFiniteError, TrainConfig, loop, train

    class Poisoned(DecoderLM):  # only rank 1 diverges, at step 3
        calls = 0

        def forward(self, tokens, **kw):
            out = super().forward(tokens, **kw)
            if self.training and os.environ["RANK"] == "1":
                type(self).calls += 1
                if type(self).calls == 3:
                    return out * float("nan")
            return out

    loop.DecoderLM = Poisoned
    model = DecoderConfig(vocab_size=10, max_seq_len=16, d_model=16, num_layers=1, num_heads=2)
    cfg = TrainConfig(task="copy", steps=6, batch_size=4, seq_len=9, eval_every=2,
                      eval_tokens=64, save_every=1, log_every=1)
    try:
        train(model, cfg, out=sys.argv[1], progress=False)
    except NonFiniteError as err:
        print(f"rank {os.environ['RANK']} stopped: {err}", flush=True)
        sys.exit(3)
    """
)


def test_ddp_every_process_stops_at_the_same_step(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for _ in range(2):  # a second try only when another job took the rendezvous port
        run = subprocess.run(
            [*cmd, str(script), str(tmp_path / "ddp")],
            env=env,
            timeout=120,
            capture_output=True,
            text=True,
        )
        log = run.stdout[-3000:] + "\n" + run.stderr[-3000:]
        if not any(s in log.lower() for s in ("address already in use", "eaddrinuse")):
            break
    assert run.returncode != 0
    for rank in (0, 1):  # both stopped by themselves, neither waited to be killed
        assert f"rank {rank} stopped: training diverged at step 3 of 6" in run.stdout, log
    assert load_checkpoint(tmp_path / "ddp").step == 2
