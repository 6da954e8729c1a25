"""Runs of :mod:`dekasim.deka.edge_users` over many configurations: the result file and its Markdown table.

:func:`run_edge_users` simulates every configuration ``replications`` times and returns the result document
that ``dekasim edge-users`` writes as ``results.json``; :func:`markdown` turns it into the table of
``edge_users.md``; :mod:`dekasim.plots.edge_users` draws the figures from the file alone.

**Result file** (``kind = "dekasim-edge-users"``): ``settings`` (everything fixed), ``catalogue`` (the file, its
sha256, every subject with its pack key, bytes, bank bytes and consistencies, which are modelled copies),
``reference_consistency`` (per Zipf exponent, the popularity-weighted consistency of an edge that serves every
request aligned, and of one that serves none),
``adapter_costs`` (:func:`~dekasim.deka.edge_adapters.measure_adapter_costs`, or null), ``downlink`` (every
simulated fetch outcome used, per key), and ``configurations``: per configuration its keys (``users``,
``cache_bytes``, ``policy``, ``zipf_s``), ``summary`` (per metric: ``mean``, ``lo``, ``hi`` of the 95 % interval
over replications and the interval's entry with unit, method and sufficient statistics) and ``replications``
(per replication the per-user raw columns and the edge's counts).

**Metrics** (one value per replication; the interval is over replications, the independent units):
see :data:`METRICS`. Per-user columns are rounded to 6 significant digits in the file.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dekasim.deka.edge_catalogue import Subject, metric_range, popularity
from dekasim.deka.edge_users import (SWITCH_KINDS, DownlinkOutcomes, EdgeConfig, EdgeSettings, LinkSettings,
                                     UserSnrLaw, simulate_edge)
from dekasim.errors import ConfigError
from dekasim.metrics.stats import Interval, bounded_mean_interval, student_t_interval, unit_stats

log = logging.getLogger(__name__)

KIND = "dekasim-edge-users"
FORMAT_VERSION = 1
#: metric -> (meaning, unit). Values per replication; user means weigh every user alike (each asks T images).
METRICS: dict[str, tuple[str, str]] = {
    "channel_uses_per_image": ("channel uses per image, the user's share of pack traffic included", "channel uses"),
    "pack_channel_uses_per_image": ("pack traffic per image: broadcast shares + bank unicasts", "channel uses"),
    "bank_channel_uses_per_image": ("bank unicasts per image", "channel uses"),
    "consistency": ("consistency received, mean over requests", "metric"),
    "consistency_gain": ("consistency minus that of the unaligned edge on the same requests", "metric"),
    "price_per_0.1_consistency": ("pack channel uses per image that buy +0.1 consistency over the unaligned edge "
                                  "(0.1 x pack traffic per image / consistency gain)", "channel uses"),
    "aligned_fraction": ("share of requests served aligned", "fraction"),
    "delay_slots": ("delay until aligned service, mean over requests that missed and were served", "slots"),
    "switches_per_image": ("adapter switches per image", "switches"),
    "edge_ms_per_image_unmerged": ("edge adapter time per image, adapters kept unmerged", "ms"),
    "edge_ms_per_image_merged": ("edge adapter time per image, adapters merged into the weights", "ms"),
    "fetches_per_slot": ("fetches started per slot", "fetches"),
    "broadcast_group_size": ("users per broadcast, mean over fetches", "users"),
    "pack_downlink_busy": ("share of the slots in which the pack downlink was sending", "fraction"),
}


def _sig(x: Any) -> Any:
    return float(f"{x:.6g}") if isinstance(x, float) else x


def edge_ms(edge: dict[str, Any], costs: dict[str, Any] | None, merged: bool) -> float | None:
    """The edge's adapter time [ms] of one replication from its counts and measured median costs."""
    if costs is None:
        return None
    c = {k: v["median_ms"] for k, v in costs.items() if isinstance(v, dict) and "median_ms" in v}
    sw = edge["switches"]
    if merged:
        switching = sw["swap"] * (c["unfuse_ms"] + c["fuse_ms"]) + sw["on"] * c["fuse_ms"] + sw["off"] * c["unfuse_ms"]
    else:
        switching = sw["swap"] * c["set_adapter_ms"] + sw["on"] * c["enable_adapter_ms"] \
            + sw["off"] * c["disable_adapters_ms"]
    return switching + edge["adapter_loads"] * (c["load_pack_ms"] + c["load_adapter_ms"]) \
        + edge["adapter_deletes"] * c["delete_adapter_ms"]


