"""Codecs: the contract (:mod:`dekasim.codecs.base`) and the built-in codecs, registered by name."""

from dekasim.codecs.base import (Codec, Decoded, LinkCounts, available_codecs, build_codec,
                                 register_codec)
from dekasim.codecs import analog  # noqa: F401  (registers "analog")
from dekasim.codecs import digital  # noqa: F401  (registers "digital", "ideal", "digital_latent")

__all__ = ["Codec", "Decoded", "LinkCounts", "available_codecs", "build_codec", "register_codec"]
