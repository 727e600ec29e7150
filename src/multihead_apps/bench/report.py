"""Markdown tables, the Targets section, and the ``## Attention`` section of RESULTS.md
(written by :func:`multihead_apps.bench.results.write_section`)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from multihead_apps.bench import timing
from multihead_apps.bench.cases import CAUSAL, FWD, FWD_BWD, GQA_KV_HEADS, REFERENCE, Case
from multihead_apps.bench.memory import WARMUP_SEQ
from multihead_apps.bench.results import SECTION
from multihead_apps.bench.runner import CaseResult, Row, RunResult

DIRECTION_TITLE = {FWD: "forward", FWD_BWD: "forward+backward"}
MET, NOT_MET, NA = "met", "NOT MET", "n/a"


# ---------------------------------------------------------------------- formatting
def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_ratio(r: float | None, spread: tuple[float, float] | None = None) -> str:
    """``1.02x``, or with the per-round range ``1.02x (0.98-1.05)``."""
    if r is None:
        return ""
    return f"{r:.2f}x" + ("" if spread is None else f" ({spread[0]:.2f}-{spread[1]:.2f})")


def fmt_pct(f: float | None, spread: tuple[float, float] | None = None) -> str:
    """``85 %``, or with the per-round range ``85 % (80-88)``."""
    if f is None:
        return ""
    text = f"{100 * f:.0f} %"
    return text + ("" if spread is None else f" ({100 * spread[0]:.0f}-{100 * spread[1]:.0f})")


def fmt_num(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def case_table(cr: CaseResult) -> str:
    """One markdown table: a row per competitor, skipped ones with their reason."""
    head = "| competitor | median ms | x ref | GFLOP/s | % of mm | peak MiB |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in cr.rows:
        if r.skipped == "not measured in this direction":
            continue
        if r.skipped is not None:
            lines.append(f"| {r.label} | skipped ({r.skipped}) | | | | |")
            continue
        mem = fmt_num(r.mem_mib) if r.mem_error is None else f"error: {r.mem_error}"
        lines.append(
            f"| {r.label} | {fmt_ms(r.median_s)} | {fmt_ratio(r.ratio, r.ratio_range)} "
            f"| {fmt_num(r.gflops)} | {fmt_pct(r.frac_mm, r.frac_mm_range)} | {mem} |"
        )
    return "\n".join(lines)


def case_block(cr: CaseResult) -> str:
    c = cr.case
    flops = c.flops(cr.direction) / 1e9
    gqa = c.flops(cr.direction, GQA_KV_HEADS) / 1e9
    mm = fmt_num(cr.mm_gflops)
    return (
        f"### {c.title} — {DIRECTION_TITLE[cr.direction]} (`{c.name}`)\n\n"
        f"{flops:,.2f} GFLOP per call (GQA rows: {gqa:,.2f}); "
        f"torch.mm in the same rounds: {mm} GFLOP/s; {cr.rounds} rounds.\n\n"
        f"{case_table(cr)}\n"
    )


# ---------------------------------------------------------------------- targets
AUTO, WEIGHTS, GQA, COMPAT = "mh-auto", "mh-auto-weights", "mh-gqa", "compat"
TORCH_EVAL, TUTORIAL = "torch-mha-eval", "tutorial"


@dataclass(frozen=True)
class Target:
    text: str
    measured: str
    status: str  # MET, NOT_MET or NA


class _Missing(Exception):
    """A target cannot be evaluated; the message says why."""


def _rows(run: RunResult, case: str, direction: str, *keys: str, mem: bool = False):
    """The case result and the timed rows ``keys`` (with memory if ``mem``), else _Missing."""
    cr = run.get(case, direction)
    if cr is None:
        raise _Missing(f"case {case} not run")
    rows = []
    for k in keys:
        r = cr.row(k)
        if r is None or r.median_s is None:
            raise _Missing(f"{k} {r.skipped if r is not None and r.skipped else 'not measured'}")
        if mem and r.mem_mib is None:
            raise _Missing(f"no memory for {k}" + (f": {r.mem_error}" if r.mem_error else ""))
        rows.append(r)
    return cr, rows


def _speedup(cr: CaseResult, slow: str, fast: str) -> tuple[float, str]:
    """How many times faster ``fast`` is (paired), and the per-round range as text."""
    s = cr.speed_ratio(slow, fast)
    if s is None:
        raise _Missing(f"no paired samples for {slow} and {fast}")
    return s, _range(cr, slow, fast)


def _range(cr: CaseResult, key: str, ref: str) -> str:
    lo, hi = cr.timings.ratio_range(key, ref)
    return f"rounds {lo:.2f}-{hi:.2f}, n={cr.rounds}"


def _pct_range(row: Row, rounds: int) -> str:
    assert row.frac_mm_range is not None  # the runner sets it with frac_mm
    lo, hi = row.frac_mm_range
    return f"rounds {100 * lo:.0f}-{100 * hi:.0f} %, n={rounds}"


def _worst_ratio(
    run: RunResult, key: str, ref: str, missing: str
) -> tuple[list[tuple[float, str, str]], float, str]:
    """Paired time ratios key/ref of every (case, direction) that measured both: the list of
    ``(ratio, "case direction", "its per-round range")``, the worst ratio and a description of
    where it was."""
    rows = [
        (cr.timings.ratio(key, ref), f"{cr.case.name} {cr.direction}", _range(cr, key, ref))
        for cr in run.results
        if cr.measured(key) and cr.measured(ref)
    ]
    if not rows:
        raise _Missing(missing)
    worst, where, spread = max(rows, key=lambda r: r[0])
    detail = f"{fmt_ratio(worst)} ({where}; {spread}) over {len(rows)} rows"
    return rows, worst, detail


def _mem(row: Row) -> float:
    assert row.mem_mib is not None
    # Guard the ratio: a tiny O(T) peak can round to ~0 MiB.
    return max(row.mem_mib, 0.1)


def _target(out: list[Target], text: str, check) -> None:
    """Append ``text`` evaluated by ``check() -> (measured, ok)``, or n/a with the reason."""
    try:
        measured, ok = check()
    except _Missing as why:
        out.append(Target(text, str(why), NA))
        return
    out.append(Target(text, measured, MET if ok else NOT_MET))


def evaluate_targets(run: RunResult) -> list[Target]:
    """Every target of the benchmark issue, with the measured value and met / not met."""
    out: list[Target] = []
    for add in (
        _matmul_targets,
        _sdpa_targets,
        _t8192_targets,
        _weights_targets,
        _window_targets,
        _gqa_targets,
        _tutorial_targets,
    ):
        add(run, out)
    return out


def _matmul_targets(run: RunResult, out: list[Target]) -> None:
    """Fraction of the same-run matmul rate."""
    for case, name in (("b8-t256", "B8 T256"), ("t2048", "B1 T2048")):
        for direction, need in ((FWD, 0.85), (FWD_BWD, 0.75)):

            def frac(case=case, direction=direction, need=need):
                cr, (r,) = _rows(run, case, direction, AUTO)
                if r.frac_mm is None:
                    raise _Missing("no torch.mm rate")
                rates = f"{fmt_num(r.gflops)} of {fmt_num(cr.mm_gflops)} GFLOP/s"
                spread = _pct_range(r, cr.rounds)
                return f"{fmt_pct(r.frac_mm)} ({rates}; {spread})", r.frac_mm >= need

            text = f"{DIRECTION_TITLE[direction]} >= {need:.0%} of torch.mm at {name} (auto)"
            _target(out, text, frac)


def _sdpa_targets(run: RunResult, out: list[Target]) -> None:
    """Never slower than SDPA + Linear."""

    def vs_sdpa():
        ratios, worst, detail = _worst_ratio(run, AUTO, REFERENCE, "no case measured both")
        detail = f"worst {detail}"
        over = [f"{w} {fmt_ratio(r)} ({spread})" for r, w, spread in ratios if r > 1.05]
        if over:
            detail += "; over 1.05x: " + ", ".join(over)
        return detail, worst <= 1.05

    _target(out, "never > 5 % slower than SDPA + Linear (auto, every case and direction)", vs_sdpa)


def _t8192_targets(run: RunResult, out: list[Target]) -> None:
    """T=8192: memory against SDPA; the compat module against torch's eval fast path."""
    for case in ("t8192", "t8192-causal"):

        def mem_vs_sdpa(case=case):
            _, (a, ref) = _rows(run, case, FWD_BWD, AUTO, REFERENCE, mem=True)
            x = _mem(a) / _mem(ref)
            return f"{fmt_num(a.mem_mib)} vs {fmt_num(ref.mem_mib)} MiB = {x:.2f}x", x <= 2.0

        def compat_speed(case=case):
            cr, _ = _rows(run, case, FWD, TORCH_EVAL, COMPAT)
            s, spread = _speedup(cr, TORCH_EVAL, COMPAT)
            return f"{s:.2f}x faster ({spread})", s >= 2.0

        def compat_mem(case=case):
            _, (t, c) = _rows(run, case, FWD, TORCH_EVAL, COMPAT, mem=True)
            x = _mem(t) / _mem(c)
            return f"{fmt_num(t.mem_mib)} vs {fmt_num(c.mem_mib)} MiB = {x:.1f}x less", x >= 20

        _target(out, f"{case} forward+backward peak memory <= 2x SDPA + Linear (auto)", mem_vs_sdpa)
        nw = "(need_weights=False)"
        _target(out, f"{case} compat eval >= 2x faster than torch MHA eval {nw}", compat_speed)
        _target(out, f"{case} compat eval >= 20x less memory than torch MHA eval {nw}", compat_mem)


