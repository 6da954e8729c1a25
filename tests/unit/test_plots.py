"""dekasim.plots: figures from synthetic result files (fast, no simulation)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dekasim.plots import (
    ResultsWarning,
    error_rate_figure,
    load_results,
    plot_run,
    psnr_figure,
)

SNRS = (0.0, 5.0, 10.0)
DELAY_SPREADS = (30.0, 300.0)


def _row(codec: str, kind: str, snr: float, ds: float, *, csi: str = "lmmse",
         zero_errors: bool = False) -> dict:
    digital = kind == "digital"
    psnr = 15.0 + 1.2 * snr - ds / 300.0 - (2.0 if digital else 0.0)
    row = {
        "point_id": f"{codec}-{snr}-{ds}-{csi}", "scenario_hash": "abc123",
        "codec": codec, "codec_name": codec.split()[0], "kind": kind,
        "snr_db": snr, "ebno_db": snr - 3.0 if digital else None,
        "delay_spread_ns": ds, "tdl_profile": "C", "speed_mps": 3.0, "csi": csi,
        "bandwidth_ratio": 1 / 12, "channel_uses": 1024, "n_images": 64,
        "psnr_db": psnr, "psnr_db_ci95": 0.4, "ssim": 0.8, "ssim_ci95": [0.79, 0.81],
        "ber": None, "ber_ci95": None, "bler": None, "bler_ci95": None,
        "bit_errors": None, "bits": None, "block_errors": None, "blocks": None,
        "status": "done", "runtime_s": 1.0, "seed": 1, "info": {},
        "intervals": {"psnr_db": {"unit": "image", "n_units": 64, "method": "student-t"}},
    }
    if digital:
        bits, blocks = 100_000, 100
        if zero_errors:
            errs, berrs, ber_ci, bler_ci = 0, 0, [0.0, 0.036], [0.0, 0.036]
        else:
            errs = int(bits * 0.1 * 10 ** (-snr / 5))
            berrs = min(blocks, max(1, errs // 50))
            b, bl = errs / bits, berrs / blocks
            ber_ci, bler_ci = [b * 0.8, b * 1.2], [max(0.0, bl - 0.05), min(1.0, bl + 0.05)]
        row["intervals"].update(
            ber={"unit": "transport block", "n_units": blocks,
                 "method": "unit-bound" if zero_errors else "korn-graubard"},
            bler={"unit": "transport block", "n_units": blocks, "method": "clopper-pearson"})
        row.update(bits=bits, bit_errors=errs, ber=errs / bits, ber_ci95=ber_ci,
                   blocks=blocks, block_errors=berrs, bler=berrs / blocks, bler_ci95=bler_ci,
                   status="max_iterations" if zero_errors else "target_errors")
    return row


def _rows(csi: str = "lmmse") -> list[dict]:
    rows = []
    for ds in DELAY_SPREADS:
        for snr in SNRS:
            rows.append(_row("analog", "analog", snr, ds, csi=csi))
            rows.append(_row("digital (best)", "digital", snr, ds, csi=csi,
                             zero_errors=(snr == SNRS[-1] and ds == DELAY_SPREADS[0])))
    return rows


def _write_run(run_dir: Path, rows: list[dict], name: str = "synthetic",
               truncate: bool = False) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if truncate:
        text += json.dumps(rows[0])[:37]  # a killed run: half a line, no newline
    (run_dir / "results.jsonl").write_text(text)
    (run_dir / "manifest.json").write_text(json.dumps({
        "scenario": {"name": name}, "scenario_hash": "abc123", "command": "dekasim run x.toml",
        "versions": {"dekasim": "0.1.0"}, "date": "2025-01-01T00:00:00Z"}))
    return run_dir


def _data_line(ax, label_start: str):
    return next(ln for ln in ax.get_lines() if ln.get_label().startswith(label_start)
                and ln.get_linestyle() != "None")


def test_plot_run_writes_png_and_pdf(tmp_path):
    run = _write_run(tmp_path / "run", _rows())
    out = tmp_path / "figs"
    paths = plot_run(run, out)
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{m}_vs_snr.{e}" for m in ("psnr", "ber", "bler") for e in ("png", "pdf"))
    for p in paths:
        assert p.parent == out and p.is_file() and p.stat().st_size > 1000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_truncated_last_line_is_tolerated(tmp_path):
    rows = _rows()
    run = _write_run(tmp_path / "run", rows, truncate=True)
    with pytest.warns(ResultsWarning, match="truncated last line"):
        loaded = load_results(run)
    assert len(loaded) == len(rows)
    assert {r["run_label"] for r in loaded} == {"synthetic"}
    assert loaded[0]["run_dir"] == str(run)
    with pytest.warns(ResultsWarning):
        fig = psnr_figure(load_results(run))
    assert len(_data_line(fig.axes[0], "analog").get_xdata()) == len(SNRS)


def test_resumed_run_after_truncation_keeps_all_rows(tmp_path):
    rows = _rows()
    run = tmp_path / "run"
    _write_run(run, rows[:3], truncate=True)
    with (run / "results.jsonl").open("a") as f:  # resumed run appends after the broken half-line
        f.writelines(json.dumps(r) + "\n" for r in rows[3:])
    with pytest.warns(ResultsWarning, match="results.jsonl:4"):
        loaded = load_results(run / "results.jsonl")
    # the first appended row shares the broken line and is lost; the rerun would redo that point
    assert len(loaded) == len(rows) - 1


def test_missing_results_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.jsonl"):
        load_results(tmp_path)


def test_psnr_figure_axes():
    fig = psnr_figure(_rows())
    assert len(fig.axes) == len(DELAY_SPREADS)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["TDL-C, DS 30 ns", "TDL-C, DS 300 ns"]
    assert all("Es/N0" in ax.get_xlabel() for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "PSNR [dB]"
    assert all(ax.get_yscale() == "linear" for ax in fig.axes)
    assert all(ax.xaxis.get_gridlines()[0].get_visible() for ax in fig.axes)
    # constant conditions are named once, in the figure title
    title = fig.get_suptitle()
    assert "LMMSE CSI" in title and "bandwidth ratio 1/12" in title and "synthetic" not in title
    ax = fig.axes[0]
    analog, digital = _data_line(ax, "analog"), _data_line(ax, "digital")
    assert digital.get_linestyle() == "--" and analog.get_linestyle() == "-"
    assert len(digital.get_xdata()) == len(SNRS)
    # same colour per codec in every panel
    for other in fig.axes[1:]:
        assert _data_line(other, "digital").get_color() == digital.get_color()
    assert analog.get_color() != digital.get_color()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["analog", "digital (best)"]


def test_ber_figure_log_axis_zero_errors_and_digital_only():
    rows = _rows()
    fig = error_rate_figure(rows, "ber")
    assert len(fig.axes) == len(DELAY_SPREADS)
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        assert "Es/N0" in ax.get_xlabel()
        assert ax.yaxis.get_gridlines()[0].get_visible()
        assert not any(ln.get_label().startswith("analog") for ln in ax.get_lines())
    ax0 = fig.axes[0]
    line = _data_line(ax0, "digital")
    assert line.get_linestyle() == "--"
    assert len(line.get_xdata()) == len(SNRS) - 1  # the zero-error point is not on the curve
    bound = next(ln for ln in ax0.get_lines() if "upper bound" in ln.get_label())
    assert list(bound.get_xdata()) == [SNRS[-1]] and list(bound.get_ydata()) == [0.036]
    lo, hi = ax0.get_ylim()
    assert lo > 0 and hi <= 1.5 and math.isfinite(lo)
    assert "0 errors: 95 % upper bound" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(_data_line(fig.axes[1], "digital").get_xdata()) == len(SNRS)


def test_bler_and_ebno_axis():
    fig = error_rate_figure(_rows(), "bler", x="ebno_db")
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "BLER" and "Eb/N0" in fig.axes[0].get_xlabel()


def test_analog_only_rows_give_no_error_rate_figure(tmp_path):
    rows = [r for r in _rows() if r["kind"] == "analog"]
    assert error_rate_figure(rows, "ber") is None
    runs = [_write_run(tmp_path / n, rows, name=n) for n in ("one", "two")]  # overlay, one figure
    paths = plot_run(runs, tmp_path / "figs")
    assert sorted(p.name for p in paths) == ["psnr_vs_snr.pdf", "psnr_vs_snr.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_overlay_of_two_runs_has_distinguishable_labels(tmp_path):
    a = _write_run(tmp_path / "a", _rows("ls"), name="ls-run")
    b = _write_run(tmp_path / "b", _rows("lmmse"), name="lmmse-run")
    fig = psnr_figure(load_results([a, b]))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(legend) == 4 and len(set(legend)) == 4
    assert any("ls-run" in s and "LS CSI" in s for s in legend)
    assert any("lmmse-run" in s and "LMMSE CSI" in s for s in legend)
    ax = fig.axes[0]
    la, lb = _data_line(ax, "digital (best) — ls-run"), _data_line(ax, "digital (best) — lmmse-run")
    assert la.get_color() == lb.get_color() and la.get_marker() != lb.get_marker()
    assert error_rate_figure(load_results([a, b]), "ber").get_suptitle() == \
        "bandwidth ratio 1/12 · 3 m/s"  # run and CSI vary: named per line, not in the title


def test_same_scenario_name_twice_gets_unique_run_labels(tmp_path):
    a = _write_run(tmp_path / "a", _rows(), name="same")
    b = _write_run(tmp_path / "b", _rows(), name="same")
    labels = {r["run_label"] for r in load_results([a, b])}
    assert len(labels) == 2 and all(s.startswith("same") for s in labels)


def test_bound_kind_is_dotted_and_profiles_split_panels():
    rows = _rows()
    rows += [dict(r, codec="ideal (best)", codec_name="ideal", kind="bound", psnr_db=r["psnr_db"] + 3,
                  point_id=r["point_id"] + "-ideal") for r in rows if r["kind"] == "analog"]
    rows += [dict(r, tdl_profile="A", point_id=r["point_id"] + "-A") for r in rows]
    fig = psnr_figure(rows)
    assert len(fig.axes) == 2 * len(DELAY_SPREADS)
    assert _data_line(fig.axes[0], "ideal").get_linestyle() == ":"
    assert {ax.get_title().split(",")[0] for ax in fig.axes} == {"TDL-A", "TDL-C"}
    # profile x delay-spread grid: one row per profile, the bottom row carries the x labels
    assert [ax.get_title() for ax in fig.axes] == [
        "TDL-A, DS 30 ns", "TDL-A, DS 300 ns", "TDL-C, DS 30 ns", "TDL-C, DS 300 ns"]
    assert ["Es/N0" in ax.get_xlabel() for ax in fig.axes] == [False, False, True, True]
    # five delay spreads of one profile: 3 + 2 panels, the lowest panel of each column is labelled
    fig = psnr_figure([dict(r, delay_spread_ns=d) for d in (10, 30, 100, 300, 1000)
                       for r in _rows()[:2]])
    assert len(fig.axes) == 5
    assert sum("Es/N0" in ax.get_xlabel() for ax in fig.axes) == 3


def _inside_figure(fig) -> bool:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box, frame = fig.legends[0].get_window_extent(canvas.get_renderer()), fig.bbox
    return box.x0 >= frame.x0 - 0.5 and box.x1 <= frame.x1 + 0.5 and box.y0 >= frame.y0 - 0.5


def test_overlay_legend_with_long_labels_is_outside_the_axes_and_not_clipped(tmp_path):
    long = "digital (best image codec, 5G LDPC + QAM, MCS per point)"
    runs = [_write_run(tmp_path / n, [dict(r, codec=r["codec"].replace("digital (best)", long)) for r in _rows(csi)],
                       name=n) for n, csi in (("deka-main-job-with-a-long-name", "ls"), ("another-long-run", "lmmse"))]
    for fig in (psnr_figure(load_results(runs)), error_rate_figure(load_results(runs), "ber")):
        assert _inside_figure(fig)
        legend = fig.legends[0]
        assert legend.get_window_extent().y1 <= min(ax.get_window_extent().y0 for ax in fig.axes)  # below the axes
        assert len(legend.get_texts()) >= 3


def test_figures_say_what_their_error_bars_are():
    fig = psnr_figure(_rows())
    assert fig.legends[0].get_title().get_text() == "error bars: 95 % CI over 64 images (Student-t)"
    ber = error_rate_figure(_rows(), "ber").legends[0].get_title().get_text()
    assert ber.startswith("error bars: 95 % CI over 100 transport blocks (Korn-Graubard, cluster-robust; ")
    assert "bound over units" in ber
    bler = error_rate_figure(_rows(), "bler").legends[0].get_title().get_text()
    assert bler == "error bars: 95 % CI over 100 transport blocks (Clopper-Pearson)"
    old = [{k: v for k, v in r.items() if k != "intervals"} for r in _rows()]
    assert psnr_figure(old).legends[0].get_title().get_text() == "error bars: 95 % CI as stored in the rows"


def test_bounded_metric_error_bars_are_asymmetric_and_zero_error_bound_uses_units():
    from dekasim.plots import metric_figure

    rows = [dict(r, attribute_agreement=0.95, attribute_agreement_ci95=[0.80, 0.99],
                 intervals={"attribute_agreement": {"unit": "prompt", "n_units": 48, "method": "wilson-neff"}})
            for r in _rows() if r["kind"] == "analog"]
    fig = metric_figure(rows, "attribute_agreement", "agreement")
    bars = [c for c in fig.axes[0].collections if len(c.get_segments())][0].get_segments()
    assert all(seg[0][1] == pytest.approx(0.80) and seg[1][1] == pytest.approx(0.99) for seg in bars)
    assert fig.legends[0].get_title().get_text().endswith("48 prompts (Wilson at the effective n)")
    # a zero-error row without a stored interval: bounded over its blocks, never 3.7 / bits
    zero = [dict(r, ber_ci95=None) for r in _rows() if r["kind"] == "digital" and r["bit_errors"] == 0]
    bound = next(ln for ln in error_rate_figure(zero, "ber").axes[0].get_lines() if "upper bound" in ln.get_label())
    assert bound.get_ydata()[0] == pytest.approx(1 - 0.025 ** (1 / 100))
    exact = [dict(r, intervals={"ber": {"unit": "image", "n_units": 100, "method": "exact"}}) for r in zero]
    assert error_rate_figure(exact, "ber") is None  # an error-free bound draws no zero point
