"""Photographs that ship inside scikit-image's wheel (no download): the ``photos`` payload source of a
scenario (:class:`PhotoSource`) and the photo training data read them here."""

from __future__ import annotations

import numpy as np
import torch

from dekasim.errors import ConfigError

#: scikit-image sample photographs that are colour pictures of natural scenes and ship in its wheel.
PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
               "motorcycle_left", "retina", "rocket", "motorcycle_right")


def load_photo(name: str) -> np.ndarray:
    """The scikit-image sample photograph ``name`` (one of :data:`PHOTO_NAMES`) as ``[H, W, C]`` uint8."""
    from skimage import data

    if name == "motorcycle_left" or name == "motorcycle_right":
        left, right, _ = data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(data, name)()


def centre_crop_resize(img: np.ndarray, resolution_px: int) -> np.ndarray:
    """Centre square crop of an ``[H, W, 3]`` uint8 image, resized to ``resolution_px`` (Lanczos)."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = Image.fromarray(np.ascontiguousarray(img[top:top + s, left:left + s, :3]))
    return np.asarray(crop.resize((resolution_px, resolution_px), Image.Resampling.LANCZOS))


def check_representation(representation: str, allowed: tuple[str, ...], kind: str) -> None:
    """A payload ``representation`` a source of ``kind`` serves, else the scenario error naming it."""
    if representation not in allowed:
        raise ConfigError("payload.representation", representation, f"one of {list(allowed)} for kind = {kind!r}",
                          'latents exist for kind = "generated" only')


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
        check_representation(representation, ("image",), "photos")
        return self.item_shape

    def items(self, start: int, size: int, representation: str = "image") -> torch.Tensor:
        check_representation(representation, ("image",), "photos")
        return self.batch(start, size)

    def to_image(self, payload: torch.Tensor, representation: str = "image") -> torch.Tensor:
        return payload
