"""Driver for test_atomicity: imports torch once, then for each line ``START CRASH EXCHANGE``
read from stdin forks a saver that writes checkpoints in a loop from step START until it is
killed; with CRASH > 0 it dies (os._exit: no cleanup runs, like kill -9) just before its
CRASH-th file-system operation; with EXCHANGE 0 it replaces steps without renameat2.

Output lines: ``pid N`` (a saver started), ``saved STEP OPS`` (a save returned after OPS
operations in all), ``reaped`` (the saver is dead and reaped). Forking from this
single-threaded process avoids paying torch's import for every kill.
"""

import os
import shutil
import sys


def die_at(crash: int, targets) -> None:
    """Make the ``crash``-th call of any of ``targets`` (module, name) end the process at once;
    0 never. Returns a function giving the number of calls so far."""
    count = 0

    def wrap(module, name):
        real = getattr(module, name)

        def op(*args, **kwargs):
            nonlocal count
            count += 1
            if count == crash:
                os._exit(9)
            return real(*args, **kwargs)

        setattr(module, name, op)

    for module, name in targets:
        wrap(module, name)
    return lambda: count


def saver(root: str, step: int, crash: int, exchange: bool) -> None:
    import torch

    from multihead.checkpoint import files, save_checkpoint

    if not exchange:
        files.exchange = lambda a, b: False
    names = ("mkdir", "open", "fsync", "rename", "replace", "unlink", "chmod")
    ops = die_at(crash, [*((os, n) for n in names), (shutil, "rmtree"), (files, "exchange")])
    torch.manual_seed(step)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 64))
    while True:
        for n in range(2):  # the second save replaces the step
            state = {"step": step, "n": n, "w0": model[0].weight.detach().clone()}
            save_checkpoint(
                root, model=model, kind="loop", config={"n": n}, step=step, state=state, keep=2
            )
            print(f"saved {step} {ops()}", flush=True)
            with torch.no_grad():
                model[0].weight.add_(1.0)
        step += 1


def main() -> None:
    import torch

    import multihead.checkpoint  # noqa: F401  (imported once, before forking)

    torch.set_num_threads(1)
    root = sys.argv[1]
    while line := sys.stdin.readline():
        start, crash, exchange = map(int, line.split())
        pid = os.fork()
        if pid == 0:
            try:
                saver(root, start, crash, bool(exchange))
            finally:
                os._exit(1)
        print(f"pid {pid}", flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)


if __name__ == "__main__":
    main()
