"""The ``[sweep]`` table: axes, ranges, fractions, zipped axes and groups, and the points they make.

What a user writes (docs/scenarios.md, "Sweeps")::

    [sweep]
    snr_db = { start = 0, stop = 20, step = 2 }   # a range: stop inclusive, decimal steps (0.1 lands on 0.3)
    bandwidth_ratio = ["1/12", "1/6"]             # ratios as fractions, anywhere a ratio is read
    csi = ["ls", "lmmse"]                         # plain axes of [sweep] are crossed (as before)
    [sweep.zip]                                   # zipped: the i-th values go together
    tdl_profile = ["A", "C"]
    delay_spread_ns = [100, 1000]
    [[sweep.groups]]                              # or groups: each a small crossed sweep of its own; the
    tdl_profile = "awgn"                          # sweep is their union; a group of single values is one
    [[sweep.groups]]                              # point. Zip and groups are crossed with the plain axes.
    tdl_profile = "A"
    delay_spread_ns = 100
    speed_mps = [0, 30]

Axes (:data:`SWEEP_AXES`): ``tdl_profile``, ``bandwidth_ratio``, ``delay_spread_ns``, ``carrier_frequency_hz``,
``speed_mps``, ``snr_db`` (Es/N0 per data RE) or ``ebno_db`` (Eb/N0 per information bit, bit payloads only),
``csi``. Each axis is written in one place. The product nests in that order (profile outermost, receiver
innermost), which is the order the plain sweep always had, so a plain sweep's points, ids and rows are what
they were.

This module parses (:func:`parse_sweep`) and expands (:func:`expand_points`); :mod:`dekasim.scenarios.schema`
stores the result in the :class:`~dekasim.scenarios.schema.Scenario` so that a sweep written with plain axes
keeps the hash it had before this syntax existed.
"""

from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from dekasim.channels.link import CSI_MODES
from dekasim.conditions import ALL_PROFILES, FIXED_TDL_PROFILES, FLAT_PROFILES, Condition
from dekasim.errors import ConfigError
from dekasim.scenarios.presets import DELAY_SPREAD_PRESETS_NS

#: Sweep axes in nesting order, outermost first.
SWEEP_AXES = ("tdl_profile", "bandwidth_ratio", "delay_spread_ns", "carrier_frequency_hz", "speed_mps",
              "snr_db", "ebno_db", "csi")
#: Values of an axis that no part of the sweep sets (speed and carrier come from ``[channel]``).
AXIS_DEFAULTS: dict[str, Any] = {"tdl_profile": "C", "bandwidth_ratio": 1 / 12, "delay_spread_ns": 300.0,
                                 "csi": "ls", "speed_mps": 0.0, "carrier_frequency_hz": 3.5e9}
#: The most values one range may expand to.
MAX_RANGE_VALUES = 10_000
_STRING_AXES = ("tdl_profile", "csi")
_RANGE_KEYS = ("start", "stop", "step")
_STRUCTURE_KEYS = ("zip", "groups")
_HINTS = {"snr_db": "(Es/N0 in dB)", "ebno_db": "(Eb/N0 in dB)", "delay_spread_ns": "in nanoseconds",
          "speed_mps": "in m/s", "carrier_frequency_hz": "in Hz",
          "bandwidth_ratio": "(channel uses per real source sample)"}
CARRIER_RANGE_HZ = (0.4e9, 100e9)

#: One row of a factor: (axis, value) pairs in :data:`SWEEP_AXES` order.
Row = tuple[tuple[str, Any], ...]
#: One factor of the product: its rows (a plain axis: one single-key row per value).
Factor = tuple[Row, ...]


@dataclass(frozen=True)
class ConditionPoint:
    """One condition of the sweep with its receiver and carrier.

    :param cond: the channel condition. Its ``snr_db`` is Es/N0 per data RE [dB]; in an Eb/N0 sweep it holds
        the Eb/N0 value until :func:`dekasim.sim.runner.sweep_points` converts it per codec.
    :param csi: the receiver (``"perfect"``, ``"ls"``, ``"lmmse"``).
    :param carrier_frequency_hz: carrier [Hz].
    :param ebno_db: Eb/N0 per information bit [dB] of an Eb/N0 sweep, else None.
    """

    cond: Condition
    csi: str
    carrier_frequency_hz: float
    ebno_db: float | None = None