def replication_metrics(rep: dict[str, Any], settings: EdgeSettings, costs: dict[str, Any] | None) -> dict[str, Any]:
    """The :data:`METRICS` of one replication (None where undefined, e.g. no request waited)."""
    u, e = rep["users"], rep["edge"]
    n_users, n_slots = len(u["snr_db"]), settings.slots
    images = n_users * n_slots
    cu = math.fsum(u["channel_uses_per_image"]) / n_users
    pack = (math.fsum(u["broadcast_channel_uses"]) + math.fsum(u["bank_channel_uses"])) / images
    cons = math.fsum(u["consistency"]) / n_users
    gain = cons - math.fsum(u["consistency_unaligned_edge"]) / n_users
    delayed = sum(u["delayed_requests"])
    ms_u, ms_m = edge_ms(e, costs, False), edge_ms(e, costs, True)
    return {
        "channel_uses_per_image": cu, "pack_channel_uses_per_image": pack,
        "bank_channel_uses_per_image": math.fsum(u["bank_channel_uses"]) / images,
        "consistency": cons, "consistency_gain": gain,
        "price_per_0.1_consistency": 0.1 * pack / gain if gain > 0 else None,
        "aligned_fraction": sum(u["aligned_requests"]) / images,
        "delay_slots": sum(u["delay_slots_sum"]) / delayed if delayed else None,
        "switches_per_image": sum(e["switches"][k] for k in SWITCH_KINDS) / images,
        "edge_ms_per_image_unmerged": None if ms_u is None else ms_u / images,
        "edge_ms_per_image_merged": None if ms_m is None else ms_m / images,
        "fetches_per_slot": e["fetches_started"] / n_slots,
        "broadcast_group_size": e["group_size_sum"] / e["fetches_started"] if e["fetches_started"] else None,
        "pack_downlink_busy": e["pack_downlink_busy_slots"] / n_slots,
    }


#: Metrics that cannot be negative: their Student-t interval is clipped at 0 (which keeps its coverage: the true
#: mean is inside the clipped interval whenever it is inside the unclipped one).
NON_NEGATIVE = {"channel_uses_per_image", "pack_channel_uses_per_image", "bank_channel_uses_per_image",
                "price_per_0.1_consistency", "delay_slots", "switches_per_image", "edge_ms_per_image_unmerged",
                "edge_ms_per_image_merged", "fetches_per_slot", "broadcast_group_size", "pack_downlink_busy"}
#: ... and those that cannot exceed 1 (a time share; clipped likewise).
AT_MOST_ONE = {"pack_downlink_busy"}


def _interval(values: Sequence[float], metric: str, value_range: tuple[float, float]) -> dict[str, Any]:
    st = unit_stats(values)
    if metric == "consistency":
        iv: Interval = bounded_mean_interval(st, "replication", value_range)
    elif metric == "aligned_fraction":
        iv = bounded_mean_interval(st, "replication", (0.0, 1.0))
    else:
        iv = student_t_interval(st, "replication")
    entry = iv.as_entry()
    lo, hi = iv.lo, iv.hi
    if lo is not None and metric in NON_NEGATIVE and lo < 0:
        lo = 0.0
        entry["note"] = "Student-t interval clipped at 0, the quantity's lower bound"
    if hi is not None and metric in AT_MOST_ONE and hi > 1:
        hi = 1.0
        entry["note"] = "Student-t interval clipped to [0, 1], the quantity's bounds"
    return {"mean": iv.estimate, "lo": lo, "hi": hi, "interval": entry}


