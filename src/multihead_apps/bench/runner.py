"""One benchmark run: for every case and direction, build every competitor, time them
interleaved with ``torch.mm`` (the same-run matmul rate), then probe peak memory of each in a
fresh process."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from multihead_apps.bench import memory, timing
from multihead_apps.bench.cases import (
    COMPETITORS,
    DIRECTIONS,
    REFERENCE,
    Case,
    Competitor,
    Inputs,
    label,
)

MM_KEY = "torch.mm"
DEFAULT_MEM_LIMIT_GIB = 8.0


@dataclass
class Row:
    """One competitor on one case and direction."""

    key: str
    label: str
    median_s: float | None = None
    ratio: float | None = None  # paired ratio to the reference (time / reference time)
    ratio_range: tuple[float, float] | None = None  # smallest and largest per-round ratio
    gflops: float | None = None
    # Rate over torch.mm's rate, paired: the median over rounds of (rate / mm rate that round).
    frac_mm: float | None = None
    frac_mm_range: tuple[float, float] | None = None
    mem_mib: float | None = None
    mem_error: str | None = None
    skipped: str | None = None


@dataclass
class CaseResult:
    case: Case
    direction: str
    rows: list[Row]
    timings: timing.Timings
    mm_gflops: float | None

    @property
    def rounds(self) -> int:
        return self.timings.rounds

    def row(self, key: str) -> Row | None:
        for r in self.rows:
            if r.key == key:
                return r
        return None

    def measured(self, key: str) -> Row | None:
        """The row if it was timed (not skipped, not failed)."""
        r = self.row(key)
        return r if r is not None and r.median_s is not None else None

    def speed_ratio(self, slow: str, fast: str) -> float | None:
        """How many times faster ``fast`` is than ``slow`` (paired over rounds)."""
        if slow not in self.timings.samples or fast not in self.timings.samples:
            return None
        return self.timings.ratio(slow, fast)


@dataclass
class RunResult:
    results: list[CaseResult] = field(default_factory=list)
    mm_start: float | None = None
    mm_end: float | None = None
    wall_s: float = 0.0
    load_start: str = ""  # /proc/loadavg: other jobs on a shared machine distort timings
    load_end: str = ""

    def get(self, case_name: str, direction: str) -> CaseResult | None:
        for r in self.results:
            if r.case.name == case_name and r.direction == direction:
                return r
        return None


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, or "" where /proc/loadavg does not exist."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


def time_case(
    case: Case,
    direction: str,
    competitors: Sequence[Competitor] = COMPETITORS,
    *,
    rounds: int | None = None,
    budget_s: float | None = None,
    mem_limit_bytes: float = DEFAULT_MEM_LIMIT_GIB * 2**30,
) -> CaseResult:
    """Time every applicable competitor on ``case`` in ``direction``, interleaved."""
    inputs = Inputs.make(case)
    rows: list[Row] = []
    calls: dict[str, Callable[[], None]] = {MM_KEY: timing.mm_call()}
    for comp in competitors:
        row = Row(comp.key, label(comp, case, direction))
        row.skipped = comp.skip_reason(case, direction, mem_limit_bytes)
        if row.skipped is None:
            calls[comp.key] = comp.make_call(inputs, direction)
        rows.append(row)
    gc.collect()
    t = timing.interleave(calls, rounds=rounds or case.rounds, budget_s=budget_s)
    del calls
    gc.collect()
    mm_gflops = None
    if MM_KEY in t.samples:
        mm_gflops = timing.mm_flops() / t.median(MM_KEY) / 1e9
    for row in rows:
        if row.key in t.failed:
            row.skipped = f"failed: {t.failed[row.key]}"
        if row.skipped is not None:
            continue
        comp = next(c for c in competitors if c.key == row.key)
        row.median_s = t.median(row.key)
        row.gflops = case.flops(direction, comp.kv_heads) / row.median_s / 1e9
        if mm_gflops:
            # rate / mm rate = (flops / t) / (mm_flops / t_mm) = (flops / mm_flops) / (t / t_mm)
            flops_ratio = case.flops(direction, comp.kv_heads) / timing.mm_flops()
            row.frac_mm = flops_ratio / t.ratio(row.key, MM_KEY)
            lo, hi = t.ratio_range(row.key, MM_KEY)
            row.frac_mm_range = (flops_ratio / hi, flops_ratio / lo)
        if REFERENCE in t.samples:
            row.ratio = t.ratio(row.key, REFERENCE)
            row.ratio_range = t.ratio_range(row.key, REFERENCE)
    return CaseResult(case, direction, rows, t, mm_gflops)


def probe_memory(result: CaseResult, server: memory.ProbeServer) -> None:
    """Fill ``mem_mib`` of every timed row, one fresh process per row."""
    for row in result.rows:
        if row.median_s is None:
            continue
        spec = {
            "kind": "case",
            "case": result.case.to_json(),
            "competitor": row.key,
            "direction": result.direction,
        }
        p = server.probe(spec)
        row.mem_mib, row.mem_error = p.mib, p.error


def run(
    cases: Sequence[Case],
    *,
    rounds: int | None = None,
    memory_probe: bool = True,
    budget_s: float | None = None,
    mem_limit_bytes: float = DEFAULT_MEM_LIMIT_GIB * 2**30,
    competitors: Sequence[Competitor] = COMPETITORS,
    on_step: Callable[[Case, str], None] | None = None,
    on_case_done: Callable[[Case], None] | None = None,
) -> RunResult:
    """Run the benchmark. ``on_step(case, phase)`` and ``on_case_done(case)`` report progress."""
    start = time.perf_counter()
    server = memory.ProbeServer() if memory_probe else None
    try:
        result = RunResult(mm_start=timing.measure_mm(), load_start=loadavg())
        _run_cases(
            result,
            cases,
            rounds,
            server,
            budget_s,
            mem_limit_bytes,
            competitors,
            on_step,
            on_case_done,
        )
        result.mm_end = timing.measure_mm()
        result.load_end = loadavg()
    finally:
        if server is not None:
            server.close()
    result.wall_s = time.perf_counter() - start
    return result


def _run_cases(
    result: RunResult,
    cases: Sequence[Case],
    rounds: int | None,
    server: memory.ProbeServer | None,
    budget_s: float | None,
    mem_limit_bytes: float,
    competitors: Sequence[Competitor],
    on_step: Callable[[Case, str], None] | None,
    on_case_done: Callable[[Case], None] | None,
) -> None:
    for case in cases:
        for direction in DIRECTIONS:
            if on_step:
                on_step(case, f"{direction} timing")
            cr = time_case(
                case,
                direction,
                competitors,
                rounds=rounds,
                budget_s=budget_s,
                mem_limit_bytes=mem_limit_bytes,
            )
            if server is not None:
                if on_step:
                    on_step(case, f"{direction} memory")
                probe_memory(cr, server)
            result.results.append(cr)
        if on_case_done:
            on_case_done(case)
