"""Tables, ratios, targets and the RESULTS.md section, from synthetic results."""

from __future__ import annotations

import pytest

from multihead_apps.bench import report, runner, timing
from multihead_apps.bench.cases import FWD, FWD_BWD, REFERENCE, Case
from multihead_apps.bench.runner import CaseResult, Row, RunResult


def case_result(case, direction, samples, mem=None, mm=100.0, skipped=None):
    """A CaseResult whose rows are derived from ``samples`` as the runner derives them."""
    t = timing.Timings(samples=samples)
    rows = []
    for key in samples:
        med = t.median(key)
        gflops = case.flops(direction) / med / 1e9
        # mm's rate is constant over rounds here: the fraction varies as 1 / time does.
        per_round = [case.flops(direction) / s / 1e9 / mm for s in samples[key]]
        rows.append(
            Row(
                key,
                key,
                median_s=med,
                ratio=t.ratio(key, REFERENCE),
                ratio_range=t.ratio_range(key, REFERENCE),
                gflops=gflops,
                frac_mm=gflops / mm,
                frac_mm_range=(min(per_round), max(per_round)),
                mem_mib=(mem or {}).get(key),
            )
        )
    for key, why in (skipped or {}).items():
        rows.append(Row(key, key, skipped=why))
    return CaseResult(case, direction, rows, t, mm)


B8 = Case("b8-t256", 8, 256, 512, 8)
T8K = Case("t8192", 1, 8192, 512, 8)
T2KC = Case("t2048-causal", 1, 2048, 512, 8, "causal")


def test_runner_fills_rows_from_timings():
    case = Case("tiny", 1, 16, 32, 4)
    comps = [runner.COMPETITORS[0], runner.COMPETITORS[1]]
    cr = runner.time_case(case, FWD, comps, rounds=1)
    assert cr.rounds == 1 and cr.mm_gflops > 0
    ref, auto = cr.row(REFERENCE), cr.row("mh-auto")
    assert ref.ratio == 1.0
    assert auto.ratio == cr.timings.ratio("mh-auto", REFERENCE)
    assert auto.gflops == case.flops(FWD) / auto.median_s / 1e9
    # one round: the paired fraction equals the ratio of the rates
    assert auto.frac_mm == pytest.approx(auto.gflops / cr.mm_gflops)
    assert auto.ratio_range == cr.timings.ratio_range("mh-auto", REFERENCE)
    assert auto.frac_mm_range == pytest.approx((auto.frac_mm, auto.frac_mm))


def test_run_with_memory_probes():
    case = Case("tiny", 1, 16, 32, 4)
    comps = [runner.COMPETITORS[0], runner.COMPETITORS[1]]
    result = runner.run([case], rounds=1, competitors=comps)
    assert len(result.results) == 2
    for cr in result.results:
        for row in cr.rows:
            assert row.mem_error is None and row.mem_mib is not None and row.mem_mib >= 0


def test_table_renders_values_and_skips():
    cr = case_result(
        B8,
        FWD,
        {REFERENCE: [0.010, 0.012, 0.011], "mh-auto": [0.011, 0.012, 0.0105]},
        mem={REFERENCE: 22.6, "mh-auto": 22.7},
        skipped={"mh-math": "materializes ~5.0 GiB"},
    )
    table = report.case_table(cr)
    assert "| SDPA" not in table  # labels are the synthetic keys here
    # Every ratio with its per-round range: auto/ref per round is 1.1, 1.0 and 0.95.
    assert f"| {REFERENCE} | 11.0 | 1.00x (1.00-1.00) |" in table
    assert "| mh-auto | 11.0 | 1.00x (0.95-1.10) |" in table
    assert "| 488 % (447-511) |" in table  # % of mm: the rate over rounds, 10.5 to 12 ms
    assert "22.7" in table
    assert "| mh-math | skipped (materializes ~5.0 GiB) |" in table
    block = report.case_block(cr)
    assert block.startswith("### B8 T256 E512 H8, full — forward (`b8-t256`)")
    assert "3 rounds" in block


