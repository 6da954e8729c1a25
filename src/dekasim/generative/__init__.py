"""The generative payload: the procedural captioned-image world, its attribute checker, and the
text-to-image latent diffusion models (build, sample, save/load, train), and DeKA-g's generation
alignment.

Modules: ``world`` (captioned scenes), ``checker`` (attributes read back from images), ``ldm``
(diffusers pipelines, local directories only), ``train`` (resumable training), ``models`` (shipped
models, local directories, training runs), ``quality`` (checker score of a model), ``features`` (the
world feature encoder behind the consistency metric), ``makd`` (metaword + G-LoRA and baselines),
``pack`` (the knowledge pack), ``alignment`` (``dekasim align`` end to end), ``cli_support``.

``world`` and ``checker`` need only numpy and scipy; the others import torch, diffusers, transformers
and peft when first used.
"""

from dekasim.generative.checker import Checker, CheckReport, checker_accuracy, degrade
from dekasim.generative.world import Attributes, Batch, World, WorldSpec, parse_caption

__all__ = ["Attributes", "Batch", "CheckReport", "Checker", "World", "WorldSpec", "checker_accuracy", "degrade",
           "parse_caption"]
