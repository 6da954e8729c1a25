"""Metrics: image quality (PSNR, SSIM) and statistics with confidence intervals."""

from dekasim.metrics.consistency import ConsistencyReport, consistency, paired_difference
from dekasim.metrics.image import psnr_db, ssim
from dekasim.metrics.stats import binomial_ci95, mean_ci95

__all__ = ["ConsistencyReport", "binomial_ci95", "consistency", "mean_ci95", "paired_difference", "psnr_db", "ssim"]
