"""A JSCC for any latent shape: the generic rate-adaptive JSCC trained on natural-photo latents of a given
model's own latent map (a tiny random Stable-Diffusion-layout folder written by diffusers: VAE latents
4x8x8 at 64 px), its CALA bank on what that model generates for a prompt file, the loss space, the
cached sets, and bad input named by its flag."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dekasim import Condition
from dekasim.codecs import build_codec
from dekasim.codecs.jscc import read_checkpoint
from dekasim.errors import ConfigError
from dekasim.training.data import GeneratedSampler, PhotoLatentSampler, generation_key, load_training_photo
from dekasim.training.jscc import TrainConfig, forward_through_link, make_link, train

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (4, 8, 8)
RATES = (1 / 24, 1 / 12, 1 / 6)
PROMPTS = ["a photo of a sks dog", "a sks dog on the beach", "a red sks dog in the snow"]


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    """A random StableDiffusionPipeline folder (64 px, AutoencoderKL latents 4x8x8)."""
    from dekasim.generative.random_models import write_sd_pipeline

    return write_sd_pipeline(tmp_path_factory.mktemp("sd") / "edge", preset="tiny", seed=1)


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("# subject prompts\n" + "\n".join(PROMPTS) + "\n\n")
    return path


def _cfg(sd_dir, cache, **kw) -> TrainConfig:
    base = dict(codec="jscc_generic", steps=4, seed=3, batch=8, payload_shape=SHAPE, width=16, rates=RATES,
                delay_spreads_ns=(300.0,), profiles=("C",), csi="perfect", warmup_steps=5, log_every=0,
                latent_model=str(sd_dir), data_items=48, train_photos=("chelsea", "retina"), data_cache=str(cache))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def generic(sd_dir, tmp_path_factory):
    """(untrained result, 60-step result, its manifest path, cache dir): jscc_generic on the model's photo latents."""
    cache = tmp_path_factory.mktemp("cache")
    res0 = train(_cfg(sd_dir, cache, steps=1, lr=1e-12))
    res = train(_cfg(sd_dir, cache, steps=60, lr=5e-3), out=tmp_path_factory.mktemp("generic"))
    return res0, res, res["paths"][0], cache


def test_generic_jscc_for_vae_latents_learns_and_its_manifest_names_the_model(generic, sd_dir):
    res0, res, path, cache = generic
    manifest, _ = read_checkpoint(path)
    from dekasim.generative.models import load_model
    from dekasim.generative.pack import model_fingerprint

    assert manifest["latent_model"]["spec"] == str(sd_dir)
    assert manifest["latent_model"]["model_fingerprint"] == model_fingerprint(load_model(sd_dir))
    assert manifest["latent_model"]["latent_shape"] == [4, 8, 8] and manifest["latent_model"]["resolution_px"] == 64
    assert manifest["latent_model"]["latent_map"] == {"kind": "vae", "class": "AutoencoderKL"}
    assert manifest["training"]["loss_space"] == "latent" == manifest["training"]["config"]["loss_space"]
    assert manifest["training"]["device"] == "cpu" and manifest["arch"]["rates"] == [11, 21, 43]
    data = manifest["training"]["data"]
    assert data["photos"] == "shipped" and data["photo_names"] == ["chelsea", "retina"] and data["n_items"] == 48
    # the network's input normalisation is the set's per-channel statistics (random VAE latents have std ~0.04)
    s = PhotoLatentSampler(str(sd_dir), 48, 7, photos=("chelsea", "retina"), cache_dir=cache)
    torch.testing.assert_close(res["codec"].net.in_std, s.latents.transpose(0, 1).reshape(4, -1).std(1),
                               rtol=1e-3, atol=0)
    # the latent MSE on a fixed batch of the set falls with training (same initial weights and draws)
    x = s.sample(16, torch.Generator().manual_seed(5))
    link, cond = make_link("perfect"), Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")

    def mse(codec):
        import sionna.phy

        sionna.phy.config.seed = 11
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(forward_through_link(codec, x, cond, link), x))

    assert mse(res["codec"]) < 0.7 * mse(res0["codec"])
    # the checkpoint serves each rate of 4x8x8 latents
    for ratio, n in zip(RATES, (11, 21, 43)):
        codec = build_codec("jscc_generic", SHAPE, ratio, checkpoint=str(path))
        assert codec.encode(x[:2], cond).shape == (2, n)


