"""Physics of the channel layer, checked against theory rather than against the code itself.

Reference results: closed-form uncoded BER over AWGN and Rayleigh fading, the RMS delay spread of
the TR 38.901 tables, unit average channel power, and the variance of the post-equalisation noise.

Statistics. Every Monte-Carlo comparison states its interval:

* Bits that are independent Bernoulli trials (QPSK over AWGN; one bit class of 16-QAM over AWGN)
  get an exact Clopper-Pearson interval at 99.9 %.
* Bits that share a random quantity (the bits of one 16-QAM dimension share a noise sample; all bits
  of one slot share a fading realisation) are *not* independent, so a binomial interval would be
  too narrow. There the independent unit is the symbol or the slot: the interval is mean +- z*SE of
  the per-unit error fractions (CLT over tens of thousands of i.i.d. units), z for 99.9 %.
* Moments get a tolerance derived from the sample size (a variance bound or the sample variance).

The fading tests use compact OFDM grids where the physics allows it (flat block fading does not
care about the grid; a static TDL channel is the same on every OFDM symbol): the number of
independent fades per second of CPU is what sets their precision. One TDL case runs on the default
grid as well.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from dekasim import Condition
from dekasim.channels import GridConfig, OFDMLink, PhysicsWarning, ebno_db, power_delay_profile
from dekasim.channels.profiles import channel_model
from dekasim.channels.snr import snr_db_from_ebno_db
from dekasim.conditions import FIXED_TDL_PROFILES, SCALABLE_TDL_PROFILES
from dekasim.errors import ConfigError

pytestmark = pytest.mark.usefixtures("seed")

CONFIDENCE = 0.999
Z = float(stats.norm.isf((1 - CONFIDENCE) / 2))  # 3.29
#: A flat grid for flat block fading: 8 data REs per slot, no CP, no overhead worth the compute.
FLAT_GRID = GridConfig(num_ofdm_symbols=2, fft_size=8, cyclic_prefix_length=0,
                       pilot_ofdm_symbol_indices=(0,), pilot_subcarrier_spacing=1)
#: The default numerology (76 subcarriers at 15 kHz, same CP) with one data symbol: a static TDL
#: channel is identical on all OFDM symbols, so this keeps the frequency selectivity per slot.
ONE_SYMBOL_GRID = GridConfig(num_ofdm_symbols=2, pilot_ofdm_symbol_indices=(0,))


# --------------------------------------------------------------------------------------------------
# closed forms and intervals


def qfunc(x: float) -> float:
    return float(stats.norm.sf(x))


def ber_qpsk_awgn(esno_db: float) -> float:
    """Gray QPSK: each bit is BPSK with Eb = Es/2 -> Q(sqrt(2 Eb/N0)) = Q(sqrt(Es/N0))."""
    return qfunc(math.sqrt(10 ** (esno_db / 10)))


def ber_16qam_awgn(esno_db: float) -> float:
    """Gray 16-QAM, minimum-distance decisions: (3/4)Q(a) + (1/2)Q(3a) - (1/4)Q(5a), a = sqrt(Es/(5 N0))."""
    a = math.sqrt(10 ** (esno_db / 10) / 5)
    return 0.75 * qfunc(a) + 0.5 * qfunc(3 * a) - 0.25 * qfunc(5 * a)


def ber_16qam_awgn_by_class(esno_db: float) -> dict[str, float]:
    """Per bit class of Gray 4-PAM (levels +-1, +-3 in units of a): the sign bit errs when the noise
    crosses 0 (Q(a) from an inner, Q(3a) from an outer level); the magnitude bit errs when it crosses
    +-2 (Q(a) + Q(3a) from an inner level, Q(a) - Q(5a) from an outer one). Their mean is the total."""
    a = math.sqrt(10 ** (esno_db / 10) / 5)
    return {"sign": 0.5 * (qfunc(a) + qfunc(3 * a)),
            "magnitude": 0.5 * (2 * qfunc(a) + qfunc(3 * a) - qfunc(5 * a))}


def ber_qpsk_rayleigh(ebno: float) -> float:
    """Coherent Gray QPSK over Rayleigh fading, g = average Eb/N0: 0.5 (1 - sqrt(g / (1 + g)))."""
    g = 10 ** (ebno / 10)
    return 0.5 * (1 - math.sqrt(g / (1 + g)))


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact binomial interval for k successes in n independent trials."""
    alpha = 1 - confidence
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def cluster_interval(errors: torch.Tensor) -> tuple[float, float, float]:
    """Rate and interval from ``errors`` ``[units, bits_per_unit]`` (bool/0-1) when the bits within a
    unit are dependent but units are i.i.d.: CLT on the per-unit error fractions."""
    frac = errors.double().mean(dim=1)
    mean = float(frac.mean())
    se = float(frac.std()) / math.sqrt(frac.numel())
    return mean, mean - Z * se, mean + Z * se


