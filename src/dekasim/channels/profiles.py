"""Channel models per condition, their power-delay profiles, covariances and physical sanity checks."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from dekasim.channels.grid import GridConfig
from dekasim.conditions import SCALABLE_TDL_PROFILES, Condition
from dekasim.errors import ConfigError

SPEED_OF_LIGHT = 299_792_458.0


class PhysicsWarning(UserWarning):
    """A scenario that runs but whose model is optimistic or inaccurate; the message says why."""


@dataclass(frozen=True)
class PowerDelayProfile:
    """Average power per tap (normalised to sum 1) and delay per tap [s]; LoS power folded into tap 0."""

    delays_s: np.ndarray
    powers: np.ndarray

    @property
    def rms_delay_spread_s(self) -> float:
        """Second central moment of the PDP, sqrt(E[tau^2] - E[tau]^2) [s]."""
        p = self.powers / self.powers.sum()
        mean = float(np.sum(p * self.delays_s))
        return math.sqrt(max(float(np.sum(p * self.delays_s ** 2)) - mean ** 2, 0.0))

    @property
    def max_delay_s(self) -> float:
        return float(self.delays_s.max())

    def power_beyond(self, delay_s: float) -> float:
        """Fraction of the average power in taps arriving at or after ``delay_s``."""
        return float(self.powers[self.delays_s >= delay_s].sum() / self.powers.sum())


def base_tdl_letter(profile: str) -> str:
    """``"C300"`` -> ``"C"``: the scalable family a fixed profile belongs to (same LoS flag)."""
    return profile[0]


def channel_model(cond: Condition, carrier_frequency_hz: float, device: str | None = None):
    """The Sionna channel model for ``cond``: ``TDL`` for TDL profiles, ``RayleighBlockFading`` for
    ``"rayleigh"``. ``"awgn"`` has no model (returns None)."""
    from sionna.phy.channel import RayleighBlockFading
    from sionna.phy.channel.tr38901 import TDL

    if cond.tdl_profile == "awgn":
        return None
    if cond.tdl_profile == "rayleigh":
        return RayleighBlockFading(num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1, device=device)
    delay_spread = cond.delay_spread_s if cond.tdl_profile in SCALABLE_TDL_PROFILES else None
    return TDL(cond.tdl_profile, delay_spread=delay_spread, carrier_frequency=carrier_frequency_hz,
               min_speed=cond.speed_mps, max_speed=cond.speed_mps, device=device)


def power_delay_profile(cond: Condition, carrier_frequency_hz: float = 3.5e9) -> PowerDelayProfile:
    """The tabulated PDP that Sionna's TDL uses for ``cond`` (a single zero-delay tap for flat channels)."""
    if not cond.is_tdl:
        return PowerDelayProfile(np.zeros(1), np.ones(1))
    model = channel_model(cond, carrier_frequency_hz, device="cpu")
    delays = model.delays.detach().cpu().numpy().astype(np.float64)
    powers = model.mean_powers.detach().cpu().numpy().astype(np.float64)
    return PowerDelayProfile(delays, powers / powers.sum())


def frequency_covariance(pdp: PowerDelayProfile, grid: GridConfig) -> torch.Tensor:
    """R_f[u, v] = sum_l P_l exp(-j 2 pi tau_l df (u - v)) over the ``fft_size`` subcarriers
    (complex64, ``[fft_size, fft_size]``)."""
    n = np.arange(grid.fft_size)
    diff = n[:, None] - n[None, :]
    phase = -2j * np.pi * grid.subcarrier_spacing_hz * diff[None] * pdp.delays_s[:, None, None]
    cov = np.sum(pdp.powers[:, None, None] * np.exp(phase), axis=0)
    return torch.tensor(cov, dtype=torch.complex64)