def test_the_photo_set_is_the_models_encoding_of_random_scale_flipped_crops(tmp_path):
    """With the world's exact latent map every item decodes back to its Lanczos-resized crop."""
    from PIL import Image

    s = PhotoLatentSampler("edge", 12, seed=5, photos=("chelsea", "retina"), cache_dir=None)
    assert s.item_shape == (48, 8, 8) and s.resolution_px == 32 and s.default_loss_space == "image"
    assert s.channel_stats() is None
    plan = s.crop_plan(12, 5)
    assert plan[:, 1].min() >= 0.3 and plan[:, 1].max() <= 1.0 and 0 < plan[:, 4].sum() < 12
    images = s.ldm.latents.decode(s.latents)
    for i in range(12):
        img = Image.fromarray(load_training_photo(("chelsea", "retina")[int(plan[i, 0])]))
        w, h = img.size
        side = int(round(plan[i, 1] * min(h, w)))
        y0, x0 = int(plan[i, 2] * (h - side + 1)), int(plan[i, 3] * (w - side + 1))
        crop = np.asarray(img.crop((x0, y0, x0 + side, y0 + side)).resize((32, 32), Image.Resampling.LANCZOS))
        want = torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255
        torch.testing.assert_close(images[i], want.flip(-1) if plan[i, 4] else want, atol=1e-5, rtol=0)
    # an exact map keeps today's image-space loss and decodes for it
    res = train(TrainConfig(codec="jscc_generic", steps=2, seed=1, batch=4, payload_shape=(48, 8, 8), width=16,
                            rates=RATES, csi="perfect", log_every=0, latent_model="edge", data_items=12,
                            data_seed=5, train_photos=("chelsea", "retina"), data_cache=None, device="auto"))
    assert res["loss_space"] == "image" and res["device"] == "cpu"
    assert torch.equal(res["codec"].net.in_std, torch.ones(48))      # no data normalisation for exact latents


def test_photo_latents_are_cached_by_model_photos_and_settings(sd_dir, tmp_path):
    from PIL import Image

    messages: list[str] = []
    first = PhotoLatentSampler(str(sd_dir), 10, seed=2, photos=("chelsea",), cache_dir=tmp_path, log=messages.append)
    assert any("encoded 10/10" in m for m in messages) and len(list(tmp_path.glob("photo-latents-*"))) == 1
    messages.clear()
    again = PhotoLatentSampler(str(sd_dir), 10, seed=2, photos=("chelsea",), cache_dir=tmp_path, log=messages.append)
    assert not messages and torch.equal(again.latents, first.latents) and again.key == first.key
    other = PhotoLatentSampler(str(sd_dir), 10, seed=3, photos=("chelsea",), cache_dir=tmp_path, log=messages.append)
    assert messages and other.key != first.key and not torch.equal(other.latents, first.latents)
    # a folder of the user's photos (other files ignored) is its own set
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(load_training_photo("chelsea")[:200, :200]).save(photos / "a.png")
    Image.fromarray(load_training_photo("retina")[::4, ::4]).save(photos / "b.JPG")
    (photos / "notes.txt").write_text("not a photo")
    mine = PhotoLatentSampler(str(sd_dir), 10, seed=2, photos_dir=photos, cache_dir=tmp_path)
    assert mine.facts["photo_names"] == ["a.png", "b.JPG"] and mine.key != first.key
    assert mine.item_shape == SHAPE and torch.isfinite(mine.latents).all()
    assert len(list(tmp_path.glob("photo-latents-*"))) == 3


