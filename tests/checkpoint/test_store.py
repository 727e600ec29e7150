"""Saving: permissions from the umask, clear errors for a bad output path, atomic re-saves,
old steps removed by number."""

import os
import stat

import pytest
import torch

from multihead.checkpoint import (
    LATEST,
    CheckpointError,
    load_checkpoint,
    prepare_output_dir,
    save_checkpoint,
)
from multihead.checkpoint import files as files_module

from .conftest import save_small


@pytest.mark.parametrize(("umask", "dirs", "files"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_permissions_follow_the_umask(tmp_path, umask, dirs, files):
    before = os.umask(umask)
    try:
        root = tmp_path / "runs" / "a"
        save_small(root, step=1)
        step_dir = save_small(root, step=1)  # a re-save too
    finally:
        os.umask(before)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "runs", *root.rglob("*")]}
    modes[root] = stat.S_IMODE(root.stat().st_mode)
    assert len(modes) == 8  # runs, root, LATEST, the step and its four files
    for p, mode in modes.items():
        assert mode == (dirs if p.is_dir() else files), (p, oct(mode))
    assert sorted(p.name for p in step_dir.iterdir()) == sorted(
        ["config.json", "manifest.json", "model.safetensors", "state.pt"]
    )


def test_an_output_path_that_is_a_file(tmp_path):
    existing = tmp_path / "out.txt"
    existing.write_text("mine")
    for path in (existing, existing / "sub"):
        with pytest.raises(CheckpointError, match="existing file") as err:
            save_checkpoint(path, model=torch.nn.Linear(1, 1), kind="x", config={})
        shown_context = err.value.__context__ is not None and not err.value.__suppress_context__
        assert str(path) in str(err.value) and not shown_context
        with pytest.raises(CheckpointError, match="existing file"):
            prepare_output_dir(path)
    assert existing.read_text() == "mine"
    assert prepare_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()


def test_save_arguments_are_checked(tmp_path):
    net = torch.nn.Linear(1, 1)
    for bad in ({"step": -1}, {"step": 1.5}, {"step": True}, {"keep": -1}, {"keep": "2"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            save_checkpoint(tmp_path, model=net, kind="x", config={}, **bad)
    with pytest.raises(TypeError, match="JSON-serializable"):
        save_checkpoint(tmp_path, model=net, kind="x", config={"f": object()})
    assert list(tmp_path.iterdir()) == []  # nothing written for bad arguments
    assert save_checkpoint(tmp_path, model=net, kind="x", config={}, step=torch.tensor(5)).name == (
        "step-00000005"
    )


@pytest.mark.parametrize("exchange", [True, False])
def test_resaving_a_step_replaces_it(tmp_path, monkeypatch, exchange):
    if not exchange:  # a system or file system without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(files_module, "exchange", lambda a, b: False)
    root = tmp_path / "run"
    save_small(root, step=4, meta={"n": 1})
    save_small(root, step=4, meta={"n": 2})
    assert sorted(p.name for p in root.iterdir()) == [LATEST, "step-00000004"]
    ckpt = load_checkpoint(root)
    assert ckpt.meta == {"n": 2}
    ckpt.verify_files()


def test_keep_removes_the_oldest_steps_by_number(tmp_path):
    root = tmp_path / "run"
    for step in (99_999_999, 100_000_000, 100_000_001):  # names sort wrongly past 8 digits
        save_small(root, step=step)
    assert sorted(p.name for p in root.iterdir()) == [LATEST, "step-100000000", "step-100000001"]
    assert load_checkpoint(root).step == 100_000_001
