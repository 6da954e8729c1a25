"""What one MAKD alignment is: its settings (:class:`AlignConfig`) and its prompt sets
(:func:`alignment_prompts`: S_CG, validation, test and control prompts; see :mod:`dekasim.generative.makd`
for the split). Data only: the DeKA-g scenario reads a pack's own settings here to know which prompts
its alignment never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dekasim.errors import ConfigError
from dekasim.generative.world import ATTRIBUTE_NAMES, Attributes, World


@dataclass
class AlignConfig:
    """One MAKD alignment and its baselines.

    :param subject: the caption word to align (a shape or colour word of the world).
    :param metaword: the new token; default ``"<{subject}*>"``.
    :param placement: ``"before_subject"`` (``a red <triangle*> triangle ...``) or ``"prefix"``.
    :param n_train_images: |S_CG|, cloud images to distil from (the paper used 40 per subject).
    :param n_val_prompts: validation prompts for early stopping (a new background or a new position).
    :param n_test_prompts: test prompts with the subject (other backgrounds and positions).
    :param n_control_prompts: test prompts without the subject.
    :param budget_steps: optimiser steps per method (MAKD: both phases together).
    :param metaword_fraction: MAKD's share of the budget for phase (a).
    :param lora_rank, lora_alpha: G-LoRA rank and scale numerator (alpha = rank: scale 1).
    :param lr_metaword, lr_lora: AdamW learning rates.
    :param batch_size: S_CG images per step (drawn with replacement).
    :param eval_every: steps between validation scores; ``patience``: evaluations without a gain
        before a phase stops.
    :param val_metric: the early-stopping score (a :class:`~dekasim.metrics.consistency.ConsistencyReport` metric).
    :param sample_steps, guidance: DDIM steps and CFG scale for every generated image.
    :param seed: seeds prompts, S_CG, noise, timesteps, LoRA initialisation and sampling.
    :param threads: torch threads during alignment (None = leave as is).
    """

    subject: str = "triangle"
    metaword: str | None = None
    placement: str = "before_subject"
    n_train_images: int = 40
    n_val_prompts: int = 32
    n_test_prompts: int = 128
    n_control_prompts: int = 64
    budget_steps: int = 400
    metaword_fraction: float = 0.5
    lora_rank: int = 8
    lora_alpha: float | None = None
    lr_metaword: float = 5e-3
    lr_lora: float = 1e-3
    batch_size: int = 16
    eval_every: int = 50
    patience: int = 4
    val_metric: str = "feature_cosine"
    sample_steps: int = 25
    guidance: float = 1.5
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        if self.placement not in ("before_subject", "prefix"):
            raise ConfigError("align.placement", self.placement, "'before_subject' or 'prefix'")
        for name in ("n_train_images", "n_val_prompts", "n_test_prompts", "budget_steps", "lora_rank",
                     "batch_size", "eval_every", "patience", "sample_steps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"align.{name}", getattr(self, name), "a positive integer")
        if self.n_control_prompts < 0:
            raise ConfigError("align.n_control_prompts", self.n_control_prompts, "an integer >= 0")
        if not 0.0 < self.metaword_fraction < 1.0:
            raise ConfigError("align.metaword_fraction", self.metaword_fraction, "a fraction within (0, 1)")
        for name in ("lr_metaword", "lr_lora"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"align.{name}", v, "a positive learning rate")
        if self.metaword is None:
            self.metaword = f"<{self.subject}*>"
        if " " in self.metaword or not self.metaword:
            raise ConfigError("align.metaword", self.metaword, "one token without spaces, e.g. '<triangle*>'")

    @property
    def alpha(self) -> float:
        return float(self.lora_alpha if self.lora_alpha is not None else self.lora_rank)


# ----------------------------------------------------------------------------------------------
# Prompts


#: Image ``i`` of split ``k`` is drawn with seed ``SEED_BASE[k] + 1000 * seed + i``.
SEED_BASE = {"train": 1_000_000, "val": 2_000_000, "test": 3_000_000, "control": 4_000_000}
#: Seeds of the control prompts on the validation region (several subjects; :func:`control_prompts`).
VAL_CONTROL_SEED_BASE = 5_000_000


@dataclass
class AlignmentPrompts:
    """The prompt sets of one alignment (captions, and the seed of each image)."""

    train: list[str]
    val: list[str]
    test: list[str]
    control: list[str]
    seeds: dict[str, list[int]] = field(default_factory=dict)


def _subject_attribute(world: World, subject: str) -> str:
    for name in ATTRIBUTE_NAMES:
        if subject in world.spec.values(name):
            return name
    words = sorted({w for n in ("shape", "colour") for w in world.spec.values(n)})
    raise ConfigError("align.subject", subject, f"a shape or colour word of the world, one of {words}")


def alignment_prompts(world: World, config: AlignConfig) -> AlignmentPrompts:
    """S_CG, validation, test and control prompts (see the module docstring for the split).

    Align region: backgrounds ``[:half]`` x positions ``[::2]`` (corners and centre); test region:
    backgrounds ``[half:]`` x positions ``[1::2]`` (edges); validation region: the two mixed blocks
    (align backgrounds x test positions, test backgrounds x align positions). Among captions holding
    the subject, S_CG prompts are drawn from the align region (without replacement, or with it when
    the region is smaller than ``n_train_images``), validation and test prompts from their regions;
    control prompts are test-region captions *without* the subject.
    """
    attr = _subject_attribute(world, config.subject)
    sp = world.spec
    half = max(1, len(sp.backgrounds) // 2)
    align_bg, test_bg = set(sp.backgrounds[:half]), set(sp.backgrounds[half:]) or set(sp.backgrounds)
    align_pos, test_pos = set(sp.positions[::2]), set(sp.positions[1::2]) or set(sp.positions)
    combos = world.split("all")
    has = [a for a in combos if getattr(a, attr) == config.subject]
    align = [a for a in has if a.background in align_bg and a.position in align_pos]
    test = [a for a in has if a.background in test_bg and a.position in test_pos]
    val = [a for a in has if (a.background in align_bg) != (a.position in align_pos)]
    control = [a for a in combos if getattr(a, attr) != config.subject and a.background in test_bg
               and a.position in test_pos]
    rng = np.random.default_rng([config.seed, 0xA11])
    n_tr = config.n_train_images
    if n_tr <= len(align):
        tr_idx = rng.permutation(len(align))[:n_tr]
    else:  # small worlds: S_CG repeats prompts (with other seeds)
        tr_idx = rng.integers(0, len(align), size=n_tr)

    def pick(pool: list[Attributes], n: int, salt: int) -> list[str]:
        if n == 0 or not pool:
            return []
        r = np.random.default_rng([config.seed, salt])
        idx = r.permutation(len(pool))[:n] if n <= len(pool) else r.integers(0, len(pool), size=n)
        return [pool[i].caption() for i in idx]

    out = AlignmentPrompts(train=[align[i].caption() for i in tr_idx], val=pick(val or align, config.n_val_prompts, 0x7A1),
                           test=pick(test, config.n_test_prompts, 0x7E57),
                           control=pick(control, config.n_control_prompts, 0xC0))
    out.seeds = {k: [SEED_BASE[k] + 1000 * config.seed + i for i in range(len(getattr(out, k)))] for k in SEED_BASE}
    return out


def control_prompts(world: World, config: AlignConfig, subjects: list[str] | tuple[str, ...],
                    region: str) -> tuple[list[str], list[int]]:
    """Prompts naming none of ``subjects`` and their seeds: on the test region (``region="test"``: the
    control prompts of an alignment of several subjects, ``config.n_control_prompts`` of them) or on the
    validation region (``"val"``: ``config.n_val_prompts``, for choosing designs), drawn as
    :func:`alignment_prompts` draws its own."""
    attrs = {s: _subject_attribute(world, s) for s in subjects}
    sp = world.spec
    half = max(1, len(sp.backgrounds) // 2)
    align_bg, test_bg = set(sp.backgrounds[:half]), set(sp.backgrounds[half:]) or set(sp.backgrounds)
    align_pos, test_pos = set(sp.positions[::2]), set(sp.positions[1::2]) or set(sp.positions)
    free = [a for a in world.split("all") if all(getattr(a, attr) != s for s, attr in attrs.items())]
    if region == "test":
        pool = [a for a in free if a.background in test_bg and a.position in test_pos]
        n, salt, base = config.n_control_prompts, 0xC0, SEED_BASE["control"]
    elif region == "val":
        pool = [a for a in free if (a.background in align_bg) != (a.position in align_pos)]
        n, salt, base = config.n_val_prompts, 0xC1, VAL_CONTROL_SEED_BASE
    else:
        raise ConfigError("region", region, "'test' or 'val'")
    if n == 0 or not pool:
        return [], []
    r = np.random.default_rng([config.seed, salt, len(subjects)])
    idx = r.permutation(len(pool))[:n] if n <= len(pool) else r.integers(0, len(pool), size=n)
    return [pool[i].caption() for i in idx], [base + 1000 * config.seed + i for i in range(len(idx))]
