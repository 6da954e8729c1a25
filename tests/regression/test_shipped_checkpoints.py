"""The shipped JSCC checkpoints: provenance, size, the CALA budget, and a trained codec at work."""

from __future__ import annotations

import json

import pytest
import torch

from dekasim import Condition
from dekasim.codecs import build_codec
from dekasim.codecs.jscc import CHECKPOINT_DIR, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


SHIPPED = sorted(CHECKPOINT_DIR.glob("*.json"))


@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoints")
def test_shipped_checkpoints_have_provenance_and_stay_small():
    """Every shipped checkpoint names its command and seed; each family (payload shape and ratio) stays
    under 5 MB of package data."""
    total: dict[str, int] = {}
    for path in SHIPPED:
        m = json.loads(path.read_text())
        read_checkpoint(path)  # format + sha256
        t = m["training"]
        # shipped before the trainer moved to dekasim.training.jscc; the old module still forwards there
        assert t["command"].startswith(("python -m dekasim.codecs.train_jscc train", "python -m dekasim.training.jscc train"))
        assert isinstance(t["seed"], int)
        assert t["cpu_s"] > 0 and t["wall_s"] > 0 and m["dtype"] == "float16"
        family = path.stem.split("-", 1)[1]
        total[family] = total.get(family, 0) + m["bytes"]
    assert total and all(v < 5e6 for v in total.values()), total


SHIPPED_CALA = sorted(CHECKPOINT_DIR.glob("cala-*.json"))


@pytest.mark.skipif(not SHIPPED_CALA, reason="no shipped CALA checkpoint")
def test_shipped_cala_overhead():
    for path in SHIPPED_CALA:
        m = json.loads(path.read_text())
        base = json.loads((path.parent / m["base"]["file"]).with_suffix(".json").read_text())
        assert (m["params"]["adapters"] + m["params"]["gate"]) / m["params"]["base"] <= 0.05
        assert m["bytes"] / base["bytes"] <= 0.05


@pytest.mark.skipif(not SHIPPED_CALA, reason="no shipped CALA checkpoint")
def test_module_example_with_the_shipped_checkpoint():
    import warnings

    from dekasim.channels import GridConfig, OFDMLink
    from dekasim.metrics import psnr_db
    from dekasim.sim.payloads import PhotoSource

    images = PhotoSource(32).images[:4]
    codec = build_codec("cala", (3, 32, 32), 1 / 6)
    cond = Condition(snr_db=5.0, delay_spread_ns=1000.0, tdl_profile="C")
    x = codec.encode(images, cond)
    assert x.shape == (4, 512) and x.dtype == torch.complex64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 1000 ns TDL-C reaches past the cyclic prefix
        y, no_eff = OFDMLink(GridConfig(pilot_subcarrier_spacing=1), csi="ls")(x, cond)
    images_hat = codec.decode(y, no_eff, cond).payload
    assert images_hat.shape == images.shape
    assert psnr_db(images, images_hat).mean() > 15.0  # a trained codec, not a grey image (~11 dB)


GENERIC = CHECKPOINT_DIR / "jscc_generic-48x8x8-bw1_6.json"


@pytest.mark.skipif(not GENERIC.exists(), reason="no shipped generic JSCC")
def test_shipped_generic_jscc_is_generic_and_serves_three_rates():
    """The edge's pre-installed JSCC was trained on natural-photo latents only (no model's images, no test
    photo), serves 1/24, 1/12 and 1/6, and on held-out photos a longer prefix carries more at high SNR."""
    import warnings

    from dekasim.channels import GridConfig, OFDMLink
    from dekasim.generative.ldm import PixelUnshuffleLatents
    from dekasim.metrics import psnr_db
    from dekasim.photos import PhotoSource
    from dekasim.training.jscc import HELD_OUT_PHOTOS

    m = json.loads(GENERIC.read_text())
    data = m["training"]["data"]
    assert m["training"]["config"]["data"] == "photos" and "latent" in data["representation"]
    assert not set(data["train_photos"]) & set(HELD_OUT_PHOTOS)
    assert m["arch"]["rates"] == [128, 256, 512]
    latent_map = PixelUnshuffleLatents(4)
    x = latent_map.encode(PhotoSource(32).images)
    cond = Condition(snr_db=20.0, delay_spread_ns=300.0, tdl_profile="C")
    psnr = []
    for ratio in (1 / 24, 1 / 12, 1 / 6):
        codec = build_codec("jscc_generic", (48, 8, 8), ratio)
        torch.manual_seed(0)
        import sionna.phy

        sionna.phy.config.seed = 5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, no_eff = OFDMLink(GridConfig(pilot_subcarrier_spacing=1), csi="ls")(codec.encode(x, cond), cond)
        out = codec.decode(y, no_eff, cond).payload
        psnr.append(float(psnr_db(latent_map.decode(x), latent_map.decode(out)).mean()))
    assert psnr[0] < psnr[1] < psnr[2], psnr


