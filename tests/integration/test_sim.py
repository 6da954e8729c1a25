"""The sweep engine and the result store: rows, seeds, resume after kill -9, no mixing of scenarios."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dekasim.cli import main
from dekasim.errors import ConfigError
from dekasim.metrics import interval_from_entry
from dekasim.scenarios import scenario_from_dict
from dekasim.sim import read_rows, run_scenario, sweep_points
from dekasim.sim.runner import point_seed

REQUIRED_COLUMNS = {"codec", "snr_db", "delay_spread_ns", "tdl_profile", "csi", "bandwidth_ratio", "n_images",
                    "psnr_db", "psnr_db_ci95", "ssim", "ber", "bler", "bit_errors", "bits", "block_errors",
                    "blocks", "status", "runtime_s", "seed"}


def _raw(**sweep):
    return {"name": "sim-test", "seed": 11, "payload": {"resolution_px": 32},
            "sweep": {"snr_db": [0, 20], "delay_spread_ns": [30, 300], "tdl_profile": ["C"], "csi": ["ls"], **sweep},
            "codecs": [{"codec": "analog"}], "monte_carlo": {"images_per_point": 4, "batch_size": 2}}


def _strip(rows, drop=("runtime_s", "timing_s")):
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def test_rows_files_and_manifest(tmp_path):
    result = run_scenario(scenario_from_dict(_raw()), out_dir=tmp_path, progress=False, plots=False)
    assert len(result.rows) == 4
    for row in result.rows:
        assert REQUIRED_COLUMNS <= set(row)
        assert row["n_images"] == 4 and row["status"] == "done"
        # every interval says its unit and method and recomputes from the row
        assert {k: (v["unit"], v["n_units"], v["method"]) for k, v in row["intervals"].items()} == {
            "psnr_db": ("image", 4, "student-t"), "ssim": ("image", 4, "wilson-neff")}
        lo, hi = row["ssim_ci95"]
        assert -1 <= lo <= row["ssim"] <= hi <= 1
        again = interval_from_entry(row["intervals"]["psnr_db"])
        assert again.halfwidth == row["psnr_db_ci95"] and again.estimate == pytest.approx(row["psnr_db"])
    assert (tmp_path / "results.csv").read_text().count("\n") == 5
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["scenario"]["name"] == "sim-test" and manifest["seed"] == 11
    assert {"torch", "sionna-no-rt", "dekasim"} <= set(manifest["versions"])
    # physics: more SNR, better picture, at both delay spreads
    by = {(r["delay_spread_ns"], r["snr_db"]): r["psnr_db"] for r in result.rows}
    assert by[(30.0, 20.0)] > by[(30.0, 0.0)] and by[(300.0, 20.0)] > by[(300.0, 0.0)]


def test_same_seed_same_rows_and_adding_a_point_changes_no_other(tmp_path):
    a = run_scenario(scenario_from_dict(_raw()), out_dir=tmp_path / "a", progress=False, plots=False).rows
    b = run_scenario(scenario_from_dict(_raw()), out_dir=tmp_path / "b", progress=False, plots=False).rows
    assert _strip(a) == _strip(b)
    c = run_scenario(scenario_from_dict(_raw(snr_db=[0, 10, 20])), out_dir=tmp_path / "c", progress=False,
                     plots=False).rows
    drop = ("runtime_s", "timing_s", "scenario_hash")
    common = {r["point_id"]: r for r in _strip(c, drop)}
    for row in _strip(a, drop):
        assert common[row["point_id"]] == row


def test_rerun_skips_finished_points_and_other_scenario_is_refused(tmp_path):
    first = run_scenario(scenario_from_dict(_raw()), out_dir=tmp_path, progress=False, plots=False)
    again = run_scenario(scenario_from_dict(_raw()), out_dir=tmp_path, progress=False, plots=False)
    assert again.skipped == 4 and _strip(again.rows) == _strip(first.rows)
    with pytest.raises(ConfigError, match="another --out"):
        run_scenario(scenario_from_dict(_raw(snr_db=[5])), out_dir=tmp_path, progress=False, plots=False)


def test_point_seed_depends_only_on_the_point():
    s1, s2 = scenario_from_dict(_raw()), scenario_from_dict(_raw(snr_db=[0, 5, 20]))
    seeds1 = {p.point_id: point_seed(1, p) for p in sweep_points(s1)}
    seeds2 = {p.point_id: point_seed(1, p) for p in sweep_points(s2)}
    assert all(seeds2[k] == v for k, v in seeds1.items())
    assert len(set(seeds2.values())) == len(seeds2)


def test_cli_run_writes_everything_and_set_override(tmp_path, capsys):
    scen = tmp_path / "s.toml"
    scen.write_text(Path("scenarios/quick.toml").read_text())
    code = main(["run", str(scen), "--out", str(tmp_path / "out"), "--no-progress",
                 "--set", "sweep.snr_db=[5]"])
    assert code == 0
    rows = read_rows(tmp_path / "out")
    assert [r["snr_db"] for r in rows] == [5.0]
    for name in ("results.jsonl", "results.csv", "manifest.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0


@pytest.mark.slow
def test_kill_9_loses_at_most_the_point_in_flight(tmp_path):
    scen = tmp_path / "k.toml"
    scen.write_text("""
