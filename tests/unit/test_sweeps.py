"""Sweeps as engineers write them (issue 20, item 4): ranges, fractions, zipped axes, groups and explicit
points, sweepable speed and carrier; plain sweeps keep their hashes and point ids; every error in the new
syntax is one line naming the full key, the value, what is expected and a fix."""

from __future__ import annotations

import copy
import textwrap

import pytest

from dekasim.cli import main
from dekasim.errors import ConfigError
from dekasim.scenarios import scenario_from_dict
from dekasim.sim import sweep_points

BASE = {"name": "sweeps", "seed": 3, "payload": {"resolution_px": 32},
        "sweep": {"snr_db": [0, 10]}, "codecs": [{"codec": "analog"}]}


def _scenario(**sweep):
    raw = copy.deepcopy(BASE)
    raw["sweep"] = sweep
    return scenario_from_dict(raw)


def _combos(scenario):
    return [(p.cond.tdl_profile, p.cond.delay_spread_ns, p.cond.speed_mps, p.cond.snr_db, p.csi, p.carrier_frequency_hz)
            for p in scenario.points()]


def test_a_range_is_its_list_float_safe_and_stop_inclusive():
    r = _scenario(snr_db={"start": 0, "stop": 20, "step": 2})
    assert r.snr_db == tuple(float(v) for v in range(0, 21, 2))
    assert r.hash() == _scenario(snr_db=list(range(0, 21, 2))).hash()  # the same scenario, the same hash
    fine = _scenario(snr_db={"start": 0, "stop": 1, "step": 0.1}).snr_db
    assert len(fine) == 11 and fine[3] == 0.3 and fine[-1] == 1.0  # not 0.30000000000000004, stop included
    assert _scenario(snr_db={"start": -1.5, "stop": 0.9, "step": 0.6}).snr_db == (-1.5, -0.9, -0.3, 0.3, 0.9)
    assert _scenario(snr_db={"start": 0, "stop": 5, "step": 2}).snr_db == (0.0, 2.0, 4.0)  # stop off the grid
    assert _scenario(snr_db={"start": 7, "stop": 7, "step": 1}).snr_db == (7.0,)


def test_ratios_as_fractions_everywhere_a_ratio_is_read():
    s = _scenario(snr_db=[0], bandwidth_ratio=["1/6", "1/12", 0.5])
    assert s.bandwidth_ratio == (1 / 6, 1 / 12, 0.5)
    assert _scenario(snr_db=[0], bandwidth_ratio="1/6").hash() == \
        _scenario(snr_db=[0], bandwidth_ratio=[0.16666666666666666]).hash()
    assert _scenario(snr_db=[0], bandwidth_ratio={"start": "1/24", "stop": "1/8", "step": "1/24"}).bandwidth_ratio \
        == (1 / 24, 1 / 12, 1 / 8)
    grouped = _scenario(snr_db=[0], groups=[{"bandwidth_ratio": "1/6", "tdl_profile": "awgn"}])
    assert grouped.points()[0].cond.bandwidth_ratio == 1 / 6


def test_a_codec_option_that_lists_ratios_takes_fractions_too():
    from dekasim.codecs import build_codec
    from dekasim.conditions import parse_ratio

    written = build_codec("jscc", (4, 8, 8), 1 / 6, checkpoint="none", rates=["1/24", "1/12", "1/6"])
    assert written.options["rates"] == [1 / 24, 1 / 12, 1 / 6]
    assert parse_ratio("x", " 1/6 ") == 1 / 6 and parse_ratio("x", 0.25) == 0.25
    for bad in ("1/0", "-1/6", "sixth", True, None, float("nan")):
        with pytest.raises(ConfigError, match=r"x = .*: expected a positive bandwidth ratio.*Fix: "):
            parse_ratio("x", bad)


