"""Confidence intervals for held-out metrics (Student t, no SciPy needed).

Example:
    >>> est = mean_ci([1.0, 2.0, 3.0, 4.0])
    >>> round(est.mean, 3), round(est.low, 3), round(est.high, 3)
    (2.5, 0.446, 4.554)
    >>> round(t_quantile(0.975, 9), 4)
    2.2622
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def _t_pdf(x: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf(x: float, df: float) -> float:
    """P(T <= x) for x >= 0, by Simpson's rule on the density (smooth, so 2000 panels give
    about 1e-10 accuracy for the x < 100 that matter here)."""
    n = 2000
    h = x / n
    s = _t_pdf(0.0, df) + _t_pdf(x, df)
    s += 4 * sum(_t_pdf((2 * i - 1) * h, df) for i in range(1, n // 2 + 1))
    s += 2 * sum(_t_pdf(2 * i * h, df) for i in range(1, n // 2))
    return 0.5 + s * h / 3


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (``0.5 <= p < 1``) of Student's t with ``df`` degrees of freedom."""
    if not 0.5 <= p < 1.0:
        raise ValueError(f"p must be in [0.5, 1), got {p!r}")
    if not df > 0:
        raise ValueError(f"df must be positive, got {df!r}")
    if math.isinf(df) or df > 1e7:
        return _normal_quantile(p)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _normal_quantile(p: float) -> float:
    lo, hi = 0.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class Estimate:
    """A mean with a two-sided confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def mean_ci(values: Iterable[float], *, level: float = 0.95) -> Estimate:
    """Mean and Student-t confidence interval ``mean +- t * s / sqrt(n)``.

    For paired comparisons (two policies on the same seeds, two models on the same data
    splits) pass the per-pair differences: the interval is then on the difference.
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    half = t_quantile(0.5 + level / 2, n - 1) * math.sqrt(var / n)
    return Estimate(mean=mean, low=mean - half, high=mean + half, n=n, level=level)
