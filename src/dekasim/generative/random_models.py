"""Random-weight models in the real layouts of diffusers and transformers, built from configs.

A user's own models -- a Stable-Diffusion-layout text-to-image folder, a DINO or CLIP image encoder --
cannot be downloaded here, so the code paths that read them are exercised on models of the same
classes and layouts with random weights, written by the libraries' own ``save_pretrained``:

* :func:`write_sd_pipeline`: ``StableDiffusionPipeline(unet, vae, text_encoder, tokenizer, scheduler)``
  -> ``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``;
  the tokenizer is a byte-level BPE ``CLIPTokenizer`` whose vocabulary and merges are made from a word
  list (:func:`clip_bpe_tokenizer`), as CLIP's own are (256 byte symbols, their word-final ``</w>``
  forms, merges, ``<|startoftext|>`` / ``<|endoftext|>``);
* :func:`write_dino`: a transformers ``Dinov2Model`` and its ``preprocessor_config.json``;
* :func:`write_clip_vision`: a ``CLIPVisionModelWithProjection`` and its ``preprocessor_config.json``.

Sizes come from :data:`PRESETS`: ``"tiny"`` (seconds to build and run: the tests), ``"sd15"`` (the
component sizes of Stable Diffusion 1.5 from its public model card: UNet about 860 M parameters, the
KL VAE with 4 latent channels at 1/8 scale, a CLIP ViT-L/14 text encoder) and ``"bk-sdm-tiny"`` (the
block-removed SD UNet of BK-SDM-Tiny, about 320 M parameters). Nothing is downloaded; the weights are
random, so such a model draws noise -- it serves to check layouts, shapes, speed and memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from dekasim.errors import ConfigError

#: Words the tiny BPE tokenizer merges whole (others are spelled by bytes).
TINY_WORDS = ("a", "an", "the", "photo", "of", "red", "blue", "green", "yellow", "small", "large", "cat", "dog",
              "car", "house", "tree", "on", "in", "at", "beach", "street", "grass", "snow", "with", "sks")

_SD15_UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
              "block_out_channels": [320, 640, 1280, 1280],
              "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"],
              "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
              "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32}
_SD15_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 512,
             "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
             "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
             "scaling_factor": 0.18215}
_SD15_TEXT = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
              "num_attention_heads": 12, "max_position_embeddings": 77, "projection_dim": 768,
              "hidden_act": "quick_gelu"}

#: Component configs per preset: ``unet`` (UNet2DConditionModel), ``vae`` (AutoencoderKL), ``text``
#: (CLIPTextConfig), ``max_length`` (tokens), ``resolution_px``; ``dino`` / ``clip`` image encoders.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "unet": {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
                 "block_out_channels": [16, 32], "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32,
                 "attention_head_dim": 8, "norm_num_groups": 8},
        "vae": {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 64,
                "block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 8,
                "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
                "scaling_factor": 0.18215},
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "max_position_embeddings": 32, "projection_dim": 32, "hidden_act": "quick_gelu"},
        "max_length": 32, "resolution_px": 64,
        "dino": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                 "image_size": 32, "patch_size": 8},
        "clip": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "image_size": 32, "patch_size": 8, "projection_dim": 16},
    },
    "sd15": {"unet": _SD15_UNET, "vae": _SD15_VAE, "text": _SD15_TEXT, "max_length": 77, "resolution_px": 512,
             # DINOv2 ViT-B/14 and CLIP ViT-L/14 image towers
             "dino": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                      "intermediate_size": 3072, "image_size": 518, "patch_size": 14, "crop_size": 224},
             "clip": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                      "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "projection_dim": 768,
                      "hidden_act": "quick_gelu"}},
    # BK-SDM-Tiny: SD 1.5 with the mid block and one ResNet+attention layer per stage removed (~ 323 M)
    "bk-sdm-tiny": {"unet": {**_SD15_UNET, "layers_per_block": 1, "mid_block_type": None,
                             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                                  "CrossAttnDownBlock2D"],
                             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                             "block_out_channels": [320, 640, 1280]},
                    "vae": _SD15_VAE, "text": _SD15_TEXT, "max_length": 77, "resolution_px": 512},
}


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map of the 256 byte values to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def clip_bpe_tokenizer(words: Sequence[str] = TINY_WORDS, model_max_length: int = 32, vocab_size: int | None = None):
    """A byte-level BPE ``CLIPTokenizer`` whose merges spell each of ``words`` as one token.

    Vocabulary: the 256 byte symbols, their word-final ``</w>`` forms, one entry per merge, then
    ``<|startoftext|>`` and ``<|endoftext|>`` (also the padding token, as in CLIP); ``vocab_size``
    pads the vocabulary with unused ``<|unused_i|>`` entries (a text encoder of CLIP's 49 408 rows).
    """
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for s in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(s, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(w.lower() for w in words):
        parts = [c for c in word]
        parts[-1] += "</w>"
        while len(parts) > 1:
            merged = parts[0] + parts[1]
            rule = (parts[0], parts[1])
            if rule not in merges:
                merges.append(rule)
            vocab.setdefault(merged, len(vocab))
            parts = [merged] + parts[2:]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    if vocab_size is not None:
        if vocab_size < len(vocab):
            raise ConfigError("vocab_size", vocab_size, f">= {len(vocab)} (the entries the word list needs)")
        while len(vocab) < vocab_size:
            vocab[f"<|unused_{len(vocab)}|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError("preset", name, f"one of {sorted(PRESETS)}")
    return PRESETS[name]


def build_sd_pipeline(preset: str = "tiny", seed: int = 0, unet: dict[str, Any] | None = None):
    """A ``StableDiffusionPipeline`` with random weights (no safety checker), components sized by ``preset``.

    :param unet: overrides of the preset's UNet config (e.g. ``{"block_out_channels": [32, 64]}`` for a
        larger cloud model).
    :param seed: initialises every component (the same seed gives the same weights).
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    p = _preset(preset)
    text_cfg = dict(p["text"])
    tok = clip_bpe_tokenizer(model_max_length=p["max_length"], vocab_size=text_cfg.pop("vocab_size", None))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **text_cfg))
        vae = AutoencoderKL(**p["vae"])
        un = UNet2DConditionModel(**{**p["unet"], **(unet or {})})
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=un, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def write_sd_pipeline(out_dir: str | Path, preset: str = "tiny", seed: int = 0,
                      unet: dict[str, Any] | None = None) -> Path:
    """:func:`build_sd_pipeline` saved by diffusers' ``save_pretrained`` (safetensors) into ``out_dir``."""
    from dekasim.generative.ldm import _quiet

    d = Path(out_dir)
    with _quiet():
        build_sd_pipeline(preset, seed, unet).save_pretrained(d, safe_serialization=True)
    return d


