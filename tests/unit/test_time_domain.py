"""The time-domain OFDM link against theory: equal to the frequency domain where the CP covers the channel,
ISI beyond the CP and ICI at speed as the PDP and the Jakes spectrum predict, honest noise variances."""

import math
import warnings

import numpy as np
import pytest
import sionna.phy
import torch

from dekasim.channels import GridConfig, OFDMLink, PhysicsWarning, resolve_domain
from dekasim.channels.profiles import (channel_model, discrete_time_profile, jakes_coherence, power_delay_profile,
                                       predict_interference)
from dekasim.channels.time_domain import TimeDomainOFDM
from dekasim.conditions import Condition
from dekasim.errors import ConfigError

COMB1 = GridConfig(pilot_subcarrier_spacing=1)


@pytest.fixture(autouse=True)
def _seed():
    sionna.phy.config.seed = 7
    torch.manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhysicsWarning)
        yield


def _qpsk(batch: int, n: int):
    bits = torch.randint(0, 2, (batch, n, 2)).float()
    return bits, torch.complex(1 - 2 * bits[..., 0], 1 - 2 * bits[..., 1]) / math.sqrt(2)


def _ber_per_item(y: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    hard = torch.stack([(y.real < 0).float(), (y.imag < 0).float()], -1)
    return (hard != bits).float().mean((1, 2))


def _rayleigh_qpsk_ber(sinr_db: float) -> float:
    """Uncoded Gray QPSK on a Rayleigh-faded RE at average SINR ``sinr_db`` (Es over noise + interference)."""
    g = 10 ** (sinr_db / 10) / 2
    return 0.5 * (1 - math.sqrt(g / (1 + g)))


def _block(cond: Condition, grid: GridConfig = GridConfig()):
    """The time-domain block for ``cond``, the grid's mapper, and the PDP's prediction."""
    from sionna.phy.ofdm import ResourceGridMapper

    pred = predict_interference(cond, grid)
    block = TimeDomainOFDM(channel_model(cond, 3.5e9), grid, power_delay_profile(cond), pred.doppler_hz)
    assert block.timing_offset == pred.timing_offset
    return block, ResourceGridMapper(grid.build()), pred


def _data_mask(grid: GridConfig) -> torch.Tensor:
    mask = torch.ones(grid.num_ofdm_symbols, dtype=torch.bool)
    mask[list(grid.pilot_ofdm_symbol_indices)] = False
    return mask


@pytest.mark.parametrize("grid, ds, speed", [(GridConfig(), 3000, 0.0), (GridConfig(cyclic_prefix_length=1), 3000, 0.0),
                                             (GridConfig(), 30, 150.0), (GridConfig(), 1000, 100.0)])
def test_useful_channel_is_each_res_own_coefficient_and_the_rest_is_the_predicted_interference(grid, ds, speed):
    """Noise-free: the residual y - H X is uncorrelated with X (H is the exact coefficient), the genie's
    per-slot interference is its power, and over slots that power is the PDP's exact prediction."""
    cond = Condition(snr_db=30, delay_spread_ns=ds, tdl_profile="C", speed_mps=speed)
    block, mapper, pred = _block(cond, grid)
    _, x = _qpsk(128, grid.num_data_symbols)
    grid_x = mapper(x.reshape(128, 1, 1, -1))
    y, h, interference = block(grid_x, torch.tensor(0.0))
    residual = y - h.reshape(y.shape) * grid_x
    power = residual.abs().square().mean().item()
    assert abs((residual * grid_x.conj()).mean().item()) < 0.02 * math.sqrt(power)
    assert interference.shape == (128,) and interference.mean().item() == pytest.approx(power, rel=1e-4)
    assert power == pytest.approx(pred.interference, rel=0.15)
    assert h.abs().square().mean().item() == pytest.approx(pred.useful, rel=0.15)


def test_every_subcarrier_sees_the_same_average_channel():
    """Oversampling keeps the sinc pulse's band edge off the used subcarriers: the useful power per subcarrier
    is flat (at 1x sampling the edge subcarriers would get ~0.6 of it)."""
    cond = Condition(snr_db=30, delay_spread_ns=300, tdl_profile="C")
    block, mapper, _ = _block(cond)
    _, x = _qpsk(512, GridConfig().num_data_symbols)
    _, h, _ = block(mapper(x.reshape(512, 1, 1, -1)), torch.tensor(0.0))
    per_subcarrier = h.abs().square().mean((0, 1, 2, 3, 4, 5))
    assert per_subcarrier.min() > 0.85 * per_subcarrier.mean()
    assert per_subcarrier.max() < 1.15 * per_subcarrier.mean()


@pytest.mark.parametrize("csi", ["perfect", "ls"])
def test_time_and_frequency_domain_agree_where_the_cp_covers_the_channel(csi):
    """TDL-C 100 ns, no speed: uncoded QPSK BER equal within Monte-Carlo error (slot-level standard errors)."""
    freq, time_ = OFDMLink(COMB1, csi=csi), OFDMLink(COMB1, csi=csi, domain="time")
    for snr in (5.0, 10.0):
        cond = Condition(snr_db=snr, delay_spread_ns=100, tdl_profile="C")
        bits, x = _qpsk(384, COMB1.num_data_symbols)
        bf = _ber_per_item(freq(x, cond)[0], bits)
        bt = _ber_per_item(time_(x, cond)[0], bits)
        se = math.sqrt(bf.var().item() / len(bf) + bt.var().item() / len(bt))
        assert abs(bf.mean().item() - bt.mean().item()) < 3.5 * se, (snr, bf.mean(), bt.mean(), se)
        if csi == "perfect":  # both are the Rayleigh closed form
            assert bt.mean().item() == pytest.approx(_rayleigh_qpsk_ber(snr), abs=3.5 * bt.std().item() / len(bt) ** .5)


@pytest.mark.parametrize("grid, ds", [(GridConfig(), 3000), (GridConfig(cyclic_prefix_length=1), 3000),
                                      (GridConfig(cyclic_prefix_length=0), 1000)])
@pytest.mark.parametrize("snr_db", [15.0, 30.0])
def test_sinr_with_taps_beyond_the_cp_matches_the_pdp_prediction(grid, ds, snr_db):
    """Measured post-equalisation SINR (useful power over residual power, perfect-CSI one-tap receiver)
    within 0.5 dB of the prediction from the PDP (energy after the CP as ISI + ICI)."""
    cond = Condition(snr_db=snr_db, delay_spread_ns=ds, tdl_profile="C")
    block, mapper, pred = _block(cond, grid)
    assert pred.interference > 0.005  # the case the frequency domain gets wrong
    _, x = _qpsk(128, grid.num_data_symbols)
    grid_x = mapper(x.reshape(128, 1, 1, -1))
    no = 10 ** (-snr_db / 10)
    y, h, _ = block(grid_x, torch.tensor(no, dtype=torch.float32))
    m = _data_mask(grid)
    h = h.reshape(y.shape)
    measured = 10 * math.log10(h[..., m, :].abs().square().mean().item()
                               / (y - h * grid_x)[..., m, :].abs().square().mean().item())
    assert measured == pytest.approx(pred.sinr_db(snr_db), abs=0.5)
    assert pred.sinr_db(snr_db) < snr_db - 0.5  # and the interference is visible


@pytest.mark.parametrize("normalised_doppler", [0.05, 0.1, 0.2])
def test_ici_power_matches_the_jakes_closed_form(normalised_doppler):
    """TDL-C 30 ns (inside the CP) at speed: the ICI power share equals 1 - (1/N^2) sum (N-|m|) J0(2 pi f_d T m/N)
    within 0.5 dB, and for small f_d T the approximation (pi f_d T)^2 / 6."""
    grid = GridConfig()
    doppler = normalised_doppler * grid.subcarrier_spacing_hz
    speed = doppler * 299_792_458.0 / 3.5e9
    cond = Condition(snr_db=30, delay_spread_ns=30, tdl_profile="C", speed_mps=speed)
    block, mapper, pred = _block(cond, grid)
    _, x = _qpsk(384, grid.num_data_symbols)  # the ICI of one slot depends on its sinusoids' angles
    grid_x = mapper(x.reshape(384, 1, 1, -1))
    y, h, _ = block(grid_x, torch.tensor(0.0))
    h = h.reshape(y.shape)
    ici = (y - h * grid_x).abs().square().mean().item()
    share = ici / (ici + h.abs().square().mean().item())
    jakes = 1 - jakes_coherence(doppler, grid)
    isi_floor = predict_interference(Condition(snr_db=30, delay_spread_ns=30, tdl_profile="C"), grid).fraction
    assert 10 * math.log10(share) == pytest.approx(10 * math.log10(jakes + isi_floor), abs=0.5)
    if normalised_doppler <= 0.1:
        assert jakes == pytest.approx((math.pi * normalised_doppler) ** 2 / 6, rel=0.05)


def test_qpsk_ber_with_isi_lies_between_the_ideal_and_the_predicted_sinr_curve():
    """TDL-C 3000 ns, perfect CSI: above the no-ISI Rayleigh curve, at most the Rayleigh curve at the
    PDP-predicted SINR (interference treated as Gaussian noise), with an error floor at high SNR."""
    link = OFDMLink(COMB1, csi="perfect", domain="time")
    bers = []
    for snr in (20.0, 30.0):
        cond = Condition(snr_db=snr, delay_spread_ns=3000, tdl_profile="C")
        bits, x = _qpsk(256, COMB1.num_data_symbols)
        b = _ber_per_item(link(x, cond)[0], bits)
        mean, se = b.mean().item(), b.std().item() / math.sqrt(len(b))
        ideal = _rayleigh_qpsk_ber(snr)
        predicted = _rayleigh_qpsk_ber(predict_interference(cond, COMB1).sinr_db(snr))
        assert mean > ideal + 3 * se, (snr, mean, ideal)
        assert mean < predicted + 3 * se, (snr, mean, predicted)
        bers.append(mean)
    assert bers[1] > _rayleigh_qpsk_ber(30.0) * 5  # the floor: 10 dB more SNR barely helps


@pytest.mark.parametrize("csi, grid", [("perfect", COMB1), ("ls", COMB1), ("lmmse", COMB1),
                                       ("lmmse", GridConfig())])
def test_no_eff_includes_the_interference_the_receiver_cannot_remove(csi, grid):
    """At 30 dB and 3000 ns the error is ISI-dominated: E[|y - x|^2 / no_eff] stays near 1 (no_eff honest),
    where N0 alone would understate the error several times."""
    cond = Condition(snr_db=30, delay_spread_ns=3000, tdl_profile="C")
    link = OFDMLink(grid, csi=csi, domain="time")
    _, x = _qpsk(128, grid.num_data_symbols)
    y, no_eff = link(x, cond)
    err = (y - x).abs().square()
    ratio = (err / no_eff).mean().item()
    assert 0.7 < ratio < 1.4, ratio
    assert predict_interference(cond, grid).interference > 3 * 10 ** -3  # N0 alone would understate it 4x


def test_pilot_estimate_of_the_disturbance_tracks_the_known_one():
    """LS with a comb-1 grid (delay bins) and a comb-2 grid (pilot nulls) estimate N0 + ISI + ICI per slot
    within 15 % of the genie's value at 15 dB, averaged over slots; where ISI dominates (30 dB) they err
    high (the pilot sequence is the same in every slot, so its self-interference is not white), never low."""
    from sionna.phy.ofdm import ResourceGridMapper

    for grid, kind in ((COMB1, "pilot delay bins"), (GridConfig(), "pilot nulls")):
        link = OFDMLink(grid, csi="ls", domain="time")
        for snr, low, high in ((15.0, 0.85, 1.15), (30.0, 0.95, 1.5)):
            cond = Condition(snr_db=snr, delay_spread_ns=3000, tdl_profile="C")
            blocks = link.blocks_for(cond)
            assert blocks.interference_estimate == kind
            _, x = _qpsk(128, grid.num_data_symbols)
            grid_x = ResourceGridMapper(link.resource_grid)(x.reshape(128, 1, 1, -1))
            no = torch.tensor(10 ** (-snr / 10), dtype=torch.float32)
            y, _, interference = blocks.channel(grid_x, no)
            ratio = link._disturbance_from_pilots(y, blocks, no, cond).mean().item() / (no + interference).mean().item()
            assert low < ratio < high, (kind, snr, ratio)


@pytest.mark.parametrize("csi", ["perfect", "ls"])
def test_time_domain_link_is_differentiable_and_keeps_the_contract(csi):
    link = OFDMLink(COMB1, csi=csi, domain="time")
    x = (torch.randn(3, 1500, dtype=torch.complex64)).requires_grad_(True)
    cond = Condition(snr_db=10, delay_spread_ns=3000, tdl_profile="C", speed_mps=30)
    y, no_eff = link(x, cond)
    assert y.shape == x.shape and no_eff.shape == x.shape and no_eff.dtype == torch.float32
    assert torch.isfinite(y).all() and (no_eff > 0).all()
    (y.real.square().sum() + y.imag.sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_same_seed_same_time_domain_output():
    cond = Condition(snr_db=10, delay_spread_ns=300, tdl_profile="C", speed_mps=10)
    x = torch.randn(2, 900, dtype=torch.complex64)
    out = []
    for _ in range(2):
        sionna.phy.config.seed = 3
        out.append(OFDMLink(COMB1, csi="ls", domain="time")(x, cond))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_auto_domain_follows_the_physics_check():
    grid = GridConfig()
    c = lambda ds, v=0.0: Condition(snr_db=10, delay_spread_ns=ds, tdl_profile="C", speed_mps=v)  # noqa: E731
    assert resolve_domain("auto", c(3000), grid, 3.5e9) == "time"        # 4 % after the 7 us CP
    assert resolve_domain("auto", c(300), grid, 3.5e9) == "frequency"
    assert resolve_domain("auto", c(30, 150.0), grid, 3.5e9) == "time"    # f_d = 12 % of the spacing
    assert resolve_domain("auto", c(30, 30.0), grid, 3.5e9) == "frequency"
    assert resolve_domain("time", Condition(snr_db=10, tdl_profile="awgn"), grid, 3.5e9) == "frequency"
    # the Jakes threshold stated in the docs: ICI = 1 % near f_d T = 0.078
    assert 1 - jakes_coherence(0.078 * grid.subcarrier_spacing_hz, grid) == pytest.approx(0.01, rel=0.05)


def test_frequency_domain_warns_with_the_fix_and_time_domain_does_not():
    cond = Condition(snr_db=10, delay_spread_ns=3000, tdl_profile="C")
    x = torch.ones(1, 100, dtype=torch.complex64)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        OFDMLink(COMB1, csi="perfect")(x, cond)
        assert any("domain = 'time'" in str(w.message) for w in rec)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        link = OFDMLink(COMB1, csi="perfect", domain="time")
        link(x, cond)
        assert not [w for w in rec if "cyclic prefix" in str(w.message)]
    with pytest.raises(ConfigError, match="channel.domain"):
        OFDMLink(COMB1, domain="delay")


@pytest.mark.parametrize("ds", [300, 1000, 3000])
def test_discrete_time_profile_keeps_the_power_and_the_mean_delay(ds):
    """sum_l sinc^2(l - x) = 1 and sum_l l sinc^2(l - x) = x: the sampled taps keep each path's power and
    the PDP's mean delay (up to the truncated sinc tails)."""
    pdp = power_delay_profile(Condition(snr_db=0, delay_spread_ns=ds, tdl_profile="C"))
    rate = GridConfig().sample_rate_hz
    prof = discrete_time_profile(pdp, rate)
    assert prof.l_min == -6 and prof.l_max == math.ceil(pdp.max_delay_s * rate) + 6
    assert prof.powers.sum() == pytest.approx(1.0, abs=0.02)
    mean_delay_s = float(np.sum(pdp.powers * pdp.delays_s))
    assert np.sum(prof.powers * prof.lags) / rate == pytest.approx(mean_delay_s, abs=0.1 / rate)


@pytest.mark.parametrize("grid", [GridConfig(), GridConfig(num_guard_carriers=(3, 2), dc_null=True),
                                  GridConfig(fft_size=77, dc_null=True)])
def test_grid_effective_subcarriers_are_sionnas(grid):
    """The time-domain block and the ISI prediction take the used subcarriers from GridConfig, without
    building a Sionna grid: the same indices as Sionna's ResourceGrid."""
    np.testing.assert_array_equal(grid.effective_subcarrier_indices, grid.build().effective_subcarrier_ind)
