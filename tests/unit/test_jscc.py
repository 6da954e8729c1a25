"""DeepJSCC family: shapes, checkpoints, training through the link, robustness."""

from __future__ import annotations

import math

import pytest
import torch

from dekasim import Condition
from dekasim.codecs import Codec, build_codec
from dekasim.codecs.jscc import (Arch, JSCCNet, checkpoint_stem, condition_features, ratio_tag,
                                 read_checkpoint, save_checkpoint)
from dekasim.training.jscc import CropSampler, TrainConfig, evaluate, forward_through_link, make_link, train
from dekasim.errors import ConfigError

AWGN = Condition(snr_db=10.0, tdl_profile="awgn")
TDL = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")


def _tiny(codec: str = "jscc_mixed", **kw) -> TrainConfig:
    base = dict(codec=codec, steps=30, seed=3, batch=8, payload_shape=(3, 16, 16), width=16,
                delay_spreads_ns=(300.0,), profiles=("C",), csi="perfect", train_photos=("chelsea",),
                warmup_steps=5, log_every=0)
    base.update(kw)
    return TrainConfig(**base)


def test_architecture_halves_to_about_8x8_and_carries_2n_reals():
    a = Arch((3, 32, 32), 512)
    assert a.stages == 2 and a.latent_grid == (16, 8, 8) and a.widths == [32, 48, 64]
    b = Arch((4, 8, 8), 43, "latent")
    assert b.stages == 0 and b.latent_grid == (2, 8, 8)      # 86 reals in 128 slots, the rest never sent
    assert Arch((3, 64, 64), 1024).stages == 3


def test_space_to_depth_makes_a_photo_network_the_latent_network_on_unshuffled_pixels():
    """With ``space_to_depth = 4`` (the default for new 32x32 image networks) a photo enters as
    pixel_unshuffle((x - 0.5) / 0.25, 4), [48, 8, 8]: the layers are the 48x8x8 latent network's, and with its
    weights the two send the same symbols and decode to the same pixels (through pixel_shuffle, then the
    image's sigmoid). Manifests without the field mean the payload taken as it is."""
    import torch.nn.functional as F

    photo = build_codec("jscc_mixed", (3, 32, 32), 1 / 6, checkpoint="none", init_seed=1)
    assert photo.arch.space_to_depth == 4 and photo.arch.stages == 0 and photo.arch.latent_grid == (16, 8, 8)
    assert photo.arch.to_json()["space_to_depth"] == 4
    assert Arch.from_json({k: v for k, v in photo.arch.to_json().items() if k != "space_to_depth"}).space_to_depth == 1
    assert "space_to_depth" not in Arch((48, 8, 8), 512, "latent").to_json()      # older manifests unchanged
    latent = build_codec("jscc_mixed", (48, 8, 8), 1 / 6, checkpoint="none", init_seed=7)
    assert {k: v.shape for k, v in photo.net.state_dict().items() if "in_" not in k} == \
        {k: v.shape for k, v in latent.net.state_dict().items() if "in_" not in k}
    latent.net.load_state_dict({k: v for k, v in photo.net.state_dict().items() if "in_" not in k}, strict=False)
    img = torch.rand(4, 3, 32, 32)
    x = photo.encode(img, AWGN)
    torch.testing.assert_close(x, latent.encode(F.pixel_unshuffle((img - 0.5) / 0.25, 4), AWGN))
    torch.testing.assert_close(x.abs().pow(2).mean(1), torch.ones(4), rtol=1e-4, atol=1e-4)
    no = torch.full(x.shape, 0.1)
    out = photo.decode(x, no, AWGN).payload
    torch.testing.assert_close(out, torch.sigmoid(F.pixel_shuffle(latent.decode(x, no, AWGN).payload, 4)))
    assert build_codec("jscc", (3, 32, 32), 1 / 6, checkpoint="none", space_to_depth=1).arch.stages == 2
    assert build_codec("jscc", (3, 16, 16), 1 / 6, checkpoint="none").arch.space_to_depth == 2   # 8x8 kept
    with pytest.raises(ConfigError, match="space_to_depth"):
        build_codec("jscc", (3, 32, 32), 1 / 6, checkpoint="none", space_to_depth=3)


