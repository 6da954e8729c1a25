"""Edge-generated images as the payload of a sweep (DeKA-g's data path), with and without a pack."""

from __future__ import annotations

import pytest
import torch

from dekasim.errors import ConfigError
from dekasim.scenarios import scenario_from_dict
from dekasim.sim import run_scenario
from dekasim.sim.payloads import GeneratedSource

pytestmark = pytest.mark.usefixtures("one_thread")


def _raw(model, **payload):
    return {"name": "gen-test", "seed": 5,
            "payload": {"kind": "generated", "model": str(model), "n_prompts": 3, "sample_steps": 2, **payload},
            "sweep": {"snr_db": [0, 20], "delay_spread_ns": [100], "tdl_profile": ["C"], "csi": ["ls"]},
            "codecs": [{"codec": "analog"}], "monte_carlo": {"images_per_point": 3, "batch_size": 3}}


def test_generated_source_is_deterministic_and_cycles(toy_dir):
    a = GeneratedSource(str(toy_dir), n_prompts=3, sample_steps=2, seed=1)
    b = GeneratedSource(str(toy_dir), n_prompts=3, sample_steps=2, seed=1)
    assert a.item_shape == (3, 32, 32) and torch.equal(a.images, b.images)
    assert torch.equal(a.batch(2, 2)[1], a.images[0])
    assert all(p.startswith("a ") for p in a.prompts)


def test_sweep_over_generated_images(toy_dir, tmp_path):
    scenario = scenario_from_dict(_raw(toy_dir))
    assert scenario.resolution_px == 32 and dict(scenario.payload_options)["n_prompts"] == 3
    rows = run_scenario(scenario, out_dir=tmp_path, progress=False, plots=False).rows
    by = {r["snr_db"]: r["psnr_db"] for r in rows}
    assert by[20.0] > by[0.0] + 3  # the analog codec gets better with SNR on generated images too


def test_generated_payload_errors(toy_dir, tmp_path):
    with pytest.raises(ConfigError, match="payload.prompts"):
        scenario_from_dict(_raw(toy_dir, prompts="test"))
    with pytest.raises(ConfigError, match="payload.model"):
        scenario_from_dict({**_raw(toy_dir), "payload": {"kind": "photos", "model": "edge"}})
    with pytest.raises(ConfigError, match="payload.model"):
        run_scenario(scenario_from_dict(_raw(tmp_path / "missing")), out_dir=tmp_path / "o", progress=False,
                     plots=False)
    with pytest.raises(ConfigError, match="payload.resolution_px"):
        run_scenario(scenario_from_dict(_raw(toy_dir, resolution_px=64)), out_dir=tmp_path / "p", progress=False,
                     plots=False)
    with pytest.raises(ConfigError, match="payload.pack"):
        run_scenario(scenario_from_dict(_raw(toy_dir, pack=str(tmp_path))), out_dir=tmp_path / "q", progress=False,
                     plots=False)


def test_latent_representation_sends_latents_to_codecs_that_take_them(toy_dir, tmp_path):
    """A latent payload reaches the JSCC as the edge's latents and image-only codecs as images; the
    metrics compare images either way. At 60 dB over AWGN with every coefficient sent, analog
    transmission of the latents must give the image back (the latent map is exact)."""
    from dekasim.sim.runner import codec_representation

    raw = _raw(toy_dir, representation="latent")
    raw["sweep"] = {"snr_db": [60], "tdl_profile": ["awgn"], "bandwidth_ratio": [0.5]}
    raw["codecs"] = [{"codec": "analog"}, {"codec": "jscc_mixed", "options": {"checkpoint": "none", "width": 16}},
                     {"codec": "ideal", "options": {"source_codec": "jpeg"}}]
    scenario = scenario_from_dict(raw)
    assert [codec_representation(scenario, c.codec) for c in scenario.codecs] == ["latent", "latent", "image"]
    rows = {r["codec_name"]: r for r in run_scenario(scenario, out_dir=tmp_path, progress=False, plots=False).rows}
    assert rows["analog"]["info"]["payload_representation"] == "latent [48, 8, 8]"
    assert rows["analog"]["psnr_db"] > 50
    assert rows["jscc_mixed"]["info"]["payload_representation"] == "latent [48, 8, 8]"
    assert "payload_representation" not in rows["ideal"]["info"]
    assert rows["analog"]["channel_uses"] == rows["ideal"]["channel_uses"] == 1536   # equal channel uses
    image_scenario = scenario_from_dict(_raw(toy_dir))
    assert "representation" not in dict(image_scenario.payload_options)   # the default keeps old hashes
    with pytest.raises(ConfigError, match="payload.representation"):
        scenario_from_dict(_raw(toy_dir, representation="pixels"))
    with pytest.raises(ConfigError, match="payload.representation"):
        scenario_from_dict({**_raw(toy_dir), "payload": {"kind": "photos", "representation": "latent"}})


def test_shipped_latent_family_sends_the_edges_latents():
    """The 48x8x8 checkpoints (trained on the shipped edge's latents of training captions) on latents of
    held-out captions: every codec of the family is a working codec well above the analog reference
    (the validation grid gives 26-27.5 dB at 10 dB; a grey image is ~12 dB), and CALA's gate hands over
    from its low-SNR to its high-SNR adapter."""
    import warnings

    from dekasim import Condition
    from dekasim.codecs import build_codec
    from dekasim.training.jscc import make_link
    from dekasim.metrics import psnr_db

    source = GeneratedSource("edge", n_prompts=8, sample_steps=10, seed=3, representation="latent")
    assert source.shape("latent") == (48, 8, 8)
    cond = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")
    link = make_link("ls", 1)
    images = source.to_image(source.latents, "latent")
    psnr = {}
    for name in ("jscc", "jscc_mixed", "adjscc", "cala", "lora_oracle", "analog"):
        codec = build_codec(name, (48, 8, 8), 1 / 6)
        import sionna.phy

        sionna.phy.config.seed = 5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, no_eff = link(codec.encode(source.latents, cond), cond)
        out = source.to_image(codec.decode(y, no_eff, cond).payload, "latent")
        psnr[name] = float(psnr_db(images, out).mean())
    for name in ("jscc", "jscc_mixed", "adjscc", "cala", "lora_oracle"):
        assert psnr[name] > 23.0 and psnr[name] > psnr["analog"] + 3.0, psnr
    cala = build_codec("cala", (48, 8, 8), 1 / 6)
    g = cala.gate_weights(cond, torch.tensor([0.0, 20.0]))
    assert cala.bank.gate_kind == "snr_anchored" and g[0, 0] > g[0, -1] and g[1, -1] > g[1, 0]
