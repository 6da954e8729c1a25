"""Metrics: image quality (PSNR, SSIM), statistics with confidence intervals over independent units,
consistency reports (the embedded world's scores: :func:`dekasim.generative.consistency.consistency`)."""

from dekasim.metrics.consistency import ConsistencyReport, metric_interval, paired_difference
from dekasim.metrics.image import psnr_db, ssim
from dekasim.metrics.stats import (Interval, binomial_ci95, bounded_mean_interval, clustered_rate_interval,
                                   interval_from_entry, mean_ci95, proportion_interval, student_t_interval,
                                   unit_stats)

__all__ = ["ConsistencyReport", "Interval", "binomial_ci95", "bounded_mean_interval", "clustered_rate_interval",
           "interval_from_entry", "mean_ci95", "metric_interval", "paired_difference", "proportion_interval",
           "psnr_db", "ssim", "student_t_interval", "unit_stats"]
