"""One rate-adaptive JSCC network for 1/24, 1/12 and 1/6: prefixes of importance-ordered symbols, unit power
and the declared channel uses per rate, conformance at each rate, the rate in CALA's gate, the frozen base."""

from __future__ import annotations

import shutil

import pytest
import torch

from dekasim import Condition
from dekasim.codecs import build_codec
from dekasim.codecs.conformance import check_codec
from dekasim.codecs.jscc import read_checkpoint
from dekasim.errors import ConfigError
from dekasim.training.jscc import TrainConfig, train

SHAPE = (48, 8, 8)
RATES = [1 / 24, 1 / 12, 1 / 6]
SYMBOLS = {1 / 24: 128, 1 / 12: 256, 1 / 6: 512}
TDL = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")


def _cfg(codec: str, **kw) -> TrainConfig:
    base = dict(codec=codec, steps=4, seed=3, batch=4, payload_shape=SHAPE, width=16, delay_spreads_ns=(300.0,),
                profiles=("C",), csi="perfect", train_photos=("chelsea",), warmup_steps=1, log_every=0,
                rates=tuple(RATES))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def generic_base(tmp_path_factory):
    """A tiny rate-adaptive jscc_generic trained 6 steps on natural-photo latents."""
    out = tmp_path_factory.mktemp("generic")
    return train(_cfg("jscc_generic", steps=6), out=out)


@pytest.mark.parametrize("ratio", RATES)
def test_each_rate_sends_its_prefix_at_unit_power(ratio):
    codec = build_codec("jscc_generic", SHAPE, ratio, checkpoint="none", rates=RATES, width=16)
    assert codec.n_channel_uses == SYMBOLS[ratio] and codec.arch.n_symbols == 512
    x = torch.rand(5, *SHAPE) * 2 - 1
    z = codec.encode(x, TDL)
    assert z.shape == (5, SYMBOLS[ratio])
    torch.testing.assert_close((z.abs() ** 2).mean(1), torch.ones(5))
    full = build_codec("jscc_generic", SHAPE, 1 / 6, checkpoint="none", rates=RATES, width=16).encode(x, TDL)
    # a prefix of the same importance-ordered symbols (each rescaled to unit power over what is sent)
    ratio_prefix = z / full[:, :SYMBOLS[ratio]]
    torch.testing.assert_close(ratio_prefix.abs(), ratio_prefix.abs()[:, :1].expand_as(ratio_prefix), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("ratio", RATES)
def test_conformance_at_each_rate(ratio):
    results = check_codec("jscc_generic", SHAPE, ratio, {"checkpoint": "none", "rates": RATES, "width": 16})
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]


@pytest.mark.parametrize("ratio", RATES)
def test_the_shipped_generic_jscc_passes_conformance_at_each_rate(ratio):
    results = check_codec("jscc_generic", SHAPE, ratio)
    assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]


def test_a_trained_rate_adaptive_checkpoint_serves_every_rate_and_no_other(generic_base):
    path = generic_base["paths"][-1]
    for ratio in RATES:
        codec = build_codec("jscc_generic", SHAPE, ratio, checkpoint=str(path))
        assert codec.n_channel_uses == SYMBOLS[ratio]
        results = check_codec("jscc_generic", SHAPE, ratio, {"checkpoint": str(path)})
        assert all(r.passed for r in results), [(r.name, r.detail) for r in results if not r.passed]
    with pytest.raises(ConfigError, match="serving"):
        build_codec("jscc_generic", SHAPE, 1 / 8, checkpoint=str(path))
    codec = build_codec("jscc_generic", SHAPE, 1 / 6, checkpoint=str(path))
    with pytest.raises(ConfigError, match="bandwidth_ratio"):
        codec.set_rate(1 / 3)