def test_latent_payload_untrained_network_keeps_the_contract():
    codec = build_codec("jscc_mixed", (4, 8, 8), 1 / 6, checkpoint="none")
    assert codec.kind == "learned" and codec.arch.payload_kind == "latent"
    lat = torch.randn(5, 4, 8, 8) * 3 + 1
    x = codec.encode(lat, AWGN)
    assert x.shape == (5, codec.n_channel_uses) == (5, 43) and x.dtype == torch.complex64
    torch.testing.assert_close(x.abs().pow(2).mean(1), torch.ones(5), rtol=1e-4, atol=1e-4)
    out = codec.decode(x, torch.full(x.shape, 0.1), AWGN).payload
    assert out.shape == lat.shape and torch.isfinite(out).all()


def test_untrained_network_is_seeded():
    a = build_codec("jscc", (3, 16, 16), 1 / 6, checkpoint="none", init_seed=5)
    b = build_codec("jscc", (3, 16, 16), 1 / 6, checkpoint="none", init_seed=5)
    for k, v in a.tensors().items():
        assert torch.equal(v, b.tensors()[k])


def test_missing_default_checkpoint_names_the_option_and_the_command():
    with pytest.raises(ConfigError, match="checkpoint") as err:
        build_codec("jscc", (3, 16, 16), 1 / 6)
    assert err.value.field == "checkpoint"
    assert "python -m dekasim.training.jscc train --codec jscc --payload-shape 3 16 16 --bandwidth-ratio 1/6" \
        in str(err.value)
    assert 'checkpoint = "none"' in str(err.value)
    with pytest.raises(ConfigError, match="--base DIR/jscc_base-3x16x16-bw1_4.json"):
        build_codec("cala", (3, 16, 16), 1 / 4)
    with pytest.raises(ConfigError, match="--payload-shape 4 8 8 --bandwidth-ratio 1/6 --data generated") as err:
        build_codec("jscc", (4, 8, 8), 1 / 6)
    assert 'checkpoint = "none"' in str(err.value)


def test_options_that_need_no_checkpoint_are_rejected_with_one():
    with pytest.raises(ConfigError):
        build_codec("jscc", (4, 8, 8), 1 / 6, checkpoint="none", payload_kind="picture")
    with pytest.raises(ConfigError, match="condition_error_db"):
        build_codec("adjscc", (4, 8, 8), 1 / 6, checkpoint="none", condition_error_db=-1.0)
    with pytest.raises(ConfigError, match="jscc"):  # unknown option (the non-adaptive codec has no condition input)
        build_codec("jscc", (4, 8, 8), 1 / 6, checkpoint="none", condition_error_db=1.0)


def test_stems_name_shape_and_ratio():
    assert ratio_tag(1 / 6) == "1_6" and ratio_tag(0.25) == "1_4"
    assert checkpoint_stem("cala", (3, 32, 32), 1 / 6) == "cala-3x32x32-bw1_6"


def test_checkpoint_round_trip_and_tamper_detection(tmp_path):
    codec = build_codec("jscc_mixed", (3, 16, 16), 1 / 6, checkpoint="none", width=16)
    path = save_checkpoint(tmp_path, "jscc_mixed-3x16x16-bw1_6",
                           {f"net.{k}": v for k, v in codec.net.state_dict().items()},
                           {"codec": "jscc_mixed", "arch": codec.arch.to_json()})
    again = build_codec("jscc_mixed", (3, 16, 16), 1 / 6, checkpoint=str(path))
    for k, v in codec.net.state_dict().items():  # fp16 storage: equal to fp16 precision
        torch.testing.assert_close(again.net.state_dict()[k], v.half().float())
    # the codec-level save/load (full fp32 tensors) is exact
    again.save(tmp_path / "saved")
    third = Codec.load(tmp_path / "saved")
    img = torch.rand(2, 3, 16, 16)
    a = again.decode(again.encode(img, AWGN), torch.full((2, again.n_channel_uses), 0.01), AWGN).payload
    b = third.decode(third.encode(img, AWGN), torch.full((2, third.n_channel_uses), 0.01), AWGN).payload
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # wrong codec, wrong shape, modified tensors
    with pytest.raises(ConfigError, match="codec"):
        build_codec("jscc", (3, 16, 16), 1 / 6, checkpoint=str(path))
    with pytest.raises(ConfigError, match="payload"):
        build_codec("jscc_mixed", (3, 16, 16), 1 / 4, checkpoint=str(path))
    st = path.with_suffix(".safetensors")
    st.write_bytes(st.read_bytes()[:-2] + b"\x00\x00")
    with pytest.raises(ConfigError, match="sha256"):
        read_checkpoint(path)