@dataclass
class ParsedSweep:
    """A parsed ``[sweep]``: its factors, nesting order, and where each value was written.

    :param factors: the product's factors, outermost first.
    :param structured: True when ``zip`` or ``groups`` was used.
    :param where: ``(axis, value) -> key`` that wrote it (errors name the full key).
    :param explicit: axes written anywhere in the sweep -> ``"plain"``, ``"zip"`` or ``"groups"``.
    """

    factors: tuple[Factor, ...]
    structured: bool
    where: dict[tuple[str, Any], str]
    explicit: dict[str, str]

    def values(self, axis: str) -> tuple[Any, ...]:
        """Every value ``axis`` takes anywhere in the sweep, in order of first appearance."""
        out: list[Any] = []
        for factor in self.factors:
            for row in factor:
                for k, v in row:
                    if k == axis and v not in out:
                        out.append(v)
        return tuple(out)


def _number_fix(axis: str) -> str:
    return ('write a number or a fraction, e.g. "1/6" or 0.0833' if axis == "bandwidth_ratio"
            else f"write a number {_HINTS.get(axis, '')}, a list of them, or a range {{ start = 0, stop = 20, step = 2 }}")


def _fraction(path: str, axis: str, v: Any) -> Fraction:
    """``v`` (a number, or for ratios a fraction string) as an exact fraction; the decimal a user wrote
    (``0.1`` is 1/10, not the binary float nearest it)."""
    if isinstance(v, bool):
        raise ConfigError(path, v, f"a finite number {_HINTS.get(axis, '')}".rstrip(), _number_fix(axis))
    if isinstance(v, str) and axis == "bandwidth_ratio":
        try:
            return Fraction(v.strip())
        except (ValueError, ZeroDivisionError):
            raise ConfigError(path, v, 'a positive bandwidth ratio: a number or a fraction such as "1/6" '
                              "(complex channel uses per real source sample)", _number_fix(axis)) from None
    if isinstance(v, int):
        return Fraction(v)
    if isinstance(v, float) and math.isfinite(v):
        return Fraction(repr(v))
    raise ConfigError(path, v, f"a finite number {_HINTS.get(axis, '')}".rstrip(), _number_fix(axis))


def _range(path: str, axis: str, table: dict[str, Any]) -> list[Any]:
    """``{ start, stop, step }`` -> the values ``start, start + step, ...`` up to ``stop`` inclusive."""
    missing = [k for k in _RANGE_KEYS if k not in table]
    for key, value in table.items():
        if key not in _RANGE_KEYS:
            close = difflib.get_close_matches(key, missing or _RANGE_KEYS, n=1, cutoff=0.5)
            raise ConfigError(f"{path}.{key}", value, "no such key in a range { start, stop, step }",
                              f"did you mean '{path}.{close[0]}'?" if close else
                              f"write {path} = {{ start = 0, stop = 20, step = 2 }} (stop inclusive)")
    for key in _RANGE_KEYS:
        if key not in table:
            raise ConfigError(f"{path}.{key}", None, "a required key of a range { start, stop, step }",
                              f"write {path} = {{ start = 0, stop = 20, step = 2 }} (stop inclusive)")
    start, stop, step = (_fraction(f"{path}.{k}", axis, table[k]) for k in _RANGE_KEYS)
    if step <= 0:
        raise ConfigError(f"{path}.step", table["step"], "a positive step", "ranges run upwards: start <= stop, step > 0")
    if stop < start:
        raise ConfigError(f"{path}.stop", table["stop"], f"a stop >= start ({table['start']})",
                          "ranges run upwards: swap start and stop")
    count = math.floor((stop - start) / step) + 1
    if count > MAX_RANGE_VALUES:
        raise ConfigError(path, table, f"a range of at most {MAX_RANGE_VALUES} values (this one has {count})",
                          "raise the step")
    return [float(start + i * step) for i in range(count)]


