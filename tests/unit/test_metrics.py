"""Metrics against their definitions and against scikit-image / scipy."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.metrics import structural_similarity

from dekasim.metrics import binomial_ci95, mean_ci95, psnr_db, ssim
from dekasim.metrics.image import PSNR_CAP_DB


def test_psnr_matches_definition():
    ref = torch.zeros(2, 3, 8, 8)
    test = ref.clone()
    test[0] += 0.1  # MSE 0.01 -> 20 dB
    assert psnr_db(ref, test)[0].item() == pytest.approx(20.0)
    assert psnr_db(ref, test)[1].item() == PSNR_CAP_DB  # identical: capped, not inf


def test_ssim_matches_scikit_image():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 32, 32, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(3):
        ref = structural_similarity(a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(), channel_axis=2,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
        assert ours[i].item() == pytest.approx(float(ref), abs=1e-4)
    assert ssim(a, a).min().item() == pytest.approx(1.0)


def test_mean_ci95_is_student_t():
    x = [1.0, 2.0, 4.0, 7.0]
    mean, half = mean_ci95(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(np.mean(x)) and half == pytest.approx((hi - lo) / 2)
    assert math.isnan(mean_ci95([3.0])[1])


def test_clopper_pearson_bounds_and_coverage():
    assert binomial_ci95(0, 100) == (0.0, pytest.approx(1 - 0.025 ** (1 / 100)))
    assert binomial_ci95(100, 100)[1] == 1.0
    # coverage >= 95 % (exact interval is conservative)
    rng = np.random.default_rng(1)
    p, n = 0.03, 400
    hits = 0
    for k in rng.binomial(n, p, size=400):
        lo, hi = binomial_ci95(int(k), n)
        hits += lo <= p <= hi
    assert hits / 400 >= 0.93
    with pytest.raises(ValueError):
        binomial_ci95(5, 3)


# ------------------------------------------------------------------ intervals over independent units
from dekasim.codecs.base import LinkCounts  # noqa: E402
from dekasim.metrics import (bounded_mean_interval, clustered_rate_interval, interval_from_entry,  # noqa: E402
                             metric_interval, proportion_interval, student_t_interval, unit_stats)
from dekasim.metrics.stats import MIN_UNITS, totals_only_interval  # noqa: E402


def test_unit_stats_are_exact_for_counts_and_merge():
    e, n = np.array([0, 3, 0, 7]), np.array([100, 100, 50, 100])
    st = unit_stats(e, n)
    assert st == {"n_units": 4, "sum_x": 10, "sum_x2": 58, "sum_n": 350, "sum_n2": 32500, "sum_xn": 1000,
                  "n_nonzero": 2}
    assert all(isinstance(v, int) for v in st.values())
    from dekasim.metrics.stats import merge_stats

    assert merge_stats(unit_stats(e[:2], n[:2]), unit_stats(e[2:], n[2:])) == st


def test_clustered_ber_is_wider_than_bits_and_matches_the_cluster_variance():
    # 15 block errors' worth of bits in 3 of 40 blocks: the bits are not independent
    e = np.zeros(40, dtype=np.int64)
    e[[3, 17, 29]] = [40, 25, 35]
    iv = clustered_rate_interval(unit_stats(e, np.full(40, 1024)), "transport block")
    p = e.sum() / (40 * 1024)
    assert iv.estimate == pytest.approx(p) and iv.lo < p < iv.hi and iv.method == "korn-graubard"
    bits_lo, bits_hi = binomial_ci95(int(e.sum()), 40 * 1024)
    assert iv.hi - iv.lo > 5 * (bits_hi - bits_lo)
    # the ratio estimator's linearisation variance, by hand
    v = 40 / 39 * np.sum((e - p * 1024) ** 2) / (40 * 1024) ** 2
    n_eff = p * (1 - p) / v * (stats.norm.ppf(0.975) / stats.t.ppf(0.975, 39)) ** 2
    assert iv.lo == pytest.approx(stats.beta.ppf(0.025, n_eff * p, n_eff * (1 - p) + 1))
    assert iv.hi == pytest.approx(stats.beta.ppf(0.975, n_eff * p + 1, n_eff * (1 - p)))
    assert "errors in only 3 of 40" in iv.note


def test_zero_errors_are_bounded_by_units_not_bits():
    iv = clustered_rate_interval(unit_stats(np.zeros(16, dtype=int), np.full(16, 4096)), "transport block")
    assert iv.lo == 0.0 and iv.hi == pytest.approx(1 - 0.025 ** (1 / 16)) and iv.method == "unit-bound"
    assert "0 errors in 16 transport blocks" in iv.note
    totals = totals_only_interval(0, 16 * 4096, 16, "block")
    assert (totals.lo, totals.hi) == (iv.lo, iv.hi) and "no per-unit counts" in totals.note


def test_too_few_units_are_said_not_printed_as_plus_minus():
    for iv in (student_t_interval(unit_stats([20.0, 22.0]), "image"),
               bounded_mean_interval(unit_stats([0.9, 0.94]), "prompt", (-1, 1)),
               clustered_rate_interval(unit_stats([1, 0], [10, 10]), "block")):
        assert iv.ci is None and iv.n_units == 2 < MIN_UNITS and "no interval" in iv.note
    same = student_t_interval(unit_stats([30.0] * 5), "image")
    assert same.ci is None and "no spread" in same.note  # never "± 0"
    # 6/6 prompts agree on every attribute: a proportion and a bounded mean, neither "1.000 ± 0.000"
    allk = metric_interval("all_attributes_agree", np.ones(6))
    agree = metric_interval("attribute_agreement", np.ones(6))
    assert allk.hi == 1.0 and allk.lo == pytest.approx(6 / (6 + stats.norm.ppf(0.975) ** 2))  # Wilson
    assert agree.hi == 1.0 and agree.lo == pytest.approx(0.025 ** (1 / 6)) and agree.method == "unit-bound"


def test_bounded_means_stay_in_range_and_psnr_stays_student_t():
    rng = np.random.default_rng(0)
    cos = np.clip(rng.normal(0.97, 0.05, 12), -1, 1)
    iv = metric_interval("feature_cosine", cos)
    assert -1 <= iv.lo < cos.mean() < iv.hi <= 1 and iv.method == "wilson-neff" and iv.halfwidth is None
    # near the bound the interval is asymmetric, unlike a t interval that would run past 1
    t_half = stats.t.ppf(0.975, 11) * cos.std(ddof=1) / np.sqrt(12)
    assert iv.hi - cos.mean() < t_half < cos.mean() - iv.lo
    ps = rng.normal(25, 3, 20)
    t = metric_interval("psnr_db", ps)
    assert t.method == "student-t" and t.halfwidth == pytest.approx(mean_ci95(ps.tolist())[1])


def test_every_interval_recomputes_from_its_row_entry():
    rng = np.random.default_rng(1)
    e = rng.binomial(200, rng.beta(0.3, 10, 30))
    for iv in (clustered_rate_interval(unit_stats(e, np.full(30, 200)), "block"),
               clustered_rate_interval(unit_stats(np.zeros(5, dtype=int), np.full(5, 8)), "block"),
               totals_only_interval(7, 800, 8, "block"),
               student_t_interval(unit_stats(rng.normal(25, 2, 9)), "image"),
               bounded_mean_interval(unit_stats(rng.uniform(0.2, 0.9, 9)), "prompt", (-1, 1)),
               bounded_mean_interval(unit_stats(np.full(4, 0.6)), "prompt", (0, 1)),
               proportion_interval(4, 9, "block", "clopper-pearson"), proportion_interval(9, 9, "prompt")):
        entry = json.loads(json.dumps(iv.as_entry()))  # as a row stores it
        again = interval_from_entry(entry)
        assert (again.lo, again.hi, again.method, again.n_units) == (iv.lo, iv.hi, iv.method, iv.n_units)


def test_link_counts_keep_per_unit_statistics():
    a = LinkCounts.per_unit(torch.tensor([0, 5, 0]), 96)
    b = LinkCounts.per_unit([2, 0], [96, 96])
    total = LinkCounts()
    total += a
    total += b
    assert (total.bit_errors, total.bits, total.block_errors, total.blocks) == (7, 480, 2, 5)
    assert total.unit_stats == unit_stats(np.array([0, 5, 0, 2, 0]), np.full(5, 96))
    legacy = LinkCounts(bit_errors=3, bits=96, block_errors=1, blocks=1, unit="transport block")
    total += legacy  # totals only: the per-unit statistics no longer describe the sum
    assert total.unit_stats is None and total.bits == 576
    with pytest.raises(ValueError, match="slot"):
        a += LinkCounts.per_unit([1], 96, unit="slot")