def hard_demapper(num_bits_per_symbol: int):
    """Minimum-distance hard decisions (max-log sign = nearest point) with Sionna's Gray QAM."""
    from sionna.phy.mapping import Demapper

    return Demapper("maxlog", "qam", num_bits_per_symbol, hard_out=True)


# --------------------------------------------------------------------------------------------------
# BER over AWGN


@pytest.mark.parametrize("snr_db", [0.0, 4.0, 7.0, 9.0])
def test_qpsk_awgn_ber_matches_closed_form(snr_db, qam_symbols):
    bits, x = qam_symbols(16, 2 ** 16, 2)                      # 2.1 M bits
    y, no_eff = OFDMLink(csi="perfect")(x, Condition(snr_db=snr_db, tdl_profile="awgn"))
    errors = int((hard_demapper(2)(y, no_eff) != bits).sum())
    lo, hi = clopper_pearson(errors, bits.numel())
    theory = ber_qpsk_awgn(snr_db)
    assert lo <= theory <= hi, f"Es/N0={snr_db} dB: theory {theory:.4g} outside [{lo:.4g}, {hi:.4g}]"
    # the test has teeth: an SNR error of 0.1 dB would be caught at every point
    for offset in (-0.1, 0.1):
        assert not lo <= ber_qpsk_awgn(snr_db + offset) <= hi


def _16qam_bit_classes() -> dict[str, list[int]]:
    """Bit positions of Sionna's 16-QAM label that decide a sign / a magnitude, found from the mapper
    itself; also checks the Gray property the closed form relies on."""
    from sionna.phy.mapping import Mapper

    labels = torch.tensor([[(i >> (3 - b)) & 1 for b in range(4)] for i in range(16)], dtype=torch.float32)
    points = Mapper("qam", 4)(labels.reshape(1, -1)).reshape(16).numpy()
    dist = np.abs(points[:, None] - points[None, :])
    dmin = dist[dist > 1e-6].min()
    neighbours = np.argwhere(np.abs(dist - dmin) < 1e-4)
    hamming = (labels[neighbours[:, 0]] != labels[neighbours[:, 1]]).sum(dim=1)
    assert torch.all(hamming == 1), "16-QAM labelling is not Gray"
    classes: dict[str, list[int]] = {"sign": [], "magnitude": []}
    for b in range(4):
        on = labels[:, b].numpy().astype(bool)
        decides_sign = any(np.all(np.sign(part(points[on])) == np.sign(part(points[on][0]))) and
                           np.all(np.sign(part(points[~on])) == -np.sign(part(points[on][0])))
                           for part in (np.real, np.imag))
        classes["sign" if decides_sign else "magnitude"].append(b)
    assert len(classes["sign"]) == len(classes["magnitude"]) == 2
    return classes