def _value(path: str, axis: str, v: Any) -> Any:
    """One value of ``axis``, checked and normalised (presets and fractions resolved, numbers as float)."""
    if axis == "tdl_profile":
        if v not in ALL_PROFILES:
            raise ConfigError(path, v, f"one of {list(ALL_PROFILES)}",
                              "a TR 38.901 letter A-E (with delay_spread_ns), a fixed profile such as 'C300', "
                              "'rayleigh' or 'awgn'; `dekasim list` shows them")
        return v
    if axis == "csi":
        if v not in CSI_MODES:
            raise ConfigError(path, v, f"one of {list(CSI_MODES)}", "perfect (known channel), ls or lmmse (estimated)")
        return v
    if axis == "delay_spread_ns" and isinstance(v, str):
        if v not in DELAY_SPREAD_PRESETS_NS:
            raise ConfigError(path, v, f"a number in ns or a preset among {list(DELAY_SPREAD_PRESETS_NS)}",
                              "`dekasim list` shows the presets (TR 38.901 Table 7.7.3-1)")
        return float(DELAY_SPREAD_PRESETS_NS[v])
    value = float(_fraction(path, axis, v))
    if axis == "bandwidth_ratio" and value <= 0:
        raise ConfigError(path, v, 'a positive bandwidth ratio', 'e.g. "1/6" or 0.0833')
    if axis == "carrier_frequency_hz" and not CARRIER_RANGE_HZ[0] <= value <= CARRIER_RANGE_HZ[1]:
        raise ConfigError(path, v, "a carrier in Hz within [0.4e9, 100e9] (TR 38.901 validity)",
                          "the key is in Hz: write 3.5e9")
    return value


def _axis(path: str, axis: str, raw: Any, where: dict[tuple[str, Any], str]) -> tuple[Any, ...]:
    """An axis's values from a value, a list, or (numeric axes) a range table."""
    if isinstance(raw, dict):
        if axis in _STRING_AXES:
            raise ConfigError(path, raw, f"a value or a list of values (a range needs a numeric axis; {axis} "
                              "takes names)", f'list them, e.g. {axis} = {["A", "C"] if axis == "tdl_profile" else ["ls", "lmmse"]}')
        values = _range(path, axis, raw)
    else:
        values = list(raw) if isinstance(raw, list) else [raw]
    if not values:
        raise ConfigError(path, raw, "a non-empty list", "an empty sweep axis has no points")
    out = []
    for v in values:
        if isinstance(v, (dict, list)):
            raise ConfigError(path, v, "single values in the list (a list of ranges is not a sweep axis)",
                              "write one range, or list the values")
        value = _value(path, axis, v)
        where.setdefault((axis, value), path)
        out.append(value)
    return tuple(out)


def _check_axis_key(key: str, value: Any, path_prefix: str) -> None:
    if key not in SWEEP_AXES:
        close = difflib.get_close_matches(key, SWEEP_AXES, n=1)
        raise ConfigError(f"{path_prefix}{key}", value, f"a sweep axis, one of {list(SWEEP_AXES)}",
                          f"did you mean '{path_prefix}{close[0]}'?" if close else "use the axes' names")


def _order(keys: Any) -> int:
    return min(SWEEP_AXES.index(k) for k in keys)


