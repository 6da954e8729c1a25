"""The DeKA-g scenario's report: what the systems share, and what the knowledge pack costs on the air.

:func:`write_deka_report` writes ``deka_report.json`` and ``deka_report.md`` beside a DeKA-g run's rows:

- **generation**: latents sampled this run and served from the cache;
- **pack**: directory, sha256 of its manifest, size, what it carries (metaword, G-LoRA, CALA bank), its
  alignment settings, and its size re-quantised to 8/4/2 bits (the same pack saved by
  :func:`~dekasim.generative.pack.save_pack` at each width);
- **no channel**: each edge's own images against the cloud's (what alignment alone reaches);
- **downlink, simulated**: the pack's bytes (:func:`~dekasim.deka.downlink.pack_bytes`) sent by the
  digital chain with ARQ (:func:`~dekasim.deka.downlink.simulate_downlink`) at each Es/N0 of the
  scenario's ``[downlink]`` (default 10 dB), its delay spread (default the sweep's middle one), the
  scenario's first profile and receiver, at the MCS of highest goodput in a short calibration
  (:func:`~dekasim.deka.downlink.calibrate_mcs`) or a fixed one; the received bytes are checked against
  the sent ones (sha256);
- **pay-off**: the pack's channel uses against the images', per downlink Es/N0 and per bandwidth ratio
  of the sweep (an image costs what the pre-installed JSCC sends for it at that rate, ``n = round(ratio *
  latent values)``: 512 at 1/6, 256 at 1/12 of a 48x8x8 latent, the rows' ``channel_uses``): after how
  many images the pack costs 100 %, 10 % and 1 % of what the images cost. (The no-alignment system
  never reaches DeKA-g's consistency at any number of channel uses -- its edge draws the subject its
  own way -- so "equal consistency" has no finite price without the pack; the table beside it shows
  both systems' consistency per SNR from the rows.)
- **broadcast**: the pack to U = 1 ... 64 users whose Es/N0 is drawn from N(10 dB, 5 dB) clipped to
  [0, 25] dB: one transmission at the worst user's MCS against one unicast per user
  (:func:`~dekasim.deka.downlink.broadcast_sweep`, first-round channel uses).
"""

from __future__ import annotations

import json
import math
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from dekasim.conditions import Condition

REPORT_JSON = "deka_report.json"
REPORT_MD = "deka_report.md"
#: The report's layout; :func:`read_deka_report` serves only reports of this version (2: images priced per rate).
REPORT_VERSION = 2
#: Users of the broadcast study, and their Es/N0 distribution [dB]: normal(mean, std) clipped to [min, max].
BROADCAST_USERS = (1, 2, 4, 8, 16, 32, 64)
BROADCAST_SNR_DB = {"snr_db_mean": 10.0, "snr_db_std": 5.0, "snr_db_min": 0.0, "snr_db_max": 25.0}