def _save(model: torch.nn.Module, d: Path) -> None:
    from dekasim.generative.ldm import _quiet

    with _quiet():
        model.save_pretrained(d, safe_serialization=True)


def _write_preprocessor(d: Path, size: int, crop: int, mean: Sequence[float], std: Sequence[float]) -> None:
    (d / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"shortest_edge": size}, "do_center_crop": True,
        "crop_size": {"height": crop, "width": crop}, "do_normalize": True, "image_mean": list(mean),
        "image_std": list(std), "resample": 3}, indent=2))


def write_dino(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """A random ``Dinov2Model`` (DINO-score: cosine of its layer-normed CLS token) in ``out_dir``."""
    from transformers import Dinov2Config, Dinov2Model

    cfg = dict(_preset(preset)["dino"])
    crop = cfg.pop("crop_size", cfg["image_size"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Dinov2Model(Dinov2Config(**cfg))
    d = Path(out_dir)
    _save(model, d)
    _write_preprocessor(d, crop, crop, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return d


def write_clip_vision(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """A random ``CLIPVisionModelWithProjection`` (CLIP-I: cosine of projected image embeddings) in ``out_dir``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = dict(_preset(preset)["clip"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg))
    d = Path(out_dir)
    _save(model, d)
    _write_preprocessor(d, cfg["image_size"], cfg["image_size"], (0.48145466, 0.4578275, 0.40821073),
                        (0.26862954, 0.26130258, 0.27577711))
    return d
