"""The training loop: exact resume, DDP (2 processes, gloo) == one process, checkpoint round
trip, the time limit, and the errors for broken checkpoints and mismatched configs."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from multihead.checkpoint import CONFIG, WEIGHTS, load_checkpoint, write_manifest
from multihead.data import stdlib_sources
from multihead.models import DecoderConfig, DecoderLM
from multihead.train import TrainConfig, lr_at, train

MODEL = DecoderConfig(vocab_size=256, max_seq_len=32, d_model=32, num_layers=2, num_heads=4)


def corpus_file(tmp_path: Path) -> str:
    f = tmp_path / "corpus.py"
    f.write_bytes(b"".join(p.read_bytes() for p in stdlib_sources()[:3]))
    return str(f)


def losses(out: Path) -> dict[int, float]:
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["type"] == "train"}


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_continues_the_same_loss_sequence(tmp_path, optimizer):
    model = DecoderConfig(**{**MODEL.to_dict(), "dropout": 0.1})  # RNG state matters too
    cfg = TrainConfig(
        optimizer=optimizer,
        data=corpus_file(tmp_path),
        steps=6,
        batch_size=4,
        seq_len=32,
        warmup_steps=2,
        eval_every=3,
        eval_tokens=512,
        log_every=1,
        save_every=3,
        val_fraction=0.1,
    )
    full = train(model, cfg, out=tmp_path / "a", progress=False)
    resumed = train(
        model, cfg, out=tmp_path / "b", resume=tmp_path / "a" / "step-00000003", progress=False
    )
    assert len(full["losses"]) == 6 and len(resumed["losses"]) == 3
    assert resumed["losses"] == full["losses"][3:]  # bit for bit
    assert resumed["evals"][-1]["val_loss"] == full["evals"][-1]["val_loss"]
    # Resuming into the run's own directory drops the log records past the checkpoint.
    train(model, cfg, out=tmp_path / "a", resume=tmp_path / "a" / "step-00000003", progress=False)
    assert list(losses(tmp_path / "a")) == [1, 2, 3, 4, 5, 6]


def test_resume_into_a_different_config_names_the_fields(tmp_path):
    cfg = TrainConfig(task="copy", steps=2, batch_size=4, seq_len=9, eval_every=2, eval_tokens=64)
    small = DecoderConfig(vocab_size=10, max_seq_len=16, d_model=16, num_layers=1, num_heads=2)
    train(small, cfg, out=tmp_path, progress=False)
    wider = DecoderConfig(**{**small.to_dict(), "d_model": 32})
    with pytest.raises(ValueError, match=r"different config.*d_model: 16 != 32"):
        train(wider, cfg, out=tmp_path, resume=tmp_path, progress=False)
    other = TrainConfig(**{**cfg.to_dict(), "lr": 0.5, "steps": 4})
    with pytest.raises(ValueError, match=r"lr: 0.001 != 0.5"):
        train(small, other, out=tmp_path, resume=tmp_path, progress=False)
    longer = TrainConfig(**{**cfg.to_dict(), "steps": 4})  # more steps is a continuation
    assert len(train(small, longer, out=tmp_path, resume=tmp_path, progress=False)["losses"]) == 2


def test_checkpoint_round_trip_and_broken_checkpoints(tmp_path):
    cfg = TrainConfig(
        task="reverse", steps=2, batch_size=4, seq_len=9, eval_every=2, eval_tokens=64
    )
    model_cfg = DecoderConfig(
        vocab_size=10, max_seq_len=16, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1
    )
    result = train(model_cfg, cfg, out=tmp_path, progress=False)
    loaded = DecoderLM.from_checkpoint(tmp_path)
    assert loaded.config == model_cfg
    assert loaded.head.weight is loaded.embed.tokens.weight  # tied weights survive
    x = torch.randint(0, 10, (2, 9))
    again = DecoderLM.from_checkpoint(result["checkpoint"])
    torch.testing.assert_close(loaded(x), again(x), rtol=0, atol=0)

    step_dir = Path(result["checkpoint"])
    doc = json.loads((step_dir / CONFIG).read_text())
    doc["config"]["model"]["d_model"] = 32
    (step_dir / CONFIG).write_text(json.dumps(doc))
    write_manifest(step_dir)  # a deliberate edit: re-seal, or the checksum refuses it
    with pytest.raises(ValueError, match=r"does not match the model.*has shape"):
        DecoderLM.from_checkpoint(tmp_path)
    doc["config"]["model"]["num_heads"] = 3
    (step_dir / CONFIG).write_text(json.dumps(doc))
    write_manifest(step_dir)  # a deliberate edit: re-seal, or the checksum refuses it
    with pytest.raises(ValueError, match=r"invalid model config.*num_heads=3 does not divide"):
        DecoderLM.from_checkpoint(tmp_path)
    (step_dir / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=f"is missing {WEIGHTS}"):
        DecoderLM.from_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DecoderLM.from_checkpoint(tmp_path / "nowhere")


def test_text_task_needs_byte_vocab_and_enough_text(tmp_path):
    small_vocab = DecoderConfig(vocab_size=100, d_model=16, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="vocab_size >= 256"):
        train(small_vocab, TrainConfig(steps=1), out=tmp_path, progress=False)
    (tmp_path / "tiny.txt").write_text("short")
    with pytest.raises(ValueError, match="fewer than seq_len"):
        train(
            MODEL,
            TrainConfig(data=str(tmp_path / "tiny.txt"), steps=1),
            out=tmp_path,
            progress=False,
        )


DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    from multihead.models import DecoderConfig
    from multihead.train import TrainConfig, train
    model = DecoderConfig(vocab_size=256, max_seq_len=32, d_model=32, num_layers=2, num_heads=4)
    cfg = TrainConfig(data=sys.argv[1], steps=50, batch_size=8, seq_len=32, warmup_steps=5,
                      eval_every=50, eval_tokens=256, log_every=1, val_fraction=0.1,
                      grad_accum=int(sys.argv[3]))
    train(model, cfg, out=sys.argv[2], progress=False)
    """
)


