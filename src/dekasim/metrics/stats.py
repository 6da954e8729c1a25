"""Confidence intervals over independent units, from sufficient statistics the result rows keep.

Every interval here is a two-sided 95 % interval over *units that are independent in the simulation*
(an image, a prompt, a transport block), never over quantities that are correlated inside one unit
(bits of one LDPC block or one fading slot, attributes of one image). A row keeps, per metric, the
unit, the number of units, the method and the sufficient statistics (:func:`unit_stats`), so that
:func:`interval_from_entry` recomputes the interval from the row alone.

Methods (the ``method`` string of an :class:`Interval`):

``"student-t"``
    mean of unbounded per-unit values (PSNR [dB]): mean ± t_{0.975, m-1} s / sqrt(m).
``"korn-graubard"``
    a rate of clustered events (BER: bit errors ``x_i`` out of ``n_i`` bits in unit ``i``): the ratio
    estimator ``p = sum x / sum n`` with its cluster-robust (linearisation) variance
    ``v = m / (m - 1) * sum (x_i - p n_i)^2 / (sum n)^2``, turned into an interval by Korn & Graubard
    (1998): the Clopper-Pearson interval at the effective sample size ``n_eff = p (1 - p) / v``
    (at most ``sum n``), scaled by ``(z_{0.975} / t_{0.975, m-1})^2`` for the m - 1 degrees of freedom
    of ``v``; Beta quantiles take the non-integer counts ``n_eff p`` and ``n_eff``. It stays inside
    [0, 1] and keeps its coverage at small error counts (``tests/unit/test_interval_coverage.py``).
``"wilson-neff"``
    mean of a per-unit value bounded in ``[a, b]`` (attribute agreement, feature/DINO/CLIP cosine,
    SSIM): the values mapped to [0, 1], then the Wilson score interval at the same df-adjusted
    effective sample size (no cap), mapped back. Stays inside ``[a, b]``.
``"wilson"``, ``"clopper-pearson"``
    a proportion of units (all attributes agree; BLER over blocks): Wilson score, or the exact
    Clopper-Pearson interval.
``"unit-bound"``
    the fallback of ``"korn-graubard"`` and ``"wilson-neff"`` when the units show no spread at all
    (zero bit errors, every unit at the same value): the Clopper-Pearson interval of ``m p`` out of
    ``m`` units. A value in [0, 1] has variance at most ``mu (1 - mu)``, so this is the widest
    clustering could make it: with zero bit errors in ``m`` blocks the BER upper bound is
    ``1 - 0.025^(1/m)`` -- one block in error could lose all its bits -- not ``3.7 / bits``.

Methods that estimate a variance (``student-t``, ``korn-graubard``, ``wilson-neff``) need at least
:data:`MIN_UNITS` units; with fewer, or with no spread for ``student-t``, the interval is None and the
:class:`Interval` says why in ``note`` (never "± 0" and never a half-width of t_{0.975, 1} = 12.7 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

#: Two-sided confidence level of every interval, and its tail probabilities (literals: bit-identical to
#: the Clopper-Pearson intervals rows carried before).
LEVEL = 0.95
_LOWER, _UPPER = 0.025, 0.975
_Z = float(stats.norm.ppf(_UPPER))
#: Fewest units a variance-estimating interval (student-t, korn-graubard, wilson-neff) is given for.
MIN_UNITS = 3
#: Fewer units with errors than this get a note on a korn-graubard interval: its variance then rests on
#: those few units (see the coverage table in docs/results.md).
FEW_ERROR_UNITS = 10

#: Method names and their description in words (figure captions, docs).
METHODS = {
    "student-t": "Student-t",
    "korn-graubard": "Korn-Graubard (cluster-robust ratio, Clopper-Pearson at the effective sample size)",
    "wilson-neff": "Wilson at the effective sample size, bounded",
    "wilson": "Wilson score",
    "clopper-pearson": "Clopper-Pearson",
    "unit-bound": "Clopper-Pearson over units at maximal clustering (conservative)",
    "exact": "none: exact by construction",
}


@dataclass(frozen=True)
class Interval:
    """A two-sided 95 % interval of one metric and what it is over.

    :param estimate: the point estimate (mean or rate); None without units.
    :param lo, hi: the interval, in the metric's unit; both None when no honest interval exists (see ``note``).
    :param method: a key of :data:`METHODS`.
    :param unit: the independent unit, singular (``"image"``, ``"prompt"``, ``"transport block"``).
    :param n_units: how many units it is over.
    :param stats: the sufficient statistics it was computed from (:func:`unit_stats`; for proportions
        ``{"n_units", "count"}``).
    :param value_range: ``[a, b]`` of a bounded metric (``wilson-neff``), else None.
    :param note: why there is no interval, or what limits it; None otherwise.
    """

    estimate: float | None
    lo: float | None
    hi: float | None
    method: str
    unit: str
    n_units: int
    stats: dict[str, Any] = field(default_factory=dict)
    value_range: tuple[float, float] | None = None
    note: str | None = None
    half: float | None = None  # the half-width of a symmetric interval, as computed

    @property
    def ci(self) -> list[float] | None:
        """``[lo, hi]``, or None when there is no interval."""
        return None if self.lo is None or self.hi is None else [self.lo, self.hi]

    @property
    def halfwidth(self) -> float | None:
        """Half-width of a symmetric (``student-t``) interval, else None."""
        if self.method != "student-t" or self.lo is None or self.hi is None:
            return None
        return self.half if self.half is not None else (self.hi - self.lo) / 2

    def as_entry(self) -> dict[str, Any]:
        """What a result row keeps under ``intervals[metric]``: unit, n_units, method, level, stats (and
        ``range``, ``note`` when set)."""
        d: dict[str, Any] = {"unit": self.unit, "n_units": self.n_units, "method": self.method, "level": LEVEL,
                             "stats": dict(self.stats)}
        if self.value_range is not None:
            d["range"] = list(self.value_range)
        if self.note:
            d["note"] = self.note
        return d


# ----------------------------------------------------------------------------------- statistics
def unit_stats(values: Sequence[float] | np.ndarray,
               sizes: Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
    """Sufficient statistics of per-unit values, as rows keep them.

    :param values: ``[m]`` per-unit values: a metric value per image/prompt, or, with ``sizes``, a count
        per unit (bit errors of one transport block).
    :param sizes: ``[m]`` trials per unit (bits of the block), or None for plain values.
    :return: plain values: ``{"n_units", "sum_x", "ss_x"}`` (the sum, and the sum of squared deviations from
        the mean, both exactly rounded: the mean and Student-t interval are those of the samples); with
        ``sizes``: ``{"n_units", "sum_x", "sum_x2", "sum_n", "sum_n2", "sum_xn", "n_nonzero"}`` (units with
        ``x > 0``), Python ints for integer inputs (exact, and they add up over batches: :func:`merge_stats`).
    """
    x = np.asarray(values).reshape(-1)
    out: dict[str, Any] = {"n_units": int(x.size)}
    if sizes is None:
        xs = x.astype(np.float64).tolist()
        total = math.fsum(xs)
        mean = total / len(xs) if xs else 0.0
        out["sum_x"], out["ss_x"] = total, math.fsum((v - mean) ** 2 for v in xs)
        return out
    exact = x.dtype.kind in "iub"
    x = x.astype(np.int64 if exact else np.float64)
    n = np.asarray(sizes).reshape(-1)
    if n.shape != x.shape:
        raise ValueError(f"unit_stats: sizes of shape {n.shape} for values of shape {x.shape}")
    n = n.astype(np.int64 if n.dtype.kind in "iub" else np.float64)
    conv = int if exact else float
    nconv = int if n.dtype.kind == "i" else float
    out["sum_x"], out["sum_x2"] = conv(x.sum()), conv((x * x).sum())
    out["sum_n"], out["sum_n2"] = nconv(n.sum()), nconv((n * n).sum())
    out["sum_xn"] = (int if exact and nconv is int else float)((x * n).sum())
    out["n_nonzero"] = int((x > 0).sum())
    return out


def merge_stats(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Sufficient statistics of the union of two disjoint sets of units (every field adds)."""
    if set(a) != set(b):
        raise ValueError(f"merge_stats: fields differ, {sorted(a)} vs {sorted(b)}")
    return {k: a[k] + b[k] for k in a}


