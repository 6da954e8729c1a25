"""A figure over Eb/N0 never mixes MCSs silently (issue 20, item 3): a codec whose rows used several MCSs
(link adaptation) is drawn as one curve per MCS with a warning naming it; a point that mixed MCSs is left
out (warned); over Es/N0 nothing changes. Synthetic rows, no simulation."""

from __future__ import annotations

import warnings

import pytest

from dekasim.plots import ResultsWarning, error_rate_figure
from dekasim.plots.figures import X_LABELS, row_mcs


def _row(codec: str, snr: float, mcs: float | None, table="qam64", profile="awgn", ratio=None) -> dict:
    bler = min(1.0, 10 ** (-snr / 10))
    info = {} if mcs is None else {"mcs_index": mcs, "mcs_table": {table: 4}}
    return {"point_id": f"{codec}-{snr}-{mcs}", "codec": codec, "codec_name": "digital", "kind": "digital",
            "snr_db": snr, "ebno_db": snr - 2.0, "delay_spread_ns": 0.0, "tdl_profile": profile, "speed_mps": 0.0,
            "csi": "perfect", "bandwidth_ratio": ratio, "bits": 10_000, "bit_errors": int(1000 * bler),
            "ber": int(1000 * bler) / 10_000, "blocks": 100, "block_errors": int(100 * bler), "bler": int(100 * bler) / 100,
            "info": info}


def _lines(fig):
    return sorted({ln.get_label() for ax in fig.axes for ln in ax.get_lines() if not ln.get_label().startswith("_")})


def test_the_mcs_of_a_row():
    assert row_mcs(_row("d", 0, 9.0)) == "MCS 9"
    assert row_mcs(_row("d", 0, 20.0, table="qam256")) == "MCS 20 (qam256)"
    assert row_mcs(_row("d", 0, 10.5)) == "mixed"  # the mean over batches of two MCSs
    assert row_mcs(_row("d", 0, None)) is None


def test_an_adaptive_codec_over_eb_n0_is_one_curve_per_mcs_and_warned_by_name():
    rows = [_row("digital (adaptive)", s, m) for s, m in ((0, 4.0), (5, 4.0), (10, 9.0), (15, 9.0), (20, 13.0))]
    with pytest.warns(ResultsWarning, match=r"'digital \(adaptive\)' used MCS 13, MCS 4, MCS 9 .*own curve"):
        fig = error_rate_figure(rows, "bler", x="ebno_db")
    assert _lines(fig) == ["digital (adaptive) — MCS 13", "digital (adaptive) — MCS 4", "digital (adaptive) — MCS 9"]
    assert fig.axes[0].get_xlabel() == X_LABELS["ebno_db"] == "Eb/N0 [dB]" and fig.axes[0].get_yscale() == "log"
    # over Es/N0 the same rows are one curve, and nothing is said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = error_rate_figure(rows, "bler", x="snr_db")
    assert _lines(fig) == ["digital (adaptive)"]


def test_one_mcs_per_curve_needs_no_split_and_a_single_mcs_is_named_in_the_title():
    rows = [_row(f"5G, MCS {m}", s, float(m)) for m in (4, 9) for s in (0, 2, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = error_rate_figure(rows, "ber", x="ebno_db")
    assert _lines(fig) == ["5G, MCS 4", "5G, MCS 9"]
    one = error_rate_figure([r for r in rows if r["codec"] == "5G, MCS 9"], "ber", x="ebno_db")
    assert "MCS 9" in one._suptitle.get_text()
    assert "bandwidth ratio" not in one._suptitle.get_text()  # bit payloads have none (null in rows)


def test_a_point_that_mixed_mcss_is_left_out_of_the_eb_n0_figure_with_a_warning():
    rows = [_row("outer loop", 0, 4.0), _row("outer loop", 5, 6.5), _row("outer loop", 10, 4.0)]
    with pytest.warns(ResultsWarning, match=r"'outer loop' at awgn 5 dB mixed MCSs within the point \(6.5\)"):
        fig = error_rate_figure(rows, "bler", x="ebno_db")
    xs = sorted(x for ax in fig.axes for ln in ax.get_lines() for x in ln.get_xdata())
    assert xs == [-2.0, 8.0]


def test_panels_over_very_different_eb_n0_ranges_do_not_share_the_x_axis():
    awgn = [_row("5G, MCS 9", s, 9.0) for s in (0, 1, 2, 3)]
    fading = [_row("5G, MCS 9", s, 9.0, profile="rayleigh") for s in (0, 10, 20, 30)]
    fig = error_rate_figure(awgn + fading, "bler", x="ebno_db")
    (lo_a, hi_a), (lo_r, hi_r) = (tuple(ax.get_xlim()) for ax in fig.axes[:2])
    assert hi_a - lo_a < 0.3 * (hi_r - lo_r)  # the AWGN waterfall keeps its own scale
    same = error_rate_figure(fading + [_row("5G, MCS 9", s, 9.0, profile="awgn") for s in (5, 15, 25)], "bler",
                             x="ebno_db")
    assert same.axes[0].get_xlim() == same.axes[1].get_xlim()