@pytest.mark.parametrize("snr_db", [6.0, 10.0, 13.0, 15.0])
def test_16qam_awgn_ber_matches_closed_form(snr_db, qam_symbols):
    bits, x = qam_symbols(8, 2 ** 17, 4)                       # 1 M symbols, 4.2 M bits
    y, no_eff = OFDMLink(csi="perfect")(x, Condition(snr_db=snr_db, tdl_profile="awgn"))
    err = (hard_demapper(4)(y, no_eff) != bits).reshape(-1, 4)  # [symbols, 4]
    # each bit class (one position on I plus one on Q) is i.i.d. over symbols: exact interval
    for name, positions in _16qam_bit_classes().items():
        cls = err[:, positions]
        lo, hi = clopper_pearson(int(cls.sum()), cls.numel())
        theory = ber_16qam_awgn_by_class(snr_db)[name]
        assert lo <= theory <= hi, f"{name} bits at {snr_db} dB: {theory:.4g} outside [{lo:.4g}, {hi:.4g}]"
    # the total, with the symbol as the independent unit
    _, lo, hi = cluster_interval(err)
    theory = ber_16qam_awgn(snr_db)
    assert lo <= theory <= hi, f"Es/N0={snr_db} dB: theory {theory:.4g} outside [{lo:.4g}, {hi:.4g}]"
    for offset in (-0.1, 0.1):
        assert not lo <= ber_16qam_awgn(snr_db + offset) <= hi


# --------------------------------------------------------------------------------------------------
# BER over fading, perfect CSI


def _qpsk_ber_over(link: OFDMLink, cond: Condition, slots: int, qam_symbols) -> tuple[float, float, float]:
    """Uncoded QPSK through ``link``; one row = one slot = one independent channel realisation."""
    bits, x = qam_symbols(slots, link.symbols_per_slot, 2)
    y, no_eff = link(x, cond)
    return cluster_interval(hard_demapper(2)(y, no_eff) != bits)


@pytest.mark.parametrize("ebno", [0.0, 5.0, 10.0, 20.0])
def test_flat_rayleigh_qpsk_ber_matches_closed_form(ebno, qam_symbols):
    link = OFDMLink(FLAT_GRID, csi="perfect")
    cond = Condition(snr_db=ebno + 10 * math.log10(2), tdl_profile="rayleigh")  # Es = 2 Eb
    ber, lo, hi = _qpsk_ber_over(link, cond, 150_000, qam_symbols)
    theory = ber_qpsk_rayleigh(ebno)
    assert lo <= theory <= hi, f"Eb/N0={ebno} dB: theory {theory:.4g}, got {ber:.4g} in [{lo:.4g}, {hi:.4g}]"
    assert (hi - lo) / theory < 0.2          # 150 k independent fades: tight enough to mean something


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["A", "B", "C"])
def test_tdl_per_subcarrier_is_rayleigh_for_nlos_profiles(profile, qam_symbols):
    """NLoS TDL: H[k] = sum_l a_l exp(-j 2 pi f_k tau_l) with independent zero-mean taps of total power
    1, hence CN(0, 1) on every subcarrier: the uncoded BER is the flat-Rayleigh one."""
    link = OFDMLink(ONE_SYMBOL_GRID, csi="perfect")
    for ebno in (0.0, 10.0, 20.0):
        cond = Condition(snr_db=ebno + 10 * math.log10(2), tdl_profile=profile, delay_spread_ns=300)
        ber, lo, hi = _qpsk_ber_over(link, cond, 8_000, qam_symbols)
        theory = ber_qpsk_rayleigh(ebno)
        assert lo <= theory <= hi, f"TDL-{profile} Eb/N0={ebno}: theory {theory:.4g}, got {ber:.4g} [{lo:.4g}, {hi:.4g}]"


@pytest.mark.slow
def test_tdl_rayleigh_ber_on_the_default_grid(qam_symbols):
    link = OFDMLink(GridConfig(), csi="perfect")
    cond = Condition(snr_db=10 + 10 * math.log10(2), tdl_profile="C", delay_spread_ns=1000)
    ber, lo, hi = _qpsk_ber_over(link, cond, 2500, qam_symbols)
    theory = ber_qpsk_rayleigh(10.0)
    assert lo <= theory <= hi, f"theory {theory:.4g}, got {ber:.4g} in [{lo:.4g}, {hi:.4g}]"


