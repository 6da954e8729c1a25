"""The time-domain OFDM channel: cyclic prefix, the TDL's discrete-time taps, ISI beyond the CP and ICI at speed.

One slot per batch item: the resource grid is OFDM-modulated with its cyclic prefix (Sionna's
``OFDMModulator``) at twice the grid's sample rate (:func:`~dekasim.channels.profiles.oversampled_grid`:
an FFT twice as long with the extra subcarriers empty, so the sinc pulse's band edges fall on empty
subcarriers), sent through the TDL's discrete-time channel (Sionna's TDL and ``cir_to_time_channel``:
sinc pulse shaping, taps at lags ``L_MIN .. l_max``; ``ApplyTimeChannel`` when the channel moves, an exact
FFT convolution when it does not), noise is added per time sample, and the receiver cuts the FFT windows
at a fixed timing offset chosen from the PDP (``OFDMDemodulator``). A random QPSK OFDM symbol precedes
each slot (the tail of the previous slot), so the first symbol sees ISI like the others.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dekasim.channels.grid import GridConfig
from dekasim.channels.profiles import (PowerDelayProfile, best_timing_offset, discrete_time_profile,
                                       oversampled_grid)


class TimeDomainOFDM(torch.nn.Module):
    """Send resource grids as OFDM time signals through a TDL's discrete-time channel.

    :param model: a Sionna channel model (``TDL``, ``RayleighBlockFading``) called as
        ``model(batch, num_time_steps, sampling_frequency)``.
    :param grid: the numerology (the link's grid; the signal is sampled at :func:`oversampled_grid`).
    :param pdp: the model's power-delay profile (sets ``l_max`` and the receiver's timing).
    :param doppler_hz: maximum Doppler shift [Hz]; 0 means a channel constant over the slot (one CIR draw
        per slot instead of one per sample).
    :input x: ``[batch, 1, 1, num_ofdm_symbols, fft_size]`` complex64, the mapped resource grid.
    :input no: N0 per RE (the noise per time sample after the unitary FFT), scalar float32.
    :output y: ``[batch, 1, 1, num_ofdm_symbols, fft_size]`` complex64, the received grid.
    :output h: ``[batch, 1, 1, 1, 1, num_ofdm_symbols, fft_size]`` complex64, the useful channel: the
        coefficient of every RE on itself (the window-weighted mean of each tap over the FFT window).
    :output interference: ``[batch]`` float32, the ISI + ICI power per RE of each slot: the mean of
        ``|y_clean - h x|^2`` over the slot's REs, ``y_clean`` the received grid without noise (what a genie
        receiver that knows the channel and the sent grid measures; ~1000 REs per slot, so within a few %
        of its expectation over data, which :func:`~dekasim.channels.profiles.predict_interference` gives
        over channels too).
    """

    def __init__(self, model, grid: GridConfig, pdp: PowerDelayProfile, doppler_hz: float = 0.0,
                 device: str | None = None) -> None:
        super().__init__()
        from sionna.phy.channel import AWGN, ApplyTimeChannel, subcarrier_frequencies
        from sionna.phy.ofdm import OFDMDemodulator, OFDMModulator

        self.model = model
        self.grid = grid
        self.wide = wide = oversampled_grid(grid)
        profile = discrete_time_profile(pdp, wide.sample_rate_hz)
        self.l_min, self.l_max = profile.l_min, profile.l_max
        self.l_tot = self.l_max - self.l_min + 1
        self.timing_offset = best_timing_offset(profile, wide)
        self.static = doppler_hz <= 0
        # a moving channel is drawn every `decimation` samples: at least 64 draws per period of the Doppler
        self.decimation = int(min(32, max(1, wide.sample_rate_hz // (64 * doppler_hz)))) if doppler_hz > 0 else 1
        n, cp = wide.fft_size, wide.cyclic_prefix_length
        self.first = wide.num_guard_carriers[0] - grid.num_guard_carriers[0]  # where the grid's subcarriers start
        self.num_samples = (grid.num_ofdm_symbols + 1) * (n + cp)
        self.modulator = OFDMModulator(cp, device=device)
        self.demodulator = OFDMDemodulator(n, self.timing_offset, cp, device=device)
        self.apply_channel = ApplyTimeChannel(self.num_samples, self.l_tot, device=device)
        self.awgn = AWGN(device=device)
        self.register_buffer("_effective", torch.as_tensor(grid.effective_subcarrier_indices + self.first),
                             persistent=False)
        lags = np.arange(self.l_min, self.l_max + 1)
        # window sample i of extended symbol s is output sample b = s (N + cp) + cp + t + i - l_min
        s = np.arange(1, grid.num_ofdm_symbols + 1)[:, None]
        i = np.arange(n)[None, :]
        self.register_buffer("_window", torch.as_tensor(s * (n + cp) + cp + self.timing_offset + i - self.l_min),
                             persistent=False)
        # the input of tap l at window sample i belongs to the current symbol iff 0 <= cp + t + i - l < N + cp
        pos = cp + self.timing_offset + np.arange(n)[:, None] - lags[None, :]
        current = ((pos >= 0) & (pos < n + cp)).astype(np.float32)
        self.register_buffer("_current", torch.as_tensor(current), persistent=False)
        self.register_buffer("_share", torch.as_tensor(current.mean(0)), persistent=False)  # [L], a static tap's
        freqs = subcarrier_frequencies(grid.fft_size, grid.subcarrier_spacing_hz, device="cpu").numpy()
        phase = -2 * np.pi * freqs.astype(np.float64)[None, :] * lags[:, None] / wide.sample_rate_hz
        self.register_buffer("_dft", torch.as_tensor(np.exp(1j * phase).astype(np.complex64)), persistent=False)

    def draw(self, batch: int) -> torch.Tensor:
        """Discrete-time taps ``[batch, 1, 1, 1, 1, T, l_tot]`` (T = 1 when static, else the output length;
        a moving channel is drawn every ``decimation`` samples and interpolated linearly in between: the
        sum-of-sinusoids TDL drawn at every sample costs ~10 ms per slot)."""
        from sionna.phy.channel import cir_to_time_channel

        rate = self.wide.sample_rate_hz
        if self.static:
            a, tau = self.model(batch, 1, rate)
            return cir_to_time_channel(rate, a, tau, self.l_min, self.l_max, normalize=False)
        steps = self.num_samples + self.l_tot - 1
        dec = self.decimation
        coarse = (steps - 1) // dec + 2
        a, tau = self.model(batch, coarse, rate / dec)
        h = cir_to_time_channel(rate, a, tau, self.l_min, self.l_max, normalize=False)   # [..., coarse, L]
        lead = h.shape[:-2]
        real = torch.view_as_real(h.reshape(-1, coarse, self.l_tot)).permute(0, 2, 3, 1).reshape(-1, 2 * self.l_tot,
                                                                                               coarse)
        # align_corners: output j sits at input j (coarse - 1) / (out - 1) = j / dec, the coarse draws' times
        fine = torch.nn.functional.interpolate(real, size=(coarse - 1) * dec + 1, mode="linear", align_corners=True)
        fine = fine[..., :steps].reshape(-1, self.l_tot, 2, steps).permute(0, 3, 1, 2).contiguous()
        return torch.view_as_complex(fine).reshape(*lead, steps, self.l_tot)

    def _convolve(self, signal: torch.Tensor, h_time: torch.Tensor) -> torch.Tensor:
        """``y_b = sum_l h_{b,l} x_{b-l}`` for output samples ``b = l_min .. num_samples + l_max - 1`` (no noise)."""
        if not self.static:
            return self.apply_channel(signal, h_time)
        taps = h_time[:, 0, 0, 0, 0, 0, :]                                    # [B, L], lag l_min first
        size = self.num_samples + self.l_tot - 1
        y = torch.fft.ifft(torch.fft.fft(signal[:, 0, 0], size) * torch.fft.fft(taps, size), size)
        return y[:, None, None, :]

    def useful_channel(self, h_time: torch.Tensor) -> torch.Tensor:
        """The useful channel ``[batch, S, fft_size]`` of taps ``h_time``: tap l's mean over the FFT-window
        samples in which it carries the current symbol, times 1/M for the samples in which it does not,
        through the DFT at each subcarrier's frequency."""
        taps = h_time.reshape(h_time.shape[0], h_time.shape[-2], self.l_tot)
        n = self.wide.fft_size
        if self.static:
            u = (taps[:, 0, :] * self._share)[:, None, :].expand(-1, self.grid.num_ofdm_symbols, -1)
        else:
            u = (taps[:, self._window, :] * self._current).sum(2) / n         # [B, S, L]
        return u @ self._dft

    def _demodulate(self, y: torch.Tensor) -> torch.Tensor:
        f = self.grid.fft_size
        return self.demodulator(y[..., self.timing_offset - self.l_min:])[..., 1:, self.first:self.first + f]

    def forward(self, x: torch.Tensor, no: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, f = x.shape[0], self.grid.fft_size
        bits = torch.randint(0, 2, (batch, self._effective.numel(), 2), device=x.device).to(torch.float32)
        qpsk = (torch.complex(1 - 2 * bits[..., 0], 1 - 2 * bits[..., 1]) / math.sqrt(2)).to(x.dtype)
        wide = x.new_zeros(*x.shape[:3], x.shape[3] + 1, self.wide.fft_size)
        wide[:, 0, 0, 0, self._effective] = qpsk
        wide[..., 1:, self.first:self.first + f] = x
        signal = self.modulator(wide)                                         # [B, 1, 1, num_samples]
        h_time = self.draw(batch)
        clean = self._convolve(signal, h_time)                                # starts at lag l_min
        # unitary FFTs: noise N0 per sample is N0 per RE, the Es/N0 per RE the frequency domain means
        noise = self.awgn(torch.zeros_like(clean), no)
        y_clean, y_noise = self._demodulate(clean), self._demodulate(noise)
        h = self.useful_channel(h_time)                                       # [B, S, F]
        eff = self._effective - self.first
        with torch.no_grad():
            residual = (y_clean[:, 0, 0] - h * x[:, 0, 0])[..., eff]
            interference = residual.abs().square().mean((-2, -1)).to(torch.float32)
        return y_clean + y_noise, h.reshape(batch, 1, 1, 1, 1, *h.shape[-2:]), interference
