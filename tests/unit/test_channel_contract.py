"""The channel contract of DESIGN.md: ``link(x, cond) -> (y, no_eff)``.

``x`` is ``[batch, n]`` complex of unit average power, any ``n``; ``y`` and ``no_eff`` have the same
shape, are finite, keep the order of the symbols, and are differentiable with respect to ``x``; the
same seed gives the same output; bad inputs and bad conditions fail with a :class:`ConfigError`
that names the field.
"""

from __future__ import annotations

import math

import pytest
import sionna.phy
import torch

from dekasim import Condition
from dekasim.channels import CSI_MODES, GridConfig, OFDMLink
from dekasim.errors import ConfigError

pytestmark = pytest.mark.usefixtures("seed")

PER_SLOT = 912
CONDITIONS = {
    "awgn": Condition(snr_db=10, tdl_profile="awgn"),
    "rayleigh": Condition(snr_db=10, tdl_profile="rayleigh"),
    "C300ns": Condition(snr_db=10, delay_spread_ns=300, tdl_profile="C"),
    "D100ns-3mps": Condition(snr_db=10, delay_spread_ns=100, tdl_profile="D", speed_mps=3.0),
}


@pytest.fixture(scope="module")
def links() -> dict[str, OFDMLink]:
    """One link per CSI mode on the default grid, shared (they cache per-condition blocks)."""
    return {csi: OFDMLink(GridConfig(), csi=csi) for csi in CSI_MODES}


def test_default_grid_has_912_data_res_per_slot(links):
    assert GridConfig().num_data_symbols == PER_SLOT
    assert links["ls"].symbols_per_slot == PER_SLOT
    assert [links["ls"].num_slots(n) for n in (1, 911, 912, 913, 5000)] == [1, 1, 1, 2, 6]


@pytest.mark.parametrize("cond_name", list(CONDITIONS))
@pytest.mark.parametrize("csi", CSI_MODES)
@pytest.mark.parametrize("n", [1, 911, 912, 913, 5000])
def test_any_n_gives_the_same_shape_finite(n, csi, cond_name, links, qam_symbols):
    if csi == "lmmse" and n == 5000 and cond_name != "C300ns":
        pytest.skip("LMMSE is slow on CPU; one condition covers the multi-slot path")
    _, x = qam_symbols(2, n)
    assert float((x.abs() ** 2).mean()) == pytest.approx(1.0, rel=1e-5)  # unit power in (QPSK)
    y, no_eff = links[csi](x, CONDITIONS[cond_name])
    assert y.shape == x.shape and no_eff.shape == x.shape
    assert y.dtype == torch.complex64 and no_eff.dtype == torch.float32
    assert torch.isfinite(torch.view_as_real(y)).all() and torch.isfinite(no_eff).all()
    assert (no_eff > 0).all()


@pytest.mark.parametrize("n", [1, 911, 913, 5000])
def test_symbols_keep_their_order(n, links, qam_symbols):
    """At 60 dB with perfect CSI y = x + n/h: every symbol comes back in its own position, including
    across slot boundaries and after the padding of the last slot is removed."""
    _, x = qam_symbols(3, n)
    y, no_eff = links["perfect"](x, Condition(snr_db=60, delay_spread_ns=300, tdl_profile="C"))
    # error per symbol is ~sqrt(no_eff); deep fades are rare but allowed for
    err = (y - x).abs()
    assert float(err.median()) < 1e-2
    assert float((err ** 2 / no_eff).max()) < 50          # Exp(1) tail over < 16 k symbols


@pytest.mark.parametrize("csi", ["ls", "lmmse"])
def test_estimated_csi_keeps_symbol_order(csi, links, qam_symbols):
    _, x = qam_symbols(2, 1500)
    y, _ = links[csi](x, Condition(snr_db=40, delay_spread_ns=100, tdl_profile="B"))
    assert float((y - x).abs().median()) < 0.1


def test_no_hidden_power_normalisation(links, qam_symbols):
    """Noise is set by snr_db, not measured from the batch: scaling x scales y - noise, not the noise."""
    _, x = qam_symbols(4, 20_000)
    cond = Condition(snr_db=10, tdl_profile="awgn")
    n0 = 0.1
    for scale in (0.5, 2.0):
        y, no_eff = links["perfect"](scale * x, cond)
        noise_power = float(((y - scale * x).abs() ** 2).mean())
        assert noise_power == pytest.approx(n0, rel=5 / math.sqrt(x.numel()))
        assert torch.all(no_eff == torch.tensor(n0, dtype=torch.float32))


