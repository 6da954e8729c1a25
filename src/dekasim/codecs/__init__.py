"""Codecs: the contract (:mod:`dekasim.codecs.base`), the built-in codecs registered by name, codecs of
installed packages (entry points ``dekasim.codecs``) and any ``"package.module:Class"``; the shared
conformance check (:mod:`dekasim.codecs.conformance`)."""

from dekasim.codecs.base import (Codec, Decoded, LinkCounts, available_codecs, build_codec,
                                 register_codec, resolve_codec)
from dekasim.codecs import analog  # noqa: F401  (registers "analog")
from dekasim.codecs import digital  # noqa: F401  (registers "digital", "ideal", "digital_latent")
from dekasim.codecs import digital_bits  # noqa: F401  (registers "digital_bits")
from dekasim.codecs import cala  # noqa: F401  (registers "jscc", "jscc_mixed", "adjscc", "cala", "lora_oracle")

__all__ = ["Codec", "Decoded", "LinkCounts", "available_codecs", "build_codec", "register_codec", "resolve_codec"]
