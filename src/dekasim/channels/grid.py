"""The OFDM resource grid: numerology, nulls and a comb pilot pattern, built as Sionna objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dekasim.errors import ConfigError


@dataclass(frozen=True)
class GridConfig:
    """One OFDM slot.

    The default is a 14-symbol slot of 76 subcarriers at 15 kHz (1.14 MHz) with a 7.0 us cyclic
    prefix (8 samples), long enough that TDL-A/B/C at 1000 ns RMS keep over 99 % of their power
    inside it, and DMRS-like pilots on symbols 2 and 11 on every other subcarrier.

    :param num_ofdm_symbols: OFDM symbols per slot (14 in 5G NR with normal CP).
    :param fft_size: subcarriers, including guard and DC nulls.
    :param subcarrier_spacing_hz: subcarrier spacing [Hz].
    :param cyclic_prefix_length: cyclic prefix [samples at ``fft_size * subcarrier_spacing_hz``].
        The frequency-domain channel model assumes no inter-symbol interference; the link warns
        when TDL power arrives after the cyclic prefix.
    :param num_guard_carriers: (left, right) null subcarriers.
    :param dc_null: null the DC subcarrier.
    :param pilot_ofdm_symbol_indices: OFDM symbols that carry pilots (5G DMRS-like positions).
    :param pilot_subcarrier_spacing: pilot comb in frequency: every k-th effective subcarrier of a
        pilot symbol carries a pilot (boosted by k so the symbol keeps unit average power); the other
        REs of a pilot symbol stay empty, as in a DMRS symbol of one CDM group.
    """

    num_ofdm_symbols: int = 14
    fft_size: int = 76
    subcarrier_spacing_hz: float = 15e3
    cyclic_prefix_length: int = 8
    num_guard_carriers: tuple[int, int] = (0, 0)
    dc_null: bool = False
    pilot_ofdm_symbol_indices: tuple[int, ...] = field(default=(2, 11))
    pilot_subcarrier_spacing: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.num_ofdm_symbols <= 1024:
            raise ConfigError("ofdm.num_ofdm_symbols", self.num_ofdm_symbols, "an integer in [1, 1024]")
        if not 4 <= self.fft_size <= 8192:
            raise ConfigError("ofdm.fft_size", self.fft_size, "an integer in [4, 8192]")
        if not 1e3 <= self.subcarrier_spacing_hz <= 1e6:
            raise ConfigError("ofdm.subcarrier_spacing_hz", self.subcarrier_spacing_hz,
                              "a spacing in Hz within [1e3, 1e6] (5G NR: 15e3, 30e3, 60e3, 120e3)",
                              "the key is in Hz: write 30e3, not 30")
        if not 0 <= self.cyclic_prefix_length < self.fft_size:
            raise ConfigError("ofdm.cyclic_prefix_length", self.cyclic_prefix_length,
                              f"samples in [0, fft_size={self.fft_size})")
        guards = tuple(self.num_guard_carriers)
        if len(guards) != 2 or min(guards) < 0 or sum(guards) + int(self.dc_null) >= self.fft_size - 1:
            raise ConfigError("ofdm.num_guard_carriers", self.num_guard_carriers,
                              "two non-negative integers leaving at least two effective subcarriers")
        pil = tuple(self.pilot_ofdm_symbol_indices)
        if not pil:
            raise ConfigError("ofdm.pilot_ofdm_symbol_indices", self.pilot_ofdm_symbol_indices,
                              "at least one OFDM symbol index", "e.g. [2, 11]")
        if len(set(pil)) != len(pil) or not all(0 <= i < self.num_ofdm_symbols for i in pil):
            raise ConfigError("ofdm.pilot_ofdm_symbol_indices", self.pilot_ofdm_symbol_indices,
                              f"distinct indices in [0, {self.num_ofdm_symbols})")
        if len(pil) >= self.num_ofdm_symbols:
            raise ConfigError("ofdm.pilot_ofdm_symbol_indices", self.pilot_ofdm_symbol_indices,
                              "fewer pilot symbols than OFDM symbols, so some carry data")
        if not 1 <= self.pilot_subcarrier_spacing <= self.num_effective_subcarriers // 2:
            raise ConfigError("ofdm.pilot_subcarrier_spacing", self.pilot_subcarrier_spacing,
                              f"an integer in [1, {self.num_effective_subcarriers // 2}]")
        object.__setattr__(self, "num_guard_carriers", guards)
        object.__setattr__(self, "pilot_ofdm_symbol_indices", pil)

    @property
    def num_effective_subcarriers(self) -> int:
        return self.fft_size - sum(self.num_guard_carriers) - int(self.dc_null)

    @property
    def effective_subcarrier_indices(self) -> np.ndarray:
        """Indices (into ``fft_size``) of the subcarriers that carry pilots or data: Sionna's
        ``ResourceGrid.effective_subcarrier_ind`` (guards removed, and the DC at ``fft_size // 2`` if nulled)."""
        left, right = self.num_guard_carriers
        idx = np.arange(left, self.fft_size - right)
        return idx[idx != self.fft_size // 2] if self.dc_null else idx

    @property
    def sample_rate_hz(self) -> float:
        return self.fft_size * self.subcarrier_spacing_hz

    @property
    def cyclic_prefix_s(self) -> float:
        """Cyclic prefix duration [s]."""
        return self.cyclic_prefix_length / self.sample_rate_hz

    @property
    def ofdm_symbol_duration_s(self) -> float:
        """OFDM symbol duration including the cyclic prefix [s]."""
        return (self.fft_size + self.cyclic_prefix_length) / self.sample_rate_hz

    @property
    def num_data_symbols(self) -> int:
        """Data resource elements per slot."""
        return (self.num_ofdm_symbols - len(self.pilot_ofdm_symbol_indices)) * self.num_effective_subcarriers

    @property
    def pilot_energy_per_slot(self) -> float:
        """Total pilot energy in one slot, in units of the data symbol energy (summed over the actual
        pilots: ``ceil(n_eff / k) * k`` per pilot symbol, one RE's worth more when k does not divide n_eff)."""
        return float(self.pilot_subcarrier_spacing * np.count_nonzero(self.pilot_values()))

    def pilot_values(self) -> np.ndarray:
        """Pilot symbols in Sionna's layout ``[1, 1, num_pilot_res]`` (complex64).

        QPSK from a fixed PN sequence on the comb, zeros elsewhere; amplitude sqrt(k) so each pilot
        OFDM symbol has unit average energy per RE (exactly when k divides the effective subcarriers;
        otherwise ceil(n_eff / k) * k, see :attr:`pilot_energy_per_slot`).
        """
        k = self.pilot_subcarrier_spacing
        n_eff = self.num_effective_subcarriers
        rng = np.random.default_rng(0x5EED)
        vals = []
        for _ in self.pilot_ofdm_symbol_indices:
            bits = rng.integers(0, 2, size=(n_eff, 2))
            qpsk = ((1 - 2 * bits[:, 0]) + 1j * (1 - 2 * bits[:, 1])) / np.sqrt(2)
            comb = (np.arange(n_eff) % k == 0)
            vals.append(np.where(comb, qpsk * np.sqrt(k), 0))
        return np.concatenate(vals).astype(np.complex64).reshape(1, 1, -1)

    def build(self, device: str | None = None):
        """The Sionna ``ResourceGrid`` with this comb pilot pattern."""
        from sionna.phy.ofdm import PilotPattern, ResourceGrid

        mask = np.zeros((1, 1, self.num_ofdm_symbols, self.num_effective_subcarriers), np.int32)
        mask[..., list(self.pilot_ofdm_symbol_indices), :] = 1
        pattern = PilotPattern(mask, self.pilot_values(), device=device)
        return ResourceGrid(num_ofdm_symbols=self.num_ofdm_symbols, fft_size=self.fft_size,
                            subcarrier_spacing=self.subcarrier_spacing_hz,
                            cyclic_prefix_length=self.cyclic_prefix_length,
                            num_guard_carriers=self.num_guard_carriers, dc_null=self.dc_null,
                            pilot_pattern=pattern, device=device)
