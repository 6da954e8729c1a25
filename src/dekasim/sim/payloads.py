"""Payload sources: what the codecs carry.

* ``photos`` -- real photographs that ship inside scikit-image's wheel (no download), centre-cropped
  to a square and resized to the scenario's resolution with Pillow's Lanczos filter;
* ``bits`` -- blocks of random information bits (:class:`BitsSource`), for BER/BLER curves of codecs that
  carry bits (``digital_bits``);
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

import numpy as np
import torch

from dekasim.deka.generated import GeneratedSource
from dekasim.errors import ConfigError
from dekasim.photos import PHOTO_NAMES, PhotoSource, check_representation

__all__ = ["PHOTO_NAMES", "BitsSource", "GeneratedSource", "PhotoSource"]


class BitsSource:
    """Blocks of independent, uniform random information bits (``[payload] kind = "bits"``).

    Block ``i`` is drawn from its own generator seeded with ``(seed, i)``, so a block is the same whatever batch
    it is sent in, and every codec and point of a scenario sends the same blocks (paired comparisons); the
    channel and noise draws are the point's own.

    :param block_bits: information bits per block.
    :param seed: the scenario seed.
    :output items: ``[size, block_bits]`` float32 in {0, 1}.
    """

    kind = "bits"

    def __init__(self, block_bits: int, seed: int) -> None:
        if isinstance(block_bits, bool) or not isinstance(block_bits, int) or block_bits < 1:
            raise ConfigError("payload.block_bits", block_bits, "information bits per block, an integer >= 1")
        self.block_bits, self.seed = block_bits, int(seed)

    def shape(self, representation: str = "bits") -> tuple[int, ...]:
        check_representation(representation, ("bits",), "bits")
        return (self.block_bits,)

    def items(self, start: int, size: int, representation: str = "bits") -> torch.Tensor:
        check_representation(representation, ("bits",), "bits")
        rows = [np.random.default_rng([self.seed, i]).integers(0, 2, self.block_bits, dtype=np.uint8)
                for i in range(start, start + size)]
        return torch.from_numpy(np.stack(rows)).to(torch.float32)
