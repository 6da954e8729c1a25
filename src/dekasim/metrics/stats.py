"""Confidence intervals from raw samples and counts (the result store keeps both)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def mean_ci95(samples: Sequence[float]) -> tuple[float, float]:
    """Sample mean and the half-width of its two-sided 95 % Student-t interval.

    The half-width is NaN for fewer than two samples (no spread to estimate)."""
    n = len(samples)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(samples) / n
    if n < 2:
        return mean, math.nan
    var = math.fsum((s - mean) ** 2 for s in samples) / (n - 1)
    return mean, float(stats.t.ppf(0.975, n - 1) * math.sqrt(var / n))


def binomial_ci95(errors: int, trials: int) -> tuple[float, float]:
    """Two-sided 95 % Clopper-Pearson interval [lo, hi] of an error rate from raw counts.

    Exact (conservative); with zero errors the lower bound is 0 and the upper bound ~3.7/trials."""
    if trials <= 0:
        return math.nan, math.nan
    if not 0 <= errors <= trials:
        raise ValueError(f"errors={errors} outside [0, trials={trials}]")
    lo = 0.0 if errors == 0 else float(stats.beta.ppf(0.025, errors, trials - errors + 1))
    hi = 1.0 if errors == trials else float(stats.beta.ppf(0.975, errors + 1, trials - errors))
    return lo, hi
