"""Channel layer: OFDM grid, 3GPP TDL / flat Rayleigh / AWGN, channel estimation and equalisation."""

from dekasim.channels.grid import GridConfig
from dekasim.channels.link import CSI_MODES, DOMAINS, OFDMLink, noise_variance, resolve_domain
from dekasim.channels.profiles import PhysicsWarning, PowerDelayProfile, power_delay_profile
from dekasim.channels.snr import ebno_db, snr_db_from_ebno_db

__all__ = ["CSI_MODES", "DOMAINS", "GridConfig", "OFDMLink", "PhysicsWarning", "PowerDelayProfile", "ebno_db",
           "noise_variance", "power_delay_profile", "resolve_domain", "snr_db_from_ebno_db"]