def _weights_targets(run: RunResult, out: list[Target]) -> None:
    """need_weights=True at T=2048, forward+backward."""
    for case in ("t2048", "t2048-causal"):

        def weights(case=case):
            cr, _ = _rows(run, case, FWD_BWD, AUTO, WEIGHTS)
            s, spread = _speedup(cr, WEIGHTS, AUTO)
            return f"{s:.2f}x ({spread})", s <= 1.5

        text = f"{case} forward+backward: need_weights=True <= 1.5x need_weights=False (auto)"
        _target(out, text, weights)


def _window_targets(run: RunResult, out: list[Target]) -> None:
    """Sliding window against SDPA given the same dense mask."""
    case = "t16384-window256"
    for direction in (FWD, FWD_BWD):

        def win_speed(direction=direction):
            cr, _ = _rows(run, case, direction, AUTO, REFERENCE)
            s, spread = _speedup(cr, REFERENCE, AUTO)
            return f"{s:.1f}x faster ({spread})", s >= 5.0

        def win_mem(direction=direction):
            _, (a, ref) = _rows(run, case, direction, AUTO, REFERENCE, mem=True)
            x = _mem(ref) / _mem(a)
            return f"{fmt_num(ref.mem_mib)} vs {fmt_num(a.mem_mib)} MiB = {x:.1f}x less", x >= 10

        d = DIRECTION_TITLE[direction]
        head = f"window 256 at T=16384 {d}:"
        _target(out, f"{head} >= 5x faster than SDPA + dense mask (auto)", win_speed)
        _target(out, f"{head} >= 10x less memory than SDPA + dense mask (auto)", win_mem)