def _shown_dir(path) -> str:
    """A pack directory as a report shows it: inside the installed package, relative to it
    (``dekasim/deka/data/pack``), so a report does not depend on where the repository was cloned."""
    import dekasim

    root = Path(dekasim.__file__).resolve().parent
    try:
        return str(Path("dekasim") / Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def _pack_facts(deka) -> dict[str, Any]:
    from dekasim.generative.pack import pack_size_bytes, save_pack

    pack = deka.pack
    facts: dict[str, Any] = {
        "dir": _shown_dir(deka.pack_dir), "manifest_sha256": deka.pack_sha256, "size_bytes": pack_size_bytes(deka.pack_dir),
        "n_params": pack.n_params(), "subject": ", ".join(pack.subjects),
        "metaword": pack.metaword or ", ".join(p.metaword for p in pack.parts if p.metaword),
        "g_lora": pack.lora_mode != "none", "lora_mode": pack.lora_mode, "cala_bank": pack.cala is not None,
        "cala_base": None if pack.cala is None else pack.cala.base,
        "alignment": {k: (pack.info.get("config") or {}).get(k) for k in ("seed", "budget_steps", "lora_rank",
                                                                           "n_train_images")},
        "requantised_size_bytes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for bits in (None, 8, 4, 2):
            d = save_pack(pack, Path(tmp) / str(bits), bits=bits)  # the pack as loaded, at each width
            facts["requantised_size_bytes"]["float" if bits is None else f"{bits}-bit"] = pack_size_bytes(d)
    return facts


def write_deka_report(out_dir: str | Path, deka, downlink: dict[str, Any], base: Condition, grid, csi: str,
                      carrier_frequency_hz: float, seed: int, bandwidth_ratios: Sequence[float] | None = None,
                      scenario_hash: str | None = None, rows: list[dict[str, Any]] | None = None,
                      domain: str = "frequency") -> dict[str, Any]:
    """Write the report (see the module docstring) into ``out_dir``; returns it.

    :param deka: the run's :class:`~dekasim.deka.system.DekaPayload`.
    :param downlink: the scenario's ``[downlink]`` (``simulate``, ``snr_db`` list, ``delay_spread_ns``, ``mcs``:
        ``"calibrated"`` for :func:`~dekasim.deka.downlink.calibrate_mcs` at each SNR, or an MCS index).
    :param base: the condition the downlink shares with the scenario (profile, speed); its SNR and delay
        spread are replaced by the downlink's.
    :param grid, csi, carrier_frequency_hz: the scenario's OFDM grid, first receiver and carrier.
    :param seed: the scenario seed (the downlink at SNR ``s`` is seeded from it and ``s``).
    :param bandwidth_ratios: the sweep's bandwidth ratios [complex channel uses per real latent value]: the
        images are priced at each (:func:`image_channel_uses`); default the pre-installed JSCC's own rate.
    :param scenario_hash: recorded, so that :func:`read_deka_report` serves a rerun of the same scenario.
    :param rows: the run's result rows, for the claims table (:func:`claims_from_rows`).
    :param domain: the scenario's ``[channel] domain`` (the downlink's link simulates the same physics).
    """
    import hashlib
    from dataclasses import replace

    from dekasim.channels.link import OFDMLink
    from dekasim.deka.downlink import broadcast_sweep, calibrate_mcs, pack_bytes, simulate_downlink

    out = Path(out_dir)
    data = pack_bytes(deka.pack_dir)
    prices = image_channel_uses(deka, bandwidth_ratios)
    report: dict[str, Any] = {"scenario_hash": scenario_hash, "generation": dict(deka.generation),
                              "pack": _pack_facts(deka),
                              "prompts": {"subject": int(deka.is_subject.sum()),
                                          "control": int((~deka.is_subject).sum()),
                                          "examples": deka.prompts[:2] + deka.prompts[-1:]},
                              "no_channel_consistency": deka.no_channel_consistency(),
                              "image_channel_uses": prices, "downlink_settings": dict(downlink),
                              "report_version": REPORT_VERSION}
    sims = []
    if downlink.get("simulate", True):
        link = OFDMLink(grid, csi, carrier_frequency_hz, domain=domain)
        for snr in downlink["snr_db"]:
            cond = replace(base, snr_db=float(snr), delay_spread_ns=float(downlink["delay_spread_ns"]))
            sub = int.from_bytes(hashlib.sha256(f"{seed}|downlink|{float(snr)!r}".encode()).digest()[:8], "big") >> 1
            calib = None
            if downlink["mcs"] == "calibrated":
                calib = calibrate_mcs(cond, link, seed=sub ^ 0x5DEECE66D)
                index = calib["mcs_index"]
            else:
                index = int(downlink["mcs"])
            res = simulate_downlink(data, index, cond, link, seed=sub).as_dict()
            sims.append({"snr_db": cond.snr_db, "delay_spread_ns": cond.delay_spread_ns,
                         "tdl_profile": cond.tdl_profile, "csi": csi, **res, "mcs_calibration": calib,
                         "images_equivalent": {p["rate"]: res["channel_uses"] / p["channel_uses"] for p in prices}})
    report["downlink"] = sims
    report["payoff"] = {
        "what": "images (at the pre-installed JSCC's channel uses per image at each rate of the sweep) after which "
                "the pack's channel uses fall to 100 % / 10 % / 1 % of the images' channel uses",
        "by_snr_and_rate": [
            {"snr_db": s["snr_db"], "bandwidth_ratio": p["bandwidth_ratio"], "rate": p["rate"],
             "image_channel_uses": p["channel_uses"], "pack_channel_uses": s["channel_uses"],
             **{f"images_for_{pct}pct": math.ceil(s["channel_uses"] / p["channel_uses"] * 100 / pct)
                for pct in (100, 10, 1)}}
            for s in sims for p in prices]}
    report["claims"] = claims_from_rows(rows or [])
    report["broadcast"] = {"users_snr_db": BROADCAST_SNR_DB,
                           "rows": broadcast_sweep(len(data), BROADCAST_USERS, **BROADCAST_SNR_DB, seed=seed)}
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str))
    (out / REPORT_MD).write_text(render_markdown(report))
    return report