# --------------------------------------------------------------------------------------------------
# Power-delay profiles

#: TR 38.901 V19.2 Table 7.7.2-3 (TDL-C), typed from the specification: normalised delay, power [dB].
TR38901_TDL_C = np.array([
    (0.0, -4.4), (0.2099, -1.2), (0.2219, -3.5), (0.2329, -5.2), (0.2176, -2.5), (0.6366, 0.0),
    (0.6448, -2.2), (0.6560, -3.9), (0.6584, -7.4), (0.7935, -7.1), (0.8213, -10.7), (0.9336, -11.1),
    (1.2285, -5.1), (1.3083, -6.8), (2.1704, -8.7), (2.7105, -13.2), (4.2589, -13.9), (4.6003, -13.9),
    (5.4902, -15.8), (5.6077, -17.1), (6.3065, -16.0), (6.6374, -15.7), (7.0427, -21.6), (8.6523, -22.8)])


@pytest.mark.parametrize("profile", SCALABLE_TDL_PROFILES)
@pytest.mark.parametrize("delay_spread_ns", [10.0, 100.0, 300.0, 1000.0, 3000.0])
def test_pdp_rms_delay_spread_is_the_configured_one(profile, delay_spread_ns):
    pdp = power_delay_profile(Condition(snr_db=0, delay_spread_ns=delay_spread_ns, tdl_profile=profile))
    assert pdp.powers.sum() == pytest.approx(1.0, abs=1e-9)
    assert pdp.rms_delay_spread_s == pytest.approx(delay_spread_ns * 1e-9, rel=0.01)


@pytest.mark.parametrize("profile", list(FIXED_TDL_PROFILES))
def test_fixed_profiles_report_their_own_delay_spread(profile):
    own_ns = {"A10": 10, "A30": 30, "B100": 100, "C60": 60, "C300": 300, "D10": 10, "D30": 30}[profile]
    cond = Condition(snr_db=0, tdl_profile=profile, delay_spread_ns=123.0)   # the user's value is overridden
    assert cond.delay_spread_ns == own_ns
    assert power_delay_profile(cond).rms_delay_spread_s == pytest.approx(own_ns * 1e-9, rel=0.01)


def test_tdl_c_pdp_is_the_tr38901_table():
    pdp = power_delay_profile(Condition(snr_db=0, delay_spread_ns=300, tdl_profile="C"))
    table_p = 10 ** (TR38901_TDL_C[:, 1] / 10)
    np.testing.assert_allclose(pdp.delays_s, TR38901_TDL_C[:, 0] * 300e-9, rtol=1e-5, atol=1e-15)
    np.testing.assert_allclose(pdp.powers, table_p / table_p.sum(), rtol=1e-5)


def _rms_and_se(delays: np.ndarray, samples: np.ndarray) -> tuple[float, float]:
    """RMS delay spread of the empirical PDP (mean of ``samples`` ``[realisations, taps]`` = |a_l|^2)
    and its standard error by the delta method (taps independent, per-tap variance from the sample)."""
    n = samples.shape[0]
    p = samples.mean(axis=0)

    def rms(power: np.ndarray) -> float:
        w = power / power.sum()
        m1 = np.sum(w * delays)
        return math.sqrt(max(np.sum(w * delays ** 2) - m1 ** 2, 0.0))

    value = rms(p)
    eps = 1e-6 * p.sum()
    grad = np.array([(rms(p + eps * np.eye(len(p))[i]) - value) / eps for i in range(len(p))])
    var_p = samples.var(axis=0, ddof=1) / n
    return value, math.sqrt(float(np.sum(grad ** 2 * var_p)))


@pytest.mark.parametrize("profile,delay_spread_ns", [("A", 300.0), ("B", 100.0), ("C", 300.0), ("C", 1000.0),
                                                     ("D", 300.0), ("E", 30.0), ("C300", 300.0),
                                                     ("D30", 30.0)])
