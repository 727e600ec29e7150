"""Interleaved timing logic, with a fake clock (no real timing is asserted)."""

from __future__ import annotations

import pytest

from multihead_apps.bench import timing


class FakeClock:
    """Each call advances time by the duration of the competitor that is running."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make_calls(clock, durations, log):
    def make(key):
        def call():
            log.append(key)
            clock.now += (
                durations[key].pop(0) if isinstance(durations[key], list) else durations[key]
            )

        return call

    return {k: make(k) for k in durations}


def test_paired_ratio_is_median_of_per_round_ratios():
    assert timing.paired_ratio([2.0, 4.0, 30.0], [1.0, 1.0, 10.0]) == 3.0
    with pytest.raises(ValueError, match="equal"):
        timing.paired_ratio([1.0], [1.0, 2.0])


def test_rounds_for_budget():
    assert timing.rounds_for(1.0, 7, None, 3) == 7
    assert timing.rounds_for(1.0, 7, 100.0, 3) == 7
    assert timing.rounds_for(10.0, 7, 45.0, 3) == 4
    assert timing.rounds_for(60.0, 7, 45.0, 3) == 3  # never below min_rounds
    assert timing.rounds_for(60.0, 2, 45.0, 3) == 2  # nor above rounds


def test_interleave_rotates_and_takes_medians():
    clock, log = FakeClock(), []
    calls = make_calls(clock, {"a": 1.0, "b": 2.0, "c": 4.0}, log)
    t = timing.interleave(calls, rounds=3, warmup=1, clock=clock)
    assert log[:3] == ["a", "b", "c"]  # warmup
    assert log[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotated rounds
    assert t.rounds == 3
    assert t.median("b") == 2.0
    assert t.ratio("c", "a") == 4.0


def test_interleave_paired_ratio_cancels_drift():
    clock, log = FakeClock(), []
    # The machine slows down 10x in the last round: both slow down, the ratio holds.
    calls = make_calls(clock, {"ref": [1.0, 1.0, 1.0, 10.0], "x": [2.0, 2.0, 2.0, 20.0]}, log)
    t = timing.interleave(calls, rounds=3, warmup=1, clock=clock)
    assert t.samples["ref"] == [1.0, 1.0, 10.0]
    assert t.ratio("x", "ref") == 2.0
    assert t.ratio_range("x", "ref") == (2.0, 2.0)


def test_interleave_drops_failing_calls():
    clock, log = FakeClock(), []
    calls = make_calls(clock, {"ok": 1.0}, log)

    def boom():
        raise RuntimeError("out of memory")

    calls["bad"] = boom
    t = timing.interleave(calls, rounds=2, warmup=1, clock=clock)
    assert "out of memory" in t.failed["bad"]
    assert list(t.samples) == ["ok"]
    assert t.rounds == 2


def test_interleave_budget_limits_rounds():
    clock, log = FakeClock(), []
    calls = make_calls(clock, {"a": 5.0, "b": 5.0}, log)
    t = timing.interleave(calls, rounds=9, budget_s=40.0, min_rounds=3, clock=clock)
    assert t.rounds == 4  # a round takes 10 s


def test_mm_call_runs_and_measure_mm_is_positive():
    timing.mm_call(64)()
    assert timing.measure_mm(reps=1, n=64) > 0