def targets_by_text(targets):
    return {t.text: t for t in targets}


def test_targets_met_and_not_met():
    fast = {REFERENCE: [1.0, 1.0, 1.0], "mh-auto": [1.02, 1.01, 1.03], "mh-gqa": [0.9] * 3}
    results = [
        # forward: auto at 1.0 s for 5.37 GFLOP = 5.37 GFLOP/s; mm 6.0 -> 89 %
        case_result(B8, FWD, fast, mm=6.0),
        # fwd+bwd: auto 10 % slower than SDPA and 16.1/1.1/30 = 49 % of mm
        case_result(B8, FWD_BWD, {**fast, "mh-auto": [1.1, 1.1, 1.1]}, mm=30.0),
        case_result(
            T8K,
            FWD,
            {
                REFERENCE: [1.0] * 3,
                "mh-auto": [1.0] * 3,
                "compat": [1.0] * 3,
                "torch-mha-eval": [2.5] * 3,
            },
            mem={"compat": 80.0, "torch-mha-eval": 2100.0},
        ),
        case_result(
            T8K,
            FWD_BWD,
            {REFERENCE: [1.0] * 3, "mh-auto": [1.0] * 3},
            mem={REFERENCE: 100.0, "mh-auto": 250.0},
        ),
        case_result(
            T2KC,
            FWD_BWD,
            {
                REFERENCE: [1.0] * 3,
                "mh-auto": [1.0] * 3,
                "mh-auto-weights": [1.4] * 3,
                "tutorial": [3.5] * 3,
            },
        ),
    ]
    t = targets_by_text(report.evaluate_targets(RunResult(results)))
    frac = t["forward >= 85% of torch.mm at B8 T256 (auto)"]
    assert frac.status == report.MET and frac.measured.endswith("; rounds 87-89 %, n=3)")
    assert t["forward+backward >= 75% of torch.mm at B8 T256 (auto)"].status == report.NOT_MET
    assert t["forward >= 85% of torch.mm at B1 T2048 (auto)"].status == report.NA
    slower = t["never > 5 % slower than SDPA + Linear (auto, every case and direction)"]
    assert slower.status == report.NOT_MET
    assert "1.10x (b8-t256 fwd+bwd; rounds 1.10-1.10, n=3)" in slower.measured
    assert "over 1.05x: b8-t256 fwd+bwd 1.10x (rounds 1.10-1.10, n=3)" in slower.measured
    nw = "(need_weights=False)"
    speed = t[f"t8192 compat eval >= 2x faster than torch MHA eval {nw}"]
    assert speed.status == report.MET and speed.measured == "2.50x faster (rounds 2.50-2.50, n=3)"
    mem = t[f"t8192 compat eval >= 20x less memory than torch MHA eval {nw}"]
    assert mem.status == report.MET and "26.2x less" in mem.measured
    mem2 = t["t8192 forward+backward peak memory <= 2x SDPA + Linear (auto)"]
    assert mem2.status == report.NOT_MET and "2.50x" in mem2.measured
    assert t["t8192-causal forward+backward peak memory <= 2x SDPA + Linear (auto)"].status == (
        report.NA
    )
    w = t["t2048-causal forward+backward: need_weights=True <= 1.5x need_weights=False (auto)"]
    assert w.status == report.MET and w.measured.startswith("1.40x (rounds 1.40-1.40")
    tut = t["t2048-causal forward+backward: >= 3x faster than the tutorial ModuleList"]
    assert tut.status == report.MET and tut.measured.startswith("3.50x faster")
    gqa = t["GQA (2 KV heads) no slower than MHA (auto, every case and direction)"]
    assert gqa.status == report.MET


def test_render_has_command_and_targets():
    run = RunResult([case_result(B8, FWD, {REFERENCE: [1.0], "mh-auto": [1.0]})], 90.0, 91.0)
    text = report.render(run, command="multihead bench --quick")
    assert text.startswith("## Attention\n")
    assert "Command: `multihead bench --quick`" in text
    assert "### Targets" in text and "| target | measured | status |" in text
    assert "torch " in text and "CPU: " in text
