"""Channel models per condition, their power-delay profiles, covariances and physical sanity checks."""

from __future__ import annotations

import functools
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


def time_domain_frequency_covariance(pdp: PowerDelayProfile, grid: GridConfig, timing_offset: int) -> torch.Tensor:
    """R_f of the useful channel the time-domain link's FFT window sees on the subcarriers of ``grid``
    (complex64, ``[fft_size, fft_size]``; the link samples at :func:`oversampled_grid`, ``timing_offset`` in
    those samples).

    Each path at delay tau_m reaches the discrete-time taps through the sinc pulse and is weighted by the
    window overlap w_l of each lag: ``G_m(f) = sum_l w_l sinc(l - tau_m W) exp(-j 2 pi f l / W)`` and
    ``R_f[u, v] = sum_m P_m G_m(f_u) G_m(f_v)^*``: :func:`frequency_covariance` but for the ISI's loss."""
    from sionna.phy.channel import subcarrier_frequencies

    wide = oversampled_grid(grid)
    rate = wide.sample_rate_hz
    profile = discrete_time_profile(pdp, rate)
    w = window_overlap(profile.lags, wide, timing_offset)
    freqs = subcarrier_frequencies(grid.fft_size, grid.subcarrier_spacing_hz, device="cpu").numpy().astype(np.float64)
    pulse = path_taps(pdp, profile.lags, rate) * w[None, :]                                       # [M, L]
    g = pulse @ np.exp(-2j * np.pi * profile.lags[:, None] * freqs[None, :] / rate)              # [M, F]
    cov = np.einsum("m,mu,mv->uv", pdp.powers, g, g.conj())
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


def check_link_physics(cond: Condition, grid: GridConfig, csi: str, carrier_frequency_hz: float,
                       domain: str = "frequency") -> list[str]:
    """Check that ``grid`` and the receiver can cope with ``cond``.

    Raises :class:`ConfigError` when pilot estimation is impossible (the pilot comb aliases more than
    1 % of the channel power: Nyquist in the delay domain). Emits :class:`PhysicsWarning` and returns
    the messages when the model is optimistic (in the frequency domain: power after the cyclic prefix or
    Doppler ICI that only the time domain simulates; pilot spacing near the coherence bandwidth, Doppler
    against pilot spacing in time). In the time domain the ISI and ICI are simulated: no warning for them.
    """
    notes: list[str] = []
    if not cond.is_tdl and cond.tdl_profile == "awgn":
        return notes
    pdp = power_delay_profile(cond, carrier_frequency_hz)
    isi = pdp.power_beyond(grid.cyclic_prefix_s + 1e-12)
    if domain == "frequency" and isi > INTERFERENCE_THRESHOLD:
        pred = predict_interference(cond, grid, carrier_frequency_hz)
        notes.append(
            f"{100 * isi:.1f} % of the {cond.tdl_profile} power at delay_spread_ns={cond.delay_spread_ns:g} arrives "
            f"after the cyclic prefix ({grid.cyclic_prefix_s * 1e9:.0f} ns): a receiver sees ISI + ICI at "
            f"{10 * math.log10(pred.fraction):.1f} dB (SIR {10 * math.log10(pred.useful / pred.interference):.1f} dB) "
            "that the frequency-domain model ignores, so results are optimistic. Set [channel] domain = 'time' "
            "(or 'auto') to simulate it, or lengthen ofdm.cyclic_prefix_length to remove it.")
    elif domain == "frequency" and cond.speed_mps > 0:
        pred = predict_interference(cond, grid, carrier_frequency_hz)
        if pred.fraction > INTERFERENCE_THRESHOLD:
            notes.append(
                f"speed_mps={cond.speed_mps:g}: a {pred.doppler_hz:.0f} Hz Doppler is "
                f"{100 * pred.doppler_hz / grid.subcarrier_spacing_hz:.1f} % of the subcarrier spacing; its "
                f"inter-carrier interference ({10 * math.log10(pred.fraction):.1f} dB) is ignored by the "
                "frequency-domain model. Set [channel] domain = 'time' (or 'auto') to simulate it.")
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


# --- the time-domain view of the PDP: what the receiver's FFT window sees -----------------------------
#: Discrete-time taps start at this lag [samples]: the sinc pulse's precursors (Sionna's recommended value).
L_MIN = -6
#: The time-domain link samples at this multiple of ``fft_size * subcarrier_spacing_hz`` (an FFT twice as long,
#: the extra subcarriers empty), so that every used subcarrier lies well inside the sinc pulse's band: at 1x the
#: band-edge subcarriers would see the pulse's edge (half the power at +-W/2 and Gibbs ripple next to it).
TIME_DOMAIN_OVERSAMPLING = 2
#: Interference (ISI + ICI) above this share of the received power is not negligible: the physics check
#: warns in the frequency domain and ``domain = "auto"`` simulates the time domain.
INTERFERENCE_THRESHOLD = 0.01


