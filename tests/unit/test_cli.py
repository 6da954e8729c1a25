"""The command line's everyday surface: --version, validate FILE..., list [CODEC], --set into a codec's options,
and how warnings are shown."""

from __future__ import annotations

import sys
import textwrap
import tomllib
import warnings
from pathlib import Path

import pytest

import dekasim
from dekasim.cli import main
from dekasim.errors import ConfigError
from dekasim.scenarios.schema import apply_overrides, load_scenario, parse_override

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
name = "t"
seed = 1
[payload]
resolution_px = 32
[sweep]
snr_db = [0, 10]
delay_spread_ns = [100]
[[codecs]]
codec = "analog"
[[codecs]]
codec = "digital"
label = "digital (JPEG, q 0.5)"
options = { source_codec = "jpeg" }
"""


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_version_prints_the_package_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"dekasim {dekasim.__version__}\n"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert dekasim.__version__ == project["version"]  # one version, not two that drift


def test_validate_checks_every_file_and_fails_if_one_is_bad(tmp_path, capsys):
    good = _write(tmp_path, GOOD, "good.toml")
    other = _write(tmp_path, GOOD.replace("snr_db = [0, 10]", "snr_db = [5]"), "other.toml")
    bad = _write(tmp_path, GOOD.replace("delay_spread_ns = [100]", "delay_spread_ns = [-30]"), "bad.toml")
    assert main(["validate", str(good), str(bad), str(other)]) == 2
    captured = capsys.readouterr()
    valid = captured.out.strip().splitlines()
    assert [line.split(":")[0] for line in valid] == [str(good), str(other)]
    assert "valid (4 points" in valid[0] and "valid (2 points" in valid[1]
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "sweep.delay_spread_ns = -30.0" in err[0]
    assert main(["validate", str(good), str(other)]) == 0
    assert capsys.readouterr().err == ""


def test_validate_names_the_file_each_warning_comes_from(tmp_path, capsys):
    fast = GOOD.replace("[sweep]", "[channel]\nspeed_mps = 400\ncarrier_frequency_hz = 30e9\n[sweep]")
    good, a, b = (_write(tmp_path, text, name) for text, name in ((GOOD, "good.toml"), (fast, "a.toml"),
                                                                   (fast, "b.toml")))
    assert main(["validate", str(good), str(a), str(b)]) == 0
    err = capsys.readouterr().err.splitlines()
    doppler = [line for line in err if "between pilot symbols" in line]
    assert [line.split(": ")[2] for line in doppler] == [str(a), str(b)]  # once per file that has it
    assert all(line.startswith("dekasim: warning: ") for line in err) and str(good) not in "".join(err)


def test_validate_reports_a_missing_file_and_goes_on(tmp_path, capsys):
    good = _write(tmp_path, GOOD, "good.toml")
    assert main(["validate", str(tmp_path / "nope.toml"), str(good)]) == 2
    captured = capsys.readouterr()
    assert "nope.toml" in captured.err and "existing TOML file" in captured.err
    assert captured.out.startswith(f"{good}: valid")


def _summary(cls) -> str:
    import inspect

    return " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split())


def test_list_shows_each_codec_description_whole(capsys):
    from dekasim.codecs import available_codecs

    assert main(["list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, cls in available_codecs().items():
        assert _summary(cls) in out, name
    # the one that used to be cut after its first line
    assert "so it knows nothing of any model's generated images; no condition input." in out


def test_list_codec_shows_name_type_default_and_meaning_of_each_option(capsys):
    assert main(["list", "digital"]) == 0
    out = capsys.readouterr().out
    assert "mcs_margin_db  (float; default 0.0)" in out
    assert "source_codec  (str; default 'best')" in out
    text = " ".join(out.split())
    assert '"qam64" (TS 38.214 Table 5.1.3.1-1, default) or "qam256"' in text
    assert "--set codecs[i].options.NAME=VALUE" in text
    assert main(["list", "cala"]) == 0
    out = capsys.readouterr().out
    assert "num_adapters  (int | None; default None)" in out and "not documented" not in out
    assert "size" not in [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert main(["list", "analog"]) == 0
    assert "options: none" in capsys.readouterr().out


PLUGIN = '''
from dekasim.codecs import Codec


class Gain(Codec):
    """Sends the payload scaled.

    :param gain: linear gain applied before the power normalisation.
    """

    def __init__(self, payload_shape, bandwidth_ratio, gain: float = 1.0, mode="fast", *, secret_=None):
        super().__init__(payload_shape, bandwidth_ratio, gain=gain, mode=mode)


class Declared(Codec):
    """Options declared in a table, taken through **options."""

    options_help = {"alpha": {"type": "float", "default": "0.5", "meaning": "the mixing weight"},
                    "beta": "how many rounds"}

    def __init__(self, payload_shape, bandwidth_ratio, **options):
        super().__init__(payload_shape, bandwidth_ratio, **options)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "listplug.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "listplug"
    sys.modules.pop("listplug", None)
    from dekasim.codecs import base

    for key in [k for k in base._REGISTRY if k.startswith("listplug:")]:
        del base._REGISTRY[key]


def test_list_codec_shows_the_options_of_a_plug_in_codec(plugin, capsys):
    assert main(["list", f"{plugin}:Gain"]) == 0
    out = capsys.readouterr().out
    assert "gain  (float; default 1.0)" in out and "linear gain applied before the power normalisation" in out
    assert "mode  (str; default 'fast')" in out and "(not documented by the codec)" in out
    assert "secret_" in out  # a trailing underscore is a name, not a private one
    assert main(["list", f"{plugin}:Declared"]) == 0
    out = capsys.readouterr().out
    assert "alpha  (float; default 0.5)" in out and "the mixing weight" in out
    assert "  beta  (any)\n" in out and "how many rounds" in out


def test_list_of_an_unknown_codec_is_one_line(capsys):
    assert main(["list", "telepathy"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'telepathy'" in err and "dekasim list" in err


def test_unknown_codec_option_names_the_option_and_those_it_takes(plugin):
    from dekasim.codecs import build_codec

    with pytest.raises(ConfigError) as err:
        build_codec("digital", (3, 32, 32), 1 / 6, mcs_margn_db=2.0)
    assert err.value.field == "options.mcs_margn_db" and "did you mean 'mcs_margin_db'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        build_codec("analog", (3, 32, 32), 1 / 6, gain=2.0)
    assert err.value.field == "options.gain" and "takes none" in str(err.value)
    assert build_codec(f"{plugin}:Declared", (3, 8, 8), 1 / 6, anything=1).options == {"anything": 1}


# --- --set into codec options -----------------------------------------------------------------------------

def test_set_reaches_a_codec_option_by_index_and_by_label(tmp_path):
    path = _write(tmp_path, GOOD)
    s = load_scenario(path, ["codecs[1].options.mcs=5"])
    assert s.codecs[1].options == {"source_codec": "jpeg", "mcs": 5} and s.codecs[0].options == {}
    s = load_scenario(path, ['codecs["digital (JPEG, q 0.5)"].options.mcs_margin_db=3.5',
                             "codecs[analog].label=uncoded"])
    assert s.codecs[1].options["mcs_margin_db"] == 3.5 and s.codecs[0].label == "uncoded"
    assert load_scenario(path).hash() != load_scenario(path, ["codecs[1].options.mcs=5"]).hash()


def test_set_key_with_dots_inside_brackets_is_one_part():
    assert parse_override('codecs["a.b"].options.mcs=3') == (['codecs["a.b"]', "options", "mcs"], 3)
    raw = {"codecs": [{"codec": "digital", "label": "a.b"}]}
    assert apply_overrides(raw, ['codecs["a.b"].options.mcs=3'])["codecs"][0]["options"] == {"mcs": 3}
    assert raw["codecs"][0] == {"codec": "digital", "label": "a.b"}  # a copy, the input untouched


@pytest.mark.parametrize("override, expected", [
    ("codecs[2].options.mcs=5", "an index in [0, 2)"),
    ("codecs[jpeg].options.mcs=5", "no table is labelled 'jpeg'"),
    ("systems[0].edge=aligned", "no [[systems]] tables"),
    ("codecs[0.options.mcs=5", "NAME[INDEX or LABEL]"),
])
def test_set_that_selects_no_codec_is_one_line(tmp_path, capsys, override, expected):
    code = main(["validate", str(_write(tmp_path, GOOD)), "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--set" in err and expected in err, err


def test_set_codec_option_is_validated_under_its_full_key(tmp_path, capsys):
    code = main(["validate", str(_write(tmp_path, GOOD)), "--set", "codecs[1].options.mcs=99"])
    err = capsys.readouterr().err
    assert code == 2 and "codecs[digital (JPEG, q 0.5)].options.mcs = 99" in err


# --- warnings ---------------------------------------------------------------------------------------------

def test_warnings_show_once_as_one_line(capsys):
    from dekasim.channels.profiles import PhysicsWarning
    from dekasim.cli import _show_warnings_once

    with warnings.catch_warnings():
        _show_warnings_once()
        for _ in range(3):
            warnings.warn("pilots too sparse", PhysicsWarning)
        warnings.warn("an old API", DeprecationWarning)
        warnings.warn("an old API", DeprecationWarning)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "dekasim: warning: pilots too sparse"
    assert err[1].startswith("dekasim: warning: DeprecationWarning: an old API (") and __file__ in err[1]
    assert len(err) == 2  # each once, no source lines


def test_a_reader_that_goes_away_gets_no_traceback():
    """``dekasim list | head -0``: the pipe closes before dekasim writes; it stops quietly (status 141, as Unix
    tools do), with nothing on stderr."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "dekasim", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the command prints anything
    _, err = p.communicate(timeout=120)
    assert p.returncode == 141 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