def test_empirical_pdp_of_sionna_realisations(profile, delay_spread_ns):
    """Average |a_l|^2 per tap over many realisations of the very model the link builds.

    Tolerance: the tabulated profile's own deviation from the nominal value (<= 1 %, tested above)
    plus 5 standard errors of the estimated RMS (delta method on the per-tap sample means, with the
    per-tap variance taken from the sample: ~p_l^2 for a Rayleigh tap, less for the Rician LoS tap).
    With 40 000 realisations the statistical part is ~0.5 % of the delay spread.
    """
    cond = Condition(snr_db=0, delay_spread_ns=delay_spread_ns, tdl_profile=profile)
    model = channel_model(cond, 3.5e9, device="cpu")
    a, tau = model(40_000, 1, 1.0)
    samples = (a.abs() ** 2).reshape(40_000, -1).double().numpy()
    delays = tau[0].reshape(-1).double().numpy()
    pdp = power_delay_profile(cond)
    np.testing.assert_allclose(delays, pdp.delays_s, rtol=1e-6)
    rms, se = _rms_and_se(delays, samples)
    assert abs(rms - pdp.rms_delay_spread_s) <= 5 * se, f"{rms * 1e9:.1f} ns vs {pdp.rms_delay_spread_s * 1e9:.1f} ns"
    assert abs(rms - delay_spread_ns * 1e-9) <= 0.01 * delay_spread_ns * 1e-9 + 5 * se
    assert 5 * se < 0.01 * delay_spread_ns * 1e-9          # the statistical check is sharper than 1 %
    # and each tap's mean power is the tabulated one (5 sigma per tap, 24 taps at most)
    per_tap_se = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    assert np.all(np.abs(samples.mean(axis=0) - pdp.powers) <= 5 * per_tap_se)


# --------------------------------------------------------------------------------------------------
# Channel power normalisation


