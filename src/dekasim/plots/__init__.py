"""Figures from result files only.

A run directory holds ``results.jsonl`` (one row per finished sweep point) and ``manifest.json``;
this package reads nothing else. Typical use::

    from dekasim.plots import plot_run
    plot_run(["runs/default"], "runs/default/plots")          # PSNR, BER, BLER as PNG + PDF
    plot_run(["runs/ls", "runs/lmmse"], "runs/compare")       # two runs overlaid

or, to adjust a figure before saving it::

    from dekasim.plots import load_results, psnr_figure, save_figure
    fig = psnr_figure(load_results("runs/default"))
    fig.axes[0].set_ylim(10, 40)
    save_figure(fig, "runs/default/plots", "psnr_zoom")
"""

from dekasim.plots.figures import (
    DPI,
    X_LABELS,
    codec_colors,
    error_rate_figure,
    metric_figure,
    plot_ber,
    plot_bler,
    plot_consistency,
    plot_psnr,
    plot_run,
    psnr_figure,
    save_figure,
)
from dekasim.plots.results import ResultsWarning, load_results

__all__ = [
    "DPI", "X_LABELS", "ResultsWarning", "codec_colors", "error_rate_figure", "load_results",
    "metric_figure", "plot_ber", "plot_bler", "plot_consistency", "plot_psnr", "plot_run", "psnr_figure", "save_figure",
]
