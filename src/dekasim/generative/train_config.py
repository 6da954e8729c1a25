"""The settings of one LDM training run (:func:`dekasim.generative.train.train`); data only, so that
reading a run directory (:mod:`dekasim.generative.run_dir`) needs no trainer."""

from __future__ import annotations

from dataclasses import dataclass

from dekasim.errors import ConfigError
from dekasim.generative.ldm import PRESETS, TinyClipSpec, UNetSpec
from dekasim.generative.world import World


@dataclass
class TrainConfig:
    """One training run.

    :param preset: model preset of :func:`~dekasim.generative.ldm.build_ldm` (``"cloud"``, ``"edge"``, ``"toy"``).
    :param dialect: rendering convention of the training images (default: the preset's).
    :param steps: optimiser steps of the whole run (the learning-rate schedule spans them).
    :param batch_size: images per step.
    :param learning_rate: peak AdamW learning rate (after ``warmup_steps``, cosine-decayed to 10 %).
    :param ema_decay: EMA decay (with the usual ``(1 + n) / (10 + n)`` warm-up).
    :param caption_dropout: probability of replacing a caption by the empty prompt.
    :param train_text_encoder: None = train it iff it is not the pretrained MiniLM.
    :param seed: seeds initialisation, caption draws, renders, noise and timesteps.
    :param threads: torch intra-op threads during training (None = leave as is).
    :param device: where the UNet trains (``"cpu"``, ``"cuda"``); batches are drawn on the CPU, so a run's
        data do not depend on it, and the model comes back on the CPU. Not part of a run's identity.
    :param time_budget_s: stop this call after this much wall time (None = no limit); resume later.
    :param steps_this_call: stop this call after this many steps (None = no limit); resume later.
    :param checkpoint_every: steps between checkpoints (besides the one written when a call stops).
    :param log_every: steps between log rows (each evaluates the fixed validation batch).
    :param eval_batch: size of the fixed validation batch (fixed images, noise and timesteps).
    :param save_unet_dtype: ``"float16"`` halves the shipped UNet; ``"float32"`` keeps it exact.
    :param split, holdout_fraction, split_seed: the world's caption split (held-out captions are never trained on).
    :param unet, tiny_clip: override the preset's sizes.
    """

    preset: str = "cloud"
    dialect: str | None = None
    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    train_text_encoder: bool | None = None
    seed: int = 0
    threads: int | None = 1
    device: str = "cpu"
    time_budget_s: float | None = None
    steps_this_call: int | None = None
    checkpoint_every: int | None = 500
    log_every: int = 100
    eval_batch: int = 64
    save_unet_dtype: str = "float32"
    split: str = "combo"
    holdout_fraction: float = 0.1
    split_seed: int = 0
    unet: UNetSpec | None = None
    tiny_clip: TinyClipSpec | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError("train.preset", self.preset, f"one of {sorted(PRESETS)}")
        for name in ("steps", "batch_size", "log_every", "eval_batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name}", getattr(self, name), "a positive integer")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ConfigError("train.caption_dropout", self.caption_dropout, "a probability within [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("train.ema_decay", self.ema_decay, "a decay within [0, 1)")
        if self.save_unet_dtype not in ("float16", "float32"):
            raise ConfigError("train.save_unet_dtype", self.save_unet_dtype, "'float16' or 'float32'")
        if isinstance(self.unet, dict):
            self.unet = UNetSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.unet.items()})
        if isinstance(self.tiny_clip, dict):
            self.tiny_clip = TinyClipSpec(**self.tiny_clip)

    def world(self) -> World:
        return World(dialect=self.dialect or PRESETS[self.preset]["dialect"], split=self.split,
                     holdout_fraction=self.holdout_fraction, split_seed=self.split_seed)
