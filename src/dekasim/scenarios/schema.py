"""The scenario file: TOML validated into typed, frozen objects.

Every key carries its unit in its name. Every invalid file ends in one :class:`ConfigError` that names
the file, the key, the value and what is expected.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
import tomllib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dekasim.channels.grid import GridConfig
from dekasim.channels.link import CSI_MODES, DOMAINS
from dekasim.conditions import ALL_PROFILES, FIXED_TDL_PROFILES, FLAT_PROFILES, Condition
from dekasim.errors import ConfigError
from dekasim.scenarios.presets import DELAY_SPREAD_PRESETS_NS
from dekasim.scenarios.sweep import (AXIS_DEFAULTS, SWEEP_AXES, ConditionPoint, expand_points, ignored_delay_spreads,
                                     parse_sweep)

PAYLOAD_KINDS = ("photos", "generated", "deka", "bits")
EXECUTORS = ("local", "ray")
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class CodecSpec:
    """One codec to compare: a registered ``codec`` name, its legend ``label`` and its ``options``.

    :param codec: a registered codec name (``dekasim list`` shows them), a plug-in's entry-point name, or
        ``"module:Class"`` of a codec class (looked for beside the scenario file when not installed).
    :param label: the legend and the ``codec`` column of the rows (default: the codec's name); distinct per entry.
    :param options: the codec's options (``dekasim list CODEC`` shows them with type, default and meaning);
        ``mcs = [5, 13]`` on a digital codec makes one entry per MCS.
    """

    codec: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MonteCarlo:
    """Stop rules of one sweep point.

    :param images_per_point: images sent at every point (the minimum).
    :param target_block_errors: for codecs that send bits, keep sending (in batches) past
        ``images_per_point`` until this many block errors are counted, or ``max_images_per_point``;
        0 disables it.
    :param max_images_per_point: hard cap on images per point.
    :param batch_size: images per Monte-Carlo iteration.
    :param calibration_images: images each candidate of a codec with variants (``mcs = "best"``) sends,
        on draws independent of the reported ones, to choose the variant at each point.
    """

    images_per_point: int = 16
    target_block_errors: int = 0
    max_images_per_point: int = 16
    batch_size: int = 16
    calibration_images: int = 8


@dataclass(frozen=True)
class Scenario:
    """A resolved scenario. Build it with :func:`load_scenario` or :func:`scenario_from_dict`."""

    name: str
    seed: int
    payload_kind: str
    resolution_px: int
    carrier_frequency_hz: float
    speed_mps: float
    grid: GridConfig
    snr_db: tuple[float, ...]
    delay_spread_ns: tuple[float, ...]
    tdl_profile: tuple[str, ...]
    bandwidth_ratio: tuple[float, ...]
    csi: tuple[str, ...]
    codecs: tuple[CodecSpec, ...]
    monte_carlo: MonteCarlo
    output_dir: str | None = None
    executor: str = "local"
    ray_address: str | None = None
    device: str = "cpu"
    source: str | None = None
    payload_options: tuple[tuple[str, Any], ...] = ()
    downlink: tuple[tuple[str, Any], ...] = ()
    #: ``[channel] domain``: "frequency", "time" or "auto" (see :class:`~dekasim.channels.link.OFDMLink`)
    channel_domain: str = "frequency"
    #: ``sweep.ebno_db``: Eb/N0 per information bit [dB] (bit payloads; then ``snr_db`` is empty)
    ebno_db: tuple[float, ...] = ()
    #: the sweep's structure when it is not a plain product of the axis fields above (``[sweep.zip]``,
    #: ``[[sweep.groups]]``, several speeds or carriers): factors of rows of (axis, value), outermost first
    #: (:mod:`dekasim.scenarios.sweep`); then the axis fields hold every value each axis takes. Empty for a
    #: plain sweep, so plain scenarios keep their hashes.
    sweep_factors: tuple = ()

    def _factors(self) -> tuple:
        if self.sweep_factors:
            return self.sweep_factors
        snr_axis = ("ebno_db", self.ebno_db) if self.ebno_db else ("snr_db", self.snr_db)
        axes = (("tdl_profile", self.tdl_profile), ("bandwidth_ratio", self.bandwidth_ratio),
                ("delay_spread_ns", self.delay_spread_ns), snr_axis, ("csi", self.csi))
        return tuple(tuple(((name, v),) for v in values) for name, values in axes)

    def points(self) -> list[ConditionPoint]:
        """Every (condition, receiver, carrier) of the sweep, in nesting order: profile, bandwidth ratio, delay
        spread, carrier, speed, SNR, receiver (innermost). A fixed-delay profile (``"C300"``…) contributes its
        own delay spread once; AWGN one receiver (the first). In an Eb/N0 sweep each condition's ``snr_db``
        holds the Eb/N0 value (see :class:`~dekasim.scenarios.sweep.ConditionPoint`)."""
        defaults = {**AXIS_DEFAULTS, "speed_mps": self.speed_mps, "carrier_frequency_hz": self.carrier_frequency_hz,
                    "bandwidth_ratio": self.bandwidth_ratio[0]}
        return [p for _, p in expand_points(self._factors(), defaults)]

    def conditions(self) -> list[Condition]:
        """Unique channel conditions of the sweep, in the order of :meth:`points`."""
        return list(dict.fromkeys(p.cond for p in self.points()))

    @property
    def carriers_hz(self) -> tuple[float, ...]:
        """Every carrier frequency [Hz] of the sweep (one unless ``carrier_frequency_hz`` is swept)."""
        return tuple(dict.fromkeys(p.carrier_frequency_hz for p in self.points()))

    @property
    def payload_representation(self) -> str:
        """``"latent"`` when a generated payload is sent as the model's latents (always for ``kind = "deka"``:
        DeKA-g's transmitter sends latents; image-only codecs get the image they decode to), else ``"image"``."""
        if self.payload_kind == "deka":
            return "latent"
        return dict(self.payload_options).get("representation", "image")

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario as plain data (what the manifest stores and the hash covers)."""
        d = asdict(self)
        d["grid"] = asdict(self.grid)
        d.pop("source")
        if not self.payload_options:  # photo scenarios keep the hash they had before generated payloads
            d.pop("payload_options")
        if not self.downlink:  # only DeKA-g scenarios have one
            d.pop("downlink")
        if self.channel_domain == "frequency":  # scenarios from before the time domain keep their hash
            d.pop("channel_domain")
        for key in ("ebno_db", "sweep_factors"):  # plain Es/N0 sweeps keep the hash they had before these
            if not d[key]:
                d.pop(key)
        return json.loads(json.dumps(d))

    def hash(self) -> str:
        """sha256 of the resolved scenario, without where and how it runs (``output_dir``, ``executor``,
        ``ray_address``, the sample cache's ``payload.cache_dir``): a local and a Ray run of one scenario
        share a directory and a hash."""
        d = self.to_dict()
        for key in ("output_dir", "executor", "ray_address"):
            d.pop(key, None)
        if "payload_options" in d:
            d["payload_options"] = [kv for kv in d["payload_options"] if kv[0] != "cache_dir"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --- key tables: name -> the TOML value types it accepts --------------------------------------
# What each key means, its unit and its default are below (KEY_DOCS, KEY_UNITS, key_default): the scenario
# reference (docs) and the JSON Schema of the file (dekasim schema) are generated from these tables.
_NUM = (int, float)
#: Defaults of the top-level keys and of [channel] that are not tables of their own.
TOP_DEFAULTS: dict[str, Any] = {"seed": 0, "executor": "local", "device": "cpu", "output_dir": None,
                                "ray_address": None}
CHANNEL_DEFAULTS: dict[str, Any] = {"carrier_frequency_hz": 3.5e9, "speed_mps": 0.0, "domain": "frequency"}
_TOP = {"name": (str,), "seed": (int,), "output_dir": (str,), "executor": (str,), "ray_address": (str,),
        "device": (str,),
        "payload": (dict,), "channel": (dict,), "ofdm": (dict,), "sweep": (dict,),
        "codecs": (list,), "systems": (list,), "monte_carlo": (dict,), "downlink": (dict,)}
#: [downlink] of a DeKA-g scenario: the knowledge pack sent over the scenario's channel (dekasim.deka.report)
DOWNLINK_DEFAULTS = {"simulate": True, "snr_db": [10.0], "delay_spread_ns": None, "mcs": "calibrated"}
_DOWNLINK = {"simulate": (bool,), "snr_db": (list,) + (int, float), "delay_spread_ns": (int, float),
             "mcs": (str, int)}
_PAYLOAD = {"kind": (str,), "resolution_px": (int,), "model": (str,), "pack": (str,), "prompts": (str,),
            "n_prompts": (int,), "sample_steps": (int,), "guidance": _NUM, "representation": (str,),
            "cloud": (str,), "edge": (str,), "base": (str,), "n_subject_prompts": (int,), "n_control_prompts": (int,),
            "cache_dir": (str,), "image_encoders": (dict,), "control_prompts": (str,), "block_bits": (int,),
            "dtype": (str,)}
#: keys of [payload] that only kind = "deka" takes (see :data:`dekasim.deka.system.DEKA_DEFAULTS`)
DEKA_ONLY_KEYS = ("cloud", "edge", "base", "n_subject_prompts", "n_control_prompts", "cache_dir", "image_encoders",
                  "control_prompts", "dtype")
#: keys of [payload] that only kind = "generated" takes, with their defaults
GENERATED_DEFAULTS = {"model": "edge", "pack": None, "prompts": "heldout", "n_prompts": 64, "sample_steps": 25,
                      "guidance": 1.5, "representation": "image"}
#: keys of [payload] that only kind = "bits" takes, with their defaults
BITS_DEFAULTS = {"block_bits": 1024}
_CHANNEL = {"carrier_frequency_hz": _NUM, "speed_mps": _NUM, "domain": (str,)}


#: fixes for a condition value outside its physical range (dekasim.conditions names the range)
_CONDITION_FIXES = {"speed_mps": "speeds are in m/s (30 m/s is 108 km/h)", "snr_db": "SNRs are in dB",
                    "delay_spread_ns": "delay spreads are in ns (TR 38.901: 10 very short ... 1000 very long)",
                    "bandwidth_ratio": 'e.g. "1/12" or "1/6"'}


def _toml_types(cls: type) -> dict[str, tuple[type, ...]]:
    """A dataclass's fields as a key table (name -> the TOML value types it accepts): ``int`` -> int, ``float``
    -> int or float, ``bool`` -> bool, ``str`` -> str, tuples and lists -> a TOML array, dicts -> a table.
    The tables of ``[ofdm]``, ``[monte_carlo]`` and ``[[codecs]]`` are derived here, so a new field of
    :class:`~dekasim.channels.grid.GridConfig`, :class:`MonteCarlo` or :class:`CodecSpec` is a new key."""
    import dataclasses
    import typing

    out: dict[str, tuple[type, ...]] = {}
    for f in dataclasses.fields(cls):
        t = typing.get_type_hints(cls)[f.name]
        origin = typing.get_origin(t) or t
        if origin is bool:
            out[f.name] = (bool,)
        elif origin is int:
            out[f.name] = (int,)
        elif origin is float:
            out[f.name] = _NUM
        elif origin is str:
            out[f.name] = (str,)
        elif origin in (tuple, list):
            out[f.name] = (list,)
        elif origin is dict:
            out[f.name] = (dict,)
        else:  # pragma: no cover - a field type the schema cannot map: fail at import, not at a user
            raise TypeError(f"{cls.__name__}.{f.name}: no TOML type for {t!r}")
    return out


_OFDM = _toml_types(GridConfig)
#: [sweep]: every axis takes a value, a list or a range table (values are checked by dekasim.scenarios.sweep)
_SWEEP = {**{axis: (list, dict, str) + _NUM for axis in SWEEP_AXES}, "zip": (dict,), "groups": (list,)}
_CODEC = _toml_types(CodecSpec)
_SYSTEM = {"label": (str,), "edge": (str,), "codec": (str,), "bank": (str,), "options": (dict,)}
_MC = _toml_types(MonteCarlo)
_REQUIRED_TOP = ("name", "sweep")

#: What each key of the scenario file means: table -> key -> meaning (one sentence or two, Markdown with
#: ``code``). ``[ofdm]``, ``[monte_carlo]`` and ``[[codecs]]`` take theirs from the ``:param`` lines of
#: :class:`~dekasim.channels.grid.GridConfig`, :class:`MonteCarlo` and :class:`CodecSpec`
#: (:func:`key_meanings`). Every key of the key tables has one (``tests/unit/test_scenario_reference.py``).
KEY_DOCS: dict[str, dict[str, str]] = {
    "": {
        "name": "The scenario's name: results go to `runs/<name>` unless `output_dir` or `--out` says otherwise. "
                "Required.",
        "seed": "The one seed of the scenario, in [0, 2^63); every point derives its own from it and the point's "
                "identity, so adding a point changes no other.",
        "output_dir": "Where `dekasim run` writes the results (default `runs/<name>`; `--out` overrides it). Not "
                      "part of the scenario's hash.",
        "executor": "Where points run: `local` (in this process) or `ray` (one Ray task per point). Not part of "
                    "the hash: a local run resumes a Ray run's directory.",
        "ray_address": "The Ray cluster to join (`auto`, `ray://HEAD:10001`); without it `executor = \"ray\"` "
                       "starts a local Ray.",
        "device": "Where the channel, the codecs' tensors and the metrics run: `cpu`, `cuda` or `auto` (CUDA when "
                  "torch sees a GPU). Part of the hash (random draws differ between devices); on `cuda` the "
                  "default batch is 64.",
        "payload": "What is sent: photographs, generated images, the DeKA-g systems' latents or random bits.",
        "channel": "The carrier, the speed and the channel model's domain.",
        "ofdm": "The OFDM resource grid (one slot); every key optional.",
        "sweep": "The conditions: every combination of the axes is a point (zipped axes and groups for the rest).",
        "codecs": "The codecs to compare (array of tables). Required unless the payload is `deka`.",
        "systems": "The DeKA-g systems to compare (array of tables; only with `[payload] kind = \"deka\"`).",
        "monte_carlo": "How many items each point sends, and when it stops.",
        "downlink": "The knowledge pack sent over the scenario's channel (only with `kind = \"deka\"`; written "
                    "to `deka_report.md`).",
    },
    "payload": {
        "kind": "`photos` (crops of scikit-image's sample photographs), `generated` (the world's model draws "
                "images for captions), `deka` (the DeKA-g systems: an edge model's latents, compared with and "
                "without the knowledge pack) or `bits` (blocks of random information bits, for BER/BLER curves).",
        "resolution_px": "Image side: 16 to 512. Not for `bits`.",
        "model": "`generated`: the model that draws (`edge` or `cloud`, or a local model directory).",
        "pack": "`generated`: a knowledge pack applied to the model (none by default). `deka`: the pack "
                "(`default` is the shipped one; or a `dekasim align` / `build-pack` pack directory).",
        "prompts": "`generated`: the world's caption split (`heldout`, `train` or `all`). `deka`: a text file of "
                   "prompts holding the pack's subject, one per line (your own models; default: the world's "
                   "held-out prompts).",
        "n_prompts": "`generated`: how many prompts (images) are drawn.",
        "sample_steps": "`generated`, `deka`: DDIM sampling steps.",
        "guidance": "`generated`, `deka`: classifier-free guidance scale.",
        "representation": "`generated`: `image` (every codec gets the image) or `latent` (codecs that take "
                          "latents get the model's latents; image codecs the image they decode to).",
        "cloud": "`deka`: the reference (cloud) model: `cloud` (shipped) or a local diffusers pipeline folder.",
        "edge": "`deka`: the edge model: `edge` (shipped) or a local diffusers pipeline folder.",
        "base": "`deka`: the edge's pre-installed JSCC checkpoint (`.json`); `default` is the one the pack's "
                "bank names.",
        "n_subject_prompts": "`deka`: held-out prompts holding the pack's subject (never used to align it).",
        "n_control_prompts": "`deka`: prompts without the subject (what alignment must leave alone).",
        "cache_dir": "`deka`: where sampled latents are cached (keyed by model, pack, prompt, seed, sampler). Not "
                     "part of the hash.",
        "image_encoders": "`deka`: image encoders that score consistency, as a table of name = local model "
                          "directory (DINO, CLIP); rows carry `<name>_cosine`.",
        "control_prompts": "`deka`: a text file of control prompts (without the subject), one per line.",
        "block_bits": "`bits`: information bits per block (one transport block each).",
        "dtype": "`deka`: precision of sampling and image encoders: `float32`, `float16` or `bfloat16` (latents, "
                 "channel and codecs stay float32).",
    },
    "channel": {
        "carrier_frequency_hz": "Carrier frequency, within [0.4e9, 100e9] (TR 38.901). Sweepable instead "
                                "(`sweep.carrier_frequency_hz`), not both.",
        "speed_mps": "Terminal speed: the channel ages within a slot (Doppler). Sweepable instead "
                     "(`sweep.speed_mps`), not both.",
        "domain": "`frequency` (the cyclic prefix absorbs every tap, no ICI), `time` (OFDM time signal through "
                  "the TDL: ISI beyond the CP, ICI at speed) or `auto` (time where it matters).",
    },
    "sweep": {
        "tdl_profile": "Channel profile: TDL `A`-`E` (scaled by the delay spread), fixed TS 38.101-4 profiles "
                       "(`A30`, `C300`, ...), `rayleigh` (flat block fading) or `awgn`.",
        "bandwidth_ratio": "Complex channel uses per real source sample: a number or a fraction such as "
                           "`\"1/12\"`. Not for `bits`.",
        "delay_spread_ns": "RMS delay spread, or a preset name (`very_short` 10, `short` 30, `nominal` 100, "
                           "`long` 300, `very_long` 1000 ns).",
        "carrier_frequency_hz": "Carrier frequency as an axis (each carrier gets its own link).",
        "speed_mps": "Terminal speed as an axis.",
        "snr_db": "Es/N0 per data resource element.",
        "ebno_db": "Eb/N0 per information bit, instead of `snr_db` (bit payloads only).",
        "csi": "Receiver: `perfect`, `ls` (least squares on the pilots) or `lmmse` (LMMSE estimation); LMMSE "
               "equalisation follows.",
        "zip": "Zipped axes: a table of axis = list, all of equal length; the i-th values go together.",
        "groups": "Groups: an array of tables of axes; the sweep is their union, each a small crossed sweep.",
    },
    "systems": {
        "label": "The legend and the `codec` column of the rows.",
        "edge": "`aligned` (with the pack's metaword + G-LoRA) or `unaligned` (the edge as installed).",
        "codec": "`preinstalled` (the edge's pre-installed JSCC, the base the pack's bank adapts) or any codec "
                 "name (`dekasim list`) or `module:Class`.",
        "bank": "`pack`: add the pack's CALA bank + gate (only with `codec = \"preinstalled\"`).",
        "options": "The codec's options.",
    },
    "downlink": {
        "simulate": "Simulate the pack's bytes through the digital chain with ARQ (else only price it).",
        "snr_db": "Es/N0 of the downlink: a value or a list.",
        "delay_spread_ns": "Delay spread of the downlink (default: the sweep's middle one).",
        "mcs": "`calibrated` (the MCS of highest goodput in a 32-block calibration) or an MCS index 0..28 "
               "(TS 38.214 Table 5.1.3.1-1).",
    },
}

#: Units of keys whose name does not end in one (``_db``, ``_ns``, ``_hz``, ``_mps``, ``_px``: :func:`key_unit`).
KEY_UNITS: dict[str, dict[str, str]] = {
    "": {"seed": "", "device": ""},
    "ofdm": {"cyclic_prefix_length": "samples", "fft_size": "subcarriers", "num_guard_carriers": "subcarriers",
             "num_ofdm_symbols": "OFDM symbols", "pilot_subcarrier_spacing": "subcarriers"},
    "payload": {"block_bits": "bits", "guidance": "", "n_prompts": "prompts", "n_subject_prompts": "prompts",
                "n_control_prompts": "prompts"},
    "sweep": {"bandwidth_ratio": "channel uses per real sample"},
    "monte_carlo": {"images_per_point": "items", "max_images_per_point": "items", "batch_size": "items",
                    "calibration_images": "items", "target_block_errors": "blocks"},
}
_UNIT_SUFFIXES = {"_db": "dB", "_ns": "ns", "_hz": "Hz", "_mps": "m/s", "_px": "px"}


def key_tables() -> dict[str, dict[str, tuple[type, ...]]]:
    """Every table of the scenario file -> its keys -> the TOML value types each accepts. The table names are
    as the file writes them (``""`` is the top level, ``codecs`` and ``systems`` one entry of the array)."""
    return {"": _TOP, "payload": _PAYLOAD, "channel": _CHANNEL, "ofdm": _OFDM, "sweep": _SWEEP, "codecs": _CODEC,
            "systems": _SYSTEM, "monte_carlo": _MC, "downlink": _DOWNLINK}


def key_meanings() -> dict[str, dict[str, str]]:
    """table -> key -> meaning, for every table of :func:`key_tables` (the dataclass tables from their
    docstrings' ``:param`` lines)."""
    from dekasim.codecs.base import _param_docs

    out = {table: dict(KEY_DOCS.get(table, {})) for table in key_tables()}
    for table, cls in (("ofdm", GridConfig), ("monte_carlo", MonteCarlo), ("codecs", CodecSpec)):
        out[table].update({k: v.rstrip(".") + "." for k, v in _param_docs(cls.__doc__).items()})
    return out


def key_unit(table: str, key: str) -> str:
    """The unit of ``key`` of ``table``: from :data:`KEY_UNITS`, else from the key's suffix, else ``""``."""
    if key in KEY_UNITS.get(table, {}):
        return KEY_UNITS[table][key]
    return next((unit for suffix, unit in _UNIT_SUFFIXES.items() if key.endswith(suffix)), "")


#: Defaults that depend on something else, in words (the others are values: :func:`key_default`).
_DEFAULT_WORDS = {("", "output_dir"): "`runs/<name>`", ("payload", "resolution_px"): "64 (`photos`), 32 otherwise",
                  ("payload", "pack"): "none (`generated`), `default` (`deka`)",
                  ("payload", "prompts"): "`heldout` (`generated`); the world's held-out prompts (`deka`)",
                  ("payload", "model"): "`edge`", ("downlink", "delay_spread_ns"): "the sweep's middle one",
                  ("codecs", "label"): "the codec's name", ("systems", "label"): "`<codec> (<edge> edge)`",
                  ("systems", "bank"): "none", ("systems", "edge"): "`aligned`",
                  ("monte_carlo", "max_images_per_point"): "`images_per_point`",
                  ("monte_carlo", "batch_size"): "16 (64 on `cuda`)",
                  ("", "ray_address"): "none (a local Ray)", ("payload", "control_prompts"): "none"}
_REQUIRED = {("", "name"), ("", "sweep"), ("codecs", "codec"), ("systems", "codec")}


def key_default(table: str, key: str) -> Any:
    """The default of ``key`` of ``table``: a value (``None`` where the key's absence is its default, e.g. a
    table), or :class:`DefaultWords` where it depends on something else (:data:`REQUIRED` for a required key).
    Sweep axes give :data:`~dekasim.scenarios.sweep.AXIS_DEFAULTS`, the value an axis no part of the sweep
    sets takes."""
    import dataclasses

    from dekasim.deka.system import DEKA_DEFAULTS

    if (table, key) in _REQUIRED:
        return REQUIRED
    if (table, key) in _DEFAULT_WORDS:
        return DefaultWords(_DEFAULT_WORDS[(table, key)])
    if table == "" and key in TOP_DEFAULTS:
        return TOP_DEFAULTS[key]
    if table == "channel":
        return CHANNEL_DEFAULTS[key]
    if table == "payload":
        if key == "kind":
            return "photos"
        for defaults in (GENERATED_DEFAULTS, BITS_DEFAULTS, DEKA_DEFAULTS):
            if key in defaults:
                return defaults[key]
    if table == "sweep" and key in AXIS_DEFAULTS:
        return AXIS_DEFAULTS[key]
    if table == "downlink":
        return DOWNLINK_DEFAULTS[key]
    for name, cls in (("ofdm", GridConfig), ("monte_carlo", MonteCarlo), ("codecs", CodecSpec)):
        if table == name:
            f = {f.name: f for f in dataclasses.fields(cls)}[key]
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    return None


class DefaultWords(str):
    """A default that is not a value but a phrase (``"runs/<name>"``, ``"the sweep's middle one"``)."""


REQUIRED = DefaultWords("required")


def _deka_payload(payload: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The resolved ``[payload]`` options of ``kind = "deka"`` (defaults from :data:`~dekasim.deka.system.DEKA_DEFAULTS`)."""
    from dekasim.deka.system import DEKA_DEFAULTS, DEKA_OPTIONAL_KEYS

    wrong = sorted(k for k in payload if k not in DEKA_DEFAULTS and k not in ("kind", "resolution_px"))
    if wrong:
        raise ConfigError(f"payload.{wrong[0]}", payload[wrong[0]], 'no such key for kind = "deka"',
                          f"its keys: {sorted(DEKA_DEFAULTS)}")
    opts = {**DEKA_DEFAULTS, **{k: v for k, v in payload.items() if k in DEKA_DEFAULTS}}
    for key in ("n_subject_prompts", "sample_steps"):
        if opts[key] < 1:
            raise ConfigError(f"payload.{key}", opts[key], "a positive integer")
    if opts["n_control_prompts"] < 0:
        raise ConfigError("payload.n_control_prompts", opts["n_control_prompts"], "an integer >= 0")
    encoders = opts["image_encoders"]
    for name, path in encoders.items():
        if not name.isidentifier() or not isinstance(path, str) or not Path(path).is_dir():
            raise ConfigError(f"payload.image_encoders.{name}", path, "a local model directory (DINO, CLIP: "
                              "from_pretrained layout, safetensors), under a name that is an identifier",
                              "nothing is downloaded: save the model locally first")
    for key in ("prompts", "control_prompts"):
        if opts[key] is not None and not Path(opts[key]).is_file():
            raise ConfigError(f"payload.{key}", opts[key], "a local text file, one prompt per line",
                              "give the path of your prompt file")
    from dekasim.devices import resolve_dtype

    resolve_dtype(opts["dtype"], "payload.dtype")
    for key in DEKA_OPTIONAL_KEYS:  # at their defaults, they leave the hash of scenarios written before they existed
        if not opts[key] or opts[key] == DEKA_DEFAULTS[key]:
            opts.pop(key)
    return tuple(sorted(opts.items()))


def _downlink(table: dict[str, Any] | None, kind: str, spreads: tuple[float, ...]) -> tuple[tuple[str, Any], ...]:
    """The resolved ``[downlink]`` of a DeKA-g scenario (defaults: :data:`DOWNLINK_DEFAULTS`, the delay spread
    the middle one of the sweep); other kinds have none."""
    if kind != "deka":
        if table is not None:
            raise ConfigError("downlink", "[downlink]", 'a [downlink] table only with [payload] kind = "deka" '
                              "(it sends the knowledge pack)", "remove it")
        return ()
    table = dict(table or {})
    _check_keys(table, _DOWNLINK, "downlink.")
    opts = {**DOWNLINK_DEFAULTS, **table}
    opts["snr_db"] = list(_numbers("downlink.snr_db", _as_list(opts["snr_db"]), "(Es/N0 in dB)"))
    if opts["delay_spread_ns"] is None:
        ordered = sorted(spreads)
        opts["delay_spread_ns"] = ordered[len(ordered) // 2]
    opts["delay_spread_ns"] = _delay_spreads([opts["delay_spread_ns"]], "downlink.delay_spread_ns")[0]
    m = opts["mcs"]
    if not (m == "calibrated" or (isinstance(m, int) and not isinstance(m, bool) and 0 <= m <= 28)):
        raise ConfigError("downlink.mcs", m, "'calibrated' (the MCS of highest goodput in a short calibration) or an "
                          "MCS index 0..28 of TS 38.214 Table 5.1.3.1-1")
    return tuple(sorted(opts.items()))


def _codec_specs(raw: dict[str, Any], kind: str, search_dirs: tuple[str, ...] = ()) -> list[CodecSpec]:
    from dekasim.codecs.base import resolve_codec

    if "codecs" not in raw:
        raise ConfigError("codecs", None, "a required key", "add [[codecs]] tables, e.g. codec = \"analog\"")
    if not raw["codecs"]:
        raise ConfigError("codecs", [], "at least one [[codecs]] table", 'add [[codecs]] with codec = "analog"')
    specs: list[CodecSpec] = []
    for i, entry in enumerate(raw["codecs"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"codecs[{i}]", entry, "a table with codec = NAME")
        _check_keys(entry, _CODEC, f"codecs[{i}].")
        if "codec" not in entry:
            raise ConfigError(f"codecs[{i}].codec", None, "a registered codec name", "run `dekasim list`")
        try:
            cls = resolve_codec(entry["codec"], search_dirs)
        except ConfigError as err:
            raise ConfigError(f"codecs[{i}].codec", entry["codec"], err.expected, err.fix) from None
        if kind == "bits" and "bits" not in cls.payload_kinds:
            raise ConfigError(f"codecs[{i}].codec", entry["codec"], 'a codec that carries bits with [payload] kind = '
                              '"bits" (random information bits): "digital_bits", or a plug-in whose payload_kinds '
                              'hold "bits"', 'write codec = "digital_bits" with options = { mcs = 9 }')
        if kind != "bits" and tuple(cls.payload_kinds) == ("bits",):
            raise ConfigError(f"codecs[{i}].codec", entry["codec"], f"a codec for [payload] kind = {kind!r}: "
                              f"{entry['codec']} carries only random information bits", 'set [payload] kind = "bits"')
        label, options = entry.get("label", entry["codec"]), dict(entry.get("options", {}))
        specs.extend(CodecSpec(entry["codec"], lbl, opts) for lbl, opts in _mcs_curves(label, options, i))
    return specs


def _mcs_curves(label: str, options: dict[str, Any], i: int) -> list[tuple[str, dict[str, Any]]]:
    """``options.mcs = [4, 9, 16]``: one codec entry per MCS, labelled ``"<label>, MCS 9"`` (one curve each,
    so a plot over Eb/N0 never mixes MCSs); any other ``mcs`` leaves the entry as it is."""
    mcs = options.get("mcs")
    if not isinstance(mcs, list):
        return [(label, options)]
    if not mcs or len(set(map(repr, mcs))) != len(mcs):
        raise ConfigError(f"codecs[{i}].options.mcs", mcs, "one MCS index, or a non-empty list of distinct indices "
                          "(one curve each)", "e.g. mcs = [4, 9, 16]")
    return [(f"{label}, MCS {m}", {**options, "mcs": m}) for m in mcs]


def _systems(entries: Any, kind: str, search_dirs: tuple[str, ...] = ()) -> list:
    """``[[systems]]`` of a DeKA-g scenario as :class:`~dekasim.deka.system.SystemSpec` entries."""
    from dekasim.codecs import available_codecs
    from dekasim.deka.system import BANKS, EDGES, PREINSTALLED, SystemSpec

    if kind != "deka":
        raise ConfigError("systems", "[[systems]]", 'systems in a scenario with [payload] kind = "deka"',
                          'set kind = "deka", or list [[codecs]] instead')
    if not isinstance(entries, list) or not entries:
        raise ConfigError("systems", entries, "at least one [[systems]] table",
                          'add [[systems]] with edge = "aligned", codec = "preinstalled", bank = "pack"')
    from dekasim.codecs.base import resolve_codec

    names = [PREINSTALLED, *available_codecs()]
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"systems[{i}]", entry, "a table with edge, codec (and bank)")
        _check_keys(entry, _SYSTEM, f"systems[{i}].")
        codec = entry.get("codec")
        if isinstance(codec, str) and ":" in codec:
            try:
                resolve_codec(codec, search_dirs)
            except ConfigError as err:
                raise ConfigError(f"systems[{i}].codec", codec, err.expected, err.fix) from None
        elif codec not in names:
            raise ConfigError(f"systems[{i}].codec", codec, f"one of {names}",
                              f"'{PREINSTALLED}' is the edge's pre-installed JSCC; `dekasim list` shows the others")
        edge = entry.get("edge", "aligned")
        if edge not in EDGES:
            raise ConfigError(f"systems[{i}].edge", edge, f"one of {list(EDGES)}")
        bank = entry.get("bank")
        if bank is not None and (bank not in BANKS or codec != PREINSTALLED):
            raise ConfigError(f"systems[{i}].bank", bank, f"'pack' with codec = '{PREINSTALLED}' (the pack's CALA "
                              "bank adapts the edge's pre-installed JSCC)", "drop bank, or set codec = 'preinstalled'")
        specs.append(SystemSpec(codec, entry.get("label", f"{codec} ({edge} edge)"), dict(entry.get("options", {})),
                                edge, bank))
    return specs


def _check_keys(table: dict, allowed: dict, prefix: str) -> None:
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean '{prefix}{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
            raise ConfigError(dotted, value, "no such key", fix)
        types = allowed[key]
        if isinstance(value, bool) and bool not in types:
            raise ConfigError(dotted, value, f"a value of type {'/'.join(t.__name__ for t in types)}")
        if not isinstance(value, types):
            raise ConfigError(dotted, value, f"a value of type {'/'.join(t.__name__ for t in types)}")


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _numbers(field_name: str, values: list, unit_hint: str) -> tuple[float, ...]:
    if not values:
        raise ConfigError(field_name, values, "a non-empty list", "an empty sweep axis has no points")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, _NUM) or not math.isfinite(v):
            raise ConfigError(field_name, v, f"a finite number {unit_hint}")
        out.append(float(v))
    return tuple(out)


def _delay_spreads(values: list, key: str = "sweep.delay_spread_ns") -> tuple[float, ...]:
    out = []
    for v in values:
        if isinstance(v, str):
            if v not in DELAY_SPREAD_PRESETS_NS:
                raise ConfigError(key, v, f"a number in ns or a preset among {list(DELAY_SPREAD_PRESETS_NS)}")
            out.append(DELAY_SPREAD_PRESETS_NS[v])
        else:
            out.extend(_numbers(key, [v], "in nanoseconds"))
    if not out:
        raise ConfigError(key, values, "a non-empty list", "an empty sweep axis has no points")
    return tuple(out)


def scenario_from_dict(raw: dict[str, Any], source: str | None = None) -> Scenario:
    """Validate ``raw`` (as parsed from TOML) into a :class:`Scenario`; errors carry ``source``."""
    try:
        return _build(copy.deepcopy(raw), source)
    except ConfigError as err:
        err = full_key_error(err, raw)
        raise (err.with_source(source) if source and not err.source else err) from None


#: The table of the scenario file each key of a table lives in, for errors raised below the scenario layer
#: with a bare field name (a :class:`~dekasim.conditions.Condition` names ``speed_mps``, not ``channel.speed_mps``).
_TABLES = (("sweep", _SWEEP), ("channel", _CHANNEL), ("ofdm", _OFDM), ("monte_carlo", _MC), ("payload", _PAYLOAD),
           ("downlink", _DOWNLINK))


def full_key_error(err: ConfigError, raw: dict[str, Any]) -> ConfigError:
    """``err`` naming the key as the scenario file writes it (``channel.speed_mps``, not ``speed_mps``).

    A field that is already dotted or indexed, or a top-level key, is kept. A bare one is looked up in the
    tables of ``raw``: the table holding that key (and, when several do, the one whose value holds
    ``err.value``), else the table the key belongs to by the schema (a default that was not written)."""
    name = err.field
    if not isinstance(name, str) or not name or "." in name or "[" in name or name in _TOP or name.startswith("-"):
        return err
    holders = [t for t, _ in _TABLES if isinstance(raw.get(t), dict) and name in raw[t]]
    if len(holders) > 1:
        holding = [t for t in holders if raw[t][name] == err.value
                   or (isinstance(raw[t][name], list) and err.value in raw[t][name])]
        holders = holding or holders
    if not holders:  # a default that was not written: [channel] holds the defaults of what a sweep may vary
        holders = sorted((t for t, keys in _TABLES if name in keys), key=lambda t: t != "channel")
    if not holders:
        return err
    return ConfigError(f"{holders[0]}.{name}", err.value, err.expected, err.fix, err.source)


def _build(raw: dict[str, Any], source: str | None) -> Scenario:
    _check_keys(raw, _TOP, "")
    for key in _REQUIRED_TOP:
        if key not in raw:
            raise ConfigError(key, None, "a required key", f"add `{key} = ...` to the scenario")
    payload = raw.get("payload", {})
    channel = raw.get("channel", {})
    ofdm = raw.get("ofdm", {})
    sweep = raw["sweep"]
    mc = raw.get("monte_carlo", {})
    _check_keys(payload, _PAYLOAD, "payload.")
    _check_keys(channel, _CHANNEL, "channel.")
    _check_keys(ofdm, _OFDM, "ofdm.")
    _check_keys(sweep, _SWEEP, "sweep.")
    _check_keys(mc, _MC, "monte_carlo.")

    kind = payload.get("kind", "photos")
    if kind not in PAYLOAD_KINDS:
        raise ConfigError("payload.kind", kind, f"one of {list(PAYLOAD_KINDS)}")
    payload_options: tuple[tuple[str, Any], ...] = ()
    if kind == "deka":
        payload_options = _deka_payload(payload)
    elif kind == "generated":
        payload_options = tuple(sorted({**GENERATED_DEFAULTS, **{k: v for k, v in payload.items()
                                                                  if k in GENERATED_DEFAULTS}}.items()))
        opts = dict(payload_options)
        if opts["prompts"] not in ("heldout", "train", "all"):
            raise ConfigError("payload.prompts", opts["prompts"], "a world split: 'heldout', 'train' or 'all'")
        for key in ("n_prompts", "sample_steps"):
            if opts[key] < 1:
                raise ConfigError(f"payload.{key}", opts[key], "a positive integer")
        if opts["representation"] not in ("image", "latent"):
            raise ConfigError("payload.representation", opts["representation"],
                              "'image' (every codec gets the image) or 'latent' (codecs that take latents get "
                              "the edge's latents)")
        if opts["representation"] == "image":  # the default leaves the hash of earlier generated scenarios alone
            payload_options = tuple((k, v) for k, v in payload_options if k != "representation")
    elif kind == "bits":
        payload_options = tuple(sorted({**BITS_DEFAULTS, **{k: v for k, v in payload.items()
                                                             if k in BITS_DEFAULTS}}.items()))
        if dict(payload_options)["block_bits"] < 1:
            raise ConfigError("payload.block_bits", payload["block_bits"], "information bits per block, an integer >= 1",
                              "e.g. block_bits = 1024")
        if "resolution_px" in payload:
            raise ConfigError("payload.resolution_px", payload["resolution_px"], 'no such key for kind = "bits" '
                              "(random information bits have no image)", "remove it; payload.block_bits sets the block")
    if kind != "bits" and "block_bits" in payload:
        raise ConfigError("payload.block_bits", payload["block_bits"], f"no such key for kind = {kind!r}",
                          'it belongs to kind = "bits" (random information bits)')
    if kind != "deka":
        extra = sorted(k for k in payload if k in GENERATED_DEFAULTS or k in DEKA_ONLY_KEYS) if kind != "generated" \
            else sorted(k for k in payload if k in DEKA_ONLY_KEYS)
        if extra:
            raise ConfigError(f"payload.{extra[0]}", payload[extra[0]], f"no such key for kind = {kind!r}",
                              'it belongs to kind = "deka"' if extra[0] in DEKA_ONLY_KEYS
                              else 'it belongs to kind = "generated"')
    executor = raw.get("executor", TOP_DEFAULTS["executor"])
    if executor not in EXECUTORS:
        raise ConfigError("executor", executor, f"one of {list(EXECUTORS)}")
    device = raw.get("device", TOP_DEFAULTS["device"])
    if device not in DEVICES:
        raise ConfigError("device", device, f"one of {list(DEVICES)}")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and executor == "local":  # Ray workers may have GPUs the driver lacks
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device", "cuda", "a machine with a CUDA GPU visible to torch",
                              'use device = "auto" (GPU when present, else CPU) or "cpu"')
    seed = raw.get("seed", TOP_DEFAULTS["seed"])
    if not 0 <= seed < 2 ** 63:
        raise ConfigError("seed", seed, "an integer in [0, 2^63)")

    grid_kwargs = dict(ofdm)
    for key in ("num_guard_carriers", "pilot_ofdm_symbol_indices"):
        if key in grid_kwargs:
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in grid_kwargs[key]):
                raise ConfigError(f"ofdm.{key}", grid_kwargs[key], "a list of integers")
            grid_kwargs[key] = tuple(grid_kwargs[key])
    grid = GridConfig(**grid_kwargs)

    parsed = parse_sweep(sweep, channel, kind)
    for axis in ("speed_mps", "carrier_frequency_hz"):
        if axis in channel:
            value = channel[axis]
            parsed.where.setdefault((axis, float(value) if isinstance(value, (int, float)) else value), f"channel.{axis}")
    axis_values = {axis: parsed.values(axis) for axis in SWEEP_AXES}
    swept_scalars = {axis: axis_values[axis] for axis in ("speed_mps", "carrier_frequency_hz")}
    plain = not parsed.structured and all(len(v) <= 1 for v in swept_scalars.values())
    spreads = axis_values["delay_spread_ns"] or (300.0,)
    if kind == "deka" and "codecs" in raw:
        raise ConfigError("codecs", "[[codecs]]", 'no [[codecs]] with kind = "deka": it compares [[systems]]',
                          'write each as [[systems]] with edge = "aligned" and the same codec and options')
    here = (str(Path(source).resolve().parent),) if source else ()  # "module:Class" codecs beside the file
    specs = _systems(raw.get("systems"), kind, here) if kind == "deka" or "systems" in raw \
        else _codec_specs(raw, kind, here)
    labels = [s.label for s in specs]
    dup = {lbl for lbl in labels if labels.count(lbl) > 1}
    if dup:
        raise ConfigError("codecs.label", sorted(dup)[0], "distinct labels, one per codec entry",
                          "give each [[codecs]] entry its own label")

    if "batch_size" not in mc and device == "cuda":
        mc = {**mc, "batch_size": 64}  # a GPU wants bigger batches; on CPU 16 keeps memory and latency low
    mc_obj = MonteCarlo(**mc)
    for key in ("images_per_point", "max_images_per_point", "batch_size", "calibration_images"):
        if getattr(mc_obj, key) < 1:
            raise ConfigError(f"monte_carlo.{key}", getattr(mc_obj, key), "an integer >= 1")
    if mc_obj.target_block_errors < 0:
        raise ConfigError("monte_carlo.target_block_errors", mc_obj.target_block_errors, "an integer >= 0 (0 = off)")
    if "max_images_per_point" not in mc:
        mc_obj = MonteCarlo(mc_obj.images_per_point, mc_obj.target_block_errors,
                            max(mc_obj.images_per_point, mc_obj.max_images_per_point), mc_obj.batch_size,
                            mc_obj.calibration_images)
    if mc_obj.max_images_per_point < mc_obj.images_per_point:
        raise ConfigError("monte_carlo.max_images_per_point", mc_obj.max_images_per_point,
                          f"an integer >= images_per_point ({mc_obj.images_per_point})")

    domain = channel.get("domain", CHANNEL_DEFAULTS["domain"])
    if domain not in DOMAINS:
        raise ConfigError("channel.domain", domain, f"one of {list(DOMAINS)}",
                          "'time' simulates ISI beyond the cyclic prefix and ICI at speed; 'auto' uses it where "
                          "the frequency-domain model is optimistic")
    downlink = _downlink(raw.get("downlink"), kind, spreads)
    scalars = {}  # speed and carrier: the [channel] value, a plain axis's one value, else the default
    for axis in ("speed_mps", "carrier_frequency_hz"):
        swept = swept_scalars[axis]
        one = len(swept) == 1 and parsed.explicit.get(axis) == "plain"
        scalars[axis] = float(channel.get(axis, swept[0] if one else AXIS_DEFAULTS[axis]))
    scenario = Scenario(channel_domain=domain,
        downlink=downlink, name=raw["name"], seed=seed, payload_kind=kind,
        resolution_px=payload.get("resolution_px", 64 if kind == "photos" else 32), payload_options=payload_options,
        carrier_frequency_hz=scalars["carrier_frequency_hz"], speed_mps=scalars["speed_mps"], grid=grid,
        snr_db=axis_values["snr_db"], ebno_db=axis_values["ebno_db"], delay_spread_ns=spreads,
        tdl_profile=axis_values["tdl_profile"] or ("C",),
        bandwidth_ratio=axis_values["bandwidth_ratio"] or ((1.0,) if kind == "bits" else (1 / 12,)),
        csi=axis_values["csi"] or ("ls",), sweep_factors=() if plain else parsed.factors, codecs=tuple(specs),
        monte_carlo=mc_obj, output_dir=raw.get("output_dir"), executor=executor, ray_address=raw.get("ray_address"),
        device=device, source=source)
    if not 16 <= scenario.resolution_px <= 512:
        raise ConfigError("payload.resolution_px", scenario.resolution_px, "an image side in pixels within [16, 512]")
    if not 0.4e9 <= scenario.carrier_frequency_hz <= 100e9:
        raise ConfigError("channel.carrier_frequency_hz", scenario.carrier_frequency_hz,
                          "a carrier in Hz within [0.4e9, 100e9] (TR 38.901 validity)", "the key is in Hz: write 3.5e9")
    defaults = {**AXIS_DEFAULTS, "speed_mps": scenario.speed_mps, "bandwidth_ratio": scenario.bandwidth_ratio[0],
                "carrier_frequency_hz": scenario.carrier_frequency_hz}
    try:  # every (snr, delay spread, profile, speed, ratio) combination is a valid condition
        written = expand_points(parsed.factors, defaults)
        scenario.points()
    except ConfigError as err:
        key = parsed.where.get((err.field, err.value), f"sweep.{err.field}" if err.field in SWEEP_AXES else err.field)
        raise ConfigError(key, err.value, err.expected, err.fix or _CONDITION_FIXES.get(err.field)) from None
    for profile, ignored in ignored_delay_spreads(written).items():
        key = parsed.where.get(("delay_spread_ns", ignored[0]), "sweep.delay_spread_ns")
        warnings.warn(f"{source or 'scenario'}: tdl_profile '{profile}' has a fixed {FIXED_TDL_PROFILES[profile]:g} ns "
                      f"delay spread (TS 38.101-4); {key} = {ignored} is ignored for it. "
                      "Use the scalable profile letter to sweep the delay spread.", UserWarning, stacklevel=3)
    return scenario


def _split_key(key: str) -> list[str]:
    """``'codecs[0].options.mcs'`` -> ``['codecs[0]', 'options', 'mcs']`` (no split inside ``[...]``)."""
    parts, buf, depth = [], "", 0
    for ch in key:
        depth += (ch == "[") - (ch == "]" and depth > 0)
        if ch == "." and depth == 0:
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
    return [*parts, buf.strip()]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"sweep.snr_db=[0, 10]"`` -> (["sweep", "snr_db"], [0, 10]); the value is parsed as TOML.

    A part may select one table of an array of tables: ``codecs[1].options.mcs=9`` (by index) or
    ``codecs[digital].options.mcs=9`` (by label; see :func:`apply_overrides`)."""
    if "=" not in text:
        raise ConfigError("--set", text, "KEY=VALUE, e.g. sweep.snr_db=[0,10] or monte_carlo.images_per_point=8")
    key, value = text.split("=", 1)
    path = _split_key(key.strip())
    if not all(path):
        raise ConfigError("--set", text, "KEY=VALUE with a dotted KEY, e.g. codecs[0].options.mcs=9")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # bare word, e.g. name=my-run
    return path, parsed


def _select_entry(entries: list, name: str, selector: str, text: str) -> int:
    """Index of the table of ``[[name]]`` that ``selector`` names: an index, or a label (an entry without a
    label is named by its codec), quoted or not."""
    sel = selector.strip()
    if len(sel) >= 2 and sel[0] == sel[-1] and sel[0] in "'\"":
        sel = sel[1:-1]
    labels = [e.get("label", e.get("codec")) if isinstance(e, dict) else None for e in entries]
    if sel.lstrip("-").isdigit():
        i = int(sel)
        if not 0 <= i < len(entries):
            raise ConfigError("--set", text, f"an index in [0, {len(entries)}) of the {len(entries)} [[{name}]] "
                              f"tables", f"or name one by its label: {labels}")
        return i
    hits = [i for i, lbl in enumerate(labels) if lbl == sel]
    if len(hits) != 1:
        what = "no" if not hits else "more than one"
        raise ConfigError("--set", text, f"the index or label of one [[{name}]] table ({what} table is labelled "
                          f"{sel!r})", f"labels: {labels}; or use its index, e.g. {name}[0]")
    return hits[0]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``KEY=VALUE`` override set (dotted keys into tables).

    ``NAME[i]`` or ``NAME[LABEL]`` selects one table of an array of tables (``[[codecs]]``, ``[[systems]]``):
    ``codecs[0].options.mcs=9`` sets option ``mcs`` of the first codec; ``codecs[digital].options.mcs=9`` that
    of the codec labelled ``digital`` (or, without a label, named so)."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = out
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            m = re.fullmatch(r"([^\[\]]+)\[(.*)\]", part)
            if m is None:
                if "[" in part or "]" in part:
                    raise ConfigError("--set", text, "KEY=VALUE where a key part is NAME or NAME[INDEX or LABEL]",
                                      "e.g. codecs[0].options.mcs=9")
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
                    if not isinstance(node, dict):
                        raise ConfigError("--set", text, f"a key inside a table; '{part}' is not a table")
                continue
            name, selector = m.group(1).strip(), m.group(2)
            entries = node.get(name)
            if not isinstance(entries, list) or not entries:
                raise ConfigError("--set", text, f"a key of an existing array of tables; the scenario has no "
                                  f"[[{name}]] tables", f"add [[{name}]] to the file, or set {name} = [...] whole")
            i = _select_entry(entries, name, selector, text)
            if last:
                entries[i] = value
            else:
                node = entries[i]
                if not isinstance(node, dict):
                    raise ConfigError("--set", text, f"a key inside a table; {part} is not a table")
    return out


def read_scenario_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML scenario file; missing or malformed files raise ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("scenario", str(path), "an existing TOML file", "check the path; see scenarios/default.toml")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("scenario", str(path), f"valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError("scenario", str(path), "a UTF-8 text file") from None


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario file."""
    raw = apply_overrides(read_scenario_file(path), overrides or [])
    return scenario_from_dict(raw, source=str(path))
