"""Figures made from result rows only (see :func:`dekasim.plots.load_results`).

Conventions (STYLE.md, "Conventions engineers expect in figures"):

- x axis: ``snr_db`` labelled "Es/N0 per data RE [dB]" (default), or ``ebno_db`` labelled
  "Eb/N0 [dB]"; rows without a value for the chosen axis are left out.
- one panel per (TDL profile, delay spread); panel titles name the profile and the delay spread.
  Several profiles with the same delay spreads are laid out as rows (profile) x columns (spread).
- one line per codec label (``row["codec"]``), and per variant when the rows of a figure differ in
  run (``run_label``), CSI, bandwidth ratio, speed or carrier. Over Eb/N0 a line is also one MCS: a codec
  whose rows used several MCSs (link adaptation) gets one line per MCS, with a warning naming it; a row
  whose point mixed MCSs is left out (warned); one MCS for every line is named in the title. A field that is the same for every row of the
  figure is named once in the figure title (e.g. "LMMSE CSI · bandwidth ratio 1/12"); a field that
  varies is named in each legend entry. So legend + titles always name the CSI, the delay spread,
  the profile and the bandwidth ratio.
- colour: one per codec label, the same in every panel and every figure made from the same rows
  (labels sorted, then tab10/tab20); marker: one per variant (e.g. per overlaid run), every
  second variant with open markers so that overlaid curves with equal values stay visible.
- line style by ``kind``: analog and learned solid, digital dashed, bound dotted.
- PSNR on a linear axis with ``grid(True)``; BER/BLER on a log axis with ``grid(which="both")``.
- error bars from the stored 95 % intervals (``psnr_db_ci95`` half-width; ``ssim_ci95``,
  ``ber_ci95``, ``bler_ci95`` and the consistency ``*_ci95`` as asymmetric ``[lo, hi]``); the legend's
  title says what they are, from the rows' ``intervals`` entries: "error bars: 95 % CI over 64 images
  (Student-t)" (:func:`interval_caption`).
- the legend sits outside the axes, below them; its columns are chosen from the measured width of
  the labels, and the figure widens when one column does not fit, so no label is clipped.
- saved as PNG and PDF at 300 dpi; built on :class:`matplotlib.figure.Figure` objects, so pyplot's
  global state is never touched, ``plt.show()`` is never called and nothing needs closing.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.textpath import TextToPath

from dekasim.conditions import FLAT_PROFILES
from dekasim.errors import ConfigError
from dekasim.plots.results import RUN_LABEL_KEY, ResultsWarning, load_results, number

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Resolution of the saved PNG (and of rasterised parts of the PDF) [dots per inch].
DPI = 300
#: Axis labels of the x quantities a figure may use.
X_LABELS = {"snr_db": "Es/N0 per data RE [dB]", "ebno_db": "Eb/N0 [dB]"}
_X_TAGS = {"snr_db": "snr", "ebno_db": "ebno"}
#: Line style per codec kind; other kinds get dash-dot.
LINESTYLES = {"analog": "-", "learned": "-", "digital": "--", "bound": ":"}
_OTHER_LINESTYLE = "-."
#: Markers per variant (run, CSI, bandwidth ratio, speed); "v" is kept for zero-error bounds.
MARKERS = ("o", "s", "^", "D", "P", "X", "*", "h", "<", ">")
_ZERO_MARKER = "v"
#: Error-rate quantities: metric -> (count of trials, count of errors, axis label).
_RATES = {"ber": ("bits", "bit_errors", "BER"), "bler": ("blocks", "block_errors", "BLER")}


# --------------------------------------------------------------------------------------- labels
def _fmt_csi(v: Any) -> str:
    return {"perfect": "perfect CSI", "ls": "LS CSI", "lmmse": "LMMSE CSI"}.get(str(v).lower(),
                                                                               f"{v} CSI")


def _fmt_ratio(v: Any) -> str:
    r = float(v)
    frac = Fraction(r).limit_denominator(256)
    if frac.denominator != 1 and abs(float(frac) - r) <= 1e-6 * abs(r):
        return f"{frac.numerator}/{frac.denominator}"
    return f"{r:g}"


def _fmt_bw(v: Any) -> str:
    return f"bandwidth ratio {_fmt_ratio(v)}"


def _fmt_speed(v: Any) -> str:
    return f"{float(v):g} m/s"


def _fmt_run(v: Any) -> str:
    return str(v)


def _fmt_carrier(v: Any) -> str:
    return f"{float(v) / 1e9:g} GHz"


#: Row fields that split lines (when they vary) or go into the figure title (when constant).
_VARIANT_FIELDS: tuple[tuple[str, Callable[[Any], str]], ...] = (
    (RUN_LABEL_KEY, _fmt_run), ("csi", _fmt_csi), ("bandwidth_ratio", _fmt_bw),
    ("speed_mps", _fmt_speed), ("carrier_frequency_hz", _fmt_carrier))
#: Fields named only where they vary (a constant carrier is in the manifest, not in every title).
_NOT_IN_TITLE = ("carrier_frequency_hz",)
#: Over Eb/N0, the MCS of a row's codec when that codec's rows use several: one curve per MCS.
_MCS_KEY = "_mcs"
_MIXED = "mixed"


def row_mcs(row: Mapping[str, Any]) -> str | None:
    """The MCS a row was sent at, ``"MCS 9"`` (``"MCS 9 (qam256)"`` for the 256QAM table), from
    ``row["info"]["mcs_index"]`` (the mean over the point's batches) and ``["mcs_table"]``; None for a codec
    without an MCS; ``"mixed"`` when the point's batches used several."""
    info = row.get("info")
    if not isinstance(info, Mapping):
        return None
    index = number(info.get("mcs_index"))
    if index is None:
        return None
    table = info.get("mcs_table")
    tables = [k for k, v in table.items() if v] if isinstance(table, Mapping) else [table] if table else []
    if index != int(index) or len(tables) > 1:
        return _MIXED
    suffix = f" ({tables[0]})" if tables and tables[0] != "qam64" else ""
    return f"MCS {int(index)}{suffix}"


def _split_by_mcs(kept: list, where: str) -> list:
    """Over Eb/N0, rows of one codec at several MCSs are one curve per MCS (``_mcs`` set on copies of those
    rows, warned once naming the codec and its MCSs); a row whose point mixed MCSs has no Eb/N0 of one MCS
    and is left out (warned)."""
    out, per_codec = [], {}
    for row, xv, yv in kept:
        m = row_mcs(row)
        if m == _MIXED:
            warnings.warn(f"{_codec_label(row)!r} at {row.get('tdl_profile')} {row.get('snr_db')} dB mixed MCSs "
                          f"within the point ({(row.get('info') or {}).get('mcs_index')}): left out of the Eb/N0 "
                          f"figure {where}", ResultsWarning, stacklevel=5)
            continue
        per_codec.setdefault(_codec_label(row), set()).add(m)
        out.append((row, xv, yv))
    split = {c: ms for c, ms in per_codec.items() if len(ms) > 1}
    for codec, ms in split.items():
        warnings.warn(f"{codec!r} used {', '.join(sorted(str(m) for m in ms))} across its points: over Eb/N0 "
                      f"each MCS is drawn as its own curve ({where})", ResultsWarning, stacklevel=5)
    return [({**row, _MCS_KEY: row_mcs(row) if _codec_label(row) in split else None}, xv, yv)
            for row, xv, yv in out]


def _profile_name(p: str | None) -> str | None:
    if p is None:
        return None
    if p.lower() == "awgn":
        return "AWGN"
    if p.lower() == "rayleigh":
        return "Rayleigh fading"
    return f"TDL-{p}"


def _panel_title(profile: str | None, ds: float | None) -> str:
    parts = [_profile_name(profile)] if profile is not None else []
    if ds is not None:
        parts.append(f"DS {ds:g} ns")
    return ", ".join(p for p in parts if p)


def _key(v: Any) -> Any:
    """A hashable, float-noise-free key for a row value (None for null/NaN)."""
    if isinstance(v, str):
        return v
    f = number(v)
    return None if f is None else float(f"{f:.9g}")


def codec_colors(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """One colour (hex) per codec label in ``rows``: labels sorted, then tab10 (tab20 past 10).

    Reads only ``row["codec"]`` (``codec_name`` when ``codec`` is missing). Pass the result as
    ``colors=`` to keep colours fixed across figures made from different row subsets.
    """
    labels = sorted({_codec_label(r) for r in rows})
    cmap = mpl.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    n = cmap.N
    return {lab: mpl.colors.to_hex(cmap(i % n)) for i, lab in enumerate(labels)}


def _codec_label(row: Mapping[str, Any]) -> str:
    return str(row.get("codec") or row.get("codec_name") or "?")


# ----------------------------------------------------------------------------- curve gathering
@dataclass
class _Point:
    x: float
    y: float
    lo: float | None
    hi: float | None


@dataclass
class _Curve:
    panel: tuple[str | None, float | None]
    codec: str
    variant: tuple[Any, ...]
    kind: str
    label: str
    points: dict[float, _Point] = field(default_factory=dict)

    def sorted_points(self) -> list[_Point]:
        return [self.points[x] for x in sorted(self.points)]


@dataclass
class _Plan:
    panels: list[tuple[str | None, float | None]]
    curves: list[_Curve]
    title: str
    colors: dict[str, str]
    markers: dict[tuple[Any, ...], tuple[str, bool]]  # variant -> (marker, filled)


def _plan(rows: Sequence[Mapping[str, Any]], x: str,
          y_of: Callable[[Mapping[str, Any]], tuple[float, float | None, float | None] | None],
          colors: Mapping[str, str] | None, where: str = "") -> _Plan | None:
    if x not in X_LABELS:
        raise ConfigError("x", x, f"one of {sorted(X_LABELS)}",
                          "use 'snr_db' (Es/N0 per data RE) or 'ebno_db' (Eb/N0)")
    color_map = dict(codec_colors(rows))  # computed on *all* rows: same colours in every figure
    if colors:
        color_map.update(colors)

    kept: list[tuple[Mapping[str, Any], float, tuple[float, float | None, float | None]]] = []
    for row in rows:
        xv = number(row.get(x))
        yv = y_of(row) if xv is not None else None
        if yv is not None:
            kept.append((row, xv, yv))
    fields = _VARIANT_FIELDS
    if x == "ebno_db":  # an Eb/N0 curve is one MCS's: never mix MCSs in one line
        kept = _split_by_mcs(kept, where)
        fields = _VARIANT_FIELDS + ((_MCS_KEY, str),)
    if not kept:
        return None

    # Fields that are the same for every plotted row go into the title, the others into labels.
    values = {f: {_key(r.get(f)) for r, _, _ in kept} for f, _ in fields}
    varying = [(f, fmt) for f, fmt in fields if len(values[f]) > 1]
    title_parts = []
    for f, fmt in fields:
        (v,) = values[f] if len(values[f]) == 1 else (None,)
        if v is not None and f not in _NOT_IN_TITLE:
            title_parts.append(fmt(v))
    if x == "ebno_db" and not any(f == _MCS_KEY for f, _ in varying):
        mcs = {row_mcs(r) for r, _, _ in kept}
        if len(mcs) == 1 and None not in mcs:  # one MCS for every curve: say which
            title_parts.append(mcs.pop())

    curves: dict[tuple[Any, ...], _Curve] = {}
    variants: list[tuple[Any, ...]] = []
    for row, xv, (y, lo, hi) in kept:
        profile = row.get("tdl_profile")
        profile = None if profile is None else str(profile)
        ds = None if profile is not None and profile.lower() in FLAT_PROFILES \
            else _key(row.get("delay_spread_ns"))
        panel = (profile, ds)
        variant = tuple(_key(row.get(f)) for f, _ in varying)
        if variant not in variants:
            variants.append(variant)
        codec = _codec_label(row)
        ck = (panel, codec, variant)
        if ck not in curves:
            extra = [fmt(v) for (_, fmt), v in zip(varying, variant) if v is not None]
            label = codec + (" — " + ", ".join(extra) if extra else "")
            curves[ck] = _Curve(panel, codec, variant, str(row.get("kind") or ""), label)
        curve = curves[ck]
        if xv in curve.points:
            warnings.warn(f"{curve.label!r}, {_panel_title(*panel)}: two rows at {x} = {xv:g}; "
                          f"plotting the later one", ResultsWarning, stacklevel=4)
        curve.points[xv] = _Point(xv, y, lo, hi)

    def panel_sort(p: tuple[str | None, float | None]) -> tuple[str, float]:
        return (p[0] or "", -1.0 if p[1] is None else p[1])

    panels = sorted({c.panel for c in curves.values()}, key=panel_sort)
    codec_order = {c: i for i, c in enumerate(sorted(color_map))}
    variant_order = {v: i for i, v in enumerate(sorted(variants, key=repr))}
    ordered = sorted(curves.values(),
                     key=lambda c: (codec_order.get(c.codec, 1 << 30), variant_order[c.variant]))
    # odd variants get open markers, so overlaid runs with near-equal results stay visible
    markers = {v: (MARKERS[i % len(MARKERS)], i % 2 == 0) for v, i in variant_order.items()}
    return _Plan(panels, ordered, " · ".join(title_parts), color_map, markers)


# ------------------------------------------------------------------------------------- drawing
#: Legend font size [pt] ("small" at matplotlib's default 10 pt).
_LEGEND_PT = 8.33
_TEXT = TextToPath()


def _text_width_in(text: str, size_pt: float = _LEGEND_PT) -> float:
    """Width [in] of ``text`` in the default font at ``size_pt`` (no renderer needed)."""
    w, _, _ = _TEXT.get_text_width_height_descent(text, FontProperties(size=size_pt), ismath=False)
    return w / 72.0


def _legend_columns(labels: Sequence[str], width_in: float) -> tuple[int, float]:
    """(columns, entry width [in]) of a legend of ``labels`` across a figure ``width_in`` wide: as many
    columns as fit (an entry is handle + padding + its label + column spacing)."""
    em = _LEGEND_PT / 72.0
    entry = max((_text_width_in(t) for t in labels), default=0.0) + (2.0 + 0.8 + 2.0) * em
    return max(1, min(len(labels), int((width_in - 0.2) // entry))), entry


def _layout(panels: Sequence[tuple[str | None, float | None]], labels: Sequence[str], caption: str,
            has_title: bool) -> tuple[int, int, tuple[float, float], int]:
    """Grid shape, figure size [in] and legend columns.

    Several profiles that share the same delay spreads give a profile x delay-spread grid;
    otherwise panels fill rows of at most 3 (2 x 2 for four). The legend goes below the panels, in as
    many columns as its measured labels allow; a figure too narrow for one column (or for the
    caption) is widened.
    """
    n = len(panels)
    profiles = list(dict.fromkeys(p for p, _ in panels))
    spreads = {p: {d for q, d in panels if q == p} for p in profiles}
    first = spreads[profiles[0]]
    if len(profiles) > 1 and len(first) <= 4 and all(s == first for s in spreads.values()):
        nrows, ncols = len(profiles), len(first)
    else:
        ncols = 2 if n == 4 else min(n, 3)
        nrows = math.ceil(n / ncols)
    width = max(5.0, 0.7 + 3.3 * ncols)
    legend_cols, entry = _legend_columns(labels, width)
    width = max(width, entry + 0.3, _text_width_in(caption) + 0.4 if caption else 0.0)
    legend_rows = math.ceil(len(labels) / legend_cols) + (1 if caption else 0)
    height = 0.6 + 2.7 * nrows + 0.22 * legend_rows + (0.3 if has_title else 0.0)
    return nrows, ncols, (width, height), legend_cols


def _draw(plan: _Plan, x: str, ylabel: str, log_y: bool, zero_note: bool, caption: str = "") -> Figure:
    labels = list(dict.fromkeys(c.label for c in plan.curves)) + (["0 errors: 95 % upper bound"] if zero_note else [])
    nrows, ncols, size, legend_cols = _layout(plan.panels, labels, caption, bool(plan.title))
    fig = Figure(figsize=size, layout="constrained")
    grid = fig.subplots(nrows, ncols, sharex=_share_x(plan), sharey=True, squeeze=False)
    axes = {p: grid[i // ncols][i % ncols] for i, p in enumerate(plan.panels)}
    for i in range(len(plan.panels), nrows * ncols):
        fig.delaxes(grid[i // ncols][i % ncols])

    bottom = top = None
    if log_y:
        bottom, top = _log_limits(plan.curves)

    handles: dict[str, Line2D] = {}
    for curve in plan.curves:
        ax = axes[curve.panel]
        marker, filled = plan.markers[curve.variant]
        color = plan.colors.get(curve.codec, "k")
        style = dict(color=color, linestyle=LINESTYLES.get(curve.kind, _OTHER_LINESTYLE),
                     marker=marker, markerfacecolor=color if filled else "none")
        pts = curve.sorted_points()
        line_pts = [p for p in pts if not log_y or p.y > 0]
        zero_pts = [p for p in pts if log_y and p.y <= 0 and p.hi is not None and p.hi > 0]
        if line_pts:
            xs = [p.x for p in line_pts]
            ys = [p.y for p in line_pts]
            lower, upper = [], []
            for p in line_pts:
                lo = p.y if p.lo is None else min(p.lo, p.y)
                if log_y and bottom is not None:
                    lo = max(lo, bottom)  # a lower bound of 0 runs to the bottom of the axis
                hi = p.y if p.hi is None else max(p.hi, p.y)
                lower.append(p.y - lo)
                upper.append(hi - p.y)
            has_err = any(lower) or any(upper)
            cont = ax.errorbar(xs, ys, yerr=[lower, upper] if has_err else None, markersize=4,
                               linewidth=1.4, capsize=2, elinewidth=0.8, **style)
            cont.lines[0].set_label(curve.label)
        if zero_pts:
            ax.plot([p.x for p in zero_pts], [p.hi for p in zero_pts], linestyle="none",
                    marker=_ZERO_MARKER, markerfacecolor="none", markersize=5,
                    color=style["color"], label=f"{curve.label} (0 errors: 95 % upper bound)")
        handles.setdefault(curve.label, Line2D([], [], linewidth=1.4, markersize=4,
                                               label=curve.label, **style))

    if zero_note and any(ln.get_marker() == _ZERO_MARKER and ln.get_linestyle() == "None"
                         for ax in axes.values() for ln in ax.get_lines()):
        handles["_zero"] = Line2D([], [], linestyle="none", marker=_ZERO_MARKER, color="0.3",
                                  markerfacecolor="none", markersize=5,
                                  label="0 errors: 95 % upper bound")

    for i, (panel, ax) in enumerate(axes.items()):
        row, col = divmod(i, ncols)
        ax.set_title(_panel_title(*panel), fontsize="medium")
        if log_y:
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.6)
            ax.grid(True, which="minor", alpha=0.2)
        else:
            ax.grid(True, alpha=0.6)
        if col == 0:
            ax.set_ylabel(ylabel)
        below = (row + 1) * ncols + col
        if below >= len(plan.panels):  # lowest panel of its column
            ax.set_xlabel(X_LABELS[x])
            ax.tick_params(labelbottom=True)
    if log_y and bottom is not None and top is not None:
        next(iter(axes.values())).set_ylim(bottom, top)

    fig.legend(handles=list(handles.values()), loc="outside lower center", ncols=legend_cols,
               frameon=False, fontsize=_LEGEND_PT, title=caption or None, title_fontsize=_LEGEND_PT)
    if plan.title:
        fig.suptitle(plan.title, fontsize="medium")
    return fig


def _share_x(plan: _Plan) -> bool:
    """Panels share the x axis unless one panel's x values span less than half of all panels' span (e.g. an
    AWGN waterfall over 0-7 dB beside fading curves over 0-35 dB, swept by groups of their own)."""
    spans = {}
    for c in plan.curves:
        xs = list(c.points)
        lo, hi = spans.get(c.panel, (min(xs), max(xs)))
        spans[c.panel] = (min(lo, *xs), max(hi, *xs))
    lo, hi = min(v[0] for v in spans.values()), max(v[1] for v in spans.values())
    return hi <= lo or all(b - a >= 0.5 * (hi - lo) for a, b in spans.values())


def _log_limits(curves: Sequence[_Curve]) -> tuple[float | None, float | None]:
    vals = [v for c in curves for p in c.points.values()
            for v in (p.y, p.lo, p.hi) if v is not None and v > 0]
    if not vals:
        return None, None
    vmin, vmax = min(vals), max(vals)
    bottom = 10.0 ** math.floor(math.log10(vmin))
    if vmin < 1.5 * bottom:
        bottom /= 1.5
    top = 10.0 ** math.ceil(math.log10(vmax))
    if vmax > top / 1.5:
        top *= 1.5
    return bottom, top


# ---------------------------------------------------------------------------- figure builders
def psnr_figure(rows: Sequence[Mapping[str, Any]], *, x: str = "snr_db",
                colors: Mapping[str, str] | None = None) -> Figure | None:
    """Build (not save) the PSNR-vs-SNR figure.

    Reads from each row: ``psnr_db``, ``psnr_db_ci95`` (95 % half-width, optional), ``x``,
    ``codec``, ``kind``, ``tdl_profile``, ``delay_spread_ns``, ``csi``, ``bandwidth_ratio``,
    ``speed_mps`` and ``run_label``. Rows without a finite PSNR or x value are left out.

    :param rows: result rows, e.g. from :func:`~dekasim.plots.load_results`.
    :param x: ``"snr_db"`` (Es/N0 per data RE, default) or ``"ebno_db"``.
    :param colors: codec label -> colour, overriding :func:`codec_colors` for those labels.
    :return: a :class:`~matplotlib.figure.Figure` (one linear-axis panel per profile and delay
        spread), or ``None`` when no row has a PSNR.
    """
    return metric_figure(rows, "psnr_db", "PSNR [dB]", x=x, colors=colors)


#: End-to-end metrics of DeKA-g rows (user's image against the cloud's) and their axis labels.
CONSISTENCY_LABELS = {"attribute_agreement": "attribute agreement with the cloud's image\n(prompts with the pack's subject)",
                      "all_attributes_agree": "all five attributes agree (fraction)",
                      "feature_cosine": "feature cosine with the cloud's image\n(prompts with the pack's subject)"}


def metric_figure(rows: Sequence[Mapping[str, Any]], key: str, ylabel: str, *, x: str = "snr_db",
                  colors: Mapping[str, str] | None = None) -> Figure | None:
    """Build (not save) a figure of ``row[key]`` (linear axis) against ``x``, one panel per profile and
    delay spread, as :func:`psnr_figure`. Error bars from ``row[key + "_ci95"]``: ``[lo, hi]`` (bounded
    metrics) or a 95 % half-width (``psnr_db_ci95``); none where the row has no interval.

    :return: the figure, or ``None`` when no row has a finite ``key``.
    """
    def y_of(row: Mapping[str, Any]) -> tuple[float, float | None, float | None] | None:
        y = number(row.get(key))
        if y is None:
            return None
        ci = row.get(f"{key}_ci95")
        if isinstance(ci, (list, tuple)):
            return (y, number(ci[0]), number(ci[1])) if len(ci) == 2 else (y, None, None)
        half = number(ci)
        return (y, None, None) if half is None else (y, y - abs(half), y + abs(half))

    plan = _plan(rows, x, y_of, colors, key)
    return None if plan is None else _draw(plan, x, ylabel, log_y=False, zero_note=False,
                                           caption=interval_caption(_plotted(rows, x, y_of), key))


def plot_consistency(rows: Sequence[Mapping[str, Any]], out_dir: PathLike, *, x: str = "snr_db",
                     colors: Mapping[str, str] | None = None) -> list[Path]:
    """End-to-end consistency vs SNR of DeKA-g rows: ``consistency_vs_snr`` (attribute agreement),
    ``feature_cosine_vs_snr`` and, per image encoder of the scenario (DINO, CLIP, ...), ``<name>_cosine_vs_snr``
    (PNG + PDF each). :return: the written paths; empty for rows without them."""
    paths: list[Path] = []
    encoders = sorted({k for r in rows for k, v in r.items() if k.endswith("_cosine") and k != "feature_cosine"
                       and isinstance(v, (int, float))})
    keys = [("attribute_agreement", "consistency"), ("feature_cosine", "feature_cosine")] + \
        [(k, k) for k in encoders]
    for key, stem in keys:
        label = CONSISTENCY_LABELS.get(key) or (f"{key.removesuffix('_cosine')} cosine with the cloud's image\n"
                                                "(prompts with the pack's subject)")
        fig = metric_figure(rows, key, label, x=x, colors=colors)
        if fig is not None:
            paths += save_figure(fig, out_dir, f"{stem}_vs_{_X_TAGS[x]}")
    return paths


def error_rate_figure(rows: Sequence[Mapping[str, Any]], metric: str = "ber", *,
                      x: str = "snr_db", colors: Mapping[str, str] | None = None) -> Figure | None:
    """Build (not save) the BER- or BLER-vs-SNR figure on a log axis.

    Reads from each row: ``ber``/``bler``, ``ber_ci95``/``bler_ci95`` (``[lo, hi]``, optional),
    ``bits``/``blocks``, ``bit_errors``/``block_errors``, and the fields :func:`psnr_figure`
    reads. Only rows with ``bits > 0`` (``blocks > 0`` for BLER) are drawn, so codecs without a
    bit stream (analog, learned) are left out. A missing rate is taken as errors / trials.

    Zero-error points cannot sit on a log axis: they are not joined to the curve; instead their
    95 % upper bound is drawn as an open downward triangle ("v", legend "0 errors: 95 % upper
    bound"). The bound is the stored ``hi``, or, without a stored interval, the Clopper-Pearson
    bound ``1 - 0.025**(1/n)`` over the ``n`` independent units (``intervals[metric]["n_units"]``,
    else ``blocks``): bit errors cluster inside a block, so zero errors in ``n`` blocks bound the BER
    no lower than the BLER. Rows whose counts are exact by construction (the ``ideal`` bound, method
    ``"exact"``) draw no zero point. A lower interval end of 0 is drawn down to the bottom of the axis.

    :param metric: ``"ber"`` or ``"bler"``.
    :return: the figure, or ``None`` when no row has the counts.
    """
    if metric not in _RATES:
        raise ConfigError("metric", metric, f"one of {sorted(_RATES)}")
    trials_key, errors_key, ylabel = _RATES[metric]

    def y_of(row: Mapping[str, Any]) -> tuple[float, float | None, float | None] | None:
        n = number(row.get(trials_key))
        if n is None or n <= 0:
            return None
        y = number(row.get(metric))
        if y is None:
            e = number(row.get(errors_key))
            if e is None:
                return None
            y = e / n
        lo = hi = None
        ci = row.get(f"{metric}_ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            lo, hi = number(ci[0]), number(ci[1])
        if y <= 0 and (hi is None or hi <= 0):
            entry = _interval_entry(row, metric)
            if entry.get("method") == "exact":
                return None
            units = number(entry.get("n_units")) or number(row.get("blocks")) or n
            hi = 1.0 - 0.025 ** (1.0 / units)
        return y, lo, hi

    plan = _plan(rows, x, y_of, colors, metric.upper())
    return None if plan is None else _draw(plan, x, ylabel, log_y=True, zero_note=True,
                                           caption=interval_caption(_plotted(rows, x, y_of), metric))


# ----------------------------------------------------------------------------------- captions
#: Short names of the interval methods (:data:`dekasim.metrics.stats.METHODS`) for captions.
_METHOD_SHORT = {"student-t": "Student-t", "korn-graubard": "Korn-Graubard, cluster-robust",
                 "wilson-neff": "Wilson at the effective n", "wilson": "Wilson", "clopper-pearson": "Clopper-Pearson",
                 "unit-bound": "no errors or spread: bound over units", "exact": "exact: none"}


def _interval_entry(row: Mapping[str, Any], metric: str) -> Mapping[str, Any]:
    entries = row.get("intervals")
    entry = entries.get(metric) if isinstance(entries, Mapping) else None
    return entry if isinstance(entry, Mapping) else {}


def _plotted(rows: Sequence[Mapping[str, Any]], x: str,
             y_of: Callable[[Mapping[str, Any]], Any]) -> list[Mapping[str, Any]]:
    """The rows a figure draws (an x value and a y value)."""
    return [r for r in rows if number(r.get(x)) is not None and y_of(r) is not None]


def interval_caption(rows: Sequence[Mapping[str, Any]], metric: str) -> str:
    """What the error bars of ``metric`` are, from the rows' ``intervals[metric]`` entries, e.g.
    ``"error bars: 95 % CI over 64 images (Student-t)"`` or ``"... over 16-64 transport blocks
    (Korn-Graubard, cluster-robust; no errors or spread: bound over units)"``. Rows without entries
    (older result files) give ``"error bars: 95 % CI as stored in the rows"``; no rows, ``""``."""
    entries = [e for e in (_interval_entry(r, metric) for r in rows) if e]
    if not rows:
        return ""
    if not entries:
        return "error bars: 95 % CI as stored in the rows"
    counts = sorted({int(e["n_units"]) for e in entries if number(e.get("n_units")) is not None})
    units = list(dict.fromkeys(str(e.get("unit", "unit")) for e in entries))
    methods = list(dict.fromkeys(str(e.get("method")) for e in entries))
    n = "" if not counts else (f"{counts[0]} " if len(counts) == 1 else f"{counts[0]}-{counts[-1]} ")
    unit = " or ".join(f"{u}s" for u in units) if n != "1 " else " or ".join(units)
    how = "; ".join(_METHOD_SHORT.get(m, m) for m in methods)
    return f"error bars: 95 % CI over {n}{unit} ({how})"


# ------------------------------------------------------------------------------------- saving
def save_figure(fig: Figure, out_dir: PathLike, stem: str) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.png`` and ``out_dir/stem.pdf`` at :data:`DPI`.

    Creates ``out_dir`` if needed and writes nothing else. The PDF carries no creation date, so
    the same rows give the same bytes. :return: the two paths, PNG first.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
    fig.savefig(png, dpi=DPI)
    fig.savefig(pdf, dpi=DPI, metadata={"CreationDate": None})
    return [png, pdf]


def plot_psnr(rows: Sequence[Mapping[str, Any]], out_dir: PathLike, *, x: str = "snr_db",
              colors: Mapping[str, str] | None = None, stem: str | None = None) -> list[Path]:
    """PSNR [dB] vs SNR: build with :func:`psnr_figure` and write PNG + PDF into ``out_dir``.

    Writes ``psnr_vs_snr.{png,pdf}`` (``psnr_vs_ebno`` for ``x="ebno_db"``, or ``stem``).
    :return: the written paths; empty when no row has a PSNR (nothing is written).
    """
    fig = psnr_figure(rows, x=x, colors=colors)
    if fig is None:
        log.info("no row with a PSNR: no PSNR figure written")
        return []
    return save_figure(fig, out_dir, stem or f"psnr_vs_{_X_TAGS[x]}")


def plot_ber(rows: Sequence[Mapping[str, Any]], out_dir: PathLike, *, x: str = "snr_db",
             colors: Mapping[str, str] | None = None, stem: str | None = None) -> list[Path]:
    """BER vs SNR (semilogy): build with :func:`error_rate_figure` and write PNG + PDF.

    Only codecs with bits are drawn; zero-error points show their 95 % upper bound as an open
    triangle instead of breaking the log axis (see :func:`error_rate_figure`). Writes
    ``ber_vs_snr.{png,pdf}`` (``ber_vs_ebno`` for ``x="ebno_db"``, or ``stem``) into ``out_dir``.
    :return: the written paths; empty when no row has bit counts (nothing is written).
    """
    fig = error_rate_figure(rows, "ber", x=x, colors=colors)
    if fig is None:
        log.info("no row with bit counts: no BER figure written")
        return []
    return save_figure(fig, out_dir, stem or f"ber_vs_{_X_TAGS[x]}")


def plot_bler(rows: Sequence[Mapping[str, Any]], out_dir: PathLike, *, x: str = "snr_db",
              colors: Mapping[str, str] | None = None, stem: str | None = None) -> list[Path]:
    """BLER vs SNR (semilogy), as :func:`plot_ber` with block counts.

    Writes ``bler_vs_snr.{png,pdf}`` (``bler_vs_ebno`` for ``x="ebno_db"``, or ``stem``).
    :return: the written paths; empty when no row has block counts (nothing is written).
    """
    fig = error_rate_figure(rows, "bler", x=x, colors=colors)
    if fig is None:
        log.info("no row with block counts: no BLER figure written")
        return []
    return save_figure(fig, out_dir, stem or f"bler_vs_{_X_TAGS[x]}")


def plot_run(dirs: PathLike | Iterable[PathLike], out_dir: PathLike, *,
             x: str = "snr_db") -> list[Path]:
    """All figures of one run, or of several runs overlaid.

    Reads ``results.jsonl`` and ``manifest.json`` of each directory in ``dirs`` (via
    :func:`~dekasim.plots.load_results`) and writes into ``out_dir`` (created if needed):
    ``psnr_vs_snr``, ``ber_vs_snr`` and ``bler_vs_snr``, each as ``.png`` and ``.pdf`` at 300 dpi
    (``*_vs_ebno`` with ``x="ebno_db"``). A figure with no data (e.g. BER of an analog-only run)
    is skipped. Colours per codec are shared by all figures; overlaid runs are told apart by
    marker and by the run label (scenario name) in the legend.

    DeKA-g runs also get ``consistency_vs_snr`` and ``feature_cosine_vs_snr`` (:func:`plot_consistency`).

    :return: the written paths, in the order PSNR, consistency, BER, BLER (PNG before PDF).
    """
    rows = load_results(dirs)
    if not rows:
        warnings.warn(f"no result rows in {dirs}: no figure written", ResultsWarning, stacklevel=2)
        return []
    colors = codec_colors(rows)
    paths = plot_psnr(rows, out_dir, x=x, colors=colors)
    paths += plot_consistency(rows, out_dir, x=x, colors=colors)
    paths += plot_ber(rows, out_dir, x=x, colors=colors)
    paths += plot_bler(rows, out_dir, x=x, colors=colors)
    return paths