def summarise(per_rep: Sequence[dict[str, Any]], value_range: tuple[float, float]) -> dict[str, Any]:
    """Per metric, the mean and 95 % interval over the replications where it is defined."""
    out = {}
    for m in METRICS:
        vals = [r[m] for r in per_rep if r[m] is not None]
        out[m] = _interval(vals, m, value_range) if vals else {"mean": None, "lo": None, "hi": None,
                                                                 "interval": None}
    return out


def shown_path(path: str | Path) -> str:
    """``path`` relative to the working directory where it lies below it (result files carry no absolute paths
    of the machine that wrote them), else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def catalogue_rows(subjects: Sequence[Subject]) -> list[dict[str, Any]]:
    return [{"subject": s.subject, "pack_key": s.pack_key, "pack": shown_path(s.pack.directory), "copy_of": s.copy_of,
             "size_bytes": s.pack.size_bytes, "bank_bytes": s.pack.bank_bytes, "sha256": s.pack.sha256,
             "consistency_aligned": s.consistency_aligned, "consistency_unaligned": s.consistency_unaligned,
             "source": s.source} for s in subjects]


def run_edge_users(configs: Sequence[EdgeConfig], settings: EdgeSettings, subjects: Sequence[Subject],
                   outcomes: DownlinkOutcomes, adapter_costs: dict[str, Any] | None = None, *,
                   catalogue: dict[str, Any] | None = None, command: str | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Every configuration x replication through :func:`~dekasim.deka.edge_users.simulate_edge`.

    :param subjects: the (expanded) catalogue.
    :param catalogue: facts about its file, for the record.
    :return: the result document (module doc).
    """
    from dekasim.progress import progress_bar

    t0 = time.perf_counter()
    value_range = metric_range(subjects[0].metric)
    rows = []
    bar = progress_bar(len(configs) * settings.replications, "edge-users", enabled=progress, unit="run")
    try:
        for c in configs:
            reps, per_rep = [], []
            for r in range(settings.replications):
                rep = simulate_edge(c, settings, subjects, outcomes, r)
                per_rep.append(replication_metrics(rep, settings, adapter_costs))
                reps.append({"replication": r, "users": {k: [_sig(x) for x in v] for k, v in rep["users"].items()},
                             "edge": rep["edge"], "metrics": per_rep[-1],
                             "received_sha256_ok": _received_ok(rep, subjects)})
                bar.update(1)
            rows.append({**asdict(c), "key": c.key(), "summary": summarise(per_rep, value_range), "replications": reps})
    finally:
        bar.close()
    return {"kind": KIND, "format_version": FORMAT_VERSION, "command": command,
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "settings": asdict(settings), "metric": subjects[0].metric, "metric_range": list(value_range),
            "catalogue": {**(catalogue or {}), "size": len(subjects), "subjects": catalogue_rows(subjects),
                          "modelled_copies": sum(s.copy_of is not None for s in subjects)},
            "adapter_costs": adapter_costs, "metrics": {k: {"meaning": v[0], "unit": v[1]} for k, v in METRICS.items()},
            "interval_unit": "replication (an independent run of the whole edge: new users, requests and fetch "
                             "draws; users of one edge share its cache and broadcasts, so they are not "
                             "independent units)",
            "reference_consistency": {repr(z): _reference(subjects, z)
                                      for z in sorted({float(c.zipf_s) for c in configs})},
            "downlink": {"simulated_s": round(outcomes.simulated_s, 1), "entries": outcomes.entries},
            "configurations": rows, "wall_s": round(time.perf_counter() - t0, 1)}


def _reference(subjects: Sequence[Subject], zipf_s: float) -> dict[str, float]:
    """Popularity-weighted consistency of an edge serving every request aligned, and of one serving none."""
    p = popularity(len(subjects), zipf_s)
    return {"aligned": float(p @ [s.consistency_aligned for s in subjects]),
            "unaligned": float(p @ [s.consistency_unaligned for s in subjects])}


def _received_ok(rep: dict[str, Any], subjects: Sequence[Subject]) -> bool:
    """Every pack a user holds (broadcast heard or bank unicast) came with its pack's sha256."""
    sha = {s.pack_key: s.pack.sha256 for s in subjects}
    return all(v == sha[k] for d in rep["received"] for k, v in d.items())


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------

