"""Metrics against their definitions and against scikit-image / scipy."""

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
