"""SNR conventions. dekasim's ``snr_db`` is Es/N0 per *data* resource element.

Eb/N0 counts everything transmitted per information bit: data REs, pilot REs and the cyclic prefix
(the CP is energy sent that the receiver throws away).
"""

from __future__ import annotations

import math

from dekasim.channels.grid import GridConfig


def overhead_factor(grid: GridConfig | None) -> float:
    """Total transmitted energy per slot over the data energy per slot (>= 1); 1 for AWGN (no grid)."""
    if grid is None:
        return 1.0
    energy = grid.num_data_symbols + grid.pilot_energy_per_slot
    cp = (grid.fft_size + grid.cyclic_prefix_length) / grid.fft_size
    return energy * cp / grid.num_data_symbols


def ebno_db(snr_db: float, bits_per_symbol: float, code_rate: float = 1.0, grid: GridConfig | None = None) -> float:
    """Eb/N0 [dB] from Es/N0 per data RE, for ``bits_per_symbol * code_rate`` information bits per data RE."""
    if bits_per_symbol <= 0 or not 0 < code_rate <= 1:
        raise ValueError(f"bits_per_symbol={bits_per_symbol}, code_rate={code_rate}: need > 0 and (0, 1]")
    return snr_db + 10 * math.log10(overhead_factor(grid) / (bits_per_symbol * code_rate))


def snr_db_from_ebno_db(ebno: float, bits_per_symbol: float, code_rate: float = 1.0,
                        grid: GridConfig | None = None) -> float:
    """Inverse of :func:`ebno_db`."""
    return ebno - 10 * math.log10(overhead_factor(grid) / (bits_per_symbol * code_rate))
