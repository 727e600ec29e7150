"""Damaged, substituted and malicious files give one clear CheckpointError, never a traceback
from inside safetensors or torch, never a suggestion to unpickle, and never run code."""

import os
import pickle

import pytest
import torch

from multihead.checkpoint import (
    STATE,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    write_manifest,
)

from .conftest import small_model


class Payload:
    """Unpickling this creates the file ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def one_clear_error(fn):
    """The CheckpointError ``fn`` raises, checked to be a single error that never says to
    load unsafely (no chained torch/safetensors exception shown under it)."""
    with pytest.raises(CheckpointError) as info:
        fn()
    err = info.value
    assert isinstance(err, ValueError)
    shown_context = err.__context__ is not None and not err.__suppress_context__
    assert err.__cause__ is None and not shown_context, "a traceback is chained under it"
    assert "weights_only=False" not in str(err) and "weights_only" not in str(err)
    return str(err)


@pytest.mark.parametrize("verify", [True, False])
def test_damaged_or_truncated_safetensors(saved, verify):
    root, step_dir = saved
    data = (step_dir / WEIGHTS).read_bytes()
    for damaged in (data[: len(data) // 2], data[:5], b"", b"\xff" * 64):
        (step_dir / WEIGHTS).write_bytes(damaged)
        write_manifest(step_dir)  # the parse itself must fail clearly, not only the checksum
        ckpt = load_checkpoint(root, verify=verify)
        msg = one_clear_error(lambda ckpt=ckpt: ckpt.load_into(small_model()))
        assert str(step_dir / WEIGHTS) in msg and "safetensors" in msg


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_pickle_in_place_of_the_safetensors_is_not_unpickled(saved, tmp_path, how):
    root, step_dir = saved
    marker = tmp_path / "ran"
    payload = {"weight": torch.zeros(2), "evil": Payload(marker)}
    with open(step_dir / WEIGHTS, "wb") as f:
        torch.save(payload, f) if how == "torch.save" else pickle.dump(payload, f)
    write_manifest(step_dir)
    msg = one_clear_error(lambda: load_checkpoint(root).state_dict())
    assert str(step_dir / WEIGHTS) in msg and "pickle" in msg and "not safetensors" in msg
    assert not marker.exists()


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
@pytest.mark.parametrize("reseal", [True, False])
def test_a_malicious_training_state_never_runs(saved, tmp_path, how, reseal):
    root, step_dir = saved
    marker = tmp_path / "ran"
    payload = {"optimizer": Payload(marker)}
    with open(step_dir / STATE, "wb") as f:
        torch.save(payload, f) if how == "torch.save" else pickle.dump(payload, f, protocol=2)
    if reseal:  # the attacker also rewrote the manifest: the safe load is what stops it
        write_manifest(step_dir)
    msg = one_clear_error(lambda: load_checkpoint(root, verify=reseal).training_state())
    assert str(step_dir / STATE) in msg
    assert "refuses" in msg and "none of its code ran" in msg
    if how == "torch.save":
        assert "system" in msg  # what was refused: the call to os.system
    assert not marker.exists()


def test_a_truncated_training_state(saved):
    root, step_dir = saved
    data = (step_dir / STATE).read_bytes()
    for damaged in (data[: len(data) // 2], data[:10], b""):
        (step_dir / STATE).write_bytes(damaged)
        msg = one_clear_error(lambda: load_checkpoint(root, verify=False).training_state())
        assert str(step_dir / STATE) in msg and "truncated or damaged" in msg


def test_damaged_config(saved):
    root, step_dir = saved
    bad = ["{not json", "[1, 2]", '{"format": 1}', '{"format": 9, "kind": "mlp", "config": {}}']
    for text in bad:
        (step_dir / "config.json").write_text(text)
        msg = one_clear_error(lambda: load_checkpoint(root, verify=False))
        assert "config" in msg
    (root / "LATEST").write_text("x\x00\n")
    msg = one_clear_error(lambda: load_checkpoint(root))
    assert "LATEST" in msg and "damaged" in msg
