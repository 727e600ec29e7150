"""Processes killed while saving: every surviving checkpoint loads and verifies, and the next
save removes what the killed one left. Kills come at random moments (kill -9) and then just
before each file-system operation of a save, with and without atomic exchange."""

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import multihead
from multihead.checkpoint import load_checkpoint, remove_stale_temporaries

DRIVER = Path(__file__).with_name("save_loop.py")


class Driver:
    """The save_loop.py process: starts savers and reports their saves and deaths."""

    def __init__(self, root: Path) -> None:
        paths = [str(Path(multihead.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def next(self) -> str:
        return self.lines.get(timeout=120)  # torch's first import on a loaded machine

    def start(self, step: int, crash: int = 0, exchange: bool = True) -> int:
        self.proc.stdin.write(f"{step} {crash} {int(exchange)}\n")
        self.proc.stdin.flush()
        line = self.next()
        assert line.startswith("pid "), line
        return int(line[4:])

    def until_reaped(self) -> list[int]:
        """Wait for the saver's death; the cumulative operation counts of its saves."""
        ops = []
        while (line := self.next()) != "reaped":
            ops.append(int(line.split()[2]))
        return ops

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def check_every_step(root: Path) -> int:
    """Load and verify the latest checkpoint and every step directory; return LATEST's step."""
    steps = sorted(p for p in root.iterdir() if p.name.startswith("step-"))
    latest = load_checkpoint(root)
    for ckpt in [latest, *map(load_checkpoint, steps)]:
        ckpt.verify_files()
        state = ckpt.training_state()
        assert state["step"] == ckpt.step and state["n"] == ckpt.config["n"]
        torch.testing.assert_close(ckpt.state_dict()["0.weight"], state["w0"], rtol=0, atol=0)
    return latest.step


def leftovers(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.name.startswith(".")}


@pytest.fixture
def driver(tmp_path):
    d = Driver(tmp_path / "run")
    yield d
    d.close()


@pytest.mark.slow
def test_killed_saves_never_lose_or_corrupt_a_checkpoint(tmp_path, driver):
    root = tmp_path / "run"
    rng = random.Random(0)
    # Random kill -9 while saving in a loop (a save is most of the loop's time).
    start, left = 0, set()
    for _ in range(5):
        pid = driver.start(start)
        while not driver.next().startswith("saved"):
            pass
        assert not left & leftovers(root)  # its first save removed the previous one's
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(pid, signal.SIGKILL)
        driver.until_reaped()
        left = leftovers(root)
        start = check_every_step(root) + 1
    # Death just before each file-system operation of a save of a new step (which also
    # deletes the oldest: keep=2) and of its replacement; without atomic exchange only the
    # replacement differs.
    for exchange in (True, False):
        remove_stale_temporaries(root)
        pid = driver.start(check_every_step(root) + 1, exchange=exchange)
        ops = [int(driver.next().split()[2]) for _ in range(2)]
        os.kill(pid, signal.SIGKILL)
        driver.until_reaped()
        for crash in range(1 if exchange else ops[0] - 2, ops[1] + 1):
            remove_stale_temporaries(root)
            assert not leftovers(root)  # whatever a crash left, the cleanup removes
            driver.start(check_every_step(root) + 1, crash=crash, exchange=exchange)
            assert len(driver.until_reaped()) <= 2
            check_every_step(root)
    remove_stale_temporaries(root)
    assert not leftovers(root)
    check_every_step(root)
