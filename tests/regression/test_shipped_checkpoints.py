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
