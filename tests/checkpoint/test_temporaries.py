"""Removing what killed saves leave: only our names, only in this root, never a live save's."""

import fcntl
import os
import time

from multihead.checkpoint import LATEST, load_checkpoint, remove_stale_temporaries
from multihead.checkpoint.temporaries import MIN_AGE

from .conftest import save_small

TOKEN = "0123456789abcdef"


def orphan(root, token=TOKEN, *, step=5, lock=True):
    """What a save killed mid-write leaves: its lock file (unheld) and a half-written step."""
    tmp = root / f".step-{step:08d}.{token}.tmp"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"half")
    if lock:
        (root / f".save-{token}.lock").touch()
    return tmp


def make_old(path, seconds=2 * MIN_AGE):
    past = time.time() - seconds
    for p in [path, *path.iterdir()] if path.is_dir() else [path]:
        os.utime(p, (past, past))


def names(root):
    return sorted(p.name for p in root.iterdir())


def test_an_abandoned_save_is_removed_at_once(saved):
    root, _ = saved
    before = names(root)
    tmp = orphan(root)
    (root / f".LATEST.{TOKEN}.tmp").write_text("step-00000005\n")
    removed = remove_stale_temporaries(root)
    assert sorted(p.name for p in removed) == sorted(
        [tmp.name, f".LATEST.{TOKEN}.tmp", f".save-{TOKEN}.lock"]
    )
    assert names(root) == before
    load_checkpoint(root).verify_files()


def test_a_live_save_is_never_touched(saved):
    root, _ = saved
    tmp = orphan(root)
    make_old(tmp)  # however old it looks: the lock says its writer is alive
    fd = os.open(root / f".save-{TOKEN}.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert remove_stale_temporaries(root, min_age=0) == []
        assert tmp.is_dir()
    finally:
        os.close(fd)  # the writer dies: the kernel releases its lock
    assert tmp in remove_stale_temporaries(root)
    assert not tmp.exists()


def test_temporaries_without_a_lock_go_by_age(saved):
    root, _ = saved
    tmp = orphan(root, "ab3x_9zq", lock=False)  # named as mkdtemp did before locks existed
    old = root / ".step-00000004.k2_jw81e.old"  # a replaced step's old contents, step present
    old.mkdir()
    (root / "step-00000004").mkdir()
    assert remove_stale_temporaries(root) == []  # could still be written: wait
    make_old(tmp)
    make_old(old)
    assert sorted(remove_stale_temporaries(root)) == sorted([tmp, old])
    assert (root / "step-00000004").is_dir()


def test_a_step_moved_aside_by_a_killed_replacement_is_restored(saved):
    root, step_dir = saved
    aside = root / f".{step_dir.name}.{TOKEN}.old"
    os.rename(step_dir, aside)  # killed between the two renames of a re-save
    orphan(root, step=3)
    assert load_checkpoint(root).path == aside  # readers find it where it was moved
    load_checkpoint(root).verify_files()
    remove_stale_temporaries(root)
    assert not aside.exists() and names(root) == [LATEST, step_dir.name]
    load_checkpoint(root).verify_files()


def test_only_our_names_directly_in_the_root(saved):
    root, step_dir = saved
    others = [
        root / ".step-00000005.tmp",  # no token
        root / "step-00000005.abc.tmp",  # no leading dot
        root / ".step-x.0123.tmp",
        root / ".notes.0123.tmp",
        root / ".save-0123.lock",
        root / ".save-0123456789abcdef.lock.bak",
    ]
    for p in others:
        p.touch()
    make_old(root / ".step-00000005.tmp")
    nested = step_dir / f".step-00000009.{TOKEN}.tmp"  # ours, but not in the root given
    nested.mkdir()
    (step_dir / f".save-{TOKEN}.lock").touch()
    for p in [*others, nested]:
        make_old(p)
    assert remove_stale_temporaries(root, min_age=0) == []
    assert all(p.exists() for p in [*others, nested])
    # Given a step directory, the root is its parent, as for resume paths.
    tmp = orphan(root)
    assert tmp in remove_stale_temporaries(step_dir)


def test_every_save_removes_what_killed_saves_left(tmp_path):
    root = tmp_path / "run"
    save_small(root, step=1)
    tmp = orphan(root)
    save_small(root, step=2)
    assert not tmp.exists()
    assert names(root) == [LATEST, "step-00000001", "step-00000002"]
