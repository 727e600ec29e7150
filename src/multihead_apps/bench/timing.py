"""Interleaved timing: every competitor runs once per round, so that slow drifts of a shared
machine (other jobs, frequency, thermals) hit all of them alike. The order is a seeded shuffle
drawn afresh each round: a fixed or rotated order would put each competitor always right after
the same neighbour, whose leftovers (caches, allocator state, a core still busy) it would pay.

Reported per competitor: the median over rounds. Ratios to a reference are the median of the
per-round ratios (paired: each round's time divided by the reference's time in that same
round), which cancels drifts slower than a round.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

MM_SIZE = 2048


def mm_flops(n: int | None = None) -> float:
    n = n or MM_SIZE
    return 2.0 * n**3


def mm_call(n: int | None = None) -> Callable[[], None]:
    """One fp32 ``torch.mm`` of two ``n x n`` matrices (default ``MM_SIZE``) into a
    preallocated output."""
    n = n or MM_SIZE
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)

    def call() -> None:
        torch.mm(a, b, out=out)

    return call


def measure_mm(reps: int = 5, n: int | None = None) -> float:
    """Median GFLOP/s of ``torch.mm`` on ``n x n`` fp32 (after one warmup call)."""
    call = mm_call(n)
    call()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return mm_flops(n) / statistics.median(times) / 1e9


@dataclass
class Timings:
    """Seconds per call, one sample per round for every key (samples are round-aligned)."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.samples.values()), default=0)

    def median(self, key: str) -> float:
        return statistics.median(self.samples[key])

    def ratio(self, key: str, ref: str) -> float:
        """Median over rounds of ``time[key] / time[ref]`` in the same round."""
        return paired_ratio(self.samples[key], self.samples[ref])

    def ratio_range(self, key: str, ref: str) -> tuple[float, float]:
        """Smallest and largest per-round ratio: how far one round can move the median."""
        per_round = [t / r for t, r in zip(self.samples[key], self.samples[ref])]
        return min(per_round), max(per_round)


def paired_ratio(times: list[float], ref_times: list[float]) -> float:
    if len(times) != len(ref_times) or not times:
        raise ValueError(
            f"paired ratio needs equal, non-empty sample lists; got {len(times)} and "
            f"{len(ref_times)}"
        )
    return statistics.median(t / r for t, r in zip(times, ref_times))


def rounds_for(round_seconds: float, rounds: int, budget_s: float | None, min_rounds: int) -> int:
    """Rounds that fit ``budget_s`` (at least ``min_rounds``, at most ``rounds``)."""
    if budget_s is None or round_seconds <= 0:
        return rounds
    fit = int(budget_s // round_seconds)
    return max(min(min_rounds, rounds), min(rounds, fit))


def shuffled_rounds(keys: Sequence[str], rounds: int, seed: int = 0) -> list[list[str]]:
    """The order of each round: every key exactly once, in a random order drawn afresh each
    round from a generator seeded by ``seed`` (the same seed gives the same orders).

    Example:
        >>> orders = shuffled_rounds(["a", "b", "c"], 4, seed=0)
        >>> [sorted(o) for o in orders] == [["a", "b", "c"]] * 4
        True
        >>> orders == shuffled_rounds(["a", "b", "c"], 4, seed=0)
        True
    """
    rng = random.Random(seed)
    return [rng.sample(list(keys), len(keys)) for _ in range(rounds)]


def interleave(
    calls: Mapping[str, Callable[[], None]],
    *,
    rounds: int,
    warmup: int = 1,
    budget_s: float | None = None,
    min_rounds: int = 3,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> Timings:
    """Time ``calls`` interleaved: ``warmup`` untimed rounds in the given order, then up to
    ``rounds`` timed ones (fewer if a round is so slow that ``rounds`` would exceed
    ``budget_s``), each in its own order from :func:`shuffled_rounds` with ``seed``.

    A call that raises is dropped from all rounds and reported in ``Timings.failed``.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    keys = list(calls)
    result = Timings()
    last: dict[str, float] = {}
    for _ in range(max(warmup, 1) if budget_s is not None else warmup):
        for key in list(keys):
            t0 = clock()
            try:
                calls[key]()
            except Exception as err:  # a competitor failing must not end the benchmark
                result.failed[key] = f"{type(err).__name__}: {err}"
                keys.remove(key)
                continue
            last[key] = clock() - t0
    n = rounds_for(sum(last.values()), rounds, budget_s, min_rounds)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for order in shuffled_rounds(keys, n, seed):
        for key in order:
            if key in result.failed:
                continue
            t0 = clock()
            try:
                calls[key]()
            except Exception as err:
                result.failed[key] = f"{type(err).__name__}: {err}"
                continue
            samples[key].append(clock() - t0)
    result.samples = {k: v for k, v in samples.items() if k not in result.failed}
    return result