@pytest.mark.parametrize("csi", CSI_MODES)
@pytest.mark.parametrize("cond_name", ["C300ns", "rayleigh"])
def test_differentiable_end_to_end(csi, cond_name, links, qam_symbols):
    _, x0 = qam_symbols(2, 913)
    x = x0.clone().requires_grad_(True)
    y, no_eff = links[csi](x, CONDITIONS[cond_name])
    loss = ((y - x0).abs() ** 2).mean() + (y.real * torch.linspace(-1, 1, y.shape[-1])).mean()
    loss.backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(torch.view_as_real(x.grad)).all()
    assert float(x.grad.abs().max()) > 0


def test_awgn_is_differentiable(links):
    x = torch.ones(1, 10, dtype=torch.complex64, requires_grad=True)
    y, _ = links["ls"](x, CONDITIONS["awgn"])
    y.real.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("csi", CSI_MODES)
@pytest.mark.parametrize("cond_name", list(CONDITIONS))
def test_same_seed_same_output(csi, cond_name, qam_symbols):
    if csi == "lmmse" and cond_name != "C300ns":
        pytest.skip("one LMMSE case is enough")
    _, x = qam_symbols(2, 1000)                          # 2 slots, 824 padding symbols
    cond = CONDITIONS[cond_name]
    link = OFDMLink(csi=csi)
    sionna.phy.config.seed = 7
    y1, v1 = link(x, cond)
    sionna.phy.config.seed = 7
    y2, v2 = link(x, cond)                               # same link, blocks already built
    sionna.phy.config.seed = 7
    y3, v3 = OFDMLink(csi=csi)(x, cond)                  # a fresh link
    for y, v in ((y2, v2), (y3, v3)):
        assert torch.equal(y, y1) and torch.equal(v, v1)
    sionna.phy.config.seed = 8
    y4, _ = link(x, cond)
    assert not torch.equal(y4, y1)


@pytest.mark.parametrize("bad", [
    torch.ones(2, 10),                                   # real
    torch.ones(2, 10, dtype=torch.float64),              # real, double
    torch.ones(10, dtype=torch.complex64),               # rank 1
    torch.ones(2, 3, 10, dtype=torch.complex64),         # rank 3
    [[1 + 0j, 1 - 1j]],                                  # not a tensor
])
@pytest.mark.parametrize("cond_name", ["awgn", "C300ns"])
def test_bad_inputs_raise_config_error(bad, cond_name, links):
    with pytest.raises(ConfigError, match=r"^x = ") as err:
        links["ls"](bad, CONDITIONS[cond_name])
    assert err.value.field == "x"
    assert "complex" in str(err.value) and "[batch, n]" in str(err.value)


def test_delay_spread_in_seconds_is_caught():
    with pytest.raises(ConfigError) as err:
        Condition(delay_spread_ns=3e-7, tdl_profile="C", snr_db=0)
    msg = str(err.value)
    assert err.value.field == "delay_spread_ns" and "delay_spread_ns" in msg
    assert "nanosecond" in msg and "300" in msg            # suggests 300 ns


@pytest.mark.parametrize("value", [-300.0, -1e-7, 0.0, float("nan"), float("inf")])
def test_bad_delay_spread_raises(value):
    with pytest.raises(ConfigError) as err:
        Condition(delay_spread_ns=value, tdl_profile="C", snr_db=0)
    assert err.value.field == "delay_spread_ns" and "delay_spread_ns" in str(err.value)


@pytest.mark.parametrize("kwargs,field", [
    ({"csi": "mmse"}, "csi"),
    ({"carrier_frequency_hz": 3.5}, "carrier_frequency_hz"),
])
def test_bad_link_arguments(kwargs, field):
    with pytest.raises(ConfigError) as err:
        OFDMLink(**kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("csi", ["ls", "lmmse"])
def test_channel_estimate_reads_only_pilots_so_cutting_its_gradient_is_exact(csi, qam_symbols):
    """The estimator is fed a detached copy of the received grid: exact, because the estimate (hence
    no_eff) does not depend on the data symbols at all. Two different payloads on the same channel and
    noise draws must see the same no_eff, and the gradient still reaches x through the equaliser."""
    link = OFDMLink(GridConfig(pilot_subcarrier_spacing=1), csi=csi)
    cond = Condition(snr_db=5.0, delay_spread_ns=300.0, tdl_profile="C")
    _, x1 = qam_symbols(3, 700)
    _, x2 = qam_symbols(3, 700, num_bits_per_symbol=4)
    sionna.phy.config.seed = 41
    y1, no1 = link(x1, cond)
    sionna.phy.config.seed = 41
    y2, no2 = link(x2, cond)
    assert torch.equal(no1, no2) and not torch.equal(y1, y2)
    x = x1.clone().requires_grad_(True)
    y, _ = link(x, cond)
    (y.real.square().sum() + y.imag.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().mean() > 0.1