def time_covariance(cond: Condition, grid: GridConfig, carrier_frequency_hz: float) -> torch.Tensor:
    """Covariance across the OFDM symbols of a slot (complex64, ``[n_sym, n_sym]``).

    TDL profiles use Sionna's Jakes/LoS model; flat Rayleigh is block fading (all ones)."""
    if cond.tdl_profile in ("rayleigh", "awgn") or cond.speed_mps == 0.0:
        return torch.ones(grid.num_ofdm_symbols, grid.num_ofdm_symbols, dtype=torch.complex64)
    from sionna.phy.ofdm import tdl_time_cov_mat

    return tdl_time_cov_mat(base_tdl_letter(cond.tdl_profile), cond.speed_mps, carrier_frequency_hz,
                            grid.ofdm_symbol_duration_s, grid.num_ofdm_symbols, device="cpu"
                            ).to(torch.complex64)


def check_link_physics(cond: Condition, grid: GridConfig, csi: str, carrier_frequency_hz: float) -> list[str]:
    """Check that ``grid`` and the receiver can cope with ``cond``.

    Raises :class:`ConfigError` when pilot estimation is impossible (the pilot comb aliases more than
    1 % of the channel power: Nyquist in the delay domain). Emits :class:`PhysicsWarning` and returns
    the messages when the model is optimistic (power after the cyclic prefix, pilot spacing near the
    coherence bandwidth, Doppler against pilot spacing in time).
    """
    notes: list[str] = []
    if not cond.is_tdl and cond.tdl_profile == "awgn":
        return notes
    pdp = power_delay_profile(cond, carrier_frequency_hz)
    isi = pdp.power_beyond(grid.cyclic_prefix_s + 1e-12)
    if isi > 0.01:
        notes.append(
            f"{100 * isi:.1f} % of the {cond.tdl_profile} power at delay_spread_ns={cond.delay_spread_ns:g} arrives "
            f"after the cyclic prefix ({grid.cyclic_prefix_s * 1e9:.0f} ns); the frequency-domain model ignores "
            f"that inter-symbol interference (~{10 * math.log10(isi):.1f} dB), so results are optimistic. "
            "Lengthen ofdm.cyclic_prefix_length to remove it.")
    if csi in ("ls", "lmmse") and cond.is_tdl:
        pilot_spacing_hz = grid.pilot_subcarrier_spacing * grid.subcarrier_spacing_hz
        window_s = 1.0 / pilot_spacing_hz
        aliased = pdp.power_beyond(window_s)
        if aliased > 0.01:
            raise ConfigError(
                "ofdm.pilot_subcarrier_spacing", grid.pilot_subcarrier_spacing,
                f"a pilot comb dense enough for the channel: every {grid.pilot_subcarrier_spacing} subcarriers "
                f"({pilot_spacing_hz / 1e3:g} kHz) resolves delays below {window_s * 1e6:.2f} us, but "
                f"{100 * aliased:.1f} % of the TDL-{cond.tdl_profile} power at {cond.delay_spread_ns:g} ns arrives later "
                f"(last tap {pdp.max_delay_s * 1e6:.2f} us), so {csi.upper()} estimation aliases",
                "use pilot_subcarrier_spacing = 1, a smaller subcarrier_spacing_hz, or csi = 'perfect'")
        if pdp.max_delay_s * pilot_spacing_hz > 0.5:
            notes.append(
                f"pilot comb {pilot_spacing_hz / 1e3:g} kHz against a last tap at {pdp.max_delay_s * 1e6:.2f} us "
                f"(delay_spread_ns={cond.delay_spread_ns:g}): fewer than two pilots per coherence bandwidth, "
                "so interpolated estimates are poor; pilot_subcarrier_spacing = 1 helps.")
    if csi in ("ls", "lmmse") and cond.speed_mps > 0:
        doppler_hz = cond.speed_mps * carrier_frequency_hz / SPEED_OF_LIGHT
        idx = sorted(grid.pilot_ofdm_symbol_indices)
        gaps = [b - a for a, b in zip(idx, idx[1:])] or [grid.num_ofdm_symbols]
        span_s = max(gaps) * grid.ofdm_symbol_duration_s
        if 2 * doppler_hz * span_s > 0.5:
            notes.append(
                f"speed_mps={cond.speed_mps:g} gives a {doppler_hz:.0f} Hz Doppler: the channel changes within "
                f"the {span_s * 1e6:.0f} us between pilot symbols; add pilot OFDM symbols.")
    for note in notes:
        warnings.warn(note, PhysicsWarning, stacklevel=2)
    return notes