def test_zip_pairs_the_ith_values_and_crosses_the_plain_axes():
    s = _scenario(snr_db=[0, 10], csi=["ls", "lmmse"],
                  zip={"tdl_profile": ["A", "C"], "delay_spread_ns": [100, 1000]})
    combos = _combos(s)
    assert {(p, ds) for p, ds, *_ in combos} == {("A", 100.0), ("C", 1000.0)}
    assert len(combos) == 2 * 2 * 2
    assert combos[:4] == [("A", 100.0, 0.0, 0.0, "ls", 3.5e9), ("A", 100.0, 0.0, 0.0, "lmmse", 3.5e9),
                          ("A", 100.0, 0.0, 10.0, "ls", 3.5e9), ("A", 100.0, 0.0, 10.0, "lmmse", 3.5e9)]


def test_groups_are_a_union_of_small_crossed_sweeps_and_single_values_are_points():
    s = _scenario(snr_db=[0, 10], groups=[
        {"tdl_profile": "awgn"},
        {"tdl_profile": "A", "delay_spread_ns": 100, "speed_mps": [0, 30]},
        {"tdl_profile": "C", "delay_spread_ns": 1000, "csi": "lmmse"}])
    combos = _combos(s)
    assert [c[:3] for c in combos[::2]] == [("awgn", 0.0, 0.0), ("A", 100.0, 0.0), ("A", 100.0, 30.0),
                                            ("C", 1000.0, 0.0)]
    assert {c[4] for c in combos if c[0] == "C"} == {"lmmse"} and {c[4] for c in combos if c[0] == "A"} == {"ls"}
    assert len(sweep_points(s)) == 8  # one codec


def test_an_explicit_point_list_with_its_own_snrs():
    s = _scenario(groups=[{"tdl_profile": "awgn", "snr_db": {"start": -2, "stop": 4, "step": 2}},
                          {"tdl_profile": "rayleigh", "snr_db": [10, 30]}])
    assert [(c[0], c[3]) for c in _combos(s)] == [("awgn", -2.0), ("awgn", 0.0), ("awgn", 2.0), ("awgn", 4.0),
                                                  ("rayleigh", 10.0), ("rayleigh", 30.0)]


def test_speed_and_carrier_are_sweepable_and_a_single_value_is_the_channel_setting():
    s = _scenario(snr_db=[10], tdl_profile="A", delay_spread_ns=100, speed_mps=[0, 30],
                  carrier_frequency_hz=[2e9, 28e9])
    assert {(c[2], c[5]) for c in _combos(s)} == {(0.0, 2e9), (0.0, 28e9), (30.0, 2e9), (30.0, 28e9)}
    points = sweep_points(s)
    assert {p.carrier_frequency_hz for p in points} == {2e9, 28e9} and len({p.point_id for p in points}) == 4
    one = _scenario(snr_db=[10], speed_mps=30, carrier_frequency_hz=28e9)
    raw = copy.deepcopy(BASE)
    raw["channel"] = {"speed_mps": 30, "carrier_frequency_hz": 28e9}
    raw["sweep"] = {"snr_db": [10]}
    same = scenario_from_dict(raw)
    assert one.hash() == same.hash()
    assert [p.point_id for p in sweep_points(one)] == [p.point_id for p in sweep_points(same)]
    assert {p.carrier_frequency_hz for p in sweep_points(one)} == {None}  # one carrier: ids as before


def test_a_plain_sweep_keeps_its_ids_and_a_zip_of_one_row_is_the_same_points():
    plain = _scenario(snr_db=[0, 10], tdl_profile=["A"], delay_spread_ns=[100])
    zipped = _scenario(snr_db=[0, 10], zip={"tdl_profile": ["A"], "delay_spread_ns": [100]})
    assert [p.point_id for p in sweep_points(plain)] == [p.point_id for p in sweep_points(zipped)]
    assert plain.sweep_factors == () and zipped.sweep_factors != ()


GOOD = """
name = "t"
seed = 1
[payload]
resolution_px = 32
[sweep]
snr_db = [0, 10]
[[codecs]]
codec = "analog"
"""


