"""Payload sources: what the codecs carry.

* ``photos`` -- real photographs that ship inside scikit-image's wheel (no download), centre-cropped
  to a square and resized to the scenario's resolution with Pillow's Lanczos filter;
* ``generated`` -- the images an edge text-to-image model generates for world prompts (DeKA-g's
  payload: the user's image is compared with the edge's own image), optionally with a knowledge pack
  applied (MAKD-aligned edge). With ``representation = "latent"`` the codecs that take latents get
  the edge's latents (what DeKA-g's transmitter sends) and the receiver's latents are decoded to an
  image by the model's latent map; metrics are always on images.

Every source serves ``items(start, size, representation)``: ``"image"`` items ``[B, 3, R, R]`` in
[0, 1], and for generated payloads ``"latent"`` items ``[B, *latent_shape]``; ``to_image`` maps a
batch of either back to images.
"""

from __future__ import annotations

import numpy as np
import torch

from dekasim.errors import ConfigError
from dekasim.photos import PHOTO_NAMES, centre_crop_resize, load_photo

class PhotoSource:
    """Real photographs as ``[N, 3, R, R]`` float32 in [0, 1].

    :param resolution_px: side R of the square images (16..512).
    :param names: which photographs; default :data:`PHOTO_NAMES`.
    """

    kind = "image"

    def __init__(self, resolution_px: int = 64, names: tuple[str, ...] = PHOTO_NAMES) -> None:
        if not 16 <= resolution_px <= 512:
            raise ConfigError("payload.resolution_px", resolution_px, "an image side in pixels within [16, 512]")
        unknown = [n for n in names if n not in PHOTO_NAMES]
        if unknown:
            raise ConfigError("payload.photos", unknown, f"names among {list(PHOTO_NAMES)}")
        self.names = tuple(names)
        self.resolution_px = resolution_px
        arrays = [centre_crop_resize(load_photo(n), resolution_px) for n in self.names]
        self.images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0).contiguous()

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def batch(self, start: int, size: int) -> torch.Tensor:
        """Items ``start .. start+size-1``, cycling through the set (Monte-Carlo repeats reuse photos
        with fresh channel and noise draws)."""
        idx = torch.arange(start, start + size) % len(self.images)
        return self.images[idx]

    def shape(self, representation: str) -> tuple[int, ...]:
        """Item shape of ``representation`` (photos have images only)."""
        _check_representation(representation, ("image",), "photos")
        return self.item_shape

    def items(self, start: int, size: int, representation: str = "image") -> torch.Tensor:
        _check_representation(representation, ("image",), "photos")
        return self.batch(start, size)

    def to_image(self, payload: torch.Tensor, representation: str = "image") -> torch.Tensor:
        return payload


def _check_representation(representation: str, allowed: tuple[str, ...], kind: str) -> None:
    if representation not in allowed:
        raise ConfigError("payload.representation", representation, f"one of {list(allowed)} for kind = {kind!r}",
                          'latents exist for kind = "generated" only')


class GeneratedSource:
    """Images an edge text-to-image model generates, ``[N, 3, R, R]`` float32 in [0, 1].

    Prompts are ``n_prompts`` captions of a world split drawn from ``seed``; image ``i`` is sampled with
    seed ``seed * 1_000_003 + i`` (DDIM, ``sample_steps``, CFG ``guidance``). Generated once per process.

    :param model: ``"edge"``, ``"cloud"``, a model directory or a ``dekasim world train`` run directory.
    :param pack: a knowledge-pack directory (``dekasim align``) to apply to the model first, or None.
    """

    kind = "image"

    def __init__(self, model: str = "edge", pack: str | None = None, prompts: str = "heldout", n_prompts: int = 64,
                 sample_steps: int = 25, guidance: float = 1.5, seed: int = 0, resolution_px: int = 32,
                 device: str = "cpu", representation: str = "image") -> None:
        from dekasim.generative.models import load_model, model_world

        ldm = load_model(model)
        if ldm.config.resolution_px != resolution_px:
            raise ConfigError("payload.resolution_px", resolution_px,
                              f"the model's image side ({ldm.config.resolution_px} px)",
                              f"set resolution_px = {ldm.config.resolution_px} or leave it out")
        sampler = ldm
        if pack is not None:
            from dekasim.generative.makd import apply_pack
            from dekasim.generative.pack import load_pack

            sampler = apply_pack(ldm, load_pack(pack), copy_model=False)
        batch = model_world(ldm).sample(n_prompts, seed=seed, split=prompts)
        self.prompts = batch.captions
        self.seeds = [seed * 1_000_003 + i for i in range(n_prompts)]
        self.resolution_px = resolution_px
        _check_representation(representation, ("image", "latent"), "generated")
        self.representation = representation
        self.latent_map = ldm.latents
        from dekasim.deka.generated import generate_latents

        self.latents = generate_latents(sampler, self.prompts, self.seeds, steps=sample_steps, guidance=guidance)
        with torch.no_grad():
            self.images = self.latent_map.decode(self.latents).float()  # [N, 3, R, R] in [0, 1]

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def batch(self, start: int, size: int) -> torch.Tensor:
        """Images ``start .. start+size-1``, cycling through the generated set."""
        return self.items(start, size, "image")

    def shape(self, representation: str) -> tuple[int, ...]:
        _check_representation(representation, ("image", "latent"), "generated")
        return tuple((self.latents if representation == "latent" else self.images).shape[1:])

    def items(self, start: int, size: int, representation: str = "image") -> torch.Tensor:
        """Items ``start .. start+size-1`` as images or as the edge's latents, cycling through the set."""
        _check_representation(representation, ("image", "latent"), "generated")
        idx = torch.arange(start, start + size) % len(self.images)
        return (self.latents if representation == "latent" else self.images)[idx]

    def to_image(self, payload: torch.Tensor, representation: str = "image") -> torch.Tensor:
        """A batch of ``representation`` items as images ``[B, 3, R, R]`` in [0, 1] (latents: the model's
        latent decoder, as the DeKA-g receiver does)."""
        if representation == "image":
            return payload
        with torch.no_grad():
            return self.latent_map.to(payload.device).decode(payload.float()).float()