def test_decoder_input_is_bounded_for_deep_fades_and_zero_noise():
    net = JSCCNet(Arch((3, 16, 16), 128))
    y = torch.complex(torch.randn(2, 128), torch.randn(2, 128)) * 1e3
    no = torch.cat([torch.zeros(1, 128), torch.full((1, 128), 1e9)])
    inp = net.decoder_input(y, no)
    assert torch.isfinite(inp).all() and inp[1, :4].abs().max() < 1e-3


def test_a_few_training_steps_through_the_link_lower_the_loss():
    res0 = train(_tiny(steps=1, lr=1e-12))           # same init, (almost) no update
    res = train(_tiny(steps=20, lr=4e-3))
    x = CropSampler(("chelsea",), 16).sample(16, torch.Generator().manual_seed(99))  # held-out draws
    link = make_link("perfect")

    def mse(codec):
        import sionna.phy

        sionna.phy.config.seed = 11
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(forward_through_link(codec, x, TDL, link), x))

    assert mse(res["codec"]) < 0.7 * mse(res0["codec"])
    assert all(math.isfinite(v) for v in res["losses"])


@pytest.mark.parametrize("name", ["jscc", "jscc_mixed", "adjscc"])
def test_no_nan_at_minus_10_db_through_ofdm_with_ls(name):
    codec = build_codec(name, (3, 16, 16), 1 / 6, checkpoint="none", width=16)
    cond = Condition(snr_db=-10.0, delay_spread_ns=3000.0, tdl_profile="C")
    img = torch.rand(4, 3, 16, 16)
    link = make_link("ls", 1)
    with pytest.warns():  # PhysicsWarning: TDL-C 3000 ns reaches past the cyclic prefix
        y, no_eff = link(codec.encode(img, cond), cond)
    out = codec.decode(y, no_eff, cond).payload
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_adjscc_attention_follows_the_snr():
    codec = build_codec("adjscc", (3, 16, 16), 1 / 6, checkpoint="none", width=16)
    img = torch.rand(2, 3, 16, 16)
    x0 = codec.encode(img, AWGN)
    x1 = codec.encode(img, AWGN.replace(snr_db=0.0))
    assert not torch.allclose(x0, x1)
    with pytest.raises(ConfigError, match="cond"):
        codec.encode(img, None)


def test_condition_features():
    f = condition_features(torch.tensor([0.0, 20.0]), TDL, 1 / 6)
    assert f.shape == (2, 10)
    torch.testing.assert_close(f[:, 0], torch.tensor([-1.0, 1.0]))
    assert f[0, 1] == 0.0 and f[0, 2] == 0.0 and f[0, 4 + 2] == 1.0 and f[0, 9] == 0.0
    g = condition_features(torch.tensor([5.0]), AWGN, 1 / 6)
    assert g[0, 9] == 1.0 and g[0, 4:9].sum() == 0


def test_evaluate_gives_the_same_channels_to_every_codec():
    codec = build_codec("jscc_mixed", (3, 16, 16), 1 / 6, checkpoint="none", width=16)
    img = torch.rand(2, 3, 16, 16)
    link = make_link("perfect")
    a = evaluate(codec, img, [TDL, TDL.replace(snr_db=20.0)], link, repeats=2, seed=4)
    b = evaluate(codec, img, [TDL, TDL.replace(snr_db=20.0)], link, repeats=2, seed=4)
    assert a == b and len(a) == 2