@pytest.mark.parametrize("sweep_text, key, value_text, hint", [
    ('snr_db = { start = 0, stop = 20, stp = 2 }', "sweep.snr_db.stp", "2", "sweep.snr_db.step"),
    ('snr_db = { start = 0, stop = 20 }', "sweep.snr_db.step", "None", "required key of a range"),
    ('snr_db = { start = 0, stop = 20, step = 0 }', "sweep.snr_db.step", "0", "positive step"),
    ('snr_db = { start = 20, stop = 0, step = 2 }', "sweep.snr_db.stop", "0", "stop >= start"),
    ('snr_db = { start = 0, stop = 1e6, step = 1 }', "sweep.snr_db", "{'start': 0", "at most 10000"),
    ('snr_db = [0]\ntdl_profile = { start = 0, stop = 2, step = 1 }', "sweep.tdl_profile", "{'start': 0", "numeric axis"),
    ('snr_db = [0]\nbandwidth_ratio = "1/0"', "sweep.bandwidth_ratio", "'1/0'", "fraction such as"),
    ('snr_db = [0]\nbandwidth_ratio = ["1/6", "one sixth"]', "sweep.bandwidth_ratio", "'one sixth'", '"1/6"'),
    ('snr_db = [0]\n[sweep.zip]\ntdl_profile = ["A", "C"]\ndelay_spread_ns = [100]', "sweep.zip.delay_spread_ns",
     "[100]", "as many values as sweep.zip.tdl_profile (2)"),
    ('snr_db = [0]\ntdl_profile = ["A"]\n[sweep.zip]\ntdl_profile = ["A", "C"]', "sweep.zip.tdl_profile",
     "['A', 'C']", "also set by sweep.tdl_profile"),
    ('snr_db = [0]\n[sweep.zip]\ndelay_spred_ns = [1]', "sweep.zip.delay_spred_ns", "[1]", "sweep.zip.delay_spread_ns"),
    ('snr_db = [0]\n[[sweep.groups]]\ntdl_profile = "A"\ndelay_spread_ns = 3e-7', "sweep.groups[0].delay_spread_ns",
     "3e-07", "nanoseconds"),
    ('snr_db = [0]\n[[sweep.groups]]\ntdl_profile = "A"\n[[sweep.groups]]\ntdl_profile = "Q"',
     "sweep.groups[1].tdl_profile", "'Q'", "one of"),
    ('[[sweep.groups]]\ntdl_profile = "A"\nsnr_db = [0]\n[[sweep.groups]]\ntdl_profile = "C"',
     "sweep.groups[1].snr_db", "None", "every group needs it"),
    ('snr_db = [0]\n[[sweep.groups]]\nspeed_mps = -30', "sweep.groups[0].speed_mps", "-30", "[0, 500]"),
    ('snr_db = [0]\ncarrier_frequency_hz = [3.5, 28e9]', "sweep.carrier_frequency_hz", "3.5", "in Hz"),
    ('snr_db = [0]\nebno_db = [1]', "sweep.ebno_db", "[1]", "one SNR axis"),
    ('ebno_db = [0, 2]', "sweep.ebno_db", "[0, 2]", 'kind = "bits"'),
    ('tdl_profile = ["A"]', "sweep.snr_db", "None", "required key"),
])
def test_errors_in_the_new_syntax_are_one_line_with_full_key_value_expected_and_fix(tmp_path, capsys, sweep_text,
                                                                                   key, value_text, hint):
    text = GOOD.replace("snr_db = [0, 10]\n", sweep_text + "\n")
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(text))
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{key} = {value_text}" in err and "expected" in err and hint in err and str(path) in err, err
    assert ". Fix: " in err, err


def test_speed_in_channel_and_sweep_is_refused_by_name():
    raw = copy.deepcopy(BASE)
    raw["channel"] = {"speed_mps": 3}
    raw["sweep"] = {"snr_db": [0], "speed_mps": [0, 30]}
    with pytest.raises(ConfigError, match=r"sweep.speed_mps = \[0, 30\]: expected speed_mps set once.*Fix: "):
        scenario_from_dict(raw)


def test_a_fixed_profile_in_a_group_warns_with_the_group_key():
    with pytest.warns(UserWarning, match=r"fixed 300 ns.*sweep.groups\[0\].delay_spread_ns = \[100.0\]"):
        s = _scenario(snr_db=[0], groups=[{"tdl_profile": "C300", "delay_spread_ns": 100}])
    assert {c.delay_spread_ns for c in s.conditions()} == {300.0}