def test_the_gate_sees_the_rate_and_the_bank_leaves_the_base_bit_identical(generic_base, tmp_path):
    base_path = generic_base["paths"][-1]
    for suffix in (".json", ".safetensors"):
        shutil.copy(base_path.with_suffix(suffix), tmp_path / base_path.with_suffix(suffix).name)
    res = train(_cfg("cala", base=str(tmp_path / base_path.name), steps=6, num_adapters=4), out=tmp_path)
    cala = res["codec"]
    g = []
    for ratio in RATES:
        cala.set_rate(ratio)
        g.append(cala.gate_weights(TDL))
    assert not torch.allclose(g[0], g[1]) and not torch.allclose(g[1], g[2])
    _, base_tensors = read_checkpoint(base_path)
    for k, v in cala.net.state_dict().items():
        assert torch.equal(v, base_tensors[f"net.{k}"]), k
    loaded = build_codec("cala", SHAPE, 1 / 12, checkpoint=str(res["paths"][-1]))
    assert loaded.n_channel_uses == 256 and loaded.arch.rates == (128, 256, 512)


def test_full_finetune_starts_from_the_base(generic_base, tmp_path):
    base_path = generic_base["paths"][-1]
    res = train(_cfg("jscc_generic", base=str(base_path), steps=1, lr=1e-9), out=tmp_path)
    _, base_tensors = read_checkpoint(base_path)
    moved = max(float((v - base_tensors[f"net.{k}"]).abs().max()) for k, v in res["codec"].net.state_dict().items()
                if v.is_floating_point())
    assert moved < 1e-3  # one step at a tiny learning rate: still the base (fp16 storage aside)


def test_rates_options_are_checked():
    with pytest.raises(ConfigError, match="rates"):
        build_codec("jscc_generic", SHAPE, 1 / 6, checkpoint="none", rates=[1 / 24, 1 / 12])
    with pytest.raises(ConfigError, match="rates"):
        TrainConfig(codec="jscc", steps=1, payload_shape=SHAPE, rates=(1 / 6,))


def test_train_rates_draw_only_the_given_rates(generic_base, tmp_path, monkeypatch):
    """A per-rate specialist of a rate-adaptive network (--train-rates): the architecture keeps serving
    all three rates, but training sends only at the chosen one."""
    from dekasim.codecs.jscc import GenericJSCC

    seen: list[float] = []
    original = GenericJSCC.set_rate

    def record(self, ratio):
        seen.append(float(ratio))
        original(self, ratio)

    monkeypatch.setattr(GenericJSCC, "set_rate", record)
    res = train(_cfg("jscc_generic", base=str(generic_base["paths"][-1]), steps=5, train_rates=(1 / 12,)),
                out=tmp_path)
    assert seen[:5] == [1 / 12] * 5 and seen[5:] == [1 / 6]  # five steps, then back to its top rate to save
    assert res["codec"].arch.rates == (128, 256, 512)
    with pytest.raises(ConfigError, match="train_rates"):
        _cfg("jscc_generic", train_rates=(1 / 7,))
    with pytest.raises(ConfigError, match="train_rates"):
        _cfg("jscc_generic", rates=None, train_rates=(1 / 6,))


def test_a_partial_finetune_moves_only_the_named_layers(generic_base, tmp_path):
    """--train-layers: a fine-tune of the decoder only leaves every encoder tensor bit-identical and moves
    each decoder layer; a layer the network lacks is refused by name."""
    base_path = generic_base["paths"][-1]
    res = train(_cfg("jscc_generic", base=str(base_path), steps=3, lr=1e-2,
                     train_layers=("dec.inp", "dec.res1", "dec.res2", "dec.out")), out=tmp_path)
    _, base_tensors = read_checkpoint(base_path)
    _, tuned = read_checkpoint(res["paths"][-1])
    for name, value in tuned.items():
        if name.startswith("net.enc."):
            assert torch.equal(value, base_tensors[name]), name
        elif name.startswith("net.dec.") and name.endswith(".weight"):
            assert not torch.equal(value, base_tensors[name]), name
    with pytest.raises(ConfigError, match="train_layers.*dec.nope"):
        train(_cfg("jscc_generic", base=str(base_path), steps=1, train_layers=("dec.nope",)), out=tmp_path)
    with pytest.raises(ConfigError, match="train_layers"):
        _cfg("cala", base=str(base_path), train_layers=("dec.out",))
    with pytest.raises(ConfigError, match="base"):
        _cfg("jscc_generic", train_layers=("dec.out",))
