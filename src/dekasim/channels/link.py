"""The OFDM link: symbols in, equalised symbols and post-equalisation noise variance out."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dekasim.channels.grid import GridConfig
from dekasim.channels.profiles import (INTERFERENCE_THRESHOLD, channel_model, check_link_physics,
                                       frequency_covariance, power_delay_profile,
                                       predict_interference, time_covariance,
                                       time_domain_frequency_covariance)
from dekasim.conditions import Condition
from dekasim.errors import ConfigError

CSI_MODES = ("perfect", "ls", "lmmse")
#: ``[channel] domain``: "frequency" (CP assumed to absorb every tap, no ICI), "time" (OFDM time signal
#: through the discrete-time TDL: ISI beyond the CP, ICI at speed), "auto" (time where it matters)
DOMAINS = ("frequency", "time", "auto")


def noise_variance(snr_db: float | torch.Tensor) -> torch.Tensor:
    """N0 for unit-energy data symbols at Es/N0 = ``snr_db`` [dB] (float32 tensor)."""
    return torch.pow(10.0, -torch.as_tensor(snr_db, dtype=torch.float32) / 10.0)


def resolve_domain(domain: str, cond: Condition, grid: GridConfig, carrier_frequency_hz: float) -> str:
    """``"frequency"`` or ``"time"``: ``domain`` with ``"auto"`` resolved for ``cond`` (time where more than
    1 % of the power arrives after the CP or the predicted ISI + ICI exceeds 1 % of the received power).
    AWGN has no grid: always ``"frequency"``."""
    if cond.tdl_profile == "awgn":
        return "frequency"
    if domain != "auto":
        return domain
    beyond_cp = power_delay_profile(cond, carrier_frequency_hz).power_beyond(grid.cyclic_prefix_s + 1e-12)
    fraction = predict_interference(cond, grid, carrier_frequency_hz).fraction
    return "time" if max(beyond_cp, fraction) > INTERFERENCE_THRESHOLD else "frequency"


@dataclass
class _ConditionBlocks:
    channel: torch.nn.Module | None
    estimator: torch.nn.Module | None
    domain: str = "frequency"
    #: how the receiver learns the ISI + ICI power it adds to N0 (time domain only)
    interference_estimate: str | None = None
    #: "pilot delay bins": the ``[n_eff]`` mask of the bins no channel lag reaches
    free_delay_bins: torch.Tensor | None = None


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

    ``domain = "frequency"`` applies the channel per RE (Sionna's ``OFDMChannel``): the cyclic prefix is
    assumed to absorb every tap and the channel to stay constant within an OFDM symbol. ``"time"`` sends
    the OFDM time signal with its CP through the TDL's discrete-time channel
    (:class:`~dekasim.channels.time_domain.TimeDomainOFDM`): taps past the CP cause inter-symbol
    interference, Doppler causes inter-carrier interference, and the receiver adds the ISI + ICI power it
    cannot remove to N0 in ``no_eff``: from the known channel with ``csi = "perfect"``; from the pilots
    with LS/LMMSE (the empty REs of the pilot symbols with a comb of 2 or more; with a comb of 1, the
    Hann-windowed LS estimates' delay bins beyond the channel's lags; the PDP's prediction where neither
    exists, e.g. with a DC null). A genie measures it for ``csi = "perfect"``: the received grid without
    noise minus the useful channel times the sent grid.
    ``"auto"`` uses the time domain where the frequency-domain model is optimistic: more than 1 % of the
    power after the CP, or a predicted ISI + ICI above 1 % of the received power (Doppler alone: above
    ~7.8 % of the subcarrier spacing, Jakes), else the frequency domain.

    :param grid: OFDM numerology and pilots.
    :param csi: ``"perfect"``, ``"ls"`` or ``"lmmse"``.
    :param domain: ``"frequency"``, ``"time"`` or ``"auto"``.
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
                 device: str | None = None, domain: str = "frequency") -> None:
        super().__init__()
        if csi not in CSI_MODES:
            raise ConfigError("csi", csi, f"one of {list(CSI_MODES)}")
        if domain not in DOMAINS:
            raise ConfigError("channel.domain", domain, f"one of {list(DOMAINS)}",
                              "'time' simulates ISI beyond the cyclic prefix and ICI at speed")
        if not 0.4e9 <= carrier_frequency_hz <= 100e9:
            raise ConfigError("carrier_frequency_hz", carrier_frequency_hz,
                              "a carrier in Hz within [0.4e9, 100e9] (TR 38.901 validity)",
                              "the key is in Hz: write 3.5e9")
        from sionna.phy.mimo import StreamManagement
        from sionna.phy.ofdm import LMMSEEqualizer, RemoveNulledSubcarriers, ResourceGridMapper

        self.grid = grid or GridConfig()
        self.csi = csi
        self.domain = domain
        self.carrier_frequency_hz = float(carrier_frequency_hz)
        self.device_name = device
        self.resource_grid = self.grid.build(device=device)
        self.mapper = ResourceGridMapper(self.resource_grid, device=device)
        self.equalizer = LMMSEEqualizer(self.resource_grid, StreamManagement(np.array([[1]]), 1), device=device)
        self.remove_nulls = RemoveNulledSubcarriers(self.resource_grid, device=device)
        # data REs of the effective grid, flattened (OFDM symbol, subcarrier) as the equaliser orders them
        self.register_buffer("_data_re", torch.nonzero(self.resource_grid.pilot_pattern.mask[0, 0].reshape(-1) == 0
                                                       ).reshape(-1), persistent=False)
        pilot_syms = list(self.grid.pilot_ofdm_symbol_indices)
        self.register_buffer("_pilot_symbols", torch.as_tensor(pilot_syms), persistent=False)
        self.register_buffer("_pilot_values", torch.as_tensor(self.grid.pilot_values().reshape(len(pilot_syms), -1)),
                             persistent=False)
        self.register_buffer("_effective", torch.as_tensor(np.asarray(self.resource_grid.effective_subcarrier_ind,
                                                                      dtype=np.int64)), persistent=False)
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

    def domain_for(self, cond: Condition) -> str:
        """The domain this link simulates ``cond`` in (see :func:`resolve_domain`)."""
        return resolve_domain(self.domain, cond, self.grid, self.carrier_frequency_hz)

    def blocks_for(self, cond: Condition) -> _ConditionBlocks:
        """Channel and estimator for ``cond`` (built once per profile/delay spread/speed, then cached)."""
        key = self._key(cond)
        if key not in self._blocks:
            domain = self.domain_for(cond)
            self.physics_notes[key] = check_link_physics(cond, self.grid, self.csi, self.carrier_frequency_hz,
                                                         domain=domain)
            from sionna.phy.channel import OFDMChannel
            from sionna.phy.ofdm import LMMSEChannelEstimator, LSChannelEstimator

            model = channel_model(cond, self.carrier_frequency_hz, device=self.device_name)
            pdp = power_delay_profile(cond, self.carrier_frequency_hz) if model is not None else None
            channel, estimate, free = None, None, None
            if model is not None and domain == "time":
                from dekasim.channels.time_domain import TimeDomainOFDM

                channel = TimeDomainOFDM(model, self.grid, pdp,
                                         predict_interference(cond, self.grid, self.carrier_frequency_hz).doppler_hz,
                                         device=self.device_name)
                estimate, free = self._interference_estimate(channel)
            elif model is not None:
                channel = OFDMChannel(model, self.resource_grid, return_channel=True, device=self.device_name)
            estimator = None
            if model is not None and self.csi == "ls":
                estimator = LSChannelEstimator(self.resource_grid, interpolation_type="lin", device=self.device_name)
            elif model is not None and self.csi == "lmmse":
                idx = self._effective.cpu()
                if domain == "time":
                    cov_f = time_domain_frequency_covariance(pdp, self.grid, channel.timing_offset)
                else:
                    cov_f = frequency_covariance(pdp, self.grid)
                cov_f = cov_f[idx][:, idx]
                cov_t = time_covariance(cond, self.grid, self.carrier_frequency_hz)
                estimator = LMMSEChannelEstimator(self.resource_grid, cov_t, cov_f, order="f-t",
                                                  device=self.device_name)
            self._blocks[key] = _ConditionBlocks(channel, estimator, domain, estimate,
                                                 None if free is None else free.to(self._effective.device))
        return self._blocks[key]

    #: delay bins kept free on each side of the channel's lags: the Hann window's leakage is below -40 dB there
    DELAY_BIN_MARGIN = 4

    def _interference_estimate(self, channel: torch.nn.Module) -> tuple[str, torch.Tensor | None]:
        """How the receiver of ``channel`` (a time-domain block) learns the ISI + ICI power (see the class
        docstring), and for ``"pilot delay bins"`` the mask of the bins of an ``n_eff``-point IDFT over the
        pilots (spacing ``1 / (n_eff df)``) that no channel lag reaches."""
        if self.csi == "perfect":
            return "known channel", None
        if self.grid.pilot_subcarrier_spacing >= 2:
            return "pilot nulls", None
        n_eff = self.grid.num_effective_subcarriers
        scale = channel.wide.sample_rate_hz / (n_eff * self.grid.subcarrier_spacing_hz)  # samples per bin
        lo = math.floor(channel.l_min / scale) - self.DELAY_BIN_MARGIN
        hi = math.ceil(channel.l_max / scale) + self.DELAY_BIN_MARGIN
        free = torch.ones(n_eff, dtype=torch.bool)
        free[torch.arange(lo, hi + 1) % n_eff] = False
        if not self.grid.dc_null and int(free.sum()) >= 8:
            return "pilot delay bins", free
        return "pdp prediction", None

    def _disturbance_from_pilots(self, y: torch.Tensor, blocks: _ConditionBlocks, no: torch.Tensor,
                                 cond: Condition) -> torch.Tensor:
        """N0 + ISI + ICI per RE of each slot ``[slots]``, as the LS/LMMSE receiver estimates it (see the class
        docstring). ``y`` is the received grid ``[slots, 1, 1, S, fft_size]``."""
        slots = y.shape[0]
        if blocks.interference_estimate == "pdp prediction":
            pred = predict_interference(cond, self.grid, self.carrier_frequency_hz)
            return (no + pred.interference).expand(slots)
        rx = y[:, 0, 0].index_select(1, self._pilot_symbols).index_select(2, self._effective)  # [slots, P, n_eff]
        if blocks.interference_estimate == "pilot nulls":
            nulls = self._pilot_values == 0
            measured = rx.abs().square()[:, nulls].mean(-1)
        else:  # comb 1: the LS estimates' delay bins outside the channel's lags carry only the disturbance
            n_eff = rx.shape[-1]
            window = torch.hann_window(n_eff, periodic=False, dtype=torch.float32, device=y.device)
            bins = torch.fft.ifft(rx / self._pilot_values * window, dim=-1, norm="ortho")
            measured = bins[..., blocks.free_delay_bins].abs().square().mean((-2, -1)) / window.square().mean()
        return no + torch.clamp(measured - no, min=0.0)

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
        no_rx = no  # N0 plus, in the time domain, the ISI + ICI power the receiver cannot remove
        if blocks.domain == "time":
            y, h, interference = blocks.channel(grid, no)
            if blocks.estimator is None:
                no_rx = no + interference
            else:
                no_rx = self._disturbance_from_pilots(y.detach(), blocks, no, cond)
        else:
            y, h = blocks.channel(grid, no)
        no_est = no_rx.reshape(-1, 1, 1) if no_rx.dim() else no  # per slot in the time domain
        if blocks.estimator is None:  # perfect CSI
            h_hat = self.remove_nulls(h.reshape(batch * slots, 1, 1, 1, 1, *h.shape[-2:]))
            err_var = torch.zeros((), dtype=torch.float32, device=x.device)
        else:
            # The estimate reads only the pilot REs, which do not depend on x: its gradient with respect
            # to x is exactly zero, so the estimator stays out of the autograd graph (~25 % of a step).
            h_hat, err_var = blocks.estimator(y.detach(), no_est)
        x_hat, _ = self.equalizer(y, h_hat, err_var, no_est)
        # One stream: the unbiased LMMSE output is y / h_hat with no_eff = (N0 + err_var) / |h_hat|^2.
        # Computed here directly: Sionna's 1/d - 1 cancels in float32 at high SNR (no_eff quantised in
        # steps of ~1e-7 |h|^-2, exactly 0 above ~70 dB per RE, i.e. infinite LLRs).
        h_data = h_hat.reshape(batch * slots, -1).index_select(1, self._data_re)
        if err_var.dim():
            err_var = err_var.broadcast_to(h_hat.shape).reshape(batch * slots, -1).index_select(1, self._data_re)
        no_eff = ((no_rx[:, None] if no_rx.dim() else no_rx) + err_var) / h_data.abs().square()
        x_hat = x_hat.reshape(batch, slots * per_slot)[:, :n]
        no_eff = no_eff.reshape(batch, slots * per_slot)[:, :n]
        return x_hat, no_eff