def test_bad_input_is_one_error_naming_the_flag(sd_dir, tmp_path, caplog, capsys):
    cache = tmp_path / "cache"
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")
    cases = [
        (dict(photos_dir=str(empty)), "--photos"),
        (dict(photos_dir=str(tmp_path / "missing")), "--photos"),
        (dict(photos_dir=str(broken)), "--photos"),
        (dict(latent_model=str(empty)), "--latent-model"),
        (dict(latent_model=str(tmp_path / "missing")), "--latent-model"),
        (dict(payload_shape=(48, 8, 8)), "--payload-shape"),
        (dict(loss_space="pixels"), "--loss-space"),
        (dict(device="tpu"), "--device"),
        (dict(data="generated", data_model=str(sd_dir)), "--latent-model"),
        (dict(latent_model=None, photos_dir=str(empty)), "--photos"),
        (dict(latent_model=None, data="generated", data_model=str(sd_dir), data_prompts=str(tmp_path / "no.txt")),
         "--data-prompts"),
        (dict(latent_model=None, data="generated", data_model=str(sd_dir), payload_shape=(48, 8, 8)),
         "--payload-shape"),
    ]
    for kw, field in cases:
        with pytest.raises(ConfigError) as err:
            train(_cfg(sd_dir, cache, **kw))
        assert err.value.field == field, (kw, str(err.value))
        assert "\n" not in str(err.value)
    shape_err = pytest.raises(ConfigError, train, _cfg(sd_dir, cache, payload_shape=(48, 8, 8))).value
    assert "pass --payload-shape 4 8 8" in str(shape_err)
    assert not cache.exists()                                    # refused before anything was encoded or generated
    with pytest.raises(ConfigError) as err:                     # photo crops have no latent space
        train(_cfg(sd_dir, cache, latent_model=None, payload_shape=(3, 32, 32), loss_space="latent"))
    assert err.value.field == "--loss-space"
    from dekasim.training.jscc import main

    code = main(["train", "--codec", "jscc_generic", "--steps", "1", "--payload-shape", "4", "8", "8",
                 "--latent-model", str(sd_dir), "--photos", str(empty), "--out", str(tmp_path / "out")])
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and record.getMessage().startswith("train_jscc: error: --photos") and "\n" not in record.getMessage()
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_cala_trains_over_the_generic_base_on_the_models_images_of_a_prompt_file(generic, sd_dir, prompt_file,
                                                                                 tmp_path):
    from dekasim.generative.models import load_model
    from dekasim.generative.prompts import prompts_sha256

    _, _, base, _ = generic
    base_manifest, base_tensors = read_checkpoint(base)
    cfg = _cfg(sd_dir, tmp_path, codec="cala", base=str(base), steps=6, latent_model=None, data="generated",
               data_model=str(sd_dir), data_prompts=str(prompt_file), data_items=5, data_seed=4)
    res = train(cfg, out=tmp_path / "cala")
    for suffix in (".json", ".safetensors"):                    # a bank's manifest names its base beside it
        shutil.copy(Path(base).with_suffix(suffix), tmp_path / "cala")
    manifest, tensors = read_checkpoint(res["paths"][0])
    assert manifest["base"]["sha256"] == base_manifest["sha256"] and manifest["training"]["loss_space"] == "latent"
    data = manifest["training"]["data"]
    assert data["prompts_sha256"] == prompts_sha256(PROMPTS) and data["n_prompts"] == 3
    assert data["data_prompts"] == str(prompt_file) and data["augmentation"].startswith("none")
    # the set: image i of prompt i mod 3 with seed 4 * 1_000_003 + i
    s = GeneratedSampler(str(sd_dir), 5, 4, cache_dir=tmp_path, prompts=PROMPTS, log=lambda m: None)
    want = load_model(sd_dir).sample_latents([PROMPTS[i % 3] for i in range(5)], [4 * 1_000_003 + i for i in range(5)])
    torch.testing.assert_close(s.latents, want.float())
    # the base stays bit-identical (fp16 as stored), the bank moved from its zero-initialised outputs
    codec = res["codec"]
    for k, v in codec.net.state_dict().items():
        torch.testing.assert_close(v, base_tensors[f"net.{k}"], atol=0, rtol=0)
    assert any(k.startswith("bank.b.") and v.abs().max() > 0 for k, v in tensors.items())
    assert all(np.isfinite(res["losses"]))
    loaded = build_codec("cala", SHAPE, 1 / 12, checkpoint=res["paths"][0])
    assert loaded.encode(s.latents[:2], Condition(snr_db=5.0, delay_spread_ns=300.0, tdl_profile="C")).shape == (2, 21)