def _gqa_targets(run: RunResult, out: list[Target]) -> None:
    """GQA no slower than MHA."""

    def gqa():
        _, worst, detail = _worst_ratio(run, GQA, AUTO, "GQA not measured")
        return f"worst GQA/MHA time {detail}", worst <= 1.0

    text = f"GQA ({GQA_KV_HEADS} KV heads) no slower than MHA (auto, every case and direction)"
    _target(out, text, gqa)


def _tutorial_targets(run: RunResult, out: list[Target]) -> None:
    """Against the tutorial per-head model, causal, T >= 2048."""
    long_causal = [
        c.name
        for c in {cr.case.name: cr.case for cr in run.results}.values()
        if c.mask == CAUSAL and c.seq >= 2048
    ]
    text = "forward+backward: >= 3x faster than the tutorial ModuleList"
    if not long_causal:
        out.append(Target(f"causal T >= 2048 {text}", "no causal case with T >= 2048 run", NA))
    for case in long_causal:

        def tutorial(case=case):
            cr, _ = _rows(run, case, FWD_BWD, AUTO, TUTORIAL)
            s, spread = _speedup(cr, TUTORIAL, AUTO)
            return f"{s:.2f}x faster ({spread})", s >= 3.0

        _target(out, f"{case} {text}", tutorial)


