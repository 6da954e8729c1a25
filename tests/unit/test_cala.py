"""CALA and the per-condition LoRA oracle: gate, frozen base, persistence, condition errors."""

from __future__ import annotations

import json

import pytest
import torch

from dekasim import Condition
from dekasim.codecs import Codec, build_codec
from dekasim.codecs.cala import CALACodec, LoRAOracleCodec
from dekasim.codecs.jscc import read_checkpoint
from dekasim.training.jscc import TrainConfig, train
from dekasim.errors import ConfigError

AWGN = Condition(snr_db=10.0, tdl_profile="awgn")
TDL = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")
SHAPE = (3, 16, 16)


def _cfg(codec: str, **kw) -> TrainConfig:
    base = dict(codec=codec, steps=4, seed=7, batch=4, payload_shape=SHAPE, width=16, delay_spreads_ns=(300.0,),
                profiles=("C",), csi="perfect", train_photos=("chelsea",), warmup_steps=1, log_every=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory):
    """A tiny jscc_mixed base (3 steps) and its manifest path."""
    out = tmp_path_factory.mktemp("base")
    res = train(_cfg("jscc_mixed", steps=3), out=out, command="python -m dekasim.training.jscc train (test)")
    return res["paths"][-1]


@pytest.fixture(scope="module")
def cala_trained(base_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("cala")
    base_file = base_ckpt.parent / base_ckpt.name
    import shutil

    for suffix in (".json", ".safetensors"):  # a checkpoint names its base by file name in its own directory
        shutil.copy(base_file.with_suffix(suffix), out / base_file.with_suffix(suffix).name)
    res = train(_cfg("cala", base=str(out / base_file.name), steps=4, delay_spreads_ns=(30.0, 3000.0)), out=out)
    return res


def _untrained_cala(**kw) -> CALACodec:
    return build_codec("cala", SHAPE, 1 / 6, checkpoint="none", width=16, **kw)  # type: ignore[return-value]


def test_gate_weights_sum_to_one_and_follow_the_condition():
    codec = _untrained_cala(num_adapters=8)
    conds = [TDL, TDL.replace(snr_db=0.0), TDL.replace(delay_spread_ns=3000.0), TDL.replace(tdl_profile="A"), AWGN]
    g = torch.cat([codec.gate_weights(c) for c in conds])
    assert g.shape == (5, 8) and (g >= 0).all()
    torch.testing.assert_close(g.sum(1), torch.ones(5))
    for i in range(1, 5):
        assert not torch.allclose(g[0], g[i]), conds[i]
    per_item = codec.gate_weights(TDL, torch.tensor([0.0, 10.0, 20.0]))
    torch.testing.assert_close(per_item[1], g[0])
    assert not torch.allclose(per_item[0], per_item[2])


@torch.no_grad()
def test_snr_anchored_gate_hands_the_bank_from_low_to_high_snr_adapters(tmp_path):
    """Adapter i is anchored at SNR c_i (0..20 dB): the gate's mean anchor rises with the SNR it is told,
    the weights still sum to one, the MLP still sees the delay spread, and the kind survives a checkpoint."""
    codec = _untrained_cala(num_adapters=6, gate="snr_anchored")
    snrs = torch.linspace(-5.0, 25.0, 31)
    g = codec.gate_weights(TDL, snrs)
    torch.testing.assert_close(g.sum(1), torch.ones(31))
    mean_anchor = g @ codec.bank.anchor_db
    assert (mean_anchor.diff() > 0).all() and mean_anchor[0] < 3 and mean_anchor[-1] > 17
    assert int(g[snrs == 0.0].argmax()) == 0 and int(g[snrs == 20.0].argmax()) == 5
    assert not torch.allclose(codec.gate_weights(TDL), codec.gate_weights(TDL.replace(delay_spread_ns=3000.0)))
    mlp = _untrained_cala(num_adapters=6, gate="mlp")
    assert float((mlp.gate_weights(TDL, snrs) @ mlp.bank.anchor_db).std()) < 0.5 * float(mean_anchor.std())
    codec.save(tmp_path)
    again = Codec.load(tmp_path)
    assert again.bank.gate_kind == "snr_anchored"
    torch.testing.assert_close(again.gate_weights(TDL, snrs), g)
    with pytest.raises(ConfigError, match="gate"):
        _untrained_cala(gate="softmax")


def test_a_fresh_bank_reproduces_its_base_exactly():
    """b_i start at zero: before training, CALA is its base network."""
    cala = _untrained_cala(init_seed=2)
    base = build_codec("jscc_mixed", SHAPE, 1 / 6, checkpoint="none", width=16, init_seed=2)
    img = torch.rand(3, *SHAPE)
    torch.testing.assert_close(cala.encode(img, TDL), base.encode(img, TDL))
    y = cala.encode(img, TDL)
    no = torch.full(y.shape, 0.05)
    torch.testing.assert_close(cala.decode(y, no, TDL).payload, base.decode(y, no, TDL).payload)


def test_training_cala_leaves_the_base_bit_identical(base_ckpt, cala_trained):
    _, base_tensors = read_checkpoint(base_ckpt)
    codec = cala_trained["codec"]
    for k, v in codec.net.state_dict().items():
        assert torch.equal(v, base_tensors[f"net.{k}"]), k
    assert all(not p.requires_grad for p in codec.net.parameters())
    assert any(p.abs().sum() > 0 for p in codec.bank.b.values())  # the bank did move


def test_cala_checkpoint_round_trip(cala_trained):
    path = [p for p in cala_trained["paths"] if p.name.startswith("cala-")][0]
    m = json.loads(path.read_text())
    assert m["base"]["file"].startswith("jscc_mixed-") and set(m["cala"]) == {"layers", "num_adapters", "gate_hidden", "gate"}
    loaded = build_codec("cala", SHAPE, 1 / 6, checkpoint=str(path))
    trained = cala_trained["codec"]
    img = torch.rand(2, *SHAPE)
    a = trained.encode(img, TDL)
    b = loaded.encode(img, TDL)
    torch.testing.assert_close(a, b, atol=2e-3, rtol=0)  # fp16 storage of the bank and gate
    with pytest.raises(ConfigError, match="num_adapters"):
        build_codec("cala", SHAPE, 1 / 6, checkpoint=str(path), num_adapters=4)
    # a base changed after the bank was trained is refused
    base_json = path.parent / m["base"]["file"].replace(".safetensors", ".json")
    bm = json.loads(base_json.read_text())
    saved = base_json.read_text()
    try:
        bm["sha256"] = "0" * 64
        base_json.write_text(json.dumps(bm))
        with pytest.raises(ConfigError):
            build_codec("cala", SHAPE, 1 / 6, checkpoint=str(path))
    finally:
        base_json.write_text(saved)


def test_codec_save_load_round_trip_with_options(tmp_path):
    codec = _untrained_cala(num_adapters=4, condition_error_db=2.0)
    codec.save(tmp_path)
    again = Codec.load(tmp_path)
    assert isinstance(again, CALACodec) and again.config() == codec.config()
    assert again.bank.num_adapters == 4 and again.condition_error_db == 2.0
    for k, v in codec.tensors().items():
        assert torch.equal(again.tensors()[k], v)


def test_condition_error_draws_per_item_and_both_ends_share_it():
    codec = _untrained_cala(condition_error_db=3.0)
    with torch.no_grad():
        for p in codec.bank.b.values():
            p.normal_()
    img = torch.rand(4, *SHAPE)
    torch.manual_seed(0)
    x = codec.encode(img, TDL)
    err = codec._snr_error.clone()
    assert err.shape == (4,) and err.std() > 0
    out = codec.decode(x, torch.full(x.shape, 0.1), TDL).payload
    assert torch.isfinite(out).all()
    exact = _untrained_cala()
    exact.load_tensors(codec.tensors())
    assert not torch.allclose(exact.encode(img, TDL), x)
    # equivalent: the exact codec told the erroneous SNR, item by item
    for i in range(4):
        xi = exact.encode(img[i:i + 1], TDL.replace(snr_db=10.0 + float(err[i])))
        torch.testing.assert_close(xi[0], x[i], atol=1e-5, rtol=1e-5)
    fresh = _untrained_cala(condition_error_db=3.0)
    with pytest.raises(RuntimeError, match="encode"):
        fresh.decode(x, torch.full(x.shape, 0.1), TDL)


def test_no_nan_at_minus_10_db():
    codec = _untrained_cala()
    with torch.no_grad():
        for p in codec.bank.b.values():
            p.normal_()
    cond = Condition(snr_db=-10.0, tdl_profile="awgn")
    x = codec.encode(torch.rand(4, *SHAPE), cond)
    y = x + torch.complex(torch.randn(x.shape), torch.randn(x.shape)) * (10 / 2) ** 0.5
    assert torch.isfinite(codec.decode(y, torch.full(x.shape, 10.0), cond).payload).all()


def test_lora_oracle_buckets_and_batch_with_mixed_buckets():
    codec: LoRAOracleCodec = build_codec("lora_oracle", SHAPE, 1 / 6, checkpoint="none", width=16,
                                         condition_error_db=6.0)  # type: ignore[assignment]
    bank = codec.bank
    assert bank.num_buckets == 25
    assert bank.bucket_of(0.0, 30.0) == 0 and bank.bucket_of(20.0, 3000.0) == 24
    assert bank.bucket_of(7.4, 150.0) == bank.bucket_of(5.0, 100.0) and bank.bucket_of(8.0, 200.0) == bank.bucket_of(10, 300)
    with torch.no_grad():
        for p in bank.b.values():
            p.normal_()
    img = torch.rand(6, *SHAPE)
    torch.manual_seed(1)
    x = codec.encode(img, TDL)  # items fall in different SNR buckets
    snr = 10.0 + codec._snr_error
    assert len({bank.bucket_of(float(s), 300.0) for s in snr}) > 1
    exact = build_codec("lora_oracle", SHAPE, 1 / 6, checkpoint="none", width=16)
    exact.load_tensors(codec.tensors())
    for i in range(6):
        xi = exact.encode(img[i:i + 1], TDL.replace(snr_db=float(snr[i])))
        torch.testing.assert_close(xi[0], x[i], atol=1e-5, rtol=1e-5)


def test_lora_oracle_training_touches_only_its_buckets_and_not_the_base(base_ckpt, tmp_path):
    import shutil

    for suffix in (".json", ".safetensors"):
        shutil.copy(base_ckpt.with_suffix(suffix), tmp_path / base_ckpt.with_suffix(suffix).name)
    res = train(_cfg("lora_oracle", base=str(tmp_path / base_ckpt.name), steps=25, rank=2), out=tmp_path)
    codec = res["codec"]
    _, base_tensors = read_checkpoint(base_ckpt)
    for k, v in codec.net.state_dict().items():
        assert torch.equal(v, base_tensors[f"net.{k}"]), k
    moved = [k for k in range(25) if any(p.abs().sum() > 0 for p in codec.bank.bucket_params(k)[1::2])]
    assert moved == list(range(25))  # one step each
    loaded = build_codec("lora_oracle", SHAPE, 1 / 6, checkpoint=str(res["paths"][-1]))
    assert loaded.bank.rank == 2


def test_default_overhead_is_within_five_percent_of_the_base():
    codec = build_codec("cala", (3, 32, 32), 1 / 6, checkpoint="none")
    n = codec.num_parameters()
    assert (n["adapters"] + n["gate"]) / n["base"] <= 0.05


def test_an_affine_bank_starts_as_its_base_and_its_kind_survives_a_checkpoint(tmp_path):
    """With affine = true each adapter also scales and shifts every output channel of its layers; scale and
    shift start at zero, so a fresh bank is still its base, and training them moves the output."""
    cala = _untrained_cala(init_seed=2, affine=True, num_adapters=2)
    base = build_codec("jscc_mixed", SHAPE, 1 / 6, checkpoint="none", width=16, init_seed=2)
    img = torch.rand(3, *SHAPE)
    torch.testing.assert_close(cala.encode(img, TDL), base.encode(img, TDL))
    before = cala.encode(img, TDL)
    with torch.no_grad():
        for p in cala.bank.shift.values():
            p.fill_(0.1)
    assert not torch.allclose(cala.encode(img, TDL), before)
    params = cala.num_parameters()
    outs = sum(cala.net.layer(n).out_channels for n in cala.bank.layers)
    plain = _untrained_cala(num_adapters=2).num_parameters()["adapters"]
    assert params["adapters"] == plain + 2 * 2 * outs
    cala.save(tmp_path)
    again = Codec.load(tmp_path)
    assert again.bank.affine
    torch.testing.assert_close(again.encode(img, TDL), cala.encode(img, TDL))
    with pytest.raises(ConfigError, match="affine"):
        _untrained_cala(affine="yes")


@pytest.mark.parametrize("factor,shared", [("full", 0), ("cp", 0), ("cp", 2)])
def test_a_rank_r_bank_computes_the_weight_update_it_describes(factor, shared):
    """Adapter i of rank r adds g_i sum_j b_ij a_ij^T to each adapted kernel, with a_ij over the whole
    kernel (full) or a channel vector times a spatial kernel (cp), and the ``shared`` ungated components add
    theirs with weight 1 at every condition: the layer's output equals a plain convolution with that weight,
    formed explicitly, per item."""
    import torch.nn.functional as F

    cala = _untrained_cala(init_seed=3, num_adapters=2, rank=3, factor=factor, layers=["enc.res1"],
                           **({"shared_rank": shared} if shared else {}))
    bank = cala.bank
    with torch.no_grad():
        for p in bank.b.values():
            p.normal_(0.0, 0.2)
    conv = cala.net.layer("enc.res1")
    x = torch.randn(2, conv.in_channels, 8, 8)
    g = torch.tensor([[0.3, 0.7], [0.9, 0.1]])
    adapter = bank.adapters(g)["enc.res1"]
    got = conv(x, adapter)
    a, b = bank.a["enc_res1"], bank.b["enc_res1"]
    m = 6 + shared
    if factor == "cp":
        assert a.shape == (m, conv.in_channels) and bank.spatial["enc_res1"].shape == (m, 9)
        a = (a[:, :, None] * bank.spatial["enc_res1"][:, None, :]).reshape(m, -1)
    else:
        assert a.shape == (m, conv.fan_in) and not bank.spatial
    for item in range(2):
        gr = torch.cat([g[item].repeat_interleave(3), torch.ones(shared)])  # [K r + s]
        delta = (b.T * gr) @ a                                              # [out, fan_in]
        w = conv.weight + delta.reshape(conv.weight.shape)
        want = F.conv2d(x[item:item + 1], w, conv.bias, conv.stride, conv.padding)
        torch.testing.assert_close(got[item:item + 1], want, atol=1e-5, rtol=1e-5)
    # the parameter count: per component fan_in + out (full) or in + k*k + out (cp)
    per = conv.fan_in + conv.out_channels if factor == "full" else conv.in_channels + 9 + conv.out_channels
    assert bank.num_adapter_params() == (2 * 3 + shared) * per


def test_a_filter_scaling_bank_rescales_the_base_filters_per_item():
    """factor = "scale": each item computes with W ⊙ (1 + sum_m g_m b_m a_m^T) over (out, in), the same
    factor on every kernel tap; a batch of mixed conditions (grouped convolution) and one of a single
    condition (one convolution) give what the explicitly formed weights give."""
    import torch.nn.functional as F

    cala = _untrained_cala(init_seed=5, num_adapters=2, rank=2, factor="scale", shared_rank=1, layers=["dec.res1"])
    bank = cala.bank
    with torch.no_grad():
        for p in bank.b.values():
            p.normal_(0.0, 0.2)
    conv = cala.net.layer("dec.res1")
    a, b = bank.a["dec_res1"], bank.b["dec_res1"]
    assert a.shape == (5, conv.in_channels) and b.shape == (5, conv.out_channels) and not bank.spatial
    assert bank.num_adapter_params() == 5 * (conv.in_channels + conv.out_channels)
    x = torch.randn(3, conv.in_channels, 8, 8)
    for g in (torch.tensor([[0.3, 0.7], [0.9, 0.1], [0.5, 0.5]]), torch.tensor([[0.2, 0.8]]).expand(3, 2)):
        got = conv(x, bank.adapters(g)["dec.res1"])
        for item in range(3):
            gr = torch.cat([g[item].repeat_interleave(2), torch.ones(1)])
            w = conv.weight * (1 + (b.T * gr) @ a)[:, :, None, None]
            want = F.conv2d(x[item:item + 1], w, conv.bias, conv.stride, conv.padding)
            torch.testing.assert_close(got[item:item + 1], want, atol=1e-5, rtol=1e-5)


def test_a_kronecker_bank_adds_kronecker_products_to_the_kernel_matrix():
    """factor = "kron": each component adds g_m kron(A_m, B_m) to the [out, in*k*k] kernel matrix, A_m
    [o1, i1] and B_m [o2, i2] from kron_factors; mixed and shared conditions give what torch.kron gives."""
    import torch.nn.functional as F

    from dekasim.codecs.jscc import kron_factors

    cala = _untrained_cala(init_seed=6, num_adapters=2, factor="kron", shared_rank=1, layers=["enc.res1"])
    bank = cala.bank
    with torch.no_grad():
        for p in bank.b.values():
            p.normal_(0.0, 0.2)
    conv = cala.net.layer("enc.res1")
    (o1, o2), (i1, i2) = kron_factors(conv.out_channels), kron_factors(conv.fan_in)
    assert o1 * o2 == conv.out_channels and i1 * i2 == conv.fan_in and kron_factors(576) == (24, 24)
    a, b = bank.a["enc_res1"].reshape(3, o1, i1), bank.b["enc_res1"].reshape(3, o2, i2)
    assert bank.num_adapter_params() == 3 * (o1 * i1 + o2 * i2)
    x = torch.randn(3, conv.in_channels, 8, 8)
    for g in (torch.tensor([[0.3, 0.7], [0.9, 0.1], [0.5, 0.5]]), torch.tensor([[0.2, 0.8]]).expand(3, 2)):
        got = conv(x, bank.adapters(g)["enc.res1"])
        for item in range(3):
            gr = torch.cat([g[item], torch.ones(1)])
            delta = sum(gr[m] * torch.kron(a[m], b[m]) for m in range(3)).reshape(conv.weight.shape)
            want = F.conv2d(x[item:item + 1], conv.weight + delta, conv.bias, conv.stride, conv.padding)
            torch.testing.assert_close(got[item:item + 1], want, atol=1e-5, rtol=1e-5)


def test_a_cp_bank_starts_as_its_base_and_its_rank_and_factor_survive_a_checkpoint(tmp_path):
    cala = _untrained_cala(init_seed=2, num_adapters=2, rank=2, factor="cp", affine=True)
    base = build_codec("jscc_mixed", SHAPE, 1 / 6, checkpoint="none", width=16, init_seed=2)
    img = torch.rand(3, *SHAPE)
    torch.testing.assert_close(cala.encode(img, TDL), base.encode(img, TDL))
    with torch.no_grad():
        for p in cala.bank.b.values():
            p.normal_(0.0, 0.2)
        for p in cala.bank.scale.values():
            p.fill_(0.1)
    cala.save(tmp_path)
    again = Codec.load(tmp_path)
    assert (again.bank.rank, again.bank.factor, again.bank.affine) == (2, "cp", True)
    torch.testing.assert_close(again.encode(img, TDL), cala.encode(img, TDL))
    for bad in ({"rank": 0}, {"rank": True}, {"factor": "tucker"}, {"shared_rank": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            _untrained_cala(**bad)


def test_training_a_cp_bank_records_rank_factor_and_shared_rank(base_ckpt, tmp_path):
    import shutil

    for suffix in (".json", ".safetensors"):
        shutil.copy(base_ckpt.with_suffix(suffix), tmp_path / base_ckpt.with_suffix(suffix).name)
    res = train(_cfg("cala", base=str(tmp_path / base_ckpt.name), steps=2, rank=2, factor="cp", num_adapters=2,
                     shared_rank=3), out=tmp_path)
    manifest = json.loads(res["paths"][-1].read_text())
    assert (manifest["cala"]["rank"], manifest["cala"]["factor"], manifest["cala"]["shared_rank"]) == (2, "cp", 3)
    codec = build_codec("cala", SHAPE, 1 / 6, checkpoint=str(res["paths"][-1]))
    assert (codec.bank.rank, codec.bank.factor, codec.bank.shared_rank) == (2, "cp", 3)
    _, before = read_checkpoint(base_ckpt)
    _, after = read_checkpoint(tmp_path / base_ckpt.name)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the base is never written
