"""Figures of ``dekasim edge-users`` from its result file alone (``results.json``, kind ``dekasim-edge-users``).

- ``edge_users_channel_uses``: channel uses per image (the user's share of pack traffic included) against the
  number of users U, one panel per Zipf exponent, one colour per cache size, LRU solid and LFU dashed; the
  dotted line is the images alone (an edge that never fetches a pack).
- ``edge_users_consistency``: consistency received against U, same layout; dotted lines: every request served
  aligned, and none.
- ``edge_users_payoff``: where alignment pays off per user. Left: consistency gain over the unaligned edge on
  the same requests against pack traffic per image, in images' worth (``image_channel_uses``), each curve
  running through U = 1 ... 64 (LRU). Right: the *price* of alignment, the pack channel uses per image that
  buy +0.1 consistency (0.1 x pack traffic per image / gain), against U; below the dotted line (one image's
  channel uses) +0.1 consistency costs less than one more image.

Error bars: the stored 95 % intervals over replications. Typical use::

    from dekasim.plots.edge_users import plot_edge_users
    plot_edge_users("runs/edge_users/results.json", "runs/edge_users")
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dekasim.errors import ConfigError
from dekasim.plots.figures import save_figure

KIND = "dekasim-edge-users"
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
_STYLES = {"lru": "-", "lfu": "--"}
_MARKERS = ("o", "s", "^", "D", "v", "P")


def load_edge_users(path: str | Path) -> dict[str, Any]:
    """The result document in ``path`` (a ``results.json`` of ``dekasim edge-users``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("results", str(p), "a results.json written by `dekasim edge-users`",
                          "run `dekasim edge-users --out DIR` first")
    doc = json.loads(p.read_text())
    if doc.get("kind") != KIND:
        raise ConfigError("results.kind", doc.get("kind"), f"{KIND!r}", "give the results.json of `dekasim edge-users`")
    return doc


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


def _cache_label(doc: dict[str, Any], cache: int) -> str:
    pack = max(s["size_bytes"] for s in doc["catalogue"]["subjects"])
    n = doc["catalogue"]["size"]
    return f"cache {_mb(cache)} (room for {cache // pack} packs" + (", all fit)" if cache // pack >= n else f" of {n})")


def _series(doc: dict[str, Any], zipf: float, cache: int, policy: str, metric: str) -> list[tuple[int, dict]]:
    rows = [c for c in doc["configurations"] if c["zipf_s"] == zipf and c["cache_bytes"] == cache
            and c["policy"] == policy and c["summary"][metric]["mean"] is not None]
    return sorted(((c["users"], c["summary"][metric]) for c in rows), key=lambda t: t[0])


def _errorbar(ax: Any, xs: Sequence[float], entries: Sequence[dict], **style: Any) -> None:
    ys = [e["mean"] for e in entries]
    lower = [y - (y if e["lo"] is None else min(e["lo"], y)) for y, e in zip(ys, entries)]
    upper = [(y if e["hi"] is None else max(e["hi"], y)) - y for y, e in zip(ys, entries)]
    ax.errorbar(xs, ys, yerr=[lower, upper] if any(lower) or any(upper) else None, markersize=4, linewidth=1.4,
                capsize=2, elinewidth=0.8, **style)


def _axes_u(ax: Any, users: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(users), [str(u) for u in users])
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.6)


def _caption(doc: dict[str, Any], width: int = 150) -> str:
    s, link, snr = doc["settings"], doc["settings"]["link"], doc["settings"]["snr"]
    real = [x["subject"] for x in doc["catalogue"]["subjects"] if x["copy_of"] is None]
    text = (f"{doc['catalogue']['size']} subjects ({len(real)} real: {', '.join(real)}; the rest modelled copies), "
            f"{s['slots']} slots, image {s['image_channel_uses']} ch. uses, pack downlink "
            f"{s['pack_channel_uses_per_slot']} ch. uses/slot; users' Es/N0 N({snr['mean_db']:g}, "
            f"{snr['std_db']:g}) dB "
            f"in {snr['step_db']:g} dB steps [{snr['min_db']:g}, {snr['max_db']:g}]; fetches simulated on "
            f"TDL-{link['tdl_profile']} {link['delay_spread_ns']:g} ns, {link['csi'].upper()} CSI, ARQ; "
            f"error bars: 95 % CI over {s['replications']} replications")
    return "\n".join(textwrap.wrap(text, width))


def _by_u_figure(doc: dict[str, Any], metric: str, ylabel: str, log_y: bool) -> Figure:
    zipfs = sorted({c["zipf_s"] for c in doc["configurations"]})
    caches = sorted({c["cache_bytes"] for c in doc["configurations"]})
    policies = [p for p in ("lru", "lfu") if any(c["policy"] == p for c in doc["configurations"])]
    users = sorted({c["users"] for c in doc["configurations"]})
    fig = Figure(figsize=(4.2 * len(zipfs) + 0.6, 4.6), layout="constrained")
    axes = fig.subplots(1, len(zipfs), sharey=True, squeeze=False)[0]
    handles = []
    for ax, z in zip(axes, zipfs):
        for i, cache in enumerate(caches):
            for policy in policies:
                pts = _series(doc, z, cache, policy, metric)
                if pts:
                    _errorbar(ax, [u for u, _ in pts], [e for _, e in pts], color=_COLORS[i % len(_COLORS)],
                              linestyle=_STYLES[policy], marker=_MARKERS[i % len(_MARKERS)])
        if metric == "channel_uses_per_image":
            ax.axhline(doc["settings"]["image_channel_uses"], color="0.3", linestyle=":", linewidth=1.2)
        if metric == "consistency":
            ref = doc["reference_consistency"][repr(float(z))]
            ax.axhline(ref["aligned"], color="0.3", linestyle=":", linewidth=1.2)
            ax.axhline(ref["unaligned"], color="0.6", linestyle=":", linewidth=1.2)
        _axes_u(ax, users)
        if log_y:
            ax.set_yscale("log")
            ax.grid(True, which="minor", alpha=0.2)
        ax.set_title(f"Zipf s = {z:g}" + (" (uniform)" if z == 0 else ""), fontsize="medium")
        ax.set_xlabel("users U")
    axes[0].set_ylabel(ylabel)
    for i, cache in enumerate(caches):
        handles.append(Line2D([], [], color=_COLORS[i % len(_COLORS)], marker=_MARKERS[i % len(_MARKERS)],
                              label=_cache_label(doc, cache)))
    for policy in policies:
        handles.append(Line2D([], [], color="k", linestyle=_STYLES[policy], label=policy.upper()))
    if metric == "channel_uses_per_image":
        handles.append(Line2D([], [], color="0.3", linestyle=":", label="images only (no pack traffic)"))
    if metric == "consistency":
        handles.append(Line2D([], [], color="0.3", linestyle=":", label="every request aligned"))
        handles.append(Line2D([], [], color="0.6", linestyle=":", label="no request aligned"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), frameon=False,
               fontsize="small", title=_caption(doc, int(fig.get_figwidth() * 18)), title_fontsize="x-small")
    return fig


def channel_uses_figure(doc: dict[str, Any]) -> Figure:
    """Channel uses per image against U (module doc)."""
    return _by_u_figure(doc, "channel_uses_per_image", "channel uses per image (pack share included)", True)


def consistency_figure(doc: dict[str, Any]) -> Figure:
    """Consistency received against U (module doc)."""
    return _by_u_figure(doc, "consistency", f"consistency received ({doc['metric'].replace('_', ' ')})", False)


def payoff_figure(doc: dict[str, Any]) -> Figure:
    """Gain against pack traffic, and the price of +0.1 consistency against U (module doc); LRU only."""
    zipfs = sorted({c["zipf_s"] for c in doc["configurations"]})
    caches = sorted({c["cache_bytes"] for c in doc["configurations"]})
    users = sorted({c["users"] for c in doc["configurations"]})
    policy = "lru" if any(c["policy"] == "lru" for c in doc["configurations"]) else "lfu"
    image = doc["settings"]["image_channel_uses"]
    fig = Figure(figsize=(9.6, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    styles = ("-", "--", "-.", ":")
    for i, cache in enumerate(caches):
        for j, z in enumerate(zipfs):
            style = dict(color=_COLORS[i % len(_COLORS)], linestyle=styles[j % len(styles)],
                         marker=_MARKERS[j % len(_MARKERS)], markersize=4, linewidth=1.3)
            pack = dict(_series(doc, z, cache, policy, "pack_channel_uses_per_image"))
            gain = dict(_series(doc, z, cache, policy, "consistency_gain"))
            us = [u for u in users if u in pack and u in gain]
            if us:
                left.plot([pack[u]["mean"] / image for u in us], [gain[u]["mean"] for u in us], **style)
                left.annotate(f"U={us[-1]}", (pack[us[-1]]["mean"] / image, gain[us[-1]]["mean"]), fontsize=6,
                              textcoords="offset points", xytext=(3, 3), color=style["color"])
            pts = _series(doc, z, cache, policy, "price_per_0.1_consistency")
            if pts:
                _errorbar(right, [u for u, _ in pts], [e for _, e in pts], **{k: v for k, v in style.items()
                                                                               if k not in ("markersize", "linewidth")})
    left.set_xscale("log")
    left.set_xlabel(f"pack traffic per image [images' worth: {image} channel uses]")
    left.set_ylabel("consistency gain over the unaligned edge")
    left.grid(True, which="both", alpha=0.4)
    left.set_title(f"gain against overhead, U = {users[0]} ... {users[-1]} ({policy.upper()})", fontsize="medium")
    right.axhline(image, color="0.3", linestyle=":", linewidth=1.2)
    right.set_yscale("log")
    _axes_u(right, users)
    right.grid(True, which="minor", alpha=0.2)
    right.set_xlabel("users U")
    right.set_ylabel("pack channel uses per image for +0.1 consistency")
    right.set_title("price of alignment (below the dotted line: < one image)", fontsize="medium")
    handles = [Line2D([], [], color=_COLORS[i % len(_COLORS)], label=_cache_label(doc, c))
               for i, c in enumerate(caches)]
    handles += [Line2D([], [], color="k", linestyle=styles[j % len(styles)], marker=_MARKERS[j % len(_MARKERS)],
                       label=f"Zipf s = {z:g}") for j, z in enumerate(zipfs)]
    handles.append(Line2D([], [], color="0.3", linestyle=":", label=f"one image ({image} channel uses)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False,
               fontsize="small", title=_caption(doc, int(fig.get_figwidth() * 18)), title_fontsize="x-small")
    return fig


def plot_edge_users(results: str | Path, out_dir: str | Path) -> list[Path]:
    """The three figures (PNG + PDF) of ``results`` into ``out_dir``; returns their paths."""
    doc = load_edge_users(results)
    out: list[Path] = []
    for stem, make in (("edge_users_channel_uses", channel_uses_figure), ("edge_users_consistency", consistency_figure),
                       ("edge_users_payoff", payoff_figure)):
        out += save_figure(make(doc), out_dir, stem)
    return out
