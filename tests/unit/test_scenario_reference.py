"""The scenario reference and the JSON Schema are generated from the schema, cover every key, and agree with
the loader: every shipped scenario validates against the shipped schema, and wrong files fail both."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest

from dekasim.cli import main
from dekasim.errors import ConfigError
from dekasim.scenarios.reference import json_schema, json_schema_text, markdown_reference, scenario_keys
from dekasim.scenarios.schema import KEY_DOCS, key_meanings, key_tables, scenario_from_dict

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "scenario.schema.json"
SHIPPED = sorted([*ROOT.glob("scenarios/*.toml"), *ROOT.glob("examples/**/*.toml")])


def test_every_key_has_a_meaning_and_no_meaning_names_a_key_that_does_not_exist():
    meanings = key_meanings()
    for table, keys in key_tables().items():
        for key in keys:
            assert len(meanings[table].get(key, "")) > 10, f"no description of {table or 'top-level'} key {key!r}"
    for table, docs in KEY_DOCS.items():
        assert set(docs) <= set(key_tables()[table]), f"KEY_DOCS[{table!r}] describes keys the schema lacks"


def test_the_reference_lists_every_key_under_its_table_with_type_and_default():
    text = markdown_reference()
    sections = dict(part.split("\n", 1) for part in text.split("\n## ")[1:])
    for d in scenario_keys():
        heading = {"": "Top level"}.get(d.table, f"[[{d.table}]]" if d.table in ("codecs", "systems")
                                        else f"[{d.table}]")
        assert f"| `{d.key}` | {d.type} | {d.unit} | {d.default} |" in sections[heading], d
        assert d.type and d.default
    # the units engineers look for
    rows = {(d.table, d.key): d for d in scenario_keys()}
    assert rows[("sweep", "delay_spread_ns")].unit == "ns" and rows[("channel", "carrier_frequency_hz")].unit == "Hz"
    assert rows[("ofdm", "cyclic_prefix_length")].unit == "samples" and rows[("sweep", "snr_db")].unit == "dB"
    assert rows[("monte_carlo", "images_per_point")].default == "`16`"


def test_the_shipped_json_schema_is_the_generated_one():
    assert SCHEMA_FILE.read_text() == json_schema_text(), \
        "schemas/scenario.schema.json is stale: run `dekasim schema --out schemas/scenario.schema.json`"
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_dekasim_schema_prints_and_writes_it(tmp_path, capsys):
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == json_schema_text()
    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").read_text() == json_schema_text()
    assert main(["schema", "--out", str(tmp_path)]) == 2


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_scenario_validates_against_the_schema(validator, path):
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(tomllib.loads(path.read_text()))]
    assert errors == []


def _photos() -> dict:
    return {"name": "x", "seed": 1, "payload": {"kind": "photos", "resolution_px": 32},
            "sweep": {"snr_db": [0, 10], "csi": ["ls"]}, "codecs": [{"codec": "analog"}]}


def _edit(path: str, value):
    """A function that sets the dotted ``path`` of a scenario dict to ``value`` (``None``: deletes it)."""
    def edit(raw: dict) -> dict:
        raw = copy.deepcopy(raw)
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is None:
            del node[last]
        else:
            node[last] = value
        return raw
    return edit


#: wrong files: each fails the JSON Schema and the loader alike
WRONG = {
    "unknown top-level key": _edit("snr_db", [0, 10]),
    "missing name": _edit("name", None),
    "unknown payload kind": _edit("payload.kind", "video"),
    "unknown receiver": _edit("sweep.csi", ["genie"]),
    "delay spread preset misspelt": _edit("sweep.delay_spread_ns", ["longish"]),
    "profile that does not exist": _edit("sweep.tdl_profile", "F"),
    "range without step": _edit("sweep.snr_db", {"start": 0, "stop": 20}),
    "bandwidth ratio that is no fraction": _edit("sweep.bandwidth_ratio", "one twelfth"),
    "Es/N0 and Eb/N0 both": _edit("sweep.ebno_db", [0, 5]),
    "codec entry without codec": _edit("codecs", [{"label": "analog"}]),
    "batch of zero": _edit("monte_carlo.batch_size", 0),
    "unknown channel domain": _edit("channel.domain", "hybrid"),
    "carrier in GHz": _edit("channel.carrier_frequency_hz", 3.5),
    "image size on a bit payload": lambda raw: _edit("payload.kind", "bits")(_edit("codecs", [
        {"codec": "digital_bits", "options": {"mcs": 9}}])(raw)),
    "systems without a DeKA-g payload": _edit("systems", [{"codec": "preinstalled", "edge": "aligned"}]),
    "unknown key in a sweep group": _edit("sweep.groups", [{"tdl_profile": "A", "snr": 3}]),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_files_fail_the_schema_and_the_loader(validator, name):
    raw = WRONG[name](_photos())
    assert not validator.is_valid(raw), name
    with pytest.raises(ConfigError):
        scenario_from_dict(raw)
    assert validator.is_valid(_photos()) and scenario_from_dict(_photos()).name == "x"


def test_the_schema_knows_each_codecs_options(validator):
    raw = _photos()
    raw["codecs"] = [{"codec": "digital", "options": {"mcs": "best", "source_codec": "jpeg"}}]
    assert validator.is_valid(raw)
    raw["codecs"][0]["options"]["mcs_margn_db"] = 3  # a typo of mcs_margin_db
    assert not validator.is_valid(raw)
    schema = json_schema()
    branches = {b["if"]["properties"]["codec"]["const"]: b["then"] for b in schema["properties"]["codecs"]["items"]
                ["allOf"]}
    assert "mcs_candidates" in branches["digital"]["properties"]["options"]["properties"]


def test_deka_scenarios_need_systems_not_codecs(validator):
    raw = tomllib.loads((ROOT / "scenarios" / "default.toml").read_text())
    assert validator.is_valid(raw)
    assert not validator.is_valid({**raw, "codecs": [{"codec": "analog"}]})
    assert not validator.is_valid({k: v for k, v in raw.items() if k != "systems"})
    assert not validator.is_valid({**raw, "payload": {**raw["payload"], "block_bits": 64}})


@pytest.mark.skipif(shutil.which("taplo") is None, reason="taplo is not installed (make docs installs it)")
def test_taplo_checks_the_shipped_scenarios_with_the_shipped_schema(tmp_path):
    """What an editor does with .taplo.toml: every shipped scenario passes, a wrong one fails."""
    ok = subprocess.run(["taplo", "check"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "scenarios").mkdir()
    shutil.copy(ROOT / ".taplo.toml", tmp_path)
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    text = 'name = "x"\n[sweep]\ncsi = "genie"\n[[codecs]]\ncodec = "analog"\n'
    (tmp_path / "scenarios" / "bad.toml").write_text(text)
    bad = subprocess.run(["taplo", "check"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0 and "genie" in bad.stderr + bad.stdout