def _num(x: float | None) -> str:
    """3 significant digits (whole numbers up to 9999), from 10 000 on as ``24.8 k`` / ``1.14 M``; ``—`` for
    None."""
    if x is None:
        return "—"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g} M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.3g} k"
    if x == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def _cell(entry: dict[str, Any]) -> str:
    """``mean [lo, hi]``, or the mean alone where there is no interval."""
    if entry.get("mean") is None:
        return "—"
    if entry.get("lo") is None:
        return _num(entry["mean"])
    return f"{_num(entry['mean'])} [{_num(entry['lo'])}, {_num(entry['hi'])}]"


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


def _room(doc: dict[str, Any], cache: int) -> str:
    pack = max(x["size_bytes"] for x in doc["catalogue"]["subjects"])
    return f"{_mb(cache)} (room for {cache // pack} packs)"


#: The columns of the per-configuration tables: (metric, heading).
COLUMNS = (("channel_uses_per_image", "channel uses / image"), ("pack_channel_uses_per_image", "of which pack"),
           ("consistency", "consistency"), ("aligned_fraction", "aligned"), ("delay_slots", "delay slots"),
           ("pack_downlink_busy", "downlink busy"), ("switches_per_image", "switches / image"),
           ("edge_ms_per_image_unmerged", "edge ms / image"), ("price_per_0.1_consistency", "price of +0.1"))


def _setting(doc: dict[str, Any]) -> list[str]:
    s, cat = doc["settings"], doc["catalogue"]
    link, snr = s["link"], s["snr"]
    subjects = cat["subjects"]
    real = [x for x in subjects if x["copy_of"] is None]
    return [
        "## Setting", "",
        f"- Catalogue: {cat['size']} subjects, {len(real)} real ({', '.join(x['subject'] for x in real)}); "
        f"{cat['modelled_copies']} are **modelled copies** of them (their pack bytes and consistencies are the real "
        f"ones; each is a distinct pack in the cache). Pack size "
        f"{', '.join(sorted({str(x['size_bytes']) + ' B' for x in subjects}))}; CALA bank "
        f"{', '.join(sorted({str(x['bank_bytes']) + ' B' for x in subjects}))}. Consistency: `{doc['metric']}` "
        f"(aligned {', '.join(_num(x['consistency_aligned']) for x in real)}, unaligned "
        f"{', '.join(_num(x['consistency_unaligned']) for x in real)}).",
        f"- {s['slots']} request slots (one image per user per slot, {s['image_channel_uses']} channel uses each), "
        f"{s['replications']} replications per configuration; pack downlink {s['pack_channel_uses_per_slot']} "
        f"channel uses per slot; serving order `{s['serve_order']}`; seed {s['seed']}.",
        f"- Users' Es/N0: normal({snr['mean_db']:g}, {snr['std_db']:g}) dB rounded to {snr['step_db']:g} dB and "
        f"clipped to [{snr['min_db']:g}, {snr['max_db']:g}] dB; "
        f"MCS = select_mcs(Es/N0 − {link['mcs_margin_db']:g} dB) "
        f"of table {link['mcs_table']}.",
        f"- Fetches simulated on TDL-{link['tdl_profile']} {link['delay_spread_ns']:g} ns, {link['csi'].upper()} "
        f"CSI, {link['speed_mps']:g} m/s, ARQ up to {link['max_rounds']} rounds; {link['outcomes_per_key']} "
        "outcomes per (pack, MCS, Es/N0), each fetch draws one.",
        f"- Intervals: 95 %, over {doc['interval_unit']}.", ""]