def test_ddp_two_processes_match_one(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(DDP_SCRIPT)
    data = corpus_file(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        data,
        str(tmp_path / "ddp"),
        "1",
    ]
    for _ in range(2):  # a second try only when another job took the rendezvous port
        run = subprocess.run(cmd, env=env, timeout=120, capture_output=True, text=True)
        log = run.stdout[-3000:] + "\n" + run.stderr[-3000:]
        if run.returncode == 0 or not any(
            s in log.lower() for s in ("address already in use", "eaddrinuse", "rendezvous")
        ):
            break
    assert run.returncode == 0, f"torchrun failed:\n{log}"
    # One process, same global batch, split into two accumulation steps as the two ranks do.
    subprocess.run(
        [sys.executable, str(script), data, str(tmp_path / "one"), "2"],
        check=True,
        env=env,
        timeout=120,
    )
    assert load_checkpoint(tmp_path / "ddp").meta["world_size"] == 2
    ddp, one = losses(tmp_path / "ddp"), losses(tmp_path / "one")
    assert len(ddp) == len(one) == 50
    worst = max(abs(ddp[s] - one[s]) for s in one)
    print(f"DDP vs one process over 50 steps: max |dloss| = {worst:.2e}")
    assert worst < 1e-4


def timed_copy_run(out: Path, **kw) -> tuple[TrainConfig, dict]:
    """A tiny copy-task run under a 0.5 s time limit (``kw`` overrides the TrainConfig)."""
    base = {"task": "copy", "steps": 10_000, "batch_size": 4, "seq_len": 9}
    base.update(eval_every=10_000, eval_tokens=64, time_limit=0.5, warmup_steps=0)
    cfg = TrainConfig(**{**base, **kw})
    model = DecoderConfig(vocab_size=10, max_seq_len=16, d_model=16, num_layers=1, num_heads=2)
    return cfg, train(model, cfg, out=out, progress=False)


def test_time_limit_stops_early_with_the_schedule_decayed(tmp_path):
    cfg, result = timed_copy_run(tmp_path)
    assert 0 < len(result["losses"]) < 10_000
    assert len(result["evals"]) == 1 and result["checkpoint"] is not None
    assert lr_at(5, cfg, elapsed=0.5) == pytest.approx(cfg.min_lr)


def test_resume_needs_the_training_state(tmp_path):
    cfg = TrainConfig(task="copy", steps=2, batch_size=4, seq_len=9, eval_every=2, eval_tokens=64)
    model = DecoderConfig(vocab_size=10, max_seq_len=16, d_model=16, num_layers=1, num_heads=2)
    step_dir = Path(train(model, cfg, out=tmp_path, progress=False)["checkpoint"])
    (step_dir / "state.pt").unlink()
    with pytest.raises(ValueError, match=r"no training state \(state.pt\)"):
        train(model, cfg, out=tmp_path, resume=tmp_path, progress=False)


def test_time_limit_counts_training_time_only(tmp_path, monkeypatch):
    """Checkpoints do not count against the time limit. On a fake clock (one millisecond per
    reading) so that the machine's load cannot decide the outcome."""
    from multihead.train import clock, loop, state

    fake = {"now": 0.0}

    def now() -> float:
        fake["now"] += 1e-3
        return fake["now"]

    real_save = state.save_checkpoint

    def slow_save(*args, **kwargs):  # every checkpoint takes 0.1 s
        fake["now"] += 0.1
        return real_save(*args, **kwargs)

    monkeypatch.setattr(loop, "TrainingClock", lambda: clock.TrainingClock(now))
    monkeypatch.setattr(state, "save_checkpoint", slow_save)
    _, result = timed_copy_run(tmp_path, steps=12, save_every=1)
    # Counting the 0.1 s checkpoints, the 0.5 s budget would end the run by step 5; the loop's
    # own clock readings take a few milliseconds a step, so all 12 steps fit.
    assert len(result["losses"]) == 12
    last = [r for r in map(json.loads, (tmp_path / "log.jsonl").open()) if r["type"] == "train"]
    assert last[-1]["elapsed_s"] < 0.5


def test_resuming_a_finished_run_is_an_error_unless_allowed(tmp_path):
    cfg = TrainConfig(task="copy", steps=4, batch_size=4, seq_len=9, eval_every=2, eval_tokens=64)
    model = DecoderConfig(vocab_size=10, max_seq_len=16, d_model=16, num_layers=1, num_heads=2)
    train(model, cfg, out=tmp_path, progress=False)
    log = (tmp_path / "log.jsonl").read_bytes()
    assert log
    fewer = TrainConfig(**{**cfg.to_dict(), "steps": 2})
    with pytest.raises(ValueError, match=r"at step 4, past steps=2, nothing to train"):
        train(model, fewer, out=tmp_path, resume=tmp_path, progress=False)
    with pytest.raises(
        ValueError, match=r"at step 4: the run already has its steps=4, nothing to train"
    ):
        train(model, cfg, out=tmp_path, resume=tmp_path, progress=False)
    done = train(model, fewer, out=tmp_path, resume=tmp_path, progress=False, allow_finished=True)
    assert done["losses"] == [] and done["evals"] == [] and done["checkpoint"] is None
    assert (tmp_path / "log.jsonl").read_bytes() == log  # never wiped, never truncated
    assert load_checkpoint(tmp_path).step == 4


def test_an_output_path_that_is_a_file_fails_before_training(tmp_path, monkeypatch):
    from multihead.checkpoint import CheckpointError
    from multihead.train import loop

    monkeypatch.setattr(loop, "TrainData", None)  # reached only after the output is checked
    (tmp_path / "notes").write_text("x")
    cfg = TrainConfig(task="copy", steps=1, batch_size=4, seq_len=9)
    with pytest.raises(CheckpointError, match="is an existing file, not a directory"):
        train(MODEL, cfg, out=tmp_path / "notes", progress=False)


def test_drophead_training_varies_the_rate_and_resumes_bit_for_bit(tmp_path):
    cfg = DecoderConfig(
        vocab_size=16, max_seq_len=16, d_model=32, num_layers=2, num_heads=4, drophead=0.4
    )
    run = TrainConfig(
        task="copy", steps=4, batch_size=4, seq_len=15, warmup_steps=1, eval_every=2,
        eval_tokens=128, log_every=1, save_every=2, drophead_schedule="v",
    )  # fmt: skip
    full = train(cfg, run, out=tmp_path / "a", progress=False)
    resumed = train(
        cfg, run, out=tmp_path / "b", resume=tmp_path / "a" / "step-00000002", progress=False
    )
    assert resumed["losses"] == full["losses"][2:]
    plain = train(
        DecoderConfig(**{**cfg.to_dict(), "drophead": 0.0}), run, out=tmp_path / "c",
        progress=False,
    )  # fmt: skip
    assert plain["losses"][0] != full["losses"][0]  # step 0 of the V drops heads at 0.4
