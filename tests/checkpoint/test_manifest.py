"""The manifest catches every damage: two flipped bits in each file, truncation, deletion."""

import json
import random

import pytest
import torch

from multihead.checkpoint import (
    CONFIG,
    MANIFEST,
    STATE,
    WEIGHTS,
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
    write_manifest,
)
from multihead.checkpoint.manifest import file_digest

from .conftest import small_model

FILES = (CONFIG, WEIGHTS, STATE)


def read_everything(root, **kwargs):
    ckpt = load_checkpoint(root, **kwargs)
    ckpt.load_into(small_model())
    return ckpt, ckpt.training_state()


def flip_two_bits(path, seed):
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for bit in rng.sample(range(len(data) * 8), 2):
        data[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


def test_manifest_lists_every_file_with_its_digest(saved):
    root, step_dir = saved
    manifest = json.loads((step_dir / MANIFEST).read_text())
    assert manifest["format"] == 1 and sorted(manifest["files"]) == sorted(FILES)
    for name in FILES:
        digest, size = file_digest(step_dir / name)
        assert manifest["files"][name] == {"sha256": digest, "bytes": size}
    assert json.loads((step_dir / CONFIG).read_text())["manifest"] == MANIFEST
    ckpt, state = read_everything(root)
    assert ckpt.step == 3 and state["counter"] == 3


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("seed", range(3))
def test_two_flipped_bits_are_named_with_both_digests(saved, name, seed):
    root, step_dir = saved
    expected, size = file_digest(step_dir / name)
    flip_two_bits(step_dir / name, seed)
    actual, _ = file_digest(step_dir / name)
    with pytest.raises(CheckpointError) as err:
        read_everything(root)
    msg = str(err.value)
    assert str(step_dir / name) in msg and expected in msg and actual in msg, msg
    assert f"({size} bytes)" in msg  # same size: only the digest tells


@pytest.mark.parametrize("seed", range(4))
def test_flipped_bits_in_the_manifest_itself_are_refused(saved, seed):
    root, step_dir = saved
    flip_two_bits(step_dir / MANIFEST, seed)
    with pytest.raises(CheckpointError, match="manifest.json"):
        read_everything(root)


@pytest.mark.parametrize("name", [*FILES, MANIFEST])
def test_a_truncated_file_is_named(saved, name):
    root, step_dir = saved
    data = (step_dir / name).read_bytes()
    (step_dir / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(step_dir / name)) as err:
        read_everything(root)
    if name != MANIFEST:
        assert "shorter than written" in str(err.value)
        assert f"expected {file_digest(step_dir / name)[0]}" not in str(err.value)


@pytest.mark.parametrize("name", [*FILES, MANIFEST])
def test_a_deleted_file_is_named(saved, name):
    root, step_dir = saved
    (step_dir / name).unlink()
    with pytest.raises(CheckpointNotFoundError, match=name) as err:
        read_everything(root)
    assert "missing" in str(err.value)


def test_verify_false_skips_the_checks(saved):
    root, step_dir = saved
    weights = {k: v.clone() for k, v in load_checkpoint(root).state_dict().items()}
    data = bytearray((step_dir / WEIGHTS).read_bytes())
    data[-1] ^= 0x01  # the last byte is tensor data: the file still parses
    (step_dir / WEIGHTS).write_bytes(bytes(data))
    (step_dir / MANIFEST).write_text("not json")  # not even read
    ckpt = load_checkpoint(root, verify=False)
    assert ckpt.manifest is None
    damaged = ckpt.state_dict()
    assert any(not torch.equal(weights[k], damaged[k]) for k in weights)  # silently, as asked
    with pytest.raises(TypeError, match="verify must be a bool"):
        load_checkpoint(root, verify="no")


def test_checkpoints_without_a_manifest_load_with_a_warning(saved):
    root, step_dir = saved
    (step_dir / MANIFEST).unlink()
    doc = json.loads((step_dir / CONFIG).read_text())
    del doc["manifest"]  # as written before manifests existed
    (step_dir / CONFIG).write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="no manifest.json.*unverified"):
        ckpt, state = read_everything(root)
    assert ckpt.manifest is None and state["counter"] == 3
    write_manifest(step_dir)  # adds one: now verified, silently
    ckpt, _ = read_everything(root)
    assert sorted(ckpt.manifest) == sorted(FILES)


def test_write_manifest_reseals_deliberate_edits(saved):
    root, step_dir = saved
    doc = json.loads((step_dir / CONFIG).read_text())
    doc["meta"]["note"] = "edited by hand"
    (step_dir / CONFIG).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="config.json does not match"):
        load_checkpoint(root)
    write_manifest(step_dir)
    assert load_checkpoint(root).meta == {"note": "edited by hand"}
    (step_dir / STATE).unlink()  # a checkpoint shipped without its training state
    write_manifest(step_dir)
    assert load_checkpoint(root).training_state() is None


def test_verify_files_checks_everything_at_once(saved):
    root, step_dir = saved
    ckpt = load_checkpoint(root)
    ckpt.verify_files()
    flip_two_bits(step_dir / STATE, 0)
    with pytest.raises(CheckpointError, match="state.pt does not match"):
        ckpt.verify_files()
