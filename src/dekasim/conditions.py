"""The channel condition: one small typed object from scenario to channel to codec to result row."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dekasim.errors import ConfigError

#: Scalable TR 38.901 TDL profiles (delay spread scales the normalised tap delays).
SCALABLE_TDL_PROFILES = ("A", "B", "C", "D", "E")
#: TS 38.101-4 fixed-delay profiles and their own RMS delay spread [ns].
FIXED_TDL_PROFILES = {"A10": 10.0, "A30": 30.0, "B100": 100.0, "C60": 60.0, "C300": 300.0,
                      "D10": 10.0, "D30": 30.0}
#: Channels that are not tapped delay lines.
FLAT_PROFILES = ("awgn", "rayleigh")
ALL_PROFILES = SCALABLE_TDL_PROFILES + tuple(FIXED_TDL_PROFILES) + FLAT_PROFILES

#: Range of RMS delay spreads accepted [ns]. TR 38.901 Table 7.7.3-1 spans 10..1000 ns; UMa long
#: reaches ~1150 ns. 3000 ns is the paper's upper edge; anything above 10 us is certainly a unit error.
DELAY_SPREAD_RANGE_NS = (1.0, 10_000.0)
SNR_RANGE_DB = (-50.0, 100.0)


@dataclass(frozen=True)
class Condition:
    """A channel condition.

    :param snr_db: Es/N0 per data resource element [dB]: average energy of one data symbol
        (unit by contract) over the noise power spectral density. Pilots and the cyclic prefix are
        overhead on top of it (see :func:`dekasim.channels.snr.ebno_db`).
    :param delay_spread_ns: RMS delay spread of the TDL [ns]; for fixed profiles (``"A30"``…) it is
        the profile's own value; ignored (0) for ``"awgn"`` and ``"rayleigh"``.
    :param tdl_profile: ``"A"``–``"E"`` (scalable), ``"A10"``, ``"A30"``, ``"B100"``, ``"C60"``,
        ``"C300"``, ``"D10"``, ``"D30"`` (fixed), ``"rayleigh"`` (flat block fading) or ``"awgn"``.
    :param speed_mps: receiver speed [m/s]; sets the Doppler spread with the carrier frequency.
    :param bandwidth_ratio: complex channel uses per real source sample (k/n convention of DeepJSCC:
        ``n_channel_uses = bandwidth_ratio * numel(source)``).
    """

    snr_db: float
    delay_spread_ns: float = 300.0
    tdl_profile: str = "C"
    speed_mps: float = 0.0
    bandwidth_ratio: float = 1.0 / 12.0

    def __post_init__(self) -> None:
        validate_condition(self)
        # Fixed profiles carry their own delay spread; flat channels have none. The scenario layer
        # warns when a user set a different value explicitly.
        if self.tdl_profile in FIXED_TDL_PROFILES:
            object.__setattr__(self, "delay_spread_ns", FIXED_TDL_PROFILES[self.tdl_profile])
        elif self.tdl_profile in FLAT_PROFILES:
            object.__setattr__(self, "delay_spread_ns", 0.0)

    def replace(self, **changes: object) -> "Condition":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_row(self) -> dict[str, object]:
        """The condition as result-row columns."""
        return dataclasses.asdict(self)

    @property
    def delay_spread_s(self) -> float:
        """RMS delay spread [s]."""
        return self.delay_spread_ns * 1e-9

    @property
    def is_tdl(self) -> bool:
        return self.tdl_profile not in FLAT_PROFILES


def parse_ratio(field: str, value: object) -> float:
    """A bandwidth ratio written as a number or a fraction (``"1/6"``, as every message writes ratios) -> float;
    ``"1/6"`` gives exactly ``1 / 6``.

    :raises ConfigError: naming ``field`` for anything that is not a positive finite number or fraction.
    """
    from fractions import Fraction

    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        ratio = float(Fraction(value.strip())) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        ratio = math.nan
    if not math.isfinite(ratio) or ratio <= 0:
        raise ConfigError(field, value, 'a positive bandwidth ratio: a number or a fraction such as "1/6" '
                          "(complex channel uses per real source sample)", 'e.g. "1/12" or 0.0833')
    return ratio


def validate_condition(c: Condition) -> None:
    """Raise :class:`ConfigError` naming the first field of ``c`` outside its physical range."""
    if c.tdl_profile not in ALL_PROFILES:
        raise ConfigError("tdl_profile", c.tdl_profile, f"one of {list(ALL_PROFILES)}",
                          "use a TR 38.901 letter A-E with delay_spread_ns, or a fixed profile such as 'C300'")
    for name, value in (("snr_db", c.snr_db), ("delay_spread_ns", c.delay_spread_ns),
                        ("speed_mps", c.speed_mps), ("bandwidth_ratio", c.bandwidth_ratio)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(name, value, "a finite number")
    if c.delay_spread_ns < 0 and c.tdl_profile not in SCALABLE_TDL_PROFILES:  # scalable: range check below
        raise ConfigError("delay_spread_ns", c.delay_spread_ns, "a non-negative RMS delay spread in nanoseconds")
    lo, hi = SNR_RANGE_DB
    if not lo <= c.snr_db <= hi:
        raise ConfigError("snr_db", c.snr_db, f"an Es/N0 in dB within [{lo:g}, {hi:g}]")
    if c.tdl_profile in SCALABLE_TDL_PROFILES:
        lo, hi = DELAY_SPREAD_RANGE_NS
        if not lo <= c.delay_spread_ns <= hi:
            fix = None
            if 0 < c.delay_spread_ns < 1e-3:
                fix = (f"the value looks like seconds; write {c.delay_spread_ns * 1e9:g} "
                       "(delay_spread_ns is in nanoseconds)")
            raise ConfigError("delay_spread_ns", c.delay_spread_ns,
                              f"an RMS delay spread in nanoseconds within [{lo:g}, {hi:g}] "
                              "(TR 38.901 Table 7.7.3-1: 10 very short ... 1000 very long)", fix)
    if not 0.0 <= c.speed_mps <= 500.0:
        raise ConfigError("speed_mps", c.speed_mps, "a speed in m/s within [0, 500]")
    if not 0.0 < c.bandwidth_ratio <= 16.0:
        raise ConfigError("bandwidth_ratio", c.bandwidth_ratio,
                          "channel uses per real source sample within (0, 16], e.g. 1/12")
