"""The scenario file described from its schema: every key with its type, unit, default and meaning, as a
Markdown reference (the docs' "Scenario reference") and as a JSON Schema that TOML editors use for completion
and checking (``dekasim schema``; taplo / Even Better TOML).

Both are generated from the key tables, :data:`~dekasim.scenarios.schema.KEY_DOCS` and the dataclasses of
:mod:`dekasim.scenarios.schema`, so a new key without a description, or a description of a key that does not
exist, fails ``tests/unit/test_scenario_reference.py``. The JSON Schema checks what a file can say about
itself (keys, types, names, ranges that need no other key); :func:`~dekasim.scenarios.schema.load_scenario`
checks the rest (models present, rates a codec serves, ...), as ``dekasim validate`` does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dekasim.channels.link import CSI_MODES, DOMAINS
from dekasim.conditions import ALL_PROFILES
from dekasim.devices import DTYPES
from dekasim.scenarios.presets import DELAY_SPREAD_PRESETS_NS
from dekasim.scenarios.schema import (BITS_DEFAULTS, DEVICES, EXECUTORS, GENERATED_DEFAULTS, PAYLOAD_KINDS,
                                      REQUIRED, DefaultWords, key_default, key_meanings, key_tables, key_unit)
from dekasim.scenarios.sweep import SWEEP_AXES

#: Tables in the order the reference shows them, with the heading a scenario file writes.
TABLE_HEADINGS = {"": "Top level", "payload": "[payload]", "channel": "[channel]", "ofdm": "[ofdm]",
                  "sweep": "[sweep]", "codecs": "[[codecs]]", "systems": "[[systems]]",
                  "monte_carlo": "[monte_carlo]", "downlink": "[downlink]"}

#: Values a key may take, where they are a fixed set.
CHOICES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("", "executor"): EXECUTORS, ("", "device"): DEVICES, ("payload", "kind"): PAYLOAD_KINDS,
    ("payload", "representation"): ("image", "latent"), ("payload", "dtype"): DTYPES,
    ("channel", "domain"): DOMAINS, ("sweep", "tdl_profile"): ALL_PROFILES, ("sweep", "csi"): CSI_MODES,
    ("systems", "edge"): ("aligned", "unaligned"), ("systems", "bank"): ("pack",),
}
#: Keys of ``[payload]`` each kind takes.
PAYLOAD_KEYS_BY_KIND = {"photos": ("kind", "resolution_px"),
                        "generated": ("kind", "resolution_px", *GENERATED_DEFAULTS),
                        "bits": ("kind", *BITS_DEFAULTS)}
_NUMERIC_AXES = tuple(a for a in SWEEP_AXES if a not in ("tdl_profile", "csi"))
#: A number written as a string: a fraction such as "1/6" (bandwidth ratios), or a decimal.
FRACTION_PATTERN = r"^\s*[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?(\s*/\s*\d+)?\s*$"


@dataclass(frozen=True)
class KeyDoc:
    """One key of the scenario file as the reference shows it.

    :param table: the table as the file writes it (``""`` top level, ``"codecs"`` one ``[[codecs]]`` entry).
    :param key: the key.
    :param type: the TOML value type(s), in words.
    :param unit: the unit (``""`` where none).
    :param default: the default, in Markdown.
    :param meaning: what it means, in Markdown.
    :param choices: the values it may take, where they are a fixed set.
    """

    table: str
    key: str
    type: str
    unit: str
    default: str
    meaning: str
    choices: tuple[Any, ...] | None = None

    @property
    def dotted(self) -> str:
        """The key as an error message or ``--set`` names it: ``channel.speed_mps``, ``codecs[i].label``."""
        if not self.table:
            return self.key
        return f"{self.table}[i].{self.key}" if self.table in ("codecs", "systems") else f"{self.table}.{self.key}"


def _rst_to_markdown(text: str) -> str:
    """Docstring reST (``code``, :class:`~a.B`) as Markdown."""
    text = re.sub(r":\w+:`~?([\w.]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return " ".join(text.replace("``", "`").split())


_TYPE_WORDS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}


def _type_words(table: str, key: str, types: tuple[type, ...]) -> str:
    if table == "sweep" and key in SWEEP_AXES:
        return "value, array or range" if key in _NUMERIC_AXES else "value or array"
    if table == "" and key in ("codecs", "systems"):
        return "array of tables"
    if table == "sweep" and key == "groups":
        return "array of tables"
    words = [_TYPE_WORDS[t] for t in types if t in _TYPE_WORDS]
    if "integer" in words and "number" in words:
        words.remove("integer")
    return " or ".join(dict.fromkeys(words))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e6:
            return str(int(value)) if value == 0 else repr(value)
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def _default_words(table: str, key: str) -> str:
    value = key_default(table, key)
    if value is REQUIRED:
        return "**required**"
    if isinstance(value, DefaultWords):
        return str(value)
    if value is None:
        if table == "sweep" and key == "snr_db":
            return "**required** (or `ebno_db`, or in every group)"
        return "none"
    if table == "sweep" and key == "bandwidth_ratio":
        return '`"1/12"` (1 for `bits`)'
    return f"`{_toml_value(value)}`"


def scenario_keys() -> list[KeyDoc]:
    """Every key of the scenario file, table by table in :data:`TABLE_HEADINGS` order."""
    meanings = key_meanings()
    out = []
    for table, keys in key_tables().items():
        for key, types in keys.items():
            out.append(KeyDoc(table, key, _type_words(table, key, types), key_unit(table, key),
                              _default_words(table, key), _rst_to_markdown(meanings[table][key]),
                              CHOICES.get((table, key))))
    order = list(TABLE_HEADINGS)
    return sorted(out, key=lambda d: order.index(d.table))


def markdown_reference() -> str:
    """The scenario reference as Markdown: one table per TOML table, every key with type, unit, default,
    meaning and (where fixed) its values."""
    keys = scenario_keys()
    lines = ["<!-- generated by dekasim.scenarios.reference.markdown_reference() from the schema: "
             "edit src/dekasim/scenarios/schema.py, not this page -->", ""]
    for table, heading in TABLE_HEADINGS.items():
        lines += [f"## {heading}", ""]
        lines += ["| key | type | unit | default | meaning |", "|---|---|---|---|---|"]
        for d in (k for k in keys if k.table == table):
            meaning = d.meaning
            if d.choices and not all(f"`{c}`" in meaning for c in d.choices):
                meaning += " Values: " + ", ".join(f"`{c}`" for c in d.choices) + "."
            lines.append(f"| `{d.key}` | {d.type} | {d.unit} | {d.default} | {meaning.replace('|', '&#124;')} |")
        lines.append("")
    return "\n".join(lines)


# --- JSON Schema ---------------------------------------------------------------------------------
def _plain_text(markdown: str) -> str:
    return markdown.replace("`", "")


def _json_type(types: tuple[type, ...]) -> dict[str, Any]:
    names = []
    for t in types:
        names.append({bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
                      dict: "object"}[t])
    if "number" in names and "integer" in names:
        names.remove("integer")
    names = list(dict.fromkeys(names))
    return {"type": names[0] if len(names) == 1 else names}


def _axis_value_schema(axis: str) -> dict[str, Any]:
    if axis == "tdl_profile":
        return {"enum": list(ALL_PROFILES)}
    if axis == "csi":
        return {"enum": list(CSI_MODES)}
    if axis == "delay_spread_ns":
        return {"anyOf": [{"type": "number", "minimum": 0}, {"enum": list(DELAY_SPREAD_PRESETS_NS)}]}
    if axis == "bandwidth_ratio":
        return {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                          {"type": "string", "pattern": FRACTION_PATTERN}]}
    if axis == "carrier_frequency_hz":
        return {"type": "number", "minimum": 0.4e9, "maximum": 100e9}
    return {"type": "number"}


def _axis_schema(axis: str, description: str) -> dict[str, Any]:
    value = {"$ref": f"#/definitions/axis_value_{axis}"}
    options = [value, {"type": "array", "minItems": 1, "items": value}]
    if axis in _NUMERIC_AXES:
        bound = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": FRACTION_PATTERN}]} \
            if axis == "bandwidth_ratio" else {"type": "number"}
        options.append({"type": "object", "description": "a range: start, start + step, ... up to stop inclusive",
                        "required": ["start", "stop", "step"], "additionalProperties": False,
                        "properties": {k: bound for k in ("start", "stop", "step")}})
    return {"description": description, "anyOf": options}


def _table_schema(table: str, docs: dict[str, KeyDoc]) -> dict[str, Any]:
    props = {}
    for key, types in key_tables()[table].items():
        d = docs[(table, key)]
        schema: dict[str, Any] = {"description": _plain_text(f"{d.meaning} Default: {d.default}."
                                                             + (f" Unit: {d.unit}." if d.unit else ""))}
        if d.choices:
            schema["enum"] = list(d.choices)
        else:
            schema.update(_json_type(types))
        value = key_default(table, key)
        if not isinstance(value, DefaultWords) and value is not None:
            schema["default"] = list(value) if isinstance(value, tuple) else value
        props[key] = schema
    return {"type": "object", "additionalProperties": False, "properties": props}


def _codec_options_schema() -> list[dict[str, Any]]:
    """``if codec == NAME then options`` schemas of every built-in codec: each option with its meaning (for
    completion), and no other option where the codec takes no others."""
    from dekasim.codecs import available_codecs
    from dekasim.codecs.base import codec_option_parameters, codec_options_help

    out = []
    for name, cls in available_codecs().items():
        if ":" in name:
            continue
        helps = codec_options_help(cls)
        _, open_ended = codec_option_parameters(cls)
        options: dict[str, Any] = {
            "type": "object",
            "properties": {h.name: {"description": f"{h.meaning} Type: {h.type}. Default: {h.default}."}
                           for h in helps}}
        if not open_ended:
            options["additionalProperties"] = False
        out.append({"if": {"properties": {"codec": {"const": name}}, "required": ["codec"]},
                    "then": {"properties": {"options": options}}})
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07) of a scenario file, for TOML editors (taplo / Even Better TOML): keys,
    types, the values of fixed sets, units and defaults in each description; which keys each payload kind
    takes; ``[[codecs]]`` against ``[[systems]]`` by payload kind; each built-in codec's options."""
    from dekasim import __version__
    from dekasim.codecs import available_codecs

    docs = {(d.table, d.key): d for d in scenario_keys()}
    top = _table_schema("", docs)
    for table in ("payload", "channel", "ofdm", "monte_carlo", "downlink"):
        top["properties"][table].update(_table_schema(table, docs))
        top["properties"][table].pop("type", None)
        top["properties"][table]["type"] = "object"
    payload = top["properties"]["payload"]
    payload["properties"]["image_encoders"]["additionalProperties"] = {"type": "string"}
    payload["properties"]["resolution_px"].update(minimum=16, maximum=512)
    for key in ("n_prompts", "sample_steps", "n_subject_prompts", "block_bits"):
        payload["properties"][key]["minimum"] = 1
    payload["properties"]["n_control_prompts"]["minimum"] = 0
    from dekasim.deka.system import DEKA_DEFAULTS

    by_kind = {**PAYLOAD_KEYS_BY_KIND, "deka": ("kind", "resolution_px", *DEKA_DEFAULTS)}
    payload["allOf"] = [
        {"if": ({"properties": {"kind": {"const": kind}}} if kind == "photos"
                else {"properties": {"kind": {"const": kind}}, "required": ["kind"]}),
         "then": {"propertyNames": {"enum": list(keys)}}} for kind, keys in by_kind.items()]
    channel = top["properties"]["channel"]["properties"]
    channel["carrier_frequency_hz"].update(minimum=0.4e9, maximum=100e9)
    channel["speed_mps"]["minimum"] = 0
    top["properties"]["seed"].update(minimum=0, maximum=2 ** 63 - 1)
    mc = top["properties"]["monte_carlo"]["properties"]
    for key in ("images_per_point", "max_images_per_point", "batch_size", "calibration_images"):
        mc[key]["minimum"] = 1
    mc["target_block_errors"]["minimum"] = 0
    downlink = top["properties"]["downlink"]["properties"]
    downlink["snr_db"] = {**downlink["snr_db"], "type": ["number", "array"], "items": {"type": "number"}}
    downlink["delay_spread_ns"] = {"description": downlink["delay_spread_ns"]["description"],
                                   "anyOf": [{"type": "number", "minimum": 0},
                                             {"enum": list(DELAY_SPREAD_PRESETS_NS)}]}
    downlink["mcs"] = {"description": downlink["mcs"]["description"], "default": "calibrated",
                       "anyOf": [{"const": "calibrated"}, {"type": "integer", "minimum": 0, "maximum": 28}]}

    sweep = _table_schema("sweep", docs)
    axes = {a: _axis_schema(a, sweep["properties"][a]["description"]) for a in SWEEP_AXES}
    sweep["properties"].update(axes)
    sweep["properties"]["zip"] = {
        "description": sweep["properties"]["zip"]["description"], "type": "object", "minProperties": 1,
        "additionalProperties": False,
        "properties": {a: {"type": "array", "minItems": 1, "items": {"$ref": f"#/definitions/axis_value_{a}"}}
                       if a not in _NUMERIC_AXES else axes[a] for a in SWEEP_AXES}}
    sweep["properties"]["groups"] = {
        "description": sweep["properties"]["groups"]["description"], "type": "array", "minItems": 1,
        "items": {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": axes}}
    sweep["not"] = {"required": ["snr_db", "ebno_db"]}
    top["properties"]["sweep"] = {**sweep, "description": top["properties"]["sweep"]["description"]}

    codec_entry = _table_schema("codecs", docs)
    codec_entry["required"] = ["codec"]
    builtins = sorted(n for n in available_codecs() if ":" not in n)
    codec_entry["properties"]["codec"] = {"description": codec_entry["properties"]["codec"]["description"],
                                          "anyOf": [{"enum": builtins}, {"type": "string"}]}
    codec_entry["properties"]["options"]["type"] = "object"
    codec_entry["allOf"] = _codec_options_schema()
    top["properties"]["codecs"] = {"description": top["properties"]["codecs"]["description"], "type": "array",
                                   "minItems": 1, "items": codec_entry}
    system_entry = _table_schema("systems", docs)
    system_entry["required"] = ["codec"]
    system_entry["properties"]["codec"] = {"description": system_entry["properties"]["codec"]["description"],
                                           "anyOf": [{"enum": ["preinstalled", *builtins]}, {"type": "string"}]}
    system_entry["properties"]["options"]["type"] = "object"
    top["properties"]["systems"] = {"description": top["properties"]["systems"]["description"], "type": "array",
                                    "minItems": 1, "items": system_entry}

    deka = {"properties": {"payload": {"properties": {"kind": {"const": "deka"}}, "required": ["kind"]}},
            "required": ["payload"]}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "urn:dekasim:scenario",
        "title": "dekasim scenario",
        "description": f"A dekasim scenario file (dekasim {__version__}). Generated by `dekasim schema` from "
                       "dekasim.scenarios.schema; `dekasim validate FILE` checks what a schema cannot.",
        **{k: v for k, v in top.items() if k != "properties"},
        "required": ["name", "sweep"],
        "properties": top["properties"],
        "definitions": {f"axis_value_{a}": _axis_value_schema(a) for a in SWEEP_AXES},
        "if": deka,
        "then": {"required": ["systems"], "not": {"required": ["codecs"]}},
        "else": {"required": ["codecs"], "properties": {"systems": False, "downlink": False}},
    }


def json_schema_text() -> str:
    """:func:`json_schema` as the file ``dekasim schema`` writes (sorted keys, 2-space indent, final newline)."""
    return json.dumps(json_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
