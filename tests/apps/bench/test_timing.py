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


def test_interleave_shuffles_each_round_and_takes_medians():
    clock, log = FakeClock(), []
    calls = make_calls(clock, {"a": 1.0, "b": 2.0, "c": 4.0}, log)
    t = timing.interleave(calls, rounds=3, warmup=1, seed=5, clock=clock)
    assert log[:3] == ["a", "b", "c"]  # warmup, in the given order
    rounds = [log[3 + 3 * r : 6 + 3 * r] for r in range(3)]
    assert rounds == timing.shuffled_rounds(["a", "b", "c"], 3, seed=5)
    assert t.rounds == 3
    assert t.median("b") == 2.0
    assert t.ratio("c", "a") == 4.0


KEYS = ["sdpa", "auto", "math", "blockwise", "compat", "torch"]


def test_shuffled_rounds_have_every_key_once_per_round():
    orders = timing.shuffled_rounds(KEYS, 20, seed=0)
    assert len(orders) == 20
    for order in orders:
        assert sorted(order) == sorted(KEYS)
    assert timing.shuffled_rounds([], 2) == [[], []]


def test_shuffled_rounds_are_deterministic_for_a_seed():
    assert timing.shuffled_rounds(KEYS, 10, seed=3) == timing.shuffled_rounds(KEYS, 10, seed=3)
    assert timing.shuffled_rounds(KEYS, 10, seed=3) != timing.shuffled_rounds(KEYS, 10, seed=4)


def test_shuffled_rounds_change_order_and_neighbours():
    orders = timing.shuffled_rounds(KEYS, 20, seed=0)
    assert len({tuple(o) for o in orders}) > 10  # not one order, nor a few rotations of one
    # Unlike in a rotation, no key always runs right after the same key.
    before = {k: {o[i - 1] for o in orders for i in range(1, len(o)) if o[i] == k} for k in KEYS}
    assert all(len(prev) > 1 for prev in before.values()), before


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