def test_generated_sets_keep_their_key_for_world_captions_and_key_prompts_otherwise(sd_dir, tmp_path):
    world = GeneratedSampler(str(sd_dir), 3, 2, sample_steps=2, cache_dir=None)
    assert world.key == generation_key(world.fingerprint, 3, 2, 2, 1.5) and world.prompts is None
    assert "prompts_sha256" not in world.facts and world.facts["split"] == "train"
    mine = GeneratedSampler(str(sd_dir), 3, 2, sample_steps=2, cache_dir=None, prompts=PROMPTS)
    other = GeneratedSampler(str(sd_dir), 3, 2, sample_steps=2, cache_dir=None, prompts=PROMPTS[::-1])
    assert len({world.key, mine.key, other.key}) == 3
    assert mine.default_loss_space == "latent" and mine.images is None
    batch = mine.sample(6, torch.Generator().manual_seed(0))
    dist = (batch[:, None] - mine.latents[None]).abs().flatten(2).amax(-1)
    assert (dist.min(1).values == 0).all()                       # VAE latents are served as sampled


def test_a_pack_aligned_on_prompt_files_gives_its_training_prompts(sd_dir, tmp_path):
    from dekasim.generative.aligned import apply_pack
    from dekasim.generative.models import load_model
    from dekasim.generative.pack import KnowledgePack, model_fingerprint, save_pack

    ldm = load_model(sd_dir)
    width = ldm.text_encoder.get_input_embeddings().weight.shape[1]
    record = {"source": "prompt_files", "subject": "sks", "train": PROMPTS[:2], "val": [PROMPTS[2]], "test": []}
    pack = KnowledgePack(base_model_hash=model_fingerprint(ldm), metaword="<sks*>", subject="sks",
                         metaword_embedding=torch.randn(width, generator=torch.Generator().manual_seed(0)),
                         info={"prompts": record})
    pack_dir = save_pack(pack, tmp_path / "pack")
    s = GeneratedSampler(str(sd_dir), 3, 2, sample_steps=2, cache_dir=None, pack=pack_dir)
    assert s.facts["prompts_source"] == "pack" and s.prompts == PROMPTS[:2]
    want = apply_pack(ldm, pack).sample_latents([PROMPTS[0], PROMPTS[1], PROMPTS[0]], [2 * 1_000_003 + i for i in range(3)],
                                                steps=2)
    torch.testing.assert_close(s.latents, want.float())
    world_pack = save_pack(KnowledgePack(base_model_hash=model_fingerprint(ldm), metaword="<sks*>", subject="sks",
                                         metaword_embedding=torch.zeros(width), info={"prompts": {"source": "world"}}),
                           tmp_path / "world-pack")
    assert GeneratedSampler(str(sd_dir), 3, 2, sample_steps=2, cache_dir=None, pack=world_pack).prompts is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_keeps_codec_link_and_batches_there(sd_dir, prompt_file, tmp_path):
    import sionna.phy

    before = sionna.phy.config.device
    res = train(_cfg(sd_dir, tmp_path, steps=3, device="cuda", loss_space="image"), out=tmp_path / "gpu")
    assert next(res["codec"].net.parameters()).is_cuda and res["device"] == "cuda"
    assert all(np.isfinite(res["losses"])) and sionna.phy.config.device == before
    cala = train(_cfg(sd_dir, tmp_path, codec="cala", base=str(res["paths"][0]), steps=3, latent_model=None,
                      data="generated", data_model=str(sd_dir), data_prompts=str(prompt_file), data_items=4,
                      device="cuda"), out=tmp_path / "gpu-cala")
    assert next(cala["codec"].bank.parameters()).is_cuda and all(np.isfinite(cala["losses"]))
    assert read_checkpoint(cala["paths"][0])[0]["training"]["device"] == "cuda"
    cond = Condition(snr_db=5.0, delay_spread_ns=300.0, tdl_profile="C")
    x = torch.randn(2, *SHAPE, device="cuda") * 0.04
    z = cala["codec"].encode(x, cond)                              # the trained codec works where it lives
    assert z.is_cuda and z.shape == (2, 43)
