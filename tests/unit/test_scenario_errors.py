"""Every invalid scenario ends in one message naming file, key, value and what is expected: exit 2,
no traceback. ``dekasim validate`` runs only this check."""

from __future__ import annotations

import textwrap

import pytest

from dekasim.cli import main
from dekasim.errors import ConfigError

GOOD = """
name = "t"
seed = 1
[payload]
resolution_px = 32
[sweep]
snr_db = [0, 10]
delay_spread_ns = [100]
tdl_profile = ["C"]
[[codecs]]
codec = "analog"
"""


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def _validate(capsys, path, *extra):
    code = main(["validate", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_good_file_validates(tmp_path, capsys):
    code, out, err = _validate(capsys, _write(tmp_path, GOOD))
    assert code == 0 and "valid (2 points" in out


@pytest.mark.parametrize("edit, key, value_text, hint", [
    (("delay_spread_ns = [100]", "delay_spread_ns = [3e-7]"), "sweep.delay_spread_ns", "3e-07", "nanoseconds"),
    (("delay_spread_ns = [100]", "delay_spread_ns = [-30]"), "sweep.delay_spread_ns", "-30", "within"),
    (("tdl_profile = [\"C\"]", "tdl_profile = [\"Q\"]"), "sweep.tdl_profile", "'Q'", "one of"),
    (("codec = \"analog\"", "codec = \"telepathy\""), "codecs[0].codec", "'telepathy'", "dekasim list"),
    (("snr_db = [0, 10]", "snr_db = []"), "sweep.snr_db", "[]", "empty"),
    (("snr_db = [0, 10]", "snr_db = [0, \"ten\"]"), "sweep.snr_db", "'ten'", "finite number"),
    (("seed = 1", "seed = 1\nsnr = 3"), "snr", "3", "no such key"),
    (("[payload]", "[payload]\nresolution = 32"), "payload.resolution", "32", "resolution_px"),
    (("resolution_px = 32", "resolution_px = \"32\""), "payload.resolution_px", "'32'", "type int"),
    (("[payload]", "[ofdm]\nsubcarrier_spacing_hz = 30\n[payload]"), "ofdm.subcarrier_spacing_hz", "30", "in Hz"),
    (("[payload]", "[ofdm]\nsubcarrier_spacing_hz = 60e3\npilot_subcarrier_spacing = 4\n[payload]"),
     "ofdm.pilot_subcarrier_spacing", "4", "aliases"),
    (("[payload]", "[monte_carlo]\nimages_per_point = 0\n[payload]"), "monte_carlo.images_per_point", "0", ">= 1"),
])
def test_bad_values_name_file_key_value(tmp_path, capsys, edit, key, value_text, hint):
    text = GOOD.replace(*edit)
    if key == "ofdm.pilot_subcarrier_spacing":
        text = text.replace("delay_spread_ns = [100]", "delay_spread_ns = [1000]")
    path = _write(tmp_path, text)
    code, out, err = _validate(capsys, path)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert str(path) in err and key in err and value_text in err and hint in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("edit, key_value, hint", [
    (("[payload]", "[channel]\nspeed_mps = -30.0\n[payload]"), "channel.speed_mps = -30.0", "m/s within [0, 500]"),
    (("[payload]", "[channel]\nspeed_mps = 3000\n[payload]"), "channel.speed_mps = 3000.0", "m/s"),
    (("snr_db = [0, 10]", "snr_db = [0, 1000]"), "sweep.snr_db = 1000.0", "within [-50, 100]"),
    (("snr_db = [0, 10]", "snr_db = [0, 10]\nbandwidth_ratio = [100]"), "sweep.bandwidth_ratio = 100.0", "(0, 16]"),
    # a ratio the codec cannot serve is a sweep key, not a codec option
    (("snr_db = [0, 10]", "snr_db = [0, 10]\nbandwidth_ratio = [0.0001]"), "sweep.bandwidth_ratio = 0.0001",
     "at least one channel use"),
    (('codec = "analog"', 'codec = "digital"\noptions = { mcs = 99 }'), "codecs[digital].options.mcs = 99",
     "MCS index"),
    (('codec = "analog"', 'codec = "digital"\noptions = { mcs_margn_db = 2 }'),
     "codecs[digital].options.mcs_margn_db = 2", "did you mean 'mcs_margin_db'"),
    (('codec = "analog"', 'codec = "analog"\noptions = { nonsense = 3 }'), "codecs[analog].options.nonsense = 3",
     "takes none"),
])
def test_errors_name_the_full_key(tmp_path, capsys, edit, key_value, hint):
    """Errors raised below the scenario layer (a Condition, a codec) still name the key as the file writes it."""
    code, out, err = _validate(capsys, _write(tmp_path, GOOD.replace(*edit)))
    assert code == 2, (out, err)
    assert key_value in err and hint in err and len(err.strip().splitlines()) == 1, err


def test_downlink_delay_spread_error_names_the_downlink_table():
    from dekasim.scenarios import scenario_from_dict

    raw = {"name": "d", "payload": {"kind": "deka"}, "sweep": {"snr_db": [10]},
           "systems": [{"codec": "preinstalled"}], "downlink": {"delay_spread_ns": float("nan")}}
    with pytest.raises(ConfigError) as err:
        scenario_from_dict(raw)
    assert err.value.field == "downlink.delay_spread_ns"


def test_full_key_error_finds_the_table_that_holds_the_value():
    from dekasim.scenarios.schema import full_key_error

    raw = {"sweep": {"delay_spread_ns": [100]}, "downlink": {"delay_spread_ns": 20000}}
    assert full_key_error(ConfigError("delay_spread_ns", 20000, "x"), raw).field == "downlink.delay_spread_ns"
    assert full_key_error(ConfigError("delay_spread_ns", 100, "x"), raw).field == "sweep.delay_spread_ns"
    assert full_key_error(ConfigError("speed_mps", 9.0, "x"), {}).field == "channel.speed_mps"  # a default
    assert full_key_error(ConfigError("ofdm.fft_size", 3, "x"), raw).field == "ofdm.fft_size"  # already full
    assert full_key_error(ConfigError("--out", "x", "x"), raw).field == "--out"


def test_missing_file_and_bad_toml(tmp_path, capsys):
    code, _, err = _validate(capsys, tmp_path / "nope.toml")
    assert code == 2 and "nope.toml" in err and "existing TOML file" in err
    code, _, err = _validate(capsys, _write(tmp_path, "name = \n"))
    assert code == 2 and "valid TOML" in err


def test_missing_required_key(tmp_path, capsys):
    code, _, err = _validate(capsys, _write(tmp_path, GOOD.replace('name = "t"', "")))
    assert code == 2 and "name" in err and "required" in err


def test_bad_codec_option_is_reported_at_validation(tmp_path, capsys):
    text = GOOD.replace('codec = "analog"', 'codec = "analog"\noptions = { nonsense = 3 }')
    code, _, err = _validate(capsys, _write(tmp_path, text))
    assert code == 2 and "nonsense" in err and "Traceback" not in err


def test_override_is_validated(tmp_path, capsys):
    code, _, err = _validate(capsys, _write(tmp_path, GOOD), "--set", "sweep.delay_spread_ns=[3e-7]")
    assert code == 2 and "delay_spread_ns" in err


def test_fixed_profile_with_delay_spread_warns(tmp_path):
    from dekasim.scenarios import load_scenario

    path = _write(tmp_path, GOOD.replace('tdl_profile = ["C"]', 'tdl_profile = ["C300"]'))
    with pytest.warns(UserWarning, match="fixed 300 ns"):
        scenario = load_scenario(path)
    assert {c.delay_spread_ns for c in scenario.conditions()} == {300.0}


def test_presets_resolve(tmp_path):
    from dekasim.scenarios import load_scenario

    path = _write(tmp_path, GOOD.replace("delay_spread_ns = [100]", 'delay_spread_ns = ["very_short", "very_long"]'))
    assert load_scenario(path).delay_spread_ns == (10.0, 1000.0)
