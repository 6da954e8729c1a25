"""Metrics: image quality (PSNR, SSIM), statistics with confidence intervals, consistency reports (the
embedded world's scores: :func:`dekasim.generative.consistency.consistency`)."""

from dekasim.metrics.consistency import ConsistencyReport, paired_difference
from dekasim.metrics.image import psnr_db, ssim
from dekasim.metrics.stats import binomial_ci95, mean_ci95

__all__ = ["ConsistencyReport", "binomial_ci95", "mean_ci95", "paired_difference", "psnr_db", "ssim"]
