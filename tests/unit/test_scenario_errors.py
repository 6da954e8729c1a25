"""Every invalid scenario ends in one message naming file, key, value and what is expected: exit 2,
no traceback. ``dekasim validate`` runs only this check."""

from __future__ import annotations

import textwrap

import pytest

from dekasim.cli import main

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
    (("delay_spread_ns = [100]", "delay_spread_ns = [3e-7]"), "delay_spread_ns", "3e-07", "nanoseconds"),
    (("delay_spread_ns = [100]", "delay_spread_ns = [-30]"), "delay_spread_ns", "-30", "within"),
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
