"""The OFDM link: symbols in, equalised symbols and post-equalisation noise variance out."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dekasim.channels.grid import GridConfig
from dekasim.channels.profiles import (channel_model, check_link_physics, frequency_covariance,
                                       power_delay_profile, time_covariance)
from dekasim.conditions import Condition
from dekasim.errors import ConfigError

CSI_MODES = ("perfect", "ls", "lmmse")


def noise_variance(snr_db: float | torch.Tensor) -> torch.Tensor:
    """N0 for unit-energy data symbols at Es/N0 = ``snr_db`` [dB] (float32 tensor)."""
    return torch.pow(10.0, -torch.as_tensor(snr_db, dtype=torch.float32) / 10.0)


@dataclass
class _ConditionBlocks:
    channel: torch.nn.Module | None
    estimator: torch.nn.Module | None


class OFDMLink(torch.nn.Module):
    """A single-antenna OFDM link over a 3GPP TDL (or flat Rayleigh, or AWGN) channel.

    ``x`` of shape ``[batch, n]`` (complex, unit average power) is cut into slots of
    ``grid.num_data_symbols`` data REs; the last slot is padded with random QPSK symbols, which are
    sent and discarded (they count as overhead, not as channel uses of the payload). Every slot sees
    an independent channel realisation (slots assumed far apart in time or frequency, e.g. frequency
    hopping); within a slot the channel ages with ``speed_mps``. The noise is set so that Es/N0 per
    data RE is ``cond.snr_db``. The receiver estimates the channel (``csi``: perfect, LS with linear
    interpolation, or LMMSE with the TDL's own covariances) and LMMSE-equalises.

    ``"awgn"`` bypasses the grid: ``y = x + n``, ``no_eff = N0``.

    :param grid: OFDM numerology and pilots.
    :param csi: ``"perfect"``, ``"ls"`` or ``"lmmse"``.
    :param carrier_frequency_hz: carrier [Hz]; sets the Doppler spread with ``speed_mps``.
    :input x: ``[batch, n]`` complex64, E|x|^2 = 1.
    :input cond: :class:`~dekasim.conditions.Condition`.
    :output y: ``[batch, n]`` complex64, equalised symbols (unbiased: y = x + e).
    :output no_eff: ``[batch, n]`` float32, variance of e per symbol.

    Example::

        link = OFDMLink(GridConfig(), csi="ls")
        y, no_eff = link(x, Condition(snr_db=10, delay_spread_ns=300, tdl_profile="C"))
    """

    def __init__(self, grid: GridConfig | None = None, csi: str = "ls", carrier_frequency_hz: float = 3.5e9,
                 device: str | None = None) -> None:
        super().__init__()
        if csi not in CSI_MODES:
            raise ConfigError("csi", csi, f"one of {list(CSI_MODES)}")
        if not 0.4e9 <= carrier_frequency_hz <= 100e9:
            raise ConfigError("carrier_frequency_hz", carrier_frequency_hz,
                              "a carrier in Hz within [0.4e9, 100e9] (TR 38.901 validity)",
                              "the key is in Hz: write 3.5e9")
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import LMMSEEqualizer, RemoveNulledSubcarriers, ResourceGridMapper

        self.grid = grid or GridConfig()
        self.csi = csi
        self.carrier_frequency_hz = float(carrier_frequency_hz)
        self.device_name = device
        self.resource_grid = self.grid.build(device=device)
        self.mapper = ResourceGridMapper(self.resource_grid, device=device)
        self.equalizer = LMMSEEqualizer(self.resource_grid, StreamManagement(np.array([[1]]), 1), device=device)
        self.remove_nulls = RemoveNulledSubcarriers(self.resource_grid, device=device)
        # data REs of the effective grid, flattened (OFDM symbol, subcarrier) as the equaliser orders them
        self.register_buffer("_data_re", torch.nonzero(self.resource_grid.pilot_pattern.mask[0, 0].reshape(-1) == 0
                                                       ).reshape(-1), persistent=False)
        self._blocks: dict[tuple, _ConditionBlocks] = {}
        self.physics_notes: dict[tuple, list[str]] = {}

    @property
    def symbols_per_slot(self) -> int:
        return self.grid.num_data_symbols

    def num_slots(self, n: int) -> int:
        """Slots needed for ``n`` channel uses."""
        return math.ceil(n / self.symbols_per_slot)

    def _key(self, cond: Condition) -> tuple:
        return (cond.tdl_profile, float(cond.delay_spread_ns), float(cond.speed_mps))

    def blocks_for(self, cond: Condition) -> _ConditionBlocks:
        """Channel and estimator for ``cond`` (built once per profile/delay spread/speed, then cached)."""
        key = self._key(cond)
        if key not in self._blocks:
            self.physics_notes[key] = check_link_physics(cond, self.grid, self.csi, self.carrier_frequency_hz)
            from sionna.phy.channel import OFDMChannel
            from sionna.phy.ofdm import LMMSEChannelEstimator, LSChannelEstimator

            model = channel_model(cond, self.carrier_frequency_hz, device=self.device_name)
            channel = None if model is None else OFDMChannel(model, self.resource_grid, return_channel=True,
                                                             device=self.device_name)
            estimator = None
            if model is not None and self.csi == "ls":
                estimator = LSChannelEstimator(self.resource_grid, interpolation_type="lin", device=self.device_name)
            elif model is not None and self.csi == "lmmse":
                idx = torch.as_tensor(np.asarray(self.resource_grid.effective_subcarrier_ind, dtype=np.int64))
                cov_f = frequency_covariance(power_delay_profile(cond, self.carrier_frequency_hz), self.grid)
                cov_f = cov_f[idx][:, idx]
                cov_t = time_covariance(cond, self.grid, self.carrier_frequency_hz)
                estimator = LMMSEChannelEstimator(self.resource_grid, cov_t, cov_f, order="f-t",
                                                  device=self.device_name)
            self._blocks[key] = _ConditionBlocks(channel, estimator)
        return self._blocks[key]

    def forward(self, x: torch.Tensor, cond: Condition) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.is_tensor(x) or x.dim() != 2 or not x.is_complex():
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ConfigError("x", shape, "a complex tensor of shape [batch, n]",
                              "codecs must emit complex symbols, one row per item")
        batch, n = x.shape
        no = noise_variance(cond.snr_db).to(x.device)
        blocks = self.blocks_for(cond)
        if blocks.channel is None:  # AWGN: no grid, no estimation
            noise = torch.complex(torch.randn_like(x.real), torch.randn_like(x.real)) * torch.sqrt(no / 2)
            return x + noise, no.expand(batch, n).clone()
        per_slot = self.symbols_per_slot
        slots = self.num_slots(n)
        pad = slots * per_slot - n
        if pad:
            bits = torch.randint(0, 2, (batch, pad, 2), device=x.device).to(torch.float32)
            filler = torch.complex(1 - 2 * bits[..., 0], 1 - 2 * bits[..., 1]) / math.sqrt(2)
            x = torch.cat([x, filler.to(x.dtype)], dim=1)
        xs = x.to(torch.complex64).reshape(batch * slots, 1, 1, per_slot)
        grid = self.mapper(xs)
        y, h = blocks.channel(grid, no)
        if blocks.estimator is None:  # perfect CSI
            h_hat = self.remove_nulls(h.reshape(batch * slots, 1, 1, 1, 1, *h.shape[-2:]))
            err_var = torch.zeros((), dtype=torch.float32, device=x.device)
        else:
            # The estimate reads only the pilot REs, which do not depend on x: its gradient with respect
            # to x is exactly zero, so the estimator stays out of the autograd graph (~25 % of a step).
            h_hat, err_var = blocks.estimator(y.detach(), no)
        x_hat, _ = self.equalizer(y, h_hat, err_var, no)
        # One stream: the unbiased LMMSE output is y / h_hat with no_eff = (N0 + err_var) / |h_hat|^2.
        # Computed here directly: Sionna's 1/d - 1 cancels in float32 at high SNR (no_eff quantised in
        # steps of ~1e-7 |h|^-2, exactly 0 above ~70 dB per RE, i.e. infinite LLRs).
        h_data = h_hat.reshape(batch * slots, -1).index_select(1, self._data_re)
        if err_var.dim():
            err_var = err_var.broadcast_to(h_hat.shape).reshape(batch * slots, -1).index_select(1, self._data_re)
        no_eff = (no + err_var) / h_data.abs().square()
        x_hat = x_hat.reshape(batch, slots * per_slot)[:, :n]
        no_eff = no_eff.reshape(batch, slots * per_slot)[:, :n]
        return x_hat, no_eff
