"""The digital baselines' default link adaptation against the alternatives, on the shipped scenarios.

For every shipped scenario (``scenarios/*.toml``) that holds a digital codec (``digital``,
``digital_latent``), every such codec entry and every sweep point of the scenario, three MCS policies
send the same items over the same channel and noise draws (the seed the shipped run gives that point;
calibration draws derived from it, as in ``dekasim run``):

- **default**: the entry's options without ``mcs`` / ``mcs_candidates``, i.e. the codec's default
  (``mcs = "best"`` since issue 20: calibrated per point, searching down in steps of 3 until the PSNR
  has passed its peak). The shipped scenarios write ``mcs = "best"``, which is the same codec;
- **best, 4 candidates**: ``mcs = "best", mcs_candidates = 4``, the ``"best"`` of before issue 20
  (the AWGN-adaptive MCS, 3 and 6 below it, the lowest);
- **adaptive**: ``mcs = "adaptive"``, the default before issue 20 (AWGN thresholds, 0 dB margin).

Written: ``plots/digital_default.json`` (one record per scenario, entry, point and policy: PSNR and its
95 % half-width, BLER, MCS, candidates tried, wall and CPU seconds) and ``plots/digital_default.md`` (a
summary per scenario and entry, then every point). Run from the repository root, one thread:

    .venv/bin/python benchmarks/digital_default.py [--scenarios scenarios/photos.toml ...] [--threads 1]
        [--snr-db 0 20] [--out plots/digital_default]

``--snr-db`` keeps only those sweep SNRs (a quick look); the docs' table (docs/digital.md) is the full run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

POLICIES = (("default", {}), ("best, 4 candidates", {"mcs": "best", "mcs_candidates": 4}),
            ("adaptive", {"mcs": "adaptive"}))
DIGITAL = ("digital", "digital_latent")
ROOT = Path(__file__).resolve().parents[1]


def _scenario_files(given: list[str] | None) -> list[Path]:
    import tomllib

    if given:
        return [Path(p) for p in given]
    out = []
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        raw = tomllib.loads(path.read_text())
        entries = raw.get("codecs", []) + raw.get("systems", [])
        if any(e.get("codec") in DIGITAL for e in entries):
            out.append(path)
    return out


def _run_scenario(path: Path, snrs: list[float] | None) -> list[dict]:
    import torch

    from dekasim.channels import OFDMLink
    from dekasim.codecs import build_codec
    from dekasim.scenarios import load_scenario
    from dekasim.sim.runner import check_scenario, codec_representation, point_seed, run_point, sweep_points

    scenario = load_scenario(path)
    full = scenario
    scenario = replace(scenario, codecs=tuple(s for s in scenario.codecs if s.codec in DIGITAL))
    if snrs is not None:
        scenario = replace(scenario, snr_db=tuple(s for s in scenario.snr_db if s in snrs))
    checked = check_scenario(scenario)
    source = checked.source
    if hasattr(source, "sample"):
        source.sample()
    links: dict[str, OFDMLink] = {}
    records = []
    for point in sweep_points(scenario):
        spec = point.spec
        seed = point_seed(full.seed, point)  # the seed of this point in the shipped run
        rep = codec_representation(scenario, spec.codec)
        shape = checked.shapes[rep]
        ratio = point.cond.bandwidth_ratio
        src = source.view(spec.edge) if scenario.payload_kind == "deka" else source
        link = links.setdefault(point.csi, OFDMLink(scenario.grid, point.csi, scenario.carrier_frequency_hz,
                                                    domain=scenario.channel_domain))
        base = {k: v for k, v in spec.options.items() if k not in ("mcs", "mcs_candidates")}
        for policy, extra in POLICIES:
            options = {**base, **extra}
            codec = build_codec(spec.codec, shape, ratio, **options)
            t0, c0 = time.perf_counter(), time.process_time()
            row = run_point(point, scenario, src, link, codec, seed, representation=rep,
                            variant=lambda o, options=options: build_codec(spec.codec, shape, ratio,
                                                                           **{**options, **o}))
            records.append({
                "scenario": path.name, "entry": spec.label, "codec": spec.codec, "options": options,
                "policy": policy, "tdl_profile": point.cond.tdl_profile,
                "delay_spread_ns": point.cond.delay_spread_ns, "snr_db": point.cond.snr_db, "csi": point.csi,
                "bandwidth_ratio": ratio, "seed": seed, "psnr_db": row["psnr_db"],
                "psnr_db_ci95": row["psnr_db_ci95"], "bler": row["bler"], "mcs_index": row["info"].get("mcs_index"),
                "candidates": len(row["info"].get("variant_calibration_psnr_db") or {}),
                "attribute_agreement": row.get("attribute_agreement"),
                "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                "torch_threads": torch.get_num_threads()})
            print(f"{path.name} {spec.label} {point.cond.delay_spread_ns:g} ns {point.cond.snr_db:g} dB {policy}: "
                  f"{row['psnr_db']:.2f} dB, BLER {row['bler']}, MCS {records[-1]['mcs_index']}", file=sys.stderr)
    return records


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _summary(records: list[dict]) -> list[str]:
    names = [p for p, _ in POLICIES]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r["entry"]), []).append(r)
    lines = ["| scenario | entry | points | mean PSNR dB: default / best, 4 cand. / adaptive "
             "| default − best, 4 cand. (min .. max) | default − adaptive (min .. max) "
             "| mean BLER: default / best, 4 / adaptive | candidates per point (default) | CPU s per point: default / best, 4 / adaptive |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (scen, entry), rs in groups.items():
        by = {(r["tdl_profile"], r["delay_spread_ns"], r["snr_db"], r["csi"]): {} for r in rs}
        for r in rs:
            by[(r["tdl_profile"], r["delay_spread_ns"], r["snr_db"], r["csi"])][r["policy"]] = r
        pts = [p for p in by.values() if len(p) == len(names)]
        psnr = {n: _mean([p[n]["psnr_db"] for p in pts]) for n in names}
        bler = {n: _mean([p[n]["bler"] for p in pts]) for n in names}
        cpu = {n: _mean([p[n]["cpu_s"] for p in pts]) for n in names}
        d4 = [p["default"]["psnr_db"] - p[names[1]]["psnr_db"] for p in pts]
        da = [p["default"]["psnr_db"] - p["adaptive"]["psnr_db"] for p in pts]
        cand = _mean([p["default"]["candidates"] for p in pts])
        lines.append(f"| {scen} | {entry} | {len(pts)} | " + " / ".join(f"{psnr[n]:.2f}" for n in names)
                     + f" | {_mean(d4):+.2f} ({min(d4):+.2f} .. {max(d4):+.2f}) | {_mean(da):+.2f} "
                     f"({min(da):+.2f} .. {max(da):+.2f}) | " + " / ".join(f"{bler[n]:.2f}" for n in names)
                     + f" | {cand:.1f} | " + " / ".join(f"{cpu[n]:.1f}" for n in names) + " |")
    return lines


def _points(records: list[dict]) -> list[str]:
    names = [p for p, _ in POLICIES]
    lines = ["| scenario | entry | profile | delay spread ns | Es/N0 dB | " + " | ".join(
        f"{n}: PSNR dB (BLER, MCS)" for n in names) + " |", "|---" * (5 + len(names)) + "|"]
    by: dict[tuple, dict[str, dict]] = {}
    for r in records:
        by.setdefault((r["scenario"], r["entry"], r["tdl_profile"], r["delay_spread_ns"], r["snr_db"]), {})[
            r["policy"]] = r
    for (scen, entry, prof, ds, snr), p in by.items():
        cells = [f"{p[n]['psnr_db']:.2f} ± {p[n]['psnr_db_ci95']:.2f} ({p[n]['bler']:.2f}, {p[n]['mcs_index']:.0f})"
                 if n in p else "" for n in names]
        lines.append(f"| {scen} | {entry} | {prof} | {ds:g} | {snr:g} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", nargs="*", help="scenario files (default: every shipped one with a digital codec)")
    ap.add_argument("--snr-db", nargs="*", type=float, help="keep only these sweep SNRs [dB]")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default=str(ROOT / "plots" / "digital_default"), help="path without suffix")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    records = []
    files = _scenario_files(args.scenarios)
    for path in files:
        records += _run_scenario(path, args.snr_db)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    command = "python benchmarks/digital_default.py " + " ".join(sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": command.strip(), "scenarios": [p.name for p in files], "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "torch_threads": args.threads, "python": platform.python_version()}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    md = ["# The digital baselines' default MCS choice against the alternatives", "",
          f"Made by `{meta['command']}` ({meta['wall_s']:.0f} s wall, {meta['cpu_s']:.0f} s CPU, "
          f"{args.threads} torch thread(s)). Per shipped scenario and digital entry, every sweep point, three "
          "MCS policies on the same items and the same channel and noise draws (the seed the shipped run gives "
          "the point): **default** (the codec's default, `mcs = \"best\"`: calibrated per point, searching down "
          "in steps of 3 until the PSNR has passed its peak; the shipped files write `mcs = \"best\"`, the same "
          "codec), **best, 4 candidates** (`mcs_candidates = 4`: the `\"best\"` of before issue 20) and "
          "**adaptive** (`mcs = \"adaptive\"`: AWGN thresholds, the default before issue 20). PSNR: mean over the "
          "point's items; differences are paired per point, then averaged over points (min .. max over points).",
          "", "## Summary", "", *_summary(records), "", "## Every point (PSNR ± 95 % half-width over items; BLER, "
          "MCS)", "", *_points(records), ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {out.with_suffix('.md')} and .json ({wall:.0f} s wall, {cpu:.0f} s CPU)")


if __name__ == "__main__":
    main()
