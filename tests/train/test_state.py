"""Resuming goes through the checkpoint's safety: checksums verified, temporaries that killed
saves left behind removed."""

import os

import pytest

from multihead.checkpoint import WEIGHTS, CheckpointError, load_checkpoint
from multihead.models import DecoderConfig
from multihead.train import TrainConfig, train

MODEL = DecoderConfig(vocab_size=10, max_seq_len=16, d_model=16, num_layers=1, num_heads=2)
CFG = TrainConfig(task="copy", steps=2, batch_size=4, seq_len=9, eval_every=2, eval_tokens=64)
LONGER = TrainConfig(**{**CFG.to_dict(), "steps": 3})


def test_resume_verifies_the_checksums(tmp_path):
    train(MODEL, CFG, out=tmp_path / "a", progress=False)
    weights = load_checkpoint(tmp_path / "a").path / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0b101  # two flipped bits in the last tensor's bytes
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{WEIGHTS}.*SHA-256"):
        train(MODEL, LONGER, out=tmp_path / "b", resume=tmp_path / "a", progress=False)


def test_resume_removes_what_killed_saves_left_in_the_resumed_directory(tmp_path):
    train(MODEL, CFG, out=tmp_path / "a", progress=False)
    token = "0123456789abcdef"
    lock = tmp_path / "a" / f".save-{token}.lock"  # nobody holds it: its writer is gone
    lock.touch()
    orphan = tmp_path / "a" / f".step-00000003.{token}.tmp"
    orphan.mkdir()
    (orphan / "model.safetensors").write_bytes(b"half written")
    mine = tmp_path / "a" / "notes.tmp"  # not a checkpoint temporary: never touched
    mine.touch()
    # Resumed into another directory, so no save into "a" would clean it up.
    train(MODEL, LONGER, out=tmp_path / "b", resume=tmp_path / "a", progress=False)
    assert not orphan.exists() and not lock.exists() and mine.exists()
    assert sorted(os.listdir(tmp_path / "a")) == [
        "LATEST",
        "log.jsonl",
        "notes.tmp",
        "step-00000002",
    ]