def targets_table(targets: Sequence[Target]) -> str:
    lines = [
        "Speed ratios are paired medians; `rounds a-b` is the range of the per-round ratios "
        "(a wide range means other jobs disturbed some rounds).",
        "",
        "| target | measured | status |",
        "|---|---|---|",
    ]
    lines += [f"| {t.text} | {t.measured} | {t.status} |" for t in targets]
    return "\n".join(lines)


# ---------------------------------------------------------------------- whole report
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


METHOD = f"""\
Method. All competitors of a case run in one process, interleaved: one untimed warm-up round,
then rounds in which each runs once, in a seeded random order drawn afresh every round (so no
competitor always runs right after the same neighbour), together with one fp32 `torch.mm` of
2048 x 2048 matrices. Reported: the median time over rounds; `x ref`, the median over rounds of
(time / SDPA + Linear's time in the same round); GFLOP/s from the useful FLOPs of the case and
the median time; `% of mm`, the median over rounds of (the row's rate / the `torch.mm` rate in
the same round). In parentheses after a ratio: the smallest and largest per-round value (rows
whose ranges overlap are not told apart by this run).
Long rows get fewer rounds (at least 3) when a round is slow.

- forward: `torch.no_grad()`, eval mode (rows marked *train* keep train mode, which turns off
  torch's fast path). forward+backward: train mode, input requires grad, backward from the
  output with a fixed random gradient; returned weights are kept alive until the backward ends.
  torch MHA eval rows exist for forward only: with grad enabled its fast path is off, so eval
  forward+backward is its train path.
- FLOPs: forward = 2·B·T·E·(E + 2·E_kv) + 2·B·T·E·E (projections) + 4·B·H·P·D (attention),
  P = allowed (query, key) pairs: T² full, T(T+1)/2 causal, Σ min(i+1, W) for window W;
  forward+backward = 3x forward. Every row of a case is credited the same useful FLOPs.
- Masks: causal rows use each API's causal path (`is_causal=True`; torch MHA and compat also
  get the (T, T) bool `attn_mask` torch requires); sliding-window rows give SDPA + Linear, torch
  MHA and compat the dense (T, T) bool mask (an input, allocated before the call), and
  multihead `masks.sliding_window(W)`.
- Memory: each (case, direction, competitor) in a fresh `python -m multihead_apps.bench.memory`
  process: build layer and inputs, run once at T={WARMUP_SEQ} (one-time code paths), reset the
  peak-RSS mark (`/proc/self/clear_refs`), run once; peak MiB = VmHWM - RSS before the call.
- Rows materializing T x T scores are skipped when their estimated peak exceeds the memory
  limit; the reason is printed.
- Tutorial model: per-head ModuleList (Karpathy's "Let's build GPT" `Head`), dropout omitted.
- `[backend]` after a multihead label is the backend `auto` picked.
"""


def render(run: RunResult, *, command: str) -> str:
    """The ``## Attention`` section: header, method, one table per case and direction, targets."""
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    nice = os.nice(0) if hasattr(os, "nice") else 0
    header = [
        SECTION,
        "",
        f"Command: `{command}`" + (f" (niceness {nice})" if nice else ""),
        "",
        f"Date: {now}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); wall time {run.wall_s:.0f} s.",
        "",
        f"torch.mm {timing.MM_SIZE}x{timing.MM_SIZE} fp32: {fmt_num(run.mm_start)} GFLOP/s at "
        f"start, {fmt_num(run.mm_end)} GFLOP/s at end (per-case rates below are measured in the "
        "same rounds as the case).",
        "",
        f"Load average (1, 5, 15 min) at start: {run.load_start or 'n/a'}; at end: "
        f"{run.load_end or 'n/a'}. On a shared machine, other jobs slow some rounds; the "
        "paired ratios and % of mm cancel slow drifts, but implementations made of many small "
        "parallel ops (blockwise, per-head loops) suffer more than fused kernels when another "
        "job holds a core, so a case whose torch.mm rate is far below the run's best was "
        "contended.",
        "",
        METHOD,
    ]
    blocks = [case_block(cr) for cr in run.results]
    targets = ["### Targets", "", targets_table(evaluate_targets(run)), ""]
    return "\n".join(header) + "\n" + "\n".join(blocks) + "\n" + "\n".join(targets)


def case_names(cases: Sequence[Case]) -> str:
    return ",".join(c.name for c in cases)