@pytest.mark.parametrize("profile", ["A", "B", "C", "D", "E", "C300", "rayleigh"])
def test_average_channel_power_is_one(profile):
    """E|H[k]|^2 = 1 on every subcarrier.

    Tolerance: for any of these channels Var|H[k]|^2 <= 1 (exactly 1 for Rayleigh, 1 - 1/20 for a
    20-sinusoid tap, 1 - K^2/(1+K)^2 for Rician), so a mean over N independent realisations has a
    standard error <= 1/sqrt(N); we allow 5/sqrt(N) (per subcarrier and for the grid average).
    """
    link = OFDMLink(ONE_SYMBOL_GRID, csi="perfect")
    channel = link.blocks_for(Condition(snr_db=0, delay_spread_ns=300, tdl_profile=profile)).channel
    n, chunk = 12_000, 4_000
    power = torch.cat([channel.generate(chunk)[:, 0, 0, 0, 0, 0, :].abs() ** 2 for _ in range(n // chunk)])
    tol = 5 / math.sqrt(n)
    per_subcarrier = power.double().mean(dim=0)
    assert torch.all((per_subcarrier - 1).abs() < tol), per_subcarrier
    assert float(power.double().mean()) == pytest.approx(1.0, abs=tol)


# --------------------------------------------------------------------------------------------------
# Post-equalisation noise variance


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 30.0])
def test_awgn_no_eff_is_n0(snr_db, qam_symbols):
    _, x = qam_symbols(4, 50_000)
    y, no_eff = OFDMLink(csi="ls")(x, Condition(snr_db=snr_db, tdl_profile="awgn"))
    n0 = 10 ** (-snr_db / 10)
    torch.testing.assert_close(no_eff, torch.full_like(no_eff, n0), rtol=1e-6, atol=0)
    # |y - x|^2 / N0 is Exp(1): mean 1, standard error 1/sqrt(n)
    ratio = float(((y - x).abs() ** 2).double().mean()) / n0
    assert ratio == pytest.approx(1.0, abs=5 / math.sqrt(x.numel()))


def _error_vs_no_eff(link: OFDMLink, cond: Condition, slots: int, qam_symbols):
    _, x = qam_symbols(slots, link.symbols_per_slot)
    y, no_eff = link(x, cond)
    return ((y - x).abs() ** 2).double(), no_eff.double()


@pytest.mark.parametrize("profile", ["C", "D"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0, 60.0, 90.0])
def test_perfect_csi_no_eff_is_honest(profile, snr_db, qam_symbols):
    """With perfect CSI, y = x + n/h exactly, so given the channel |y - x|^2 is exponential with mean
    no_eff = N0/|h|^2 and variance no_eff^2: sum(e) - sum(no_eff) has standard deviation
    sqrt(sum(no_eff^2)). This conditional test is valid despite E[1/|h|^2] being infinite.
    60 and 90 dB guard against float32 cancellation in no_eff (it once came out quantised, or 0)."""
    link = OFDMLink(csi="perfect")
    e, no_eff = _error_vs_no_eff(link, Condition(snr_db=snr_db, delay_spread_ns=300, tdl_profile=profile),
                                 200, qam_symbols)
    n = e.numel()
    tol = 5 * float((no_eff ** 2).sum().sqrt()) / n          # 5 conditional standard deviations
    assert abs(float(e.mean()) - float(no_eff.mean())) < tol, (float(e.mean()), float(no_eff.mean()), tol)
    # the same, symbol by symbol: e / no_eff is Exp(1)
    assert float((e / no_eff).mean()) == pytest.approx(1.0, abs=5 / math.sqrt(n))


@pytest.mark.slow
def test_lmmse_no_eff_is_honest(qam_symbols):
    """Estimated CSI: e/no_eff should still average 1 (the LMMSE equaliser treats the estimation error
    as extra noise). Errors of one slot share the channel estimate, so the slot is the unit (5 SE);
    2 % is allowed for Sionna's approximation (diagonal error covariance between passes)."""
    link = OFDMLink(csi="lmmse")
    e, no_eff = _error_vs_no_eff(link, Condition(snr_db=10, delay_spread_ns=300, tdl_profile="C"), 30, qam_symbols)
    per_slot = (e / no_eff).mean(dim=1)
    se = float(per_slot.std()) / math.sqrt(per_slot.numel())
    assert abs(float(per_slot.mean()) - 1) < 5 * se + 0.02


def test_ls_no_eff_is_never_optimistic(qam_symbols):
    """Sionna's LS error variance is that of a pilot RE (N0/|p|^2), carried unchanged to interpolated
    REs whose linear interpolation averages two pilots' noise: no_eff is pessimistic by ~10 %. It must
    not be optimistic (a soft decoder would be over-confident) nor grossly pessimistic."""
    link = OFDMLink(csi="ls")
    e, no_eff = _error_vs_no_eff(link, Condition(snr_db=10, delay_spread_ns=300, tdl_profile="C"), 300, qam_symbols)
    per_slot = (e / no_eff).mean(dim=1)
    mean, se = float(per_slot.mean()), float(per_slot.std()) / math.sqrt(per_slot.numel())
    assert 0.8 < mean < 1 + 5 * se, f"E[e/no_eff] = {mean:.3f} +- {se:.3f}"


def test_lmmse_estimation_beats_ls_at_low_snr(qam_symbols):
    """Channel-estimate MSE at 0 dB on TDL-C 300 ns, both estimators on the *same* received grids."""
    cond = Condition(snr_db=0, delay_spread_ns=300, tdl_profile="C")
    ls, lmmse = OFDMLink(csi="ls"), OFDMLink(csi="lmmse")
    slots = 16
    _, x = qam_symbols(slots, ls.symbols_per_slot)
    no = torch.tensor(1.0)
    y, h = ls.blocks_for(cond).channel(ls.mapper(x.reshape(slots, 1, 1, -1)), no)
    h = ls.remove_nulls(h)
    mse = {}
    for name, link in (("ls", ls), ("lmmse", lmmse)):
        h_hat, _ = link.blocks_for(cond).estimator(y, no)
        mse[name] = float(((h_hat - h.reshape(h_hat.shape)).abs() ** 2).mean())
    assert mse["lmmse"] < 0.5 * mse["ls"], mse
    assert mse["ls"] < 1.0, mse                      # and LS itself beats not estimating (E|h|^2 = 1)


# --------------------------------------------------------------------------------------------------
# Physical sanity checks of the configuration


@pytest.mark.parametrize("csi", ["ls", "lmmse"])
def test_too_sparse_pilot_comb_is_rejected(csi):
    grid = GridConfig(subcarrier_spacing_hz=60e3, pilot_subcarrier_spacing=4)
    link = OFDMLink(grid, csi=csi)
    x = torch.ones(1, 16, dtype=torch.complex64)
    with pytest.raises(ConfigError, match=r"ofdm\.pilot_subcarrier_spacing") as err:
        link(x, Condition(snr_db=10, delay_spread_ns=1000, tdl_profile="C"))
    assert err.value.field == "ofdm.pilot_subcarrier_spacing"


def test_short_cyclic_prefix_warns_with_the_reason():
    link = OFDMLink(GridConfig(cyclic_prefix_length=2), csi="perfect")
    with pytest.warns(PhysicsWarning, match="after the cyclic prefix") as rec:
        link(torch.ones(1, 16, dtype=torch.complex64), Condition(snr_db=10, delay_spread_ns=1000, tdl_profile="C"))
    assert any("cyclic_prefix_length" in str(w.message) for w in rec)


@pytest.mark.parametrize("csi", ["perfect", "ls", "lmmse"])
def test_default_grid_copes_with_tdl_c_1000ns(csi):
    link = OFDMLink(GridConfig(), csi=csi)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y, _ = link(torch.ones(2, 100, dtype=torch.complex64),
                    Condition(snr_db=10, delay_spread_ns=1000, tdl_profile="C"))
    assert not [w for w in rec if not issubclass(w.category, DeprecationWarning)], [str(w.message) for w in rec]
    assert torch.isfinite(y).all()


# --------------------------------------------------------------------------------------------------
# Eb/N0


@pytest.mark.parametrize("grid,energy,cp_factor", [
    # default: 12 data symbols x 76 REs = 912; 2 pilot symbols x 38 pilots x |sqrt 2|^2 = 152; CP 8 of 76
    (GridConfig(), 912 + 152, 84 / 76),
    # guards (4, 3) + DC: 56 REs; comb 4 -> 14 pilots x 4 = 56 per pilot symbol; 3 pilot symbols
    (GridConfig(fft_size=64, num_guard_carriers=(4, 3), dc_null=True, pilot_subcarrier_spacing=4,
                cyclic_prefix_length=16, pilot_ofdm_symbol_indices=(2, 7, 11)), 11 * 56 + 3 * 56, 80 / 64),
    # 75 effective REs and a comb of 2: 38 pilots x 2 = 76 per pilot symbol (one more than the REs)
    (GridConfig(dc_null=True), 12 * 75 + 2 * 76, 84 / 76),
])
def test_ebno_adds_exactly_the_overhead(grid, energy, cp_factor, qam_symbols):
    data = grid.num_data_symbols
    overhead = energy * cp_factor / data
    for bits, rate in ((2, 1.0), (4, 0.5), (6, 0.75)):
        assert ebno_db(7.0, bits, rate, grid) - 7.0 == pytest.approx(10 * math.log10(overhead / (bits * rate)), abs=1e-12)
        assert snr_db_from_ebno_db(ebno_db(7.0, bits, rate, grid), bits, rate, grid) == pytest.approx(7.0, abs=1e-12)
    assert ebno_db(7.0, 2, 1.0, None) == pytest.approx(7.0 - 10 * math.log10(2), abs=1e-12)
    # the hand count is the energy the link really transmits per slot (unit-modulus QPSK data)
    link = OFDMLink(grid, csi="ls")
    _, x = qam_symbols(3, data)
    sent = link.mapper(x.reshape(3, 1, 1, data))
    torch.testing.assert_close((sent.abs() ** 2).sum(dim=(-1, -2)).double(),
                               torch.full((3, 1, 1), float(energy), dtype=torch.float64), rtol=1e-5, atol=0)