def _too_few(estimate: float | None, method: str, unit: str, m: int, st: dict[str, Any],
             value_range: tuple[float, float] | None = None) -> Interval:
    note = (f"{m} {unit}{'' if m == 1 else 's'}: no interval (a {METHODS[method]} interval needs at least "
            f"{MIN_UNITS} independent units)")
    return Interval(estimate, None, None, method, unit, m, st, value_range, note)


def _t_factor(m: int) -> float:
    """``(z / t_{m-1})^2``: the Korn-Graubard degrees-of-freedom shrinkage of an effective sample size."""
    return (_Z / float(stats.t.ppf(_UPPER, m - 1))) ** 2


def clopper_pearson(x: float, n: float) -> tuple[float, float]:
    """Clopper-Pearson interval of ``x`` successes in ``n`` trials (Beta quantiles: ``x``, ``n`` may be
    non-integer, as at an effective sample size). :return: ``(lo, hi)`` inside [0, 1]."""
    lo = 0.0 if x <= 0 else float(stats.beta.ppf(_LOWER, x, n - x + 1))
    hi = 1.0 if x >= n else float(stats.beta.ppf(_UPPER, x + 1, n - x))
    return lo, hi


def wilson(x: float, n: float) -> tuple[float, float]:
    """Wilson score interval of ``x`` successes in ``n`` trials (``n`` may be an effective sample size).
    :return: ``(lo, hi)`` inside [0, 1]."""
    p = x / n
    d = 1 + _Z ** 2 / n
    c = (p + _Z ** 2 / (2 * n)) / d
    h = _Z * math.sqrt(max(p * (1 - p), 0.0) / n + _Z ** 2 / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _ratio(st: Mapping[str, Any]) -> tuple[float, float]:
    """(ratio estimate sum x / sum n, its cluster-robust variance) from :func:`unit_stats` with sizes."""
    m, sx, sn = st["n_units"], st["sum_x"], st["sum_n"]
    p = sx / sn
    ss = st["sum_x2"] - 2 * p * st["sum_xn"] + p * p * st["sum_n2"]  # sum (x_i - p n_i)^2
    scale = st["sum_x2"] + p * p * st["sum_n2"]
    if ss <= 1e-12 * scale:  # no spread (rounding may leave a tiny negative)
        ss = 0.0
    return p, m / (m - 1) * ss / (sn * sn)


# ------------------------------------------------------------------------------------ intervals
def student_t_interval(st: Mapping[str, Any], unit: str) -> Interval:
    """Mean of unbounded per-unit values and its Student-t interval (method ``"student-t"``).

    :param st: :func:`unit_stats` of the values (e.g. PSNR [dB] per image).
    :param unit: the unit's name (``"image"``).
    """
    st = dict(st)
    m = st["n_units"]
    mean = st["sum_x"] / m if m else None
    if m < MIN_UNITS:
        return _too_few(mean, "student-t", unit, m, st)
    ss = st["ss_x"]
    if ss <= 1e-24 * max(st["sum_x"] ** 2 / m, 1e-300):
        return Interval(mean, None, None, "student-t", unit, m, st,
                        note=f"no spread: all {m} values equal, no interval")
    half = float(stats.t.ppf(_UPPER, m - 1)) * math.sqrt(ss / (m - 1) / m)
    return Interval(mean, mean - half, mean + half, "student-t", unit, m, st, half=half)


def unit_bound_interval(p: float, m: int, st: dict[str, Any], unit: str, why: str,
                        value_range: tuple[float, float] | None = None) -> Interval:
    """The ``"unit-bound"`` interval of a mean ``p`` (on the [0, 1] scale of ``value_range``) over ``m``
    units: Clopper-Pearson of ``m p`` out of ``m``, valid however the values cluster inside a unit.

    :param why: the reason, first words of the ``note`` (e.g. ``"0 errors in 16 blocks"``)."""
    lo, hi = clopper_pearson(p * m, m)
    a, b = value_range or (0.0, 1.0)
    return Interval(a + (b - a) * p, a + (b - a) * lo, a + (b - a) * hi, "unit-bound", unit, m, st, value_range,
                    f"{why}: bound over {m} {unit}s at maximal clustering")


def clustered_rate_interval(st: Mapping[str, Any], unit: str) -> Interval:
    """Rate of clustered events (BER) over independent units: ratio estimator, cluster-robust variance,
    Korn-Graubard interval (method ``"korn-graubard"``; see the module doc).

    :param st: :func:`unit_stats` of per-unit error counts with their sizes (bits per unit).
    :param unit: the unit's name (``"transport block"``).
    :return: the interval; ``"unit-bound"`` at zero errors (or no spread), None below :data:`MIN_UNITS`.
    """
    st = dict(st)
    m, sn = st["n_units"], st["sum_n"]
    p = st["sum_x"] / sn if sn > 0 else None
    if p is None or m < MIN_UNITS:
        return _too_few(p, "korn-graubard", unit, m, st)
    p, v = _ratio(st)
    if p <= 0:
        return unit_bound_interval(p, m, st, unit, f"0 errors in {m} {unit}s")
    if p >= 1 or v <= 0:
        return unit_bound_interval(p, m, st, unit, "no spread between units")
    n_eff = min(p * (1 - p) / v, float(sn)) * _t_factor(m)
    lo, hi = clopper_pearson(n_eff * p, n_eff)
    k = st.get("n_nonzero")
    note = None
    if k is not None and k < FEW_ERROR_UNITS:
        note = (f"errors in only {k} of {m} {unit}s: the interval takes their spread as representative "
                f"(send more units, e.g. monte_carlo.target_block_errors, for a firmer one)")
    return Interval(p, min(lo, p), max(hi, p), "korn-graubard", unit, m, st, note=note)


def bounded_mean_interval(st: Mapping[str, Any], unit: str,
                          value_range: tuple[float, float] = (0.0, 1.0)) -> Interval:
    """Mean of per-unit values bounded in ``value_range`` (agreement, cosine, SSIM): Wilson score at the
    df-adjusted effective sample size on the [0, 1] scale (method ``"wilson-neff"``; see the module doc).

    :param st: :func:`unit_stats` of the per-unit values (in the metric's own unit).
    :param unit: the unit's name (``"prompt"``, ``"image"``).
    :param value_range: ``(a, b)``, the metric's bounds (cosine and SSIM: ``(-1, 1)``).
    :return: the interval, inside ``value_range``; ``"unit-bound"`` when every unit has the same value
        (e.g. 6 prompts, all attributes agreeing), None below :data:`MIN_UNITS`.
    """
    st = dict(st)
    a, b = (float(value_range[0]), float(value_range[1]))
    if not b > a:
        raise ValueError(f"bounded_mean_interval: value_range {value_range} is empty")
    m = st["n_units"]
    mean = st["sum_x"] / m if m else None
    if m < MIN_UNITS:
        return _too_few(mean, "wilson-neff", unit, m, st, (a, b))
    w = b - a
    # on the [0, 1] scale: mean p and the variance of the mean (the ratio estimator's with one trial per unit)
    p = min(max((mean - a) / w, 0.0), 1.0)
    v = st["ss_x"] / (w * w) / (m - 1) / m
    if v <= 1e-24 or p <= 0 or p >= 1:
        return unit_bound_interval(p, m, st, unit, f"all {m} values equal", (a, b))
    n_eff = p * (1 - p) / v * _t_factor(m)
    lo, hi = wilson(n_eff * p, n_eff)
    return Interval(mean, a + w * min(lo, p), a + w * max(hi, p), "wilson-neff", unit, m, st, (a, b))


def proportion_interval(successes: int, n: int, unit: str, method: str = "wilson") -> Interval:
    """A proportion of independent units (all attributes agree; BLER over blocks).

    :param method: ``"wilson"`` or ``"clopper-pearson"`` (exact, conservative).
    :return: the interval; None for ``n = 0``.
    """
    if method not in ("wilson", "clopper-pearson"):
        raise ValueError(f"proportion_interval: method {method!r}, expected 'wilson' or 'clopper-pearson'")
    successes, n = int(successes), int(n)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside [0, n={n}]")
    st = {"n_units": n, "count": successes}
    if n == 0:
        return Interval(None, None, None, method, unit, 0, st, note=f"0 {unit}s: no interval")
    lo, hi = (wilson if method == "wilson" else clopper_pearson)(successes, n)
    return Interval(successes / n, lo, hi, method, unit, n, st)


def totals_only_interval(errors: int, trials: int, n_units: int, unit: str) -> Interval:
    """A rate from totals only (a codec that reports no per-unit counts): ``"unit-bound"`` over its
    ``n_units`` independent units, the widest any clustering inside a unit could make it."""
    st = {"n_units": int(n_units), "sum_x": errors, "sum_n": trials}
    if n_units < 1 or trials <= 0:
        return _too_few(None, "unit-bound", unit, int(n_units), st)
    return unit_bound_interval(errors / trials, int(n_units), st, unit, "no per-unit counts from the codec")


def exact_interval(st: Mapping[str, Any], unit: str) -> Interval:
    """No interval for a quantity that is not random (method ``"exact"``: a bound that cannot err)."""
    st = dict(st)
    m, sn = st.get("n_units", 0), st.get("sum_n", 0)
    est = st["sum_x"] / sn if sn else None
    return Interval(est, None, None, "exact", unit, m, st, note="exact by construction: no sampling error")


def interval_from_entry(entry: Mapping[str, Any]) -> Interval:
    """Recompute the interval a row keeps under ``intervals[metric]`` (:meth:`Interval.as_entry`)."""
    method, unit, st = entry["method"], entry["unit"], entry["stats"]
    if method == "student-t":
        return student_t_interval(st, unit)
    if method in ("wilson-neff",) or (method == "unit-bound" and "range" in entry):
        return bounded_mean_interval(st, unit, tuple(entry.get("range", (0.0, 1.0))))
    if method == "unit-bound" and "sum_x2" not in st:  # a codec that reported totals only
        return totals_only_interval(st["sum_x"], st["sum_n"], st["n_units"], unit)
    if method in ("korn-graubard", "unit-bound"):
        return clustered_rate_interval(st, unit)
    if method == "exact":
        return exact_interval(st, unit)
    if method in ("wilson", "clopper-pearson"):
        return proportion_interval(st["count"], st["n_units"], unit, method)
    raise ValueError(f"interval_from_entry: unknown method {method!r} (known: {sorted(METHODS)})")


# ------------------------------------------------------------------------------ older helpers
def mean_ci95(samples: Sequence[float]) -> tuple[float, float]:
    """Sample mean and the half-width of its two-sided 95 % Student-t interval.

    The half-width is NaN for fewer than two samples (no spread to estimate). For result rows use
    :func:`student_t_interval`, which also refuses fewer than :data:`MIN_UNITS` units."""
    n = len(samples)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(samples) / n
    if n < 2:
        return mean, math.nan
    var = math.fsum((s - mean) ** 2 for s in samples) / (n - 1)
    return mean, float(stats.t.ppf(0.975, n - 1) * math.sqrt(var / n))


def binomial_ci95(errors: int, trials: int) -> tuple[float, float]:
    """Two-sided 95 % Clopper-Pearson interval [lo, hi] of an error rate from raw counts over
    *independent* trials (blocks, images; not bits of one block: see :func:`clustered_rate_interval`).

    Exact (conservative); with zero errors the lower bound is 0 and the upper bound ~3.7/trials."""
    if trials <= 0:
        return math.nan, math.nan
    if not 0 <= errors <= trials:
        raise ValueError(f"errors={errors} outside [0, trials={trials}]")
    return clopper_pearson(errors, trials)
