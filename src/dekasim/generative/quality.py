"""How well a text-to-image model draws the world: the attribute checker on generated images.

The score is the fraction of prompts whose image the checker reads back fully correct (every
attribute), with a 95 % Clopper-Pearson interval, next to the checker's own ceiling on the world's
renders of the same prompts (so ``ratio_to_ceiling`` separates the model's errors from the checker's).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dekasim.errors import ConfigError
from dekasim.generative.checker import Checker
from dekasim.generative.models import model_world
from dekasim.generative.world import ATTRIBUTE_NAMES
from dekasim.metrics.stats import binomial_ci95


@dataclass
class QualityReport:
    """Checker scores of one model on ``n`` prompts of one split.

    :param fully_correct: fraction of images with every attribute right.
    :param fully_correct_ci95: its Clopper-Pearson interval ``[lo, hi]``.
    :param per_attribute: fraction right per attribute.
    :param ceiling: the checker's fully-correct fraction on the world's own renders of the same prompts.
    :param ratio_to_ceiling: ``fully_correct / ceiling``.
    :param sample_s_per_image: wall seconds per generated image (batched).
    """

    split: str
    n: int
    dialect: str
    fully_correct: float
    fully_correct_ci95: tuple[float, float]
    per_attribute: dict[str, float]
    ceiling: float
    ratio_to_ceiling: float
    sample_s_per_image: float
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generation_quality(model, n: int = 256, split: str = "heldout", seed: int = 0, steps: int = 25,
                       guidance: float = 1.5, dialect: str | None = None, batch_size: int = 64) -> QualityReport:
    """Sample ``n`` prompts of ``split`` (``"heldout"``: combinations never trained on) and check them.

    :param model: a :class:`~dekasim.generative.ldm.TextToImageLDM`.
    :param dialect: the rendering convention the images are judged by (default: the one the model
        was trained on, from its config; ``"standard"`` judges an edge model by the cloud's convention).
    """
    if n < 1:
        raise ConfigError("n", n, "a positive number of prompts")
    world = model_world(model, dialect)
    batch = world.sample(n, seed=seed, split=split)
    prompts = batch.captions
    t0 = time.perf_counter()
    images = model.sample(prompts, seeds=[seed * 100_003 + i for i in range(n)], steps=steps, guidance=guidance,
                          batch_size=batch_size).cpu()
    dt = time.perf_counter() - t0
    checker = Checker(world.spec)
    intended = [s.rendered for s in batch.scenes]
    report = checker.check(images, intended)
    ceiling = checker.check(batch.images, intended)
    k = int(report.fully_correct.sum())
    ceil = float(np.mean(ceiling.fully_correct))
    return QualityReport(split=split, n=n, dialect=world.dialect_name, fully_correct=k / n,
                         fully_correct_ci95=binomial_ci95(k, n),
                         per_attribute={a: float(np.mean(report.correct[a])) for a in ATTRIBUTE_NAMES},
                         ceiling=ceil, ratio_to_ceiling=(k / n) / ceil if ceil else float("nan"),
                         sample_s_per_image=dt / n, settings={"seed": seed, "steps": steps, "guidance": guidance})