name = "kill"
seed = 3
[payload]
resolution_px = 32
[sweep]
snr_db = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]
delay_spread_ns = [30, 300]
tdl_profile = ["C"]
csi = ["ls"]
[[codecs]]
codec = "analog"
[monte_carlo]
images_per_point = 32
batch_size = 8
""")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dekasim", "run", str(scen), "--out", str(out), "--no-progress", "--no-plots"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_rows(out)) < 1:  # points take tens of ms: poll fast
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_rows(out)
    assert 1 <= len(before) < 24, "the run should have been killed mid-sweep"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    after = read_rows(out)
    assert len(after) == 24 and len({r["point_id"] for r in after}) == 24
    assert _strip(after[: len(before)]) == _strip(before)
    # a fresh, uninterrupted run gives the same rows: resuming changed no numbers
    fresh = tmp_path / "fresh"
    subprocess.run([*cmd[:-4], "--out", str(fresh), "--no-progress", "--no-plots"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    key = lambda r: r["point_id"]  # noqa: E731
    assert sorted(_strip(after), key=key) == sorted(_strip(read_rows(fresh)), key=key)


def test_best_mcs_is_chosen_on_independent_calibration_draws(tmp_path):
    raw = _raw(snr_db=[12], delay_spread_ns=[300])
    raw["codecs"] = [{"codec": "digital", "label": "digital", "options": {"source_codec": "jpeg", "mcs": "best"}}]
    raw["payload"] = {"resolution_px": 64}
    raw["monte_carlo"] = {"images_per_point": 4, "batch_size": 4, "calibration_images": 4}
    (row,) = run_scenario(scenario_from_dict(raw), out_dir=tmp_path, progress=False, plots=False).rows
    calib = row["info"]["variant_calibration_psnr_db"]
    assert len(calib) >= 2
    best = max(calib, key=calib.get)
    assert json.loads(best)["mcs"] == row["info"]["mcs_index"]
    # the lowest supported MCS is always among the candidates
    from dekasim.codecs.mcs import supported_mcs_indices

    assert min(json.loads(k)["mcs"] for k in calib) == supported_mcs_indices(row["channel_uses"], "qam64")[0]
    # results.csv: the same row, flat; every value read back (intervals as lo/hi, info.* by dotted names)
    import csv

    (cells,) = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert float(cells["ber_ci95_lo"]) == row["ber_ci95"][0] and float(cells["ber_ci95_hi"]) == row["ber_ci95"][1]
    assert float(cells["info.mcs_index"]) == row["info"]["mcs_index"]
    assert float(cells[f"info.variant_calibration_psnr_db.{best}"]) == calib[best]

    def leaves(value, path=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(v, f"{path}.{k}" if path else k)
        else:
            yield path, value

    for path, value in leaves(row):
        if isinstance(value, list) and len(value) == 2:
            got = [json.loads(cells[f"{path}_{end}"]) for end in ("lo", "hi")]
        else:
            got = None if cells[path] == "" else cells[path] if isinstance(value, str) else json.loads(cells[path])
        assert got == value, path


def test_channel_domain_in_scenarios_rows_and_hash(tmp_path, capsys):
    """[channel] domain: the default keeps the hash; "auto" simulates 3000 ns in the time domain and says so
    per row; the ISI it adds costs the analog codec PSNR at 30 dB; a bad value is one line, exit 2."""
    base = _raw(snr_db=[30], delay_spread_ns=[300, 3000], csi=["perfect"])
    freq = scenario_from_dict(base)
    assert freq.hash() == scenario_from_dict({**base, "channel": {"domain": "frequency"}}).hash()
    auto = scenario_from_dict({**base, "channel": {"domain": "auto"}})
    assert auto.hash() != freq.hash()
    with pytest.warns(UserWarning, match="domain = 'time'"):
        rows_f = run_scenario(freq, out_dir=tmp_path / "f", progress=False, plots=False).rows
    rows_a = run_scenario(auto, out_dir=tmp_path / "a", progress=False, plots=False).rows
    dom = {r["delay_spread_ns"]: r["channel_domain"] for r in rows_a}
    assert dom == {300.0: "frequency", 3000.0: "time"}
    assert {r["channel_domain"] for r in rows_f} == {"frequency"}
    psnr_f = {r["delay_spread_ns"]: r["psnr_db"] for r in rows_f}
    psnr_a = {r["delay_spread_ns"]: r["psnr_db"] for r in rows_a}
    assert psnr_a[300.0] == pytest.approx(psnr_f[300.0])          # same draws, same (frequency) physics
    assert psnr_a[3000.0] < psnr_f[3000.0] - 1.0                   # ISI at 30 dB
    assert [r for r in rows_a if r["delay_spread_ns"] == 3000.0][0]["info"]["interference_estimate"] == "known channel"
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[channel]\ndomain = "delay"\n[sweep]\nsnr_db = [0]\n[[codecs]]\ncodec = "analog"\n')
    assert main(["run", str(path), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "channel.domain" in err[0] and "'delay'" in err[0]