GENERIC_CALA = CHECKPOINT_DIR / "cala_generic-48x8x8-bw1_6.json"


@pytest.mark.skipif(not GENERIC_CALA.exists(), reason="no shipped T-KA bank on the generic JSCC")
def test_shipped_tka_bank_aligns_the_generic_jscc_at_every_rate():
    """The bank trained on S_EG names the shipped generic base (sha256), stays within 5 % of its parameters,
    and on new images of the aligned edge (training captions, a seed no training set uses) it beats the
    frozen base by more than 1 dB at every rate (benchmarks/tka_generic.py measures the whole grid)."""
    import warnings

    import sionna.phy

    from dekasim.channels import GridConfig, OFDMLink
    from dekasim.deka.generated import GeneratedSource
    from dekasim.deka.system import DEFAULT_PACK_DIR
    from dekasim.metrics import psnr_db

    m = json.loads(GENERIC_CALA.read_text())
    assert m["base"]["sha256"] == json.loads(GENERIC.read_text())["sha256"]
    assert (m["params"]["adapters"] + m["params"]["gate"]) / m["params"]["base"] <= 0.05
    assert m["training"]["config"]["data_pack"] and m["training"]["config"]["data"] == "generated"
    source = GeneratedSource("edge", pack=str(DEFAULT_PACK_DIR), prompts="train", n_prompts=8, seed=11,
                             representation="latent")
    x = source.latents
    cond = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")
    link = OFDMLink(GridConfig(pilot_subcarrier_spacing=1), csi="ls")
    gains, gates = [], []
    for ratio in (1 / 24, 1 / 12, 1 / 6):
        psnr = {}
        for name, ckpt in (("base", GENERIC), ("cala", GENERIC_CALA)):
            codec = build_codec("jscc_generic" if name == "base" else "cala", (48, 8, 8), ratio, checkpoint=str(ckpt))
            if name == "cala":
                gates.append(codec.gate_weights(cond))
            sionna.phy.config.seed = 3
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, no_eff = link(codec.encode(x.repeat(4, 1, 1, 1), cond), cond)
            out = codec.decode(y, no_eff, cond).payload
            psnr[name] = float(psnr_db(source.to_image(x.repeat(4, 1, 1, 1), "latent"),
                                       source.to_image(out, "latent")).mean())
        gains.append(psnr["cala"] - psnr["base"])
    assert min(gains) > 1.0, gains
    assert not torch.allclose(gates[0], gates[2])  # the gate sees the rate


GENERIC_CLOUD = CHECKPOINT_DIR / "jscc_generic_cloud-48x8x8-bw1_6.json"


@pytest.mark.skipif(not GENERIC_CLOUD.exists(), reason="no shipped cloud-latent generic JSCC")
def test_the_cloud_latent_generic_jscc_knows_the_cloud_not_the_aligned_edge():
    """The second generic reference: the same rate-adaptive network, trained on the cloud model's latents of
    training captions, no pack (so it never saw the aligned edge's S_EG); it serves the three rates."""
    m = json.loads(GENERIC_CLOUD.read_text())
    data = m["training"]["data"]
    assert m["codec"] == "jscc_generic" and data["model"] == "cloud" and data["split"] == "train"
    assert "pack" not in data and m["training"]["config"]["data_pack"] is None
    assert m["arch"]["rates"] == [128, 256, 512]
    assert m["arch"] == json.loads(GENERIC.read_text())["arch"]
    for ratio in (1 / 24, 1 / 12, 1 / 6):
        codec = build_codec("jscc_generic", (48, 8, 8), ratio, checkpoint=str(GENERIC_CLOUD))
        assert codec.n_channel_uses == round(ratio * 48 * 64)