#: The paper's claims, and what a row pair measures for each: (name, metric, relative?, system A, system B).
CLAIMS = (("consistency (attribute agreement), DeKA-g vs no alignment", "attribute_agreement", True, "deka", "none"),
          ("consistency (feature cosine), DeKA-g vs no alignment", "feature_cosine", True, "deka", "none"),
          ("all five attributes agree, DeKA-g vs no alignment", "all_attributes_agree", False, "deka", "none"),
          ("transmission PSNR [dB], DeKA-g vs no alignment", "psnr_db", False, "deka", "none"),
          ("transmission PSNR [dB], T-KA: DeKA-g vs G-KA only (the bank on the aligned edge)", "psnr_db", False,
           "deka", "gka"),
          ("transmission PSNR [dB], T-KA only vs no alignment (the bank on the unaligned edge)", "psnr_db", False,
           "tka", "none"))


def claims_for(rows: list[dict[str, Any]]) -> tuple[tuple[str, str, bool, str, str], ...]:
    """The claims a run's rows can measure: :data:`CLAIMS` for the embedded world (its checker's agreement and
    feature cosine); for a user's models (no checker) the same comparisons in each image encoder's cosine
    (``<name>_cosine``: the DINO-score, CLIP-I, ...) instead of the world's two consistency scores."""
    if any(r.get("attribute_agreement") is not None for r in rows):
        return CLAIMS
    cosines = sorted({k for r in rows for k, v in r.items() if k.endswith("_cosine") and v is not None
                      and not isinstance(v, (dict, list))})
    consistency = tuple((f"consistency ({m.removesuffix('_cosine')} cosine), DeKA-g vs no alignment", m, True,
                         "deka", "none") for m in cosines)
    return consistency + tuple(c for c in CLAIMS if c[1] == "psnr_db")


def _role(facts: dict[str, Any] | None, codec_name: str) -> str | None:
    """Which of the four DeKA-g ablation systems a row is (None for the digital chain, bounds, ...)."""
    if not facts or codec_name != "preinstalled":
        return None
    aligned = facts["edge"] == "aligned"
    return {(True, True): "deka", (False, False): "none", (True, False): "gka", (False, True): "tka"}[
        (aligned, bool(facts["cala"]))]