def _crossed(axes: dict[str, tuple[Any, ...]]) -> list[Row]:
    """The product of ``axes`` (name -> values) as rows, in nesting order."""
    names = sorted(axes, key=SWEEP_AXES.index)
    return [tuple(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def parse_sweep(sweep: dict[str, Any], channel: dict[str, Any], kind: str) -> ParsedSweep:
    """Parse a ``[sweep]`` table (keys already checked against the allowed names).

    :param sweep: the raw ``[sweep]`` table.
    :param channel: the raw ``[channel]`` table (``speed_mps`` and ``carrier_frequency_hz`` may be set there
        once, or swept here, not both).
    :param kind: ``[payload] kind`` (an Eb/N0 axis needs ``"bits"``; a bit payload takes no bandwidth ratio).
    :raises ConfigError: naming the full key (``sweep.groups[1].delay_spread_ns``), the value, what is
        expected and a fix.
    """
    where: dict[tuple[str, Any], str] = {}
    plain: dict[str, tuple[Any, ...]] = {}
    place: dict[str, str] = {}  # axis -> the first key that sets it
    part_of: dict[str, str] = {}  # axis -> "plain", "zip" or "groups"

    def sweep_value(path: str) -> Any:
        node: Any = sweep
        for part in path.removeprefix("sweep.").replace("[", ".").replace("]", "").split("."):
            node = node[int(part)] if isinstance(node, list) else node.get(part)
        return node

    def claim(axis: str, path: str, part: str) -> None:
        if part_of.get(axis, part) != part:
            raise ConfigError(path, sweep_value(path), f"each axis in one place: {axis} is also set by {place[axis]}",
                              "remove one of them (plain axes are crossed with zip and groups)")
        part_of.setdefault(axis, part)
        place.setdefault(axis, path)

    for axis in SWEEP_AXES:
        if axis in sweep:
            claim(axis, f"sweep.{axis}", "plain")
            plain[axis] = _axis(f"sweep.{axis}", axis, sweep[axis], where)
    factors: list[Factor] = [tuple(((axis, v),) for v in values) for axis, values in plain.items()]

    zipped = sweep.get("zip")
    if zipped is not None:
        if not isinstance(zipped, dict) or not zipped:
            raise ConfigError("sweep.zip", zipped, "a table of axes whose i-th values go together",
                              'write [sweep.zip] with tdl_profile = ["A", "C"] and delay_spread_ns = [100, 1000]')
        columns: dict[str, tuple[Any, ...]] = {}
        for axis, raw in zipped.items():
            _check_axis_key(axis, raw, "sweep.zip.")
            claim(axis, f"sweep.zip.{axis}", "zip")
            columns[axis] = _axis(f"sweep.zip.{axis}", axis, raw, where)
        first = next(iter(columns))
        for axis, values in columns.items():
            if len(values) != len(columns[first]):
                raise ConfigError(f"sweep.zip.{axis}", zipped[axis],
                                  f"as many values as sweep.zip.{first} ({len(columns[first])}): zipped axes pair "
                                  f"their i-th values", "give every zipped axis the same number of values, or move "
                                  "this one out of [sweep.zip] to cross it with the others")
        names = sorted(columns, key=SWEEP_AXES.index)
        factors.append(tuple(tuple((n, columns[n][i]) for n in names) for i in range(len(columns[first]))))

    groups = sweep.get("groups")
    if groups is not None:
        if not isinstance(groups, list) or not groups:
            raise ConfigError("sweep.groups", groups, "one or more [[sweep.groups]] tables",
                              'write [[sweep.groups]] with tdl_profile = "A" and delay_spread_ns = 100')
        rows: list[Row] = []
        for i, group in enumerate(groups):
            if not isinstance(group, dict) or not group:
                raise ConfigError(f"sweep.groups[{i}]", group, "a table of sweep axes (values, lists or ranges)",
                                  'e.g. { tdl_profile = "C", delay_spread_ns = 1000 }')
            axes = {}
            for axis, raw in group.items():
                _check_axis_key(axis, raw, f"sweep.groups[{i}].")
                claim(axis, f"sweep.groups[{i}].{axis}", "groups")
                axes[axis] = _axis(f"sweep.groups[{i}].{axis}", axis, raw, where)
            rows.extend(_crossed(axes))
        factors.append(tuple(rows))

    explicit = dict(part_of)
    for axis in ("speed_mps", "carrier_frequency_hz"):
        if axis in explicit and axis in channel:
            raise ConfigError(place[axis], sweep_value(place[axis]),
                              f"{axis} set once: [channel] {axis} = {channel[axis]!r} sets it too",
                              f"sweep it in [sweep] only, or keep it in [channel] only")
    if "snr_db" in explicit and "ebno_db" in explicit:
        raise ConfigError(place["ebno_db"], sweep_value(place["ebno_db"]),
                          "one SNR axis: snr_db (Es/N0 per data RE) or ebno_db (Eb/N0 per information bit)",
                          "keep one of them")
    if "ebno_db" in explicit and kind != "bits":
        raise ConfigError(place["ebno_db"], sweep_value(place["ebno_db"]),
                          'an Eb/N0 axis with [payload] kind = "bits" (codecs whose information bits per block '
                          "are fixed by their MCS)", "sweep snr_db here; rows of codecs that send bits carry "
                          "ebno_db, and `dekasim plot --x ebno_db` draws them over it")
    if kind == "bits" and "bandwidth_ratio" in explicit:
        raise ConfigError(place["bandwidth_ratio"], sweep_value(place["bandwidth_ratio"]),
                          'no bandwidth ratio with [payload] kind = "bits": the MCS and payload.block_bits set '
                          "the channel uses", "remove it; list MCSs in the codec's options.mcs instead")
    factors.sort(key=lambda f: _order(k for row in f for k, _ in row))
    parsed = ParsedSweep(tuple(factors), zipped is not None or groups is not None, where, explicit)
    snr_axis = "ebno_db" if "ebno_db" in explicit else "snr_db"
    missing = [(i, g) for i, g in enumerate(groups or []) if snr_axis not in g] \
        if snr_axis not in plain and not (zipped and snr_axis in zipped) else []
    if snr_axis not in explicit:
        raise ConfigError("sweep.snr_db", None, "a required key: the Es/N0 points per data RE [dB]",
                          "add snr_db = [0, 10, 20] or a range { start = 0, stop = 20, step = 2 }"
                          + (" (or ebno_db: Eb/N0 per information bit)" if kind == "bits" else ""))
    if missing:
        i, g = missing[0]
        raise ConfigError(f"sweep.groups[{i}].{snr_axis}", None,
                          f"a required key: {snr_axis} is set per group, so every group needs it",
                          f"add {snr_axis} to sweep.groups[{i}], or make {snr_axis} a plain axis of [sweep]")
    return parsed


def expand_points(factors: tuple[Factor, ...], defaults: dict[str, Any]) -> list[tuple[dict[str, Any], ConditionPoint]]:
    """The points of the product of ``factors`` (outermost first), each with the axes its rows set
    explicitly: ``[(explicit axes, point), ...]``, duplicates dropped (fixed-delay profiles make some; AWGN has
    no channel to estimate, so one receiver, the first, serves it).

    :param defaults: every axis's value where no factor sets it (:data:`AXIS_DEFAULTS`, with speed and carrier
        from ``[channel]``).
    :raises ConfigError: from :class:`~dekasim.conditions.Condition` for a value outside its physical range
        (the field is the bare axis name; the scenario layer names the key).
    """
    out: list[tuple[dict[str, Any], ConditionPoint]] = []
    seen: set = set()
    for combo in itertools.product(*factors):
        given: dict[str, Any] = {}
        for row in combo:
            given.update(row)
        v = {**defaults, **given}
        profile = v["tdl_profile"]
        ebno = v.get("ebno_db")
        snr = ebno if ebno is not None else v["snr_db"]
        cond = Condition(snr_db=snr, delay_spread_ns=v["delay_spread_ns"] if profile not in FLAT_PROFILES else 300.0,
                         tdl_profile=profile, speed_mps=v["speed_mps"], bandwidth_ratio=v["bandwidth_ratio"])
        point = ConditionPoint(cond, v["csi"], float(v["carrier_frequency_hz"]), ebno)
        key = (cond, None if profile == "awgn" else point.csi, point.carrier_frequency_hz, ebno)
        if key not in seen:
            seen.add(key)
            out.append((given, point))
    return out


def ignored_delay_spreads(points: list[tuple[dict[str, Any], ConditionPoint]]) -> dict[str, list[float]]:
    """Fixed-delay profiles (``"C300"``…) paired with an explicitly written, different delay spread:
    profile -> the delay spreads that are ignored for it (the profile keeps its own)."""
    out: dict[str, list[float]] = {}
    for given, _ in points:
        p, ds = given.get("tdl_profile"), given.get("delay_spread_ns")
        if p in FIXED_TDL_PROFILES and ds is not None:
            out.setdefault(p, [])
            if ds not in out[p]:
                out[p].append(ds)
    return {p: v for p, v in out.items() if any(d != FIXED_TDL_PROFILES[p] for d in v)}
