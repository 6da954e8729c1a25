"""Training data of the learned codecs: photo crops, or what an edge text-to-image model generates.

Two samplers with one interface, ``sample(batch, generator) -> [batch, *item_shape]`` float32:

- :class:`CropSampler` (in :mod:`dekasim.training.jscc`): random crops of training photographs,
  ``[3, S, S]`` in [0, 1].
- :class:`GeneratedSampler`: a fixed set of ``n_items`` images that a text-to-image model (default the
  shipped ``edge``) generates for captions of the world's *training* split (the held-out captions,
  which the ``generated`` scenario payload uses by default, are never generated here), with horizontal
  flips. ``representation = "image"`` gives ``[3, R, R]`` in [0, 1]; ``"latent"`` gives the model's
  latents (the embedded world: ``pixel_unshuffle(2 x - 1, 4)``, ``[48, R/4, R/4]`` in [-1, 1]), i.e.
  what the edge hands to its transmitter in DeKA-g.

Generating 4096 images costs about 7 min on 2 CPU threads, so the set is cached as one safetensors file
(written by this module only; the generation parameters and the model's fingerprint are in its name and
metadata, and a mismatch regenerates it).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import torch

from dekasim.errors import ConfigError

_log = logging.getLogger(__name__)
#: Representations a generated training set can be served in.
REPRESENTATIONS = ("image", "latent")


def generation_key(model_fingerprint: str, n_items: int, seed: int, sample_steps: int, guidance: float,
                   pack_generation: str | None = None) -> str:
    """Short hash naming one generated set (model weights, the knowledge pack's
    :meth:`~dekasim.generative.pack.KnowledgePack.generation_fingerprint` and every generation parameter)."""
    fields: list = [model_fingerprint, int(n_items), int(seed), int(sample_steps), float(guidance)]
    if pack_generation is not None:  # sets made without a pack keep the key they had before packs were allowed
        fields.append(pack_generation)
    text = json.dumps(fields)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class GeneratedSampler:
    """Random items (with horizontal flips) from images a text-to-image model generated.

    :param model: a model spec of :func:`dekasim.generative.models.load_model` (``"edge"``, a directory).
    :param n_items: images in the set (captions drawn with replacement from the training split).
    :param seed: seed of the captions and of the sampling noise (image ``i`` uses ``seed * 1_000_003 + i``).
    :param sample_steps: DDIM steps; :param guidance: classifier-free guidance (the payload's defaults).
    :param representation: ``"image"`` or ``"latent"`` (see the module docstring).
    :param pack: a knowledge-pack directory (``dekasim align``) applied to the model before generating:
        DeKA-g's S_EG, the aligned edge's images; None: the model as it is.
    :param cache_dir: where the generated set is kept (``None``: not kept).
    :param log: progress messages.
    """

    def __init__(self, model: str = "edge", n_items: int = 4096, seed: int = 7, sample_steps: int = 25,
                 guidance: float = 1.5, representation: str = "latent", cache_dir: str | Path | None = "runs/cache",
                 log: Callable[[str], None] | None = None, pack: str | Path | None = None) -> None:
        from dekasim.generative.models import load_model
        from dekasim.generative.pack import model_fingerprint

        if representation not in REPRESENTATIONS:
            raise ConfigError("representation", representation, f"one of {list(REPRESENTATIONS)}")
        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
            raise ConfigError("n_items", n_items, "a positive number of generated training images")
        log = log or _log.info
        self.ldm = load_model(model)
        self.representation = representation
        self.model = str(model)
        self.fingerprint = model_fingerprint(self.ldm)
        self.generator = self.ldm
        pack_sha = None
        if pack is not None:
            from dekasim.deka.generated import pack_sha256
            from dekasim.generative.aligned import apply_pack
            from dekasim.generative.pack import load_pack

            loaded = load_pack(pack)
            self.generator = apply_pack(self.ldm, loaded)            # checks the pack was made for this model
            pack_sha = pack_sha256(pack)                              # the manifest pins every file's sha256
            generation = loaded.generation_fingerprint()              # metaword + G-LoRA: the bank changes nothing
        self.key = generation_key(self.fingerprint, n_items, seed, sample_steps, guidance,
                                  None if pack is None else generation)
        self.facts = {"model": str(model), "model_fingerprint": self.fingerprint, "n_items": n_items, "seed": seed,
                      "sample_steps": sample_steps, "guidance": guidance, "split": "train", "key": self.key}
        if pack is not None:
            self.facts.update(pack=str(pack), pack_manifest_sha256=pack_sha, pack_generation_fingerprint=generation)
        path = None if cache_dir is None else Path(cache_dir) / f"generated-{self.key}.safetensors"
        latents = self._load(path) if path is not None and path.exists() else None
        if latents is None:
            latents = self._generate(n_items, seed, sample_steps, guidance, log)
            if path is not None:
                from safetensors.torch import save_file

                path.parent.mkdir(parents=True, exist_ok=True)
                meta = {k: str(v) for k, v in self.facts.items()}
                save_file({"latents": latents.contiguous()}, str(path), metadata=meta)
                log(f"cached the generated set in {path}")
        self.latents = latents
        self.images = self.ldm.latents.decode(latents).contiguous()

    def _load(self, path: Path) -> torch.Tensor | None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != self.key or meta.get("model_fingerprint") != self.fingerprint:
                return None
            return f.get_tensor("latents").float()

    def _generate(self, n_items: int, seed: int, sample_steps: int, guidance: float,
                  log: Callable[[str], None]) -> torch.Tensor:
        from dekasim.deka.generated import generate_latents
        from dekasim.generative.models import model_world

        captions = model_world(self.ldm).sample(n_items, seed=seed, split="train").captions
        seeds = [seed * 1_000_003 + i for i in range(n_items)]
        return generate_latents(self.generator, captions, seeds, steps=sample_steps, guidance=guidance, chunk=256,
                                log=log, what=f"training images with {self.model}")

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple((self.latents if self.representation == "latent" else self.images).shape[1:])

    def to_image(self, items: torch.Tensor) -> torch.Tensor:
        """Items of this sampler's representation -> images ``[B, 3, R, R]`` (unclamped, for losses)."""
        if self.representation == "image":
            return items
        return self.ldm.latents.decode(items, clamp=False)

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """``[batch, *item_shape]`` float32: random set members, half of them flipped left-right."""
        r = torch.rand(batch, 2, generator=gen)
        idx = (r[:, 0] * len(self.images)).long().clamp_max(len(self.images) - 1)
        images = self.images[idx]
        flip = r[:, 1] < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if self.representation == "image":
            return images
        return self.ldm.latents.encode(images)