def claims_from_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's two claims measured on a run's rows: per point (condition and receiver), the difference
    between two systems on the same prompts, seeds and channel draws; then the mean over points with a
    95 % Student-t half-width *over the points* (how it varies across conditions, not Monte-Carlo error;
    None below three points), and the range. Relative claims also give ``mean_relative_pct`` = mean over points
    of 100 (A - B) / B."""
    from dekasim.metrics import mean_ci95
    from dekasim.metrics.stats import MIN_UNITS

    by: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        role = _role(r.get("system"), r.get("codec_name", ""))
        if role is not None:
            by.setdefault((r["tdl_profile"], r["delay_spread_ns"], r["snr_db"], r["csi"]), {})[role] = r
    out = []
    for name, metric, relative, a, b in claims_for(rows):
        diffs, rel = [], []
        for point in by.values():
            if a in point and b in point and point[a].get(metric) is not None and point[b].get(metric) is not None:
                diffs.append(point[a][metric] - point[b][metric])
                if relative and point[b][metric]:
                    rel.append(100.0 * diffs[-1] / point[b][metric])
        if not diffs:
            continue
        mean, half = mean_ci95(diffs)
        if len(diffs) < MIN_UNITS:  # t_{0.975, 1} = 12.7: too few points for an interval, said as n/a
            half = None
        entry = {"claim": name, "metric": metric, "points": len(diffs), "mean_difference": mean,
                 "ci95_over_points": half, "min": min(diffs), "max": max(diffs)}
        if relative and rel:
            entry["mean_relative_pct"] = sum(rel) / len(rel)
        out.append(entry)
    return out


def read_deka_report(out_dir: str | Path, scenario_hash: str) -> dict[str, Any] | None:
    """The report already in ``out_dir`` for this scenario (None when there is none, or another's)."""
    path = Path(out_dir) / REPORT_JSON
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = report.get("scenario_hash") == scenario_hash and report.get("report_version") == REPORT_VERSION
    return report if same else None


def image_channel_uses(deka, bandwidth_ratios: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """What one image costs on the air at each bandwidth ratio: the complex channel uses the pre-installed
    JSCC (``deka.base_checkpoint``) sends per item, ``round(ratio * prod(latent shape))`` -- what its rows
    record as ``channel_uses`` -- as ``[{"bandwidth_ratio", "rate" (e.g. "1/12"), "channel_uses"}]``, in the
    order given. Default: the JSCC's own rate (its manifest's ``n_channel_uses``).
    """
    from dekasim.codecs.jscc import Arch, read_checkpoint

    manifest, _ = read_checkpoint(deka.base_checkpoint)
    n_source = math.prod(Arch.from_json(manifest["arch"]).payload_shape)
    if bandwidth_ratios is None:
        counts = [(int(manifest["n_channel_uses"]) / n_source, int(manifest["n_channel_uses"]))]
    else:
        counts = [(float(r), int(round(float(r) * n_source))) for r in bandwidth_ratios]
    return [{"bandwidth_ratio": r, "rate": str(Fraction(n, n_source)), "channel_uses": n} for r, n in counts]


def _f(x: Any, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def _mean_ci(summary: dict[str, Any]) -> str:
    """``"0.912 [0.871, 0.944]"`` from a :class:`~dekasim.metrics.consistency.MetricSummary` dict (95 % interval
    over prompts, inside the metric's range); ``"0.912 (n/a: <why>)"`` when it has none."""
    ci = summary.get("ci95_interval")
    if ci is None and summary.get("ci95_halfwidth") is not None:  # a report written before intervals were bounded
        return f"{_f(summary['mean'])} ± {_f(summary['ci95_halfwidth'])}"
    if ci is None:
        return f"{_f(summary['mean'])} (no interval: {summary.get('n', 0)} prompts)"
    return f"{_f(summary['mean'])} [{_f(ci[0])}, {_f(ci[1])}]"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    p, g = report["pack"], report["generation"]
    lines = ["# DeKA-g run report", "",
             f"Generation: {g['sampled']} latents sampled, {g['cache_hits']} served from the cache "
             f"({g['wall_s']:.1f} s).", "",
             f"Pack `{p['dir']}` (manifest sha256 {p['manifest_sha256'][:16]}…): {p['size_bytes']} B, "
             f"{p['n_params']} parameters; subject(s) `{p['subject']}`, metaword(s) `{p['metaword']}`, G-LoRA "
             f"{p.get('lora_mode', p['g_lora'])}, "
             f"CALA bank {p['cala_bank']}. Re-quantised: "
             + ", ".join(f"{k} {v} B" for k, v in p["requantised_size_bytes"].items()) + ".", "",
             f"Prompts: {report['prompts']['subject']} held-out prompts with the subject(s), "
             f"{report['prompts']['control']} control prompts without it.", "",
             "## Each edge's own image against the cloud's (no channel)", "",
             "Mean and 95 % interval over prompts (Wilson at the effective sample size; all five agree: "
             "Wilson), inside [0, 1] and [-1, 1].", ""]
    shown = list(next((m for splits in report["no_channel_consistency"].values() for m in splits.values()), {}))
    lines += ["| edge | split | " + " | ".join(k.replace("_", " ") for k in shown) + " |",
              "|---" * (len(shown) + 2) + "|"]
    for edge, splits in report["no_channel_consistency"].items():
        for split, m in splits.items():
            lines.append(f"| {edge} | {split} | " + " | ".join(_mean_ci(m[k]) for k in shown) + " |")
    if report["downlink"]:
        prices = report["image_channel_uses"]
        lines += ["", "## The pack over the downlink, simulated (digital chain + ARQ)", "",
                  "An image costs " + ", ".join(f"{p['channel_uses']} channel uses at {p['rate']}" for p in prices)
                  + " (the pre-installed JSCC's symbols per image at each rate of the sweep).", "",
                  "| Es/N0 dB | delay spread ns | MCS | blocks | first-round BLER | rounds | channel uses "
                  "| first-round channel uses | " + " | ".join(f"in images at {p['rate']}" for p in prices)
                  + " | delivered (sha256) |", "|---" * (9 + len(prices)) + "|"]
        for s in report["downlink"]:
            lines.append(f"| {s['snr_db']:g} | {s['delay_spread_ns']:g} | {s['mcs_index']} | {s['n_blocks']} | "
                         f"{s['first_round_bler']:.3f} | {s['rounds']} | {s['channel_uses']} | "
                         f"{s['channel_uses_first_round']} | "
                         + " | ".join(f"{s['images_equivalent'][p['rate']]:.0f}" for p in prices)
                         + f" | {s['delivered']} |")
        lines += ["", "Pay-off: " + report["payoff"]["what"] + ":", "",
                  "| Es/N0 dB | rate | image channel uses | pack channel uses | 100 % | 10 % | 1 % |",
                  "|---|---|---|---|---|---|---|"]
        for r in report["payoff"]["by_snr_and_rate"]:
            lines.append(f"| {r['snr_db']:g} | {r['rate']} | {r['image_channel_uses']} | {r['pack_channel_uses']} | "
                         f"{r['images_for_100pct']} | {r['images_for_10pct']} | {r['images_for_1pct']} |")
    if report.get("claims"):
        lines += ["", "## The paper's claims, measured on this run (paired per point; mean over points)", "",
                  "| comparison | points | mean difference | ± 95 % over points | range | relative |",
                  "|---|---|---|---|---|---|"]
        for c in report["claims"]:
            rel = f"{c['mean_relative_pct']:+.1f} %" if "mean_relative_pct" in c else ""
            lines.append(f"| {c['claim']} | {c['points']} | {c['mean_difference']:+.3f} | {_f(c['ci95_over_points'])} "
                         f"| {c['min']:+.3f} .. {c['max']:+.3f} | {rel} |")
    b = report["broadcast"]
    lines += ["", f"## Broadcast to U users vs unicast (first-round channel uses per user; user Es/N0 ~ "
              f"N({b['users_snr_db']['snr_db_mean']:g}, {b['users_snr_db']['snr_db_std']:g}) dB clipped to "
              f"[{b['users_snr_db']['snr_db_min']:g}, {b['users_snr_db']['snr_db_max']:g}] dB)", "",
              "| U | broadcast per user | unicast per user | gain (unicast / broadcast) |", "|---|---|---|---|"]
    for r in b["rows"]:
        lines.append(f"| {r['n_users']} | {r['broadcast_per_user_mean']:.0f} | {r['unicast_per_user_mean']:.0f} | "
                     f"{r['broadcast_gain_mean']:.2f} ± {_f(r['broadcast_gain_ci95'], 2)} |")
    lines.append("")
    return "\n".join(lines)

