"""Coverage of the result rows' 95 % intervals, measured on simulations with a known truth.

Each :class:`Experiment` draws one small simulation's per-unit values with numpy and returns the interval
the result rows would carry (:mod:`dekasim.metrics.stats`); :func:`measure` repeats it and counts how
often the interval holds the truth. ``tests/unit/test_interval_coverage.py`` checks the supported
regimes, ``benchmarks/interval_coverage.py`` writes the coverage table the docs quote (docs/results.md).

Experiments (the truths are closed forms or one-dimensional integrals):

- :func:`rayleigh_ber` / :func:`rayleigh_bler`: uncoded BPSK over Rayleigh block fading, every bit of a
  block under one fade ``h``, ``|h|^2 ~ Exp(1)``: bit errors of block ``i`` ~ Binomial(n, Q(sqrt(2 g
  |h_i|^2))), so they cluster. BER = (1 - sqrt(g / (1 + g))) / 2 at mean SNR ``g`` per bit; BLER =
  1 - E[(1 - Q(sqrt(2 g |h|^2)))^n].
- :func:`coded_ber`: blocks fail independently with probability ``q`` and a failed block loses a
  Beta(2, 18) fraction of its bits (mean 10 %), as a decoded LDPC block does; BER = 0.1 q.
- :func:`psnr_mean`: per-image PSNR [dB] from a normal or a skewed (shifted gamma) distribution.
- :func:`agreement`: per prompt, ``k`` of 5 attributes agree, ``k`` ~ Binomial(5, p), ``p`` ~
  Beta(a, b) per prompt (attributes of one image cluster); attribute agreement = a / (a + b), all five
  agree = E[p^5].
- :func:`cosine_mean`: per-prompt cosine in [-1, 1]: a mixture of well-aligned pairs (Beta(40, 3)
  on [0, 1]) and misaligned ones (Beta(6, 6)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import integrate, special

from dekasim.metrics.stats import (Interval, clopper_pearson, clustered_rate_interval, proportion_interval,
                                   student_t_interval, unit_stats)


@dataclass(frozen=True)
class Experiment:
    """One known-truth simulation.

    :param metric: the row metric it stands for (``"ber"``, ``"bler"``, ``"psnr_db"``,
        ``"attribute_agreement"``, ``"all_attributes_agree"``, ``"feature_cosine"``).
    :param label: the regime in words.
    :param truth: the true value of the metric.
    :param draw: ``rng -> (Interval, extra)``: one simulation's interval, and the facts :func:`measure`
        averages (e.g. ``{"error_units": 7}``; ``old_lo``/``old_hi``: the interval rows used before).
    :param unit: the independent unit of the interval.
    """

    metric: str
    label: str
    truth: float
    draw: Callable[[np.random.Generator], tuple[Interval, dict[str, float]]]
    unit: str


def _q(x: np.ndarray) -> np.ndarray:
    return 0.5 * special.erfc(x / math.sqrt(2.0))


def rayleigh_ber_truth(snr_db: float) -> float:
    """BER of uncoded BPSK over Rayleigh fading at mean SNR per bit ``snr_db`` [dB]."""
    g = 10 ** (snr_db / 10)
    return 0.5 * (1 - math.sqrt(g / (1 + g)))


def rayleigh_bler_truth(snr_db: float, bits_per_block: int) -> float:
    """Probability that a block of ``bits_per_block`` uncoded BPSK bits under one Rayleigh fade has an error."""
    g = 10 ** (snr_db / 10)

    def f(t: float) -> float:  # t = |h|^2 ~ Exp(1)
        return math.exp(-t) * -math.expm1(bits_per_block * math.log1p(-float(_q(np.sqrt(2 * g * t)))))

    return integrate.quad(f, 0, math.inf, limit=200)[0]


def _rayleigh_errors(rng: np.random.Generator, snr_db: float, blocks: int, bits: int) -> np.ndarray:
    g = 10 ** (snr_db / 10)
    return rng.binomial(bits, _q(np.sqrt(2 * g * rng.exponential(size=blocks))))


def rayleigh_ber(snr_db: float, blocks: int, bits_per_block: int) -> Experiment:
    """BER interval (Korn-Graubard over blocks) of uncoded BPSK over Rayleigh block fading."""
    def draw(rng: np.random.Generator) -> tuple[Interval, dict[str, float]]:
        e = _rayleigh_errors(rng, snr_db, blocks, bits_per_block)
        iv = clustered_rate_interval(unit_stats(e, np.full(blocks, bits_per_block)), "block")
        return iv, {"error_units": float((e > 0).sum()), "bit_errors": float(e.sum()),
                    **_old_cover(clopper_pearson(e.sum(), blocks * bits_per_block))}

    return Experiment("ber", f"uncoded BPSK, Rayleigh block fading, {snr_db:g} dB, {blocks} blocks x "
                      f"{bits_per_block} bits", rayleigh_ber_truth(snr_db), draw, "block")


def rayleigh_bler(snr_db: float, blocks: int, bits_per_block: int) -> Experiment:
    """BLER interval (Clopper-Pearson over blocks) of the same link as :func:`rayleigh_ber`."""
    def draw(rng: np.random.Generator) -> tuple[Interval, dict[str, float]]:
        e = _rayleigh_errors(rng, snr_db, blocks, bits_per_block)
        return proportion_interval(int((e > 0).sum()), blocks, "block", "clopper-pearson"), \
            {"error_units": float((e > 0).sum())}

    return Experiment("bler", f"uncoded BPSK, Rayleigh block fading, {snr_db:g} dB, {blocks} blocks x "
                      f"{bits_per_block} bits", rayleigh_bler_truth(snr_db, bits_per_block), draw, "block")


def coded_ber(block_error_rate: float, blocks: int, bits_per_block: int = 1000) -> Experiment:
    """BER interval of LDPC-like clustering: a block fails w.p. ``block_error_rate`` and then loses a
    Beta(2, 18) fraction of its bits."""
    q = block_error_rate

    def draw(rng: np.random.Generator) -> tuple[Interval, dict[str, float]]:
        fail = rng.random(blocks) < q
        e = np.where(fail, rng.binomial(bits_per_block, rng.beta(2, 18, size=blocks)), 0)
        iv = clustered_rate_interval(unit_stats(e, np.full(blocks, bits_per_block)), "block")
        return iv, {"error_units": float((e > 0).sum()), "bit_errors": float(e.sum()),
                    **_old_cover(clopper_pearson(e.sum(), blocks * bits_per_block))}

    return Experiment("ber", f"coded-like: BLER {q:g}, a failed block loses ~10 % of its bits, {blocks} blocks x "
                      f"{bits_per_block} bits", 0.1 * q, draw, "block")


def psnr_mean(distribution: str, images: int) -> Experiment:
    """PSNR [dB] interval (Student-t over images): ``"normal"`` N(25, 3^2) or ``"skewed"`` 15 + Gamma(2, 5)
    (mean 25 dB)."""
    def draw(rng: np.random.Generator) -> tuple[Interval, dict[str, float]]:
        x = rng.normal(25.0, 3.0, images) if distribution == "normal" else 15.0 + rng.gamma(2.0, 5.0, images)
        return student_t_interval(unit_stats(x), "image"), {}

    what = "normal N(25, 3^2)" if distribution == "normal" else "skewed 15 + Gamma(2, 5)"
    return Experiment("psnr_db", f"PSNR {what} dB, {images} images", 25.0, draw, "image")


def agreement(a: float, b: float, prompts: int, all_five: bool = False) -> Experiment:
    """Attribute agreement (bounded mean, Wilson at the effective sample size) or, ``all_five``, the
    fraction of prompts where all five attributes agree (Wilson), with Beta(a, b) agreement per prompt."""
    from dekasim.metrics.consistency import metric_interval

    name = "all_attributes_agree" if all_five else "attribute_agreement"
    truth = math.exp(special.betaln(a + 5, b) - special.betaln(a, b)) if all_five else a / (a + b)

    def draw(rng: np.random.Generator) -> tuple[Interval, dict[str, float]]:
        k = rng.binomial(5, rng.beta(a, b, size=prompts))
        v = (k == 5).astype(np.float64) if all_five else k / 5.0
        return metric_interval(name, v, "prompt"), {}

    return Experiment(name, f"5 attributes per prompt, agreement ~ Beta({a:g}, {b:g}) per prompt, {prompts} prompts",
                      truth, draw, "prompt")


def cosine_mean(misaligned_fraction: float, prompts: int) -> Experiment:
    """Feature cosine in [-1, 1] (bounded mean): a ``misaligned_fraction`` of prompts ~ 2 Beta(6, 6) - 1,
    the rest ~ 2 Beta(40, 3) - 1."""
    from dekasim.metrics.consistency import metric_interval

    w = misaligned_fraction
    truth = 2 * ((1 - w) * 40 / 43 + w * 0.5) - 1

    def draw(rng: np.random.Generator) -> tuple[Interval, dict[str, float]]:
        u = np.where(rng.random(prompts) < w, rng.beta(6, 6, prompts), rng.beta(40, 3, prompts))
        return metric_interval("feature_cosine", 2 * u - 1, "prompt"), {}

    return Experiment("feature_cosine", f"cosine, {w:.0%} of prompts misaligned, {prompts} prompts", truth, draw,
                      "prompt")


def _old_cover(ci: tuple[float, float]) -> dict[str, float]:
    return {"old_lo": ci[0], "old_hi": ci[1]}


def measure(exp: Experiment, reps: int, seed: int) -> dict[str, Any]:
    """Repeat ``exp`` ``reps`` times (seeded) and count how often its interval holds the truth.

    :return: ``metric``, ``label``, ``unit``, ``truth``, ``reps``, ``coverage`` (share of repetitions whose
        interval holds the truth; a missing interval counts as a miss), ``below`` / ``above`` (truth below
        the interval / above it), ``no_interval``, ``methods`` (how often each method was used), the
        mean of each extra fact (``mean_error_units`` ...), ``notes`` (share with a note), and for BER
        ``old_coverage``: the Clopper-Pearson interval over bits that rows used before.
    """
    rng = np.random.default_rng(seed)
    hit = below = above = none = noted = old_hit = 0
    methods: dict[str, int] = {}
    extras: dict[str, float] = {}
    for _ in range(reps):
        iv, extra = exp.draw(rng)
        methods[iv.method] = methods.get(iv.method, 0) + 1
        noted += iv.note is not None
        if iv.lo is None or iv.hi is None:
            none += 1
        elif exp.truth < iv.lo:
            below += 1
        elif exp.truth > iv.hi:
            above += 1
        else:
            hit += 1
        if "old_lo" in extra:
            old_hit += extra.pop("old_lo") <= exp.truth <= extra.pop("old_hi")
        for k, v in extra.items():
            extras[k] = extras.get(k, 0.0) + v
    out: dict[str, Any] = {"metric": exp.metric, "label": exp.label, "unit": exp.unit, "truth": exp.truth,
                           "reps": reps, "seed": seed, "coverage": hit / reps, "below": below / reps,
                           "above": above / reps, "no_interval": none / reps, "notes": noted / reps,
                           "methods": dict(sorted(methods.items()))}
    out.update({f"mean_{k}": v / reps for k, v in extras.items()})
    if exp.metric == "ber":
        out["old_coverage"] = old_hit / reps
    return out
