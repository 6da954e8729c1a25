"""Metrics: image quality (PSNR, SSIM) and statistics with confidence intervals."""

from dekasim.metrics.image import psnr_db, ssim
from dekasim.metrics.stats import binomial_ci95, mean_ci95

__all__ = ["binomial_ci95", "mean_ci95", "psnr_db", "ssim"]