def _fetches(doc: dict[str, Any]) -> list[str]:
    lines = ["## Simulated fetches", "",
             "| pack bytes | MCS | Es/N0 dB | outcomes | channel uses (mean) | min – max | ARQ rounds | "
             "first-round BLER | delivered | simulation s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e in sorted(doc["downlink"]["entries"].values(), key=lambda e: (e["pack_bytes"], e["snr_db"])):
        o = e["outcomes"]
        cu = [x["channel_uses"] for x in o]
        lines.append(f"| {e['pack_bytes']} | {e['mcs_index']} | {e['snr_db']:g} | {len(o)} | {sum(cu) / len(cu):.0f} | "
                     f"{min(cu)} – {max(cu)} | {', '.join(str(x['rounds']) for x in o)} | "
                     f"{sum(x['first_round_bler'] for x in o) / len(o):.3f} | "
                     f"{sum(bool(x['delivered']) for x in o)}/{len(o)} | {sum(x['runtime_s'] for x in o):.0f} |")
    return lines + [""]


def _adapters(doc: dict[str, Any]) -> list[str]:
    costs = doc.get("adapter_costs")
    if not costs:
        return ["## Adapter switching on the edge", "", "Not measured (`--adapter-timing skip`): no edge times.", ""]
    med = {k: v["median_ms"] for k, v in costs.items() if isinstance(v, dict) and "median_ms" in v}
    load = f", load average {costs['load_average_1min']:.2f}" if costs.get("load_average_1min") is not None else ""
    lines = ["## Adapter switching on the edge (measured)", "",
             f"Edge `{costs['edge']}` on {costs['device']} ({costs['cpu']}, {costs['torch_threads']} torch "
             f"thread(s){load}); median of {costs['set_adapter_ms']['n']} calls (min – max); the second adapter: "
             f"{costs['second_adapter']}.", "", "| operation | median ms | min – max ms |", "|---|---|---|"]
    for k, v in costs.items():
        if isinstance(v, dict) and "median_ms" in v:
            lines.append(f"| `{k.removesuffix('_ms')}` | {v['median_ms']:.2f} | "
                         f"{v['min_ms']:.2f} – {v['max_ms']:.2f} |")
    steps = costs["sample_settings"]["steps"]
    for mode, v in costs["sample_ms"].items():
        lines.append(f"| one image, adapter {mode} ({steps} DDIM steps, batch 1) | {v['median_ms']:.1f} | "
                     f"{v['min_ms']:.1f} – {v['max_ms']:.1f} |")
    sample = {m: v["median_ms"] for m, v in costs["sample_ms"].items()}
    saved = sample["unmerged"] - sample["merged"]
    extra = med["unfuse_ms"] + med["fuse_ms"] - med["set_adapter_ms"]
    most = max((c["summary"]["switches_per_image"]["mean"] or 0.0) for c in doc["configurations"])
    lines += ["", f"Merged and unmerged latents differ by at most {costs['merged_max_abs_diff']:.2e}. Merging the "
              f"LoRA into the weights saves {saved:.0f} ms per image (no LoRA branch in {steps} steps) and costs "
              f"{extra:.1f} ms more per switch (`unfuse` + `fuse` instead of `set_adapter`): merged serving is faster "
              f"below {saved / extra:.1f} switches per image" + (f"; the most switches per image in this run: "
                                                                f"{most:.2f}." if extra > 0 else "."), ""]
    return lines


def _payoff(doc: dict[str, Any]) -> list[str]:
    image = doc["settings"]["image_channel_uses"]
    lines = ["## Where alignment pays off", "",
             f"Price of +0.1 consistency: the pack channel uses per image that buy +0.1 over the unaligned edge on the "
             f"same requests (0.1 × pack traffic per image / consistency gain). Below {image} (one image's channel "
             "uses) +0.1 consistency costs less than sending one more image. Pack traffic per image in images' worth, "
             "the bank unicasts' share of it, and the pack downlink's busy share at the largest U:", "",
             "| Zipf s | cache | policy | price below one image from U = | at U = | pack traffic / image "
             "[images] | bank unicasts' share | downlink busy |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for c in doc["configurations"]:
        groups.setdefault((c["zipf_s"], c["cache_bytes"], c["policy"]), []).append(c)
    for (z, cache, policy), rows in sorted(groups.items()):
        rows.sort(key=lambda c: c["users"])
        below = [c["users"] for c in rows if (c["summary"]["price_per_0.1_consistency"]["mean"] or math.inf) < image]
        top = rows[-1]["summary"]
        pack, bank = top["pack_channel_uses_per_image"]["mean"], top["bank_channel_uses_per_image"]["mean"]
        lines.append(f"| {z:g} | {_room(doc, cache)} | {policy} | {below[0] if below else 'none'} | "
                     f"{rows[-1]['users']} | {_num(pack / image)} | {_num(bank / pack if pack else None)} | "
                     f"{_num(top['pack_downlink_busy']['mean'])} |")
    return lines + [""]


def markdown(doc: dict[str, Any]) -> str:
    """The tables of ``edge_users.md`` from a result document of :func:`run_edge_users`."""
    lines = ["# An edge serving U users: pack cache, broadcast fetches and adapter switching", ""]
    if doc.get("command"):
        spent = sum(o["runtime_s"] for e in doc["downlink"]["entries"].values() for o in e["outcomes"])
        lines += [f"Made by `{doc['command']}` on {doc['date']} ({doc['wall_s']:.0f} s, of which "
                  f"{doc['downlink']['simulated_s']:.0f} s simulating fetches; the fetch outcomes took {spent:.0f} s "
                  "to simulate, in this run or an earlier one into the same folder, with the same seeds); every "
                  "number below is in its result file.", ""]
    lines += _setting(doc) + _fetches(doc) + _adapters(doc) + _payoff(doc)
    for zipf in sorted({c["zipf_s"] for c in doc["configurations"]}):
        lines += [f"## Zipf s = {zipf:g}" + (" (uniform)" if zipf == 0 else ""), "",
                  "| U | cache | policy | " + " | ".join(h for _, h in COLUMNS) + " |",
                  "|---" * (3 + len(COLUMNS)) + "|"]
        rows = [c for c in doc["configurations"] if c["zipf_s"] == zipf]
        for c in sorted(rows, key=lambda c: (c["cache_bytes"], c["policy"], c["users"])):
            lines.append(f"| {c['users']} | {_room(doc, c['cache_bytes'])} | {c['policy']} | "
                         + " | ".join(_cell(c["summary"][m]) for m, _ in COLUMNS) + " |")
        lines.append("")
    lines += ["Columns: " + "; ".join(f"**{h}**: {doc['metrics'][m]['meaning']} [{doc['metrics'][m]['unit']}]"
                                      for m, h in COLUMNS) + ". Mean [95 % interval over replications]; a mean alone "
              "where the replications do not vary or are too few.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The command's work: inputs checked, the run, the files
# --------------------------------------------------------------------------------------------------

def parse_list(flag: str, text: str, kind: type, example: str) -> list[Any]:
    """A comma-separated command-line list (``"1,2,4"``) as ``kind`` values; ConfigError naming ``flag``."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise ConfigError(flag, text, f"a comma-separated list of {kind.__name__} values", f"e.g. {flag} {example}") \
            from None
    if not values:
        raise ConfigError(flag, text, "at least one value", f"e.g. {flag} {example}")
    return values


def edge_configs(users: Sequence[int], cache_bytes: Sequence[int], policies: Sequence[str],
                 zipf: Sequence[float]) -> list[EdgeConfig]:
    """Every combination, checked (errors name ``--users``, ``--cache-bytes``, ``--policy``, ``--zipf``)."""
    flags = {"users": "--users", "cache_bytes": "--cache-bytes", "policy": "--policy", "zipf_s": "--zipf"}
    out = []
    try:
        for z in zipf:
            for c in cache_bytes:
                for p in policies:
                    for u in users:
                        out.append(EdgeConfig(u, c, p, z))
    except ConfigError as e:
        raise ConfigError(flags.get(e.field, e.field), e.value, e.expected, e.fix) from None
    return out


#: Settings field -> the ``dekasim edge-users`` flag that sets it (errors name the flag).
FLAGS = {"slots": "--slots", "replications": "--replications", "image_channel_uses": "--image-channel-uses",
         "pack_channel_uses_per_slot": "--pack-channel-uses-per-slot", "seed": "--seed", "serve_order": "--serve-order",
         "catalogue_size": "--catalogue-size", "snr_db_mean": "--snr-db", "snr_db_std": "--snr-std-db",
         "snr_db_step": "--snr-step-db", "snr_db_min": "--snr-min-db", "snr_db_max": "--snr-max-db",
         "tdl_profile": "--tdl-profile", "delay_spread_ns": "--delay-spread-ns",
         "csi": "--csi", "mcs_margin_db": "--mcs-margin-db", "downlink_outcomes": "--downlink-outcomes"}


def edge_settings(*, snr_db_mean: float = 10.0, snr_db_std: float = 4.0, snr_db_step: float = 5.0,
                  snr_db_min: float = 5.0, snr_db_max: float = 15.0, tdl_profile: str = "C",
                  delay_spread_ns: float = 300.0, csi: str = "ls", mcs_margin_db: float = 5.0,
                  downlink_outcomes: int = 4, **fields: Any) -> EdgeSettings:
    """:class:`EdgeSettings` from flat keys (those of :data:`FLAGS`); a ConfigError names the flag."""
    try:
        return EdgeSettings(**fields, snr=UserSnrLaw(snr_db_mean, snr_db_std, snr_db_step, snr_db_min, snr_db_max),
                            link=LinkSettings(tdl_profile=tdl_profile, delay_spread_ns=delay_spread_ns, csi=csi,
                                              mcs_margin_db=mcs_margin_db, outcomes_per_key=downlink_outcomes))
    except ConfigError as e:
        raise ConfigError(FLAGS.get(e.field, e.field), e.value, e.expected, e.fix) from None


def _adapter_costs(spec: str, real: Sequence[Subject]) -> dict[str, Any] | None:
    from dekasim.deka.edge_adapters import measure_adapter_costs

    if spec == "skip":
        return None
    if spec == "measure":
        costs = measure_adapter_costs([s.pack.directory for s in real])
        return {**costs, "packs": [shown_path(d) for d in costs["packs"]]}
    p = Path(spec)
    if not p.is_file():
        raise ConfigError("--adapter-timing", spec, "'measure', 'skip' or a JSON file (an earlier results.json)",
                          "e.g. --adapter-timing runs/edge_users/results.json")
    doc = json.loads(p.read_text())
    costs = doc.get("adapter_costs") if "adapter_costs" in doc else doc
    if not isinstance(costs, dict) or "set_adapter_ms" not in costs:
        raise ConfigError("--adapter-timing", spec, "a file holding measured adapter costs (adapter_costs)",
                          "use --adapter-timing measure")
    return {**costs, "reused_from": str(p)}


def write_edge_users(out_dir: str | Path, configs: Sequence[EdgeConfig], settings: EdgeSettings,
                     catalogue: str | Path | None = None, adapter_timing: str = "measure", *,
                     command: str | None = None, progress: bool = False) -> dict[str, Path]:
    """What ``dekasim edge-users`` does before its figures: load and expand the catalogue, measure (or reuse)
    the adapter costs, run every configuration, write ``results.json`` and ``edge_users.md`` into ``out_dir``
    (and ``downlink_outcomes.json``, the simulated fetches, which a rerun into the same folder reuses).

    :param adapter_timing: ``"measure"``, ``"skip"`` or a JSON file holding ``adapter_costs``.
    :return: ``{"results": path, "markdown": path, "outcomes": path}``.
    """
    from dekasim.checksums import sha256_file
    from dekasim.deka.edge_catalogue import DEFAULT_CATALOGUE, expand_catalogue, load_catalogue

    real, meta = load_catalogue(catalogue)
    subjects = expand_catalogue(real, settings.catalogue_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    costs = _adapter_costs(adapter_timing, real)
    outcomes = DownlinkOutcomes(settings.link, settings.seed, store=out / "downlink_outcomes.json")
    cat_path = Path(catalogue) if catalogue is not None else DEFAULT_CATALOGUE
    doc = run_edge_users(configs, settings, subjects, outcomes, costs, command=command, progress=progress,
                         catalogue={"file": shown_path(cat_path), "sha256": sha256_file(cat_path), "meta": meta,
                                    "real_subjects": len(real)})
    paths = {"results": out / "results.json", "markdown": out / "edge_users.md",
             "outcomes": out / "downlink_outcomes.json"}
    paths["results"].write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    paths["markdown"].write_text(markdown(doc))
    return paths
