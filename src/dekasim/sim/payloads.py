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
batch of either back to images. Each source lives beside its data (:mod:`dekasim.photos`,
:mod:`dekasim.deka.generated`; DeKA-g's systems: :class:`dekasim.deka.system.DekaPayload`); this module
gathers them for the sweep.
"""

from __future__ import annotations

from dekasim.deka.generated import GeneratedSource
from dekasim.photos import PHOTO_NAMES, PhotoSource

__all__ = ["PHOTO_NAMES", "GeneratedSource", "PhotoSource"]
