"""Photographs that ship inside scikit-image's wheel (no download): the photo payload and the photo
training data read them here."""

from __future__ import annotations

import numpy as np

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