@dataclass(frozen=True)
class DiscreteTimeProfile:
    """Average power of the discrete-time channel taps at lags ``l_min .. l_max`` [samples]:
    ``E|h_l|^2 = sum_m P_m sinc^2(l - tau_m W)`` (sinc pulse shaping at the sample rate ``W``)."""

    lags: np.ndarray
    powers: np.ndarray

    @property
    def l_min(self) -> int:
        return int(self.lags[0])

    @property
    def l_max(self) -> int:
        return int(self.lags[-1])


def path_taps(pdp: PowerDelayProfile, lags: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """``[paths, L]``: how each path's unit amplitude reaches the discrete-time taps at ``lags`` through the
    sinc pulse, ``sinc(l - tau_m W)`` (what Sionna's ``cir_to_time_channel`` applies)."""
    return np.sinc(lags[None, :] - pdp.delays_s[:, None] * sample_rate_hz)


def discrete_time_profile(pdp: PowerDelayProfile, sample_rate_hz: float, l_min: int = L_MIN) -> DiscreteTimeProfile:
    """The TDL's discrete-time PDP at ``sample_rate_hz``; ``l_max = ceil(max delay * W) + 6`` as
    Sionna's ``time_lag_discrete_time_channel`` recommends."""
    l_max = int(math.ceil(pdp.max_delay_s * sample_rate_hz)) - l_min
    lags = np.arange(l_min, l_max + 1)
    powers = np.sum(pdp.powers[:, None] * path_taps(pdp, lags, sample_rate_hz) ** 2, axis=0)
    return DiscreteTimeProfile(lags, powers)


def oversampled_grid(grid: GridConfig, factor: int = TIME_DOMAIN_OVERSAMPLING) -> GridConfig:
    """The grid the time-domain link modulates: ``factor`` times the FFT size and CP samples (same durations,
    same subcarrier spacing), the original subcarriers in the middle and the rest as guard carriers."""
    from dataclasses import replace

    n = grid.fft_size
    left = (factor * n) // 2 - n // 2  # subcarrier k sits at (k - N // 2) * spacing in Sionna's layout
    return replace(grid, fft_size=factor * n, cyclic_prefix_length=factor * grid.cyclic_prefix_length,
                   num_guard_carriers=(grid.num_guard_carriers[0] + left,
                                       grid.num_guard_carriers[1] + factor * n - n - left))


def window_overlap(lags: np.ndarray, grid: GridConfig, timing_offset: int) -> np.ndarray:
    """Share of the FFT window (of ``fft_size`` samples) in which a tap at each lag still carries the
    current OFDM symbol; the rest of the window carries the previous symbol (lags past the CP) or the
    next one (lags before the window start). The FFT window starts ``timing_offset`` (<= 0) samples
    before the end of the cyclic prefix."""
    n = grid.fft_size
    excess = np.maximum(0, lags - (grid.cyclic_prefix_length + timing_offset)) + np.maximum(0, timing_offset - lags)
    return np.clip(1.0 - excess / n, 0.0, 1.0)


def jakes_coherence(doppler_hz: float, grid: GridConfig) -> float:
    """``(1/N^2) sum_{i,i'} J0(2 pi f_d (i - i') / W)``: the power share of a Jakes-faded tap that stays on its
    own subcarrier over one FFT window of N samples; ``1 - jakes_coherence`` is the classical ICI power
    (~ (pi f_d T)^2 / 6 for small ``f_d T``, T = N / W the useful symbol time: the Jakes spectrum's mean
    square Doppler is f_d^2 / 2)."""
    from scipy.special import j0

    n = grid.fft_size
    m = np.arange(-(n - 1), n)
    return float(np.sum((n - np.abs(m)) * j0(2 * np.pi * doppler_hz * m / grid.sample_rate_hz)) / n ** 2)


@dataclass(frozen=True)
class InterferencePrediction:
    """What a one-tap OFDM receiver sees per resource element, averaged over fading and data, for unit-power
    REs: the power of the useful channel and of the ISI + ICI it cannot remove."""

    useful: float
    interference: float
    timing_offset: int
    doppler_hz: float

    @property
    def fraction(self) -> float:
        """Interference as a share of the received signal power."""
        return self.interference / (self.useful + self.interference)

    def sinr_db(self, snr_db: float) -> float:
        """Average post-equalisation SINR [dB] at Es/N0 = ``snr_db``: useful / (N0 + interference)."""
        return 10 * math.log10(self.useful / (10 ** (-snr_db / 10) + self.interference))


def _white_signal_isi(profile: DiscreteTimeProfile, grid: GridConfig, timing_offset: int) -> float:
    """ISI + window ICI per RE for uncorrelated taps and a white signal (every subcarrier used): the quick
    estimate :func:`best_timing_offset` ranks offsets by."""
    w = window_overlap(profile.lags, grid, timing_offset)
    return float(np.sum(profile.powers * (1.0 - w ** 2)))


def best_timing_offset(profile: DiscreteTimeProfile, grid: GridConfig) -> int:
    """The FFT-window offset in ``[l_min, 0]`` that minimises the average ISI (what a timing synchroniser
    tuned to the PDP does); ties go to the offset nearest 0."""
    offsets = range(0, profile.l_min - 1, -1)
    return min(offsets, key=lambda t: _white_signal_isi(profile, grid, t))


def _static_isi(pdp: PowerDelayProfile, grid: GridConfig, timing_offset: int) -> tuple[float, float]:
    """Exact (useful, ISI + ICI) power per used RE, averaged over the used subcarriers, of a static TDL
    through the oversampled time-domain link.

    Tap ``l`` maps subcarrier nu' of the current symbol onto nu with ``exp(-j 2 pi nu' l / M) D_l(nu' - nu)``,
    ``D_l(d) = (1/M) sum_i c_l(i) exp(j 2 pi d i / M)`` over the window samples ``i`` where its input is the
    current symbol (``c_l``; the previous and next symbols likewise with their masks); the diagonal is the
    useful channel. Powers follow from the taps' covariance ``R[l, l'] = sum_m P_m sinc(l - tau_m W)
    sinc(l' - tau_m W)`` (paths independent) and i.i.d. unit-power data on the used subcarriers only, so the
    ISI that leaks onto empty subcarriers is not counted."""
    wide = oversampled_grid(grid)
    m, cp, rate = wide.fft_size, wide.cyclic_prefix_length, wide.sample_rate_hz
    profile = discrete_time_profile(pdp, rate)
    lags = profile.lags
    s = path_taps(pdp, lags, rate)                                                 # [paths, L]
    cov = (s.T * pdp.powers) @ s                                                   # [L, L]
    pos = cp + timing_offset + np.arange(m)[:, None] - lags[None, :]               # [M, L]
    masks = np.stack([(pos >= 0) & (pos < m + cp), pos < 0, pos >= m + cp]).astype(np.float64)
    d = np.fft.ifft(masks, axis=1)                                                 # [3, delta mod M, L]
    nu = grid.effective_subcarrier_indices - grid.fft_size // 2                                                    # frequency / spacing
    phase = np.exp(-2j * np.pi * nu[:, None] * lags[None, :] / m)                  # [nu', L]
    delta = (nu[:, None] - nu[None, :]) % m                                        # [nu', nu]
    a = phase[None, :, None, :] * d[:, delta, :]                                  # [3, nu', nu, L]
    power = np.einsum("tpnl,lj,tpnj->tpn", a, cov, a.conj()).real                  # [3, nu', nu]
    useful = float(np.mean(np.diagonal(power[0])))
    total = float(power.sum(axis=(0, 1)).mean())
    return useful, total - useful


@functools.lru_cache(maxsize=256)
def _predict(profile_name: str, delay_spread_ns: float, speed_mps: float, grid: GridConfig,
             carrier_frequency_hz: float, timing_offset: int | None) -> InterferencePrediction:
    cond = Condition(snr_db=0.0, delay_spread_ns=delay_spread_ns, tdl_profile=profile_name, speed_mps=speed_mps)
    wide = oversampled_grid(grid)
    doppler = speed_mps * carrier_frequency_hz / SPEED_OF_LIGHT if profile_name != "awgn" else 0.0
    pdp = power_delay_profile(cond, carrier_frequency_hz)
    if timing_offset is None:
        timing_offset = best_timing_offset(discrete_time_profile(pdp, wide.sample_rate_hz), wide)
    useful, isi = _static_isi(pdp, grid, timing_offset)
    coherence = jakes_coherence(doppler, wide) if doppler > 0 else 1.0
    return InterferencePrediction(useful * coherence, isi + useful * (1 - coherence), timing_offset, doppler)


def predict_interference(cond: Condition, grid: GridConfig, carrier_frequency_hz: float = 3.5e9,
                         timing_offset: int | None = None) -> InterferencePrediction:
    """ISI beyond the cyclic prefix and ICI from Doppler, predicted from the PDP and the speed, for the
    time-domain link of ``grid`` (sampled at :func:`oversampled_grid`; ``timing_offset`` in those samples,
    default :func:`best_timing_offset`).

    The ISI (and the ICI of the cut window) is exact for a static channel (:func:`_static_isi`); a Jakes
    Doppler spread then moves another ``1 - jakes_coherence`` of the useful power into ICI. Flat channels
    have one tap at lag 0: no ISI."""
    return _predict(cond.tdl_profile, float(cond.delay_spread_ns), float(cond.speed_mps), grid,
                    float(carrier_frequency_hz), timing_offset)
