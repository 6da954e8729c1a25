"""The generative payload: the procedural captioned-image world, its attribute checker, and the
text-to-image latent diffusion models (build, sample, save/load, train).

``world`` and ``checker`` need only numpy and scipy; ``ldm`` and ``train`` import torch, diffusers
and transformers when first used.
"""

from dekasim.generative.checker import Checker, CheckReport, checker_accuracy, degrade
from dekasim.generative.world import Attributes, Batch, World, WorldSpec, parse_caption

__all__ = ["Attributes", "Batch", "CheckReport", "Checker", "World", "WorldSpec", "checker_accuracy", "degrade",
           "parse_caption"]
