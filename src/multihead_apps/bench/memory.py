"""Peak memory of one call, measured in a fresh Python process.

Method (Linux): the child builds the layer and its inputs, runs the same call once on a tiny
problem (so lazily loaded code and one-time buffers are not charged to the measured call),
collects garbage, resets the kernel's peak-RSS mark (``echo 5 > /proc/self/clear_refs``),
reads its RSS, runs the call once, and reports ``VmHWM - RSS_before``: the resident memory the
call added at its peak, inputs and parameters excluded. Where ``clear_refs`` cannot be
written, ``ru_maxrss`` is used instead; it cannot be reset, so it over-reports when the setup
peaked higher than the call (the result says which method was used).

Every probe runs in a process of its own: ``python -m multihead_apps.bench.memory '<spec>'``
(:func:`probe`), or, to avoid paying the interpreter and torch start-up per probe, a child
forked from a ``python -c`` server (:class:`ProbeServer`), a clean interpreter that has
imported torch and run nothing else. The fork happens before any torch
op has started OpenMP threads (forking after that can hang the child), so each child is a
fresh process with its own address space and peak-RSS mark.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

MIB = 2**20
WARMUP_SEQ = 64


@dataclass(frozen=True)
class Probe:
    """Peak memory growth of one call in MiB, or why it could not be measured."""

    mib: float | None
    method: str = ""
    error: str | None = None


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_call(call: Callable[[], object]) -> tuple[float, str]:
    """Run ``call`` once in this process; return (peak RSS growth in MiB, method)."""
    gc.collect()
    if _reset_peak():
        before = _status_kib("VmRSS")
        call()
        return (_status_kib("VmHWM") - before) / 1024.0, "VmHWM"
    before = _status_kib("VmRSS")
    call()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return (peak - before) / 1024.0, "ru_maxrss"


def _alloc_call(spec: dict) -> Callable[[], object]:
    import torch

    n = int(spec["mib"] * MIB) // 4

    def call() -> object:
        t = torch.ones(n)  # written, so every page is resident
        return float(t[-1])

    return call


def _case_call(spec: dict, *, warmup_only: bool = False) -> Callable[[], None]:
    from multihead_apps.bench.cases import Case, Inputs, get_competitor

    case = Case(**spec["case"])
    if warmup_only:
        window = None if case.window is None else min(case.window, WARMUP_SEQ // 2)
        case = replace(case, batch=1, seq=WARMUP_SEQ, window=window)
    comp = get_competitor(spec["competitor"])
    return comp.make_call(Inputs.make(case), spec["direction"])


def run_spec(spec: dict) -> dict:
    """Measure the call a spec describes (in this process). Spec kinds:
    ``{"kind": "alloc", "mib": 64}`` (a known allocation, to check the method) and
    ``{"kind": "case", "case": {...Case fields}, "competitor": key, "direction": "fwd"}``."""
    kind = spec.get("kind")
    if kind == "alloc":
        _alloc_call({"mib": 1 / 16})()  # one-time costs of the first torch op, as for cases
        call = _alloc_call(spec)
    elif kind == "case":
        _case_call(spec, warmup_only=True)()
        call = _case_call(spec)
    else:
        raise ValueError(f"spec kind must be 'alloc' or 'case', got {kind!r}")
    mib, method = measure_call(call)
    return {"peak_mib": mib, "method": method}


def _probe_from(out: dict) -> Probe:
    if "error" in out:
        return Probe(None, error=out["error"])
    return Probe(float(out["peak_mib"]), method=out["method"])


def probe(spec: dict, *, timeout: float = 900.0) -> Probe:
    """Run :func:`run_spec` in a fresh Python process (``python -m``)."""
    cmd = [sys.executable, "-m", "multihead_apps.bench.memory", json.dumps(spec)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
        )
    except subprocess.TimeoutExpired:
        return Probe(None, error=f"timed out after {timeout:.0f} s")
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        if proc.returncode < 0:
            tail = f"killed by signal {-proc.returncode} (out of memory?)"
        return Probe(None, error=tail)
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return Probe(None, error=f"unreadable probe output {proc.stdout[-200:]!r}")
    return _probe_from(out)


# The probe server, run with ``python -c``: importing any multihead module would run torch ops
# at import (backend probes) and start OpenMP threads, after which a forked child can hang. So
# the server imports torch only, and each child imports multihead itself.
_SERVER = """\
import json, os, signal, sys
import torch  # imported once so children start warm; no op runs before a fork

for line in sys.stdin:
    if not line.strip():
        continue
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, leave without running the server's cleanup
        os.close(read_fd)
        try:
            from multihead_apps.bench.memory import run_spec
            result = run_spec(json.loads(line))
        except BaseException as err:
            result = {"error": f"{type(err).__name__}: {err}"}
        os.write(write_fd, json.dumps(result).encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        result = {"error": f"probe killed by {name} (out of memory?)"}
    else:
        try:
            result = json.loads(b"".join(chunks))
        except json.JSONDecodeError:
            result = {"error": "probe child wrote no result"}
    print(json.dumps(result), flush=True)
"""


class ProbeServer:
    """A clean ``python -c`` process that forks one fresh child per probe (see the module
    docstring).

    Example:
        >>> with ProbeServer() as server:                      # doctest: +SKIP
        ...     server.probe({"kind": "alloc", "mib": 64}).mib
        64.0...
    """

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def probe(self, spec: dict) -> Probe:
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        if proc.poll() is not None:
            return Probe(None, error=f"probe server exited with code {proc.returncode}")
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            return Probe(None, error="probe server closed its output")
        return _probe_from(json.loads(line))

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=60)

    def __enter__(self) -> ProbeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m multihead_apps.bench.memory '<json spec>'", file=sys.stderr)
        return 2
    print(json.dumps(run_spec(json.loads(args[0]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
