"""Train the learned codecs *through* the OFDM/TDL link, and evaluate them.

Training (one command per shipped checkpoint; the exact commands, seeds and times are in each
checkpoint's manifest under ``training``). The ``48x8x8`` family (DeKA-g's payload: the shipped edge
model's latents, ``--data generated``)::

    G="--payload-shape 48 8 8 --data generated"
    L="enc.stem enc.res1 enc.res2 enc.out dec.inp dec.res1 dec.res2 dec.out"
    python -m dekasim.training.jscc train $G --codec jscc --steps 8000 --seed 2 --out DIR
    python -m dekasim.training.jscc train $G --codec jscc_mixed --steps 8000 --seed 1 --out DIR
    python -m dekasim.training.jscc train $G --codec adjscc --steps 8000 --seed 3 --out DIR
    python -m dekasim.training.jscc train $G --codec jscc --steps 6000 --seed 2 --save-as jscc_base --out DIR
    python -m dekasim.training.jscc train $G --codec cala --num-adapters 2 --gate snr_anchored --layers $L --base DIR/jscc_base-48x8x8-bw1_6.json --steps 2000 --seed 4 --out DIR
    python -m dekasim.training.jscc train $G --codec lora_oracle --layers $L --base DIR/jscc_base-48x8x8-bw1_6.json --steps 5000 --seed 5 --out DIR

(The shipped ``jscc`` and ``jscc_mixed`` also wrote a ``--snapshot-at 6000`` file, not shipped; the
``jscc_base`` above is a separate run on its own 6000-step schedule, so that CALA's base is finished,
not cut mid-schedule.)

The ``3x32x32`` family (photographs; ``space_to_depth = 4``, the default for 32x32 images: the network is
the 48x8x8 one on pixel-unshuffled photos; a step costs 0.42x the CPU time of the earlier two-stage
network's, so the family trains 3x the steps it had for 1.05-1.5x its CPU seconds)::

    python -m dekasim.training.jscc train --codec jscc --steps 7200 --snapshot-at 4800 --seed 2 --out DIR
    python -m dekasim.training.jscc train --codec jscc_mixed --steps 7200 --seed 1 --out DIR
    python -m dekasim.training.jscc train --codec adjscc --steps 7200 --seed 3 --out DIR
    python -m dekasim.training.jscc train --codec cala --base DIR/jscc_base-3x32x32-bw1_6.json --steps 2400 --seed 4 --out DIR
    python -m dekasim.training.jscc train --codec lora_oracle --base DIR/jscc_base-3x32x32-bw1_6.json --steps 4500 --seed 5 --out DIR

(``--snapshot-at N`` also writes ``<codec>_base-…``, the network after N steps: the frozen base of
the photo family's CALA and oracle, so that base + adapters train for the same number of steps as each
baseline. The CALA defaults are the shipped banks' layout: K = 2 on the eight convolutions every network of
the family has, SNR-anchored gate.)

**Any model's latents.** The generic pre-installed JSCC of *any* text-to-image model and the CALA bank
of its aligned edge (``SD``: a Stable-Diffusion-layout folder whose VAE gives ``4 x 64 x 64`` latents at
512 px; ``--latent-model edge`` gives the world's ``48 x 8 x 8``; ``PACK``: its knowledge pack from
``dekasim align --prompts``)::

    R="--rates 1/24 1/12 1/6 --payload-shape 4 64 64"
    python -m dekasim.training.jscc train --codec jscc_generic $R --latent-model SD [--photos DIR] --steps N --out DIR
    python -m dekasim.training.jscc train --codec cala $R --base DIR/jscc_generic-4x64x64-bw1_6.json \
        --data generated --data-model SD --data-pack PACK [--data-prompts FILE] --steps N --out DIR

``--device cuda`` (or ``auto``) puts the codec, the link (Sionna's configured device, restored after the
run) and the batches on the GPU, and encodes or generates the training set there; ``cpu`` is the default
and gives the same numbers as before the option existed. A checkpoint trained with ``--latent-model``
records the model (spec, fingerprint, latent map, shape, resolution) under ``latent_model``, and every
manifest records the ``loss_space`` and ``device`` under ``training``.

**Fine-tunes.** A whole-network codec given ``--base`` starts from that checkpoint (a full fine-tune);
``--train-layers dec.inp dec.res1 …`` trains only the named layers and keeps every other tensor of the
base bit-identical (a partial fine-tune: which half of the network an alignment needs).

Evaluation (PSNR over a grid, TDL-C, the scenario's photos, same channel draws for every codec)::

    python -m dekasim.training.jscc evaluate --codecs jscc jscc_mixed adjscc cala lora_oracle

**Data.** ``--data photos`` (``[3, S, S]`` images): random SxS crops (horizontal flips) of an image
pyramid of the training photos (:data:`TRAIN_PHOTOS`: six of scikit-image's colour photos and
matplotlib's ``grace_hopper.jpg``), at scales where a crop covers between S native pixels and
:data:`MAX_CROP_FRACTION` of the photo's short side, log-uniformly. Hold-out: :data:`HELD_OUT_PHOTOS`
(astronaut, coffee, rocket) are never seen in training, and no training crop shows a whole photo, so
the evaluation images (:class:`~dekasim.photos.PhotoSource`: the whole centre square resized)
are never training samples; the six other evaluation photos' content is seen at finer scales.
``--data generated``: a fixed set of ``--data-items`` images the ``--data-model`` (default the shipped
edge) generates for captions of the world's *training* split, with horizontal flips, served as latents
(``--representation latent``, default) or images (:class:`~dekasim.training.data.GeneratedSampler`;
the scenario payload's held-out captions are never generated for training). ``--data-prompts FILE``
generates from a prompt file instead (image ``i``: prompt ``i mod n``, seed ``data_seed * 1_000_003 + i``);
without it a ``--data-pack`` aligned on prompt files (``dekasim align --prompts``) gives its recorded
training prompts, any other pack or none the world's captions (sets of the world's captions keep their
cache key; others add the prompts' sha256 to it). A VAE model's latents are served as sampled, without flips.
``--data photos --latent-model SPEC`` (:class:`~dekasim.training.data.PhotoLatentSampler`): natural-photo
latents of that model's own latent map at its resolution, for whatever ``C x h x w`` it gives (pass it as
``--payload-shape``; a mismatch is refused before anything is encoded): ``--data-items`` random crops of the
training photos, or of ``--photos DIR`` (your .png/.jpg/.jpeg/.webp), each of side 0.3-1.0 of the photo's
short side at a random position, flipped with probability 1/2, resized with Lanczos; encoded once (cached
under ``--data-cache``, keyed by the model's fingerprint, its latent map's weights, the photos and these
settings) and drawn uniformly; ``--data-seed`` seeds the crops. A new network on VAE latents normalises
its input by the set's per-channel mean and std.

**Loss space.** ``--loss-space image`` (the default for images and for the world's exact latent map:
the loss of every shipped checkpoint) measures the MSE of the *images* (a latent is decoded by the
model's latent map first); ``--loss-space latent`` (the default for VAE latents: decoding through a VAE
every step costs more than the JSCC at SD scale) the MSE of the latents. The PSNR a scenario reports is
in image space either way.

**Channel.** :class:`~dekasim.channels.OFDMLink` with ``GridConfig(pilot_subcarrier_spacing=1)`` and
LS channel estimation (``csi="ls"``; the default comb-2 grid rejects LS at 3000 ns), one condition per
step (the link caches its blocks per profile and delay spread): Es/N0 uniform in [0, 20] dB, delay
spread from {30, 100, 300, 1000, 3000} ns, profile from TDL-A/B/C (``jscc``: Es/N0 10 dB, TDL-C 300 ns
only; ``--single-snr-db`` moves that Es/N0). Loss: -PSNR of the batch (10 log10 of its MSE; plain MSE lets the 0 dB steps dominate the
gradients, about 4x those at 20 dB); Adam, linear warm-up then cosine decay, gradient norm clipped at 20. The decoder gets ``no_eff`` detached (it is an input, not a path to the encoder).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import random
import re
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from dekasim.codecs.base import build_codec
from dekasim.codecs.cala import CALACodec, LoRAOracleCodec
from dekasim.codecs.jscc import JSCCCodec, JSCCNet, checkpoint_stem, read_checkpoint, save_checkpoint
from dekasim.training.data import (LOSS_SPACES, TRAIN_PHOTOS, GeneratedSampler, PhotoLatentSampler,
                                   load_training_photo)
from dekasim.conditions import Condition
from dekasim.errors import ConfigError

#: PhotoSource photographs never used in training.
HELD_OUT_PHOTOS = ("astronaut", "coffee", "rocket")
#: Largest training crop, as a fraction of the photo's short side (the evaluation images are whole).
MAX_CROP_FRACTION = 0.6
TRAIN_DELAY_SPREADS_NS = (30.0, 100.0, 300.0, 1000.0, 3000.0)
TRAIN_PROFILES = ("A", "B", "C")
#: Codecs this trainer trains.
CODECS = ("jscc", "jscc_mixed", "jscc_generic", "adjscc", "cala", "lora_oracle")
#: The one condition "jscc" is trained at.
SINGLE_CONDITION = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")
EVAL_SNR_DB = (0.0, 5.0, 10.0, 15.0, 20.0)
EVAL_DELAY_SPREADS_NS = (30.0, 100.0, 300.0, 1000.0, 3000.0)


class CropSampler:
    """Random ``size`` x ``size`` crops (with horizontal flips) over an image pyramid of ``names``.

    Levels are the photo downscaled (Lanczos) by factors 1, sqrt(2), 2, … up to the factor at which a
    crop covers ``max_fraction`` of the short side; a sample picks a photo, a level, a position and a
    flip uniformly (so the crop scale is log-uniform).
    """

    def __init__(self, names: tuple[str, ...] = TRAIN_PHOTOS, size: int = 32,
                 max_fraction: float = MAX_CROP_FRACTION) -> None:
        from PIL import Image

        self.names, self.size = tuple(names), int(size)
        self.levels: list[list[torch.Tensor]] = []
        for name in self.names:
            img = load_training_photo(name)
            h, w = img.shape[:2]
            top = max(1.0, max_fraction * min(h, w) / size)
            factors = [2 ** (k / 2) for k in range(int(math.floor(2 * math.log2(top))) + 1)]
            if factors[-1] < top * 0.99:
                factors.append(top)
            pil = Image.fromarray(img)
            levels = []
            for f in factors:
                im = pil if f == 1 else pil.resize((max(size, round(w / f)), max(size, round(h / f))),
                                                   Image.Resampling.LANCZOS)
                levels.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous())
            self.levels.append(levels)

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """``[batch, 3, size, size]`` float32 in [0, 1]."""
        out = torch.empty(batch, 3, self.size, self.size, dtype=torch.uint8)
        r = torch.rand(batch, 5, generator=gen)
        for i in range(batch):
            levels = self.levels[int(r[i, 0] * len(self.levels))]
            img = levels[int(r[i, 1] * len(levels))]
            _, h, w = img.shape
            y0 = int(r[i, 2] * (h - self.size + 1))
            x0 = int(r[i, 3] * (w - self.size + 1))
            crop = img[:, y0:y0 + self.size, x0:x0 + self.size]
            out[i] = crop.flip(-1) if r[i, 4] < 0.5 else crop
        return out.float().div_(255.0)

    def to_image(self, items: torch.Tensor) -> torch.Tensor:
        """Items as images for the loss: crops already are."""
        return items

    #: the space the loss is measured in by default (see :data:`~dekasim.training.data.LOSS_SPACES`)
    default_loss_space = "image"

    def channel_stats(self) -> None:
        """No data-driven input normalisation (images and the world's exact latents have fixed ranges)."""
        return None

    def to(self, device: str) -> "CropSampler":
        """Nothing to move: crops are made on the CPU and :meth:`to_image` has no weights."""
        return self


#: Unshuffle factor of the world's exact latent map (32x32x3 images <-> 8x8x48 latents).
LATENT_FACTOR = 4


class LatentCropSampler(CropSampler):
    """Natural-photo latents: :class:`CropSampler` crops of ``4 * latent_size`` px through the world's exact
    latent map (``pixel_unshuffle(2 x - 1, 4)``), ``[batch, 48, S, S]`` in [-1, 1]: generic data for a latent
    JSCC that knows nothing of any model's images."""

    def __init__(self, names: tuple[str, ...] = TRAIN_PHOTOS, latent_size: int = 8,
                 max_fraction: float = MAX_CROP_FRACTION) -> None:
        from dekasim.generative.ldm import PixelUnshuffleLatents

        super().__init__(names, LATENT_FACTOR * latent_size, max_fraction)
        self.latent_map = PixelUnshuffleLatents(LATENT_FACTOR)

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        return self.latent_map.encode(super().sample(batch, gen))

    def to_image(self, items: torch.Tensor) -> torch.Tensor:
        """Latents -> images ``[B, 3, 4S, 4S]`` (unclamped, for losses)."""
        return self.latent_map.decode(items, clamp=False)


@dataclass
class TrainConfig:
    """One training run (every field lands in the checkpoint manifest)."""

    codec: str
    steps: int
    seed: int = 0
    batch: int = 32
    lr: float | None = None                 # default: 2e-3 for whole networks, 5e-3 for adapter banks
    payload_shape: tuple[int, int, int] = (3, 32, 32)
    bandwidth_ratio: float = 1.0 / 6.0
    csi: str = "ls"
    pilot_subcarrier_spacing: int = 1
    channel_domain: str = "frequency"       # "time": train through ISI beyond the CP and ICI (OFDMLink domain)
    snr_db_range: tuple[float, float] = (0.0, 20.0)
    delay_spreads_ns: tuple[float, ...] = TRAIN_DELAY_SPREADS_NS
    profiles: tuple[str, ...] = TRAIN_PROFILES
    base: str | None = None                 # cala / lora_oracle: manifest of the frozen base network
    snapshot_at: int | None = None          # also save the network after this many steps (as <codec>_base-…)
    save_as: str | None = None              # file-name codec of the checkpoint (default: codec), e.g. "jscc_mixed_base"
    width: int = 64
    space_to_depth: int | None = None       # the network's pixel_unshuffle factor (default: the codec's "auto")
    num_adapters: int | None = None         # cala (default 2)
    gate: str | None = None                 # cala: "snr_anchored" (default) or "mlp" (see cala.CALABank)
    affine: bool = False                    # cala: the bank also scales and shifts each output channel
    rank: int | None = None                 # lora_oracle (default 4); cala: the rank of each adapter (default 1)
    factor: str | None = None               # cala: "full" (default) or "cp" (see cala.CALABank)
    shared_rank: int | None = None          # cala: ungated components per layer (default 0)
    layers: tuple[str, ...] | None = None   # cala / lora_oracle: adapted layers (default: the codec's)
    train_layers: tuple[str, ...] | None = None  # whole-network codecs: train only these layers (e.g. dec.out),
    #                                              the rest frozen: a partial fine-tune of --base
    oracle_shared_fraction: float = 1 / 3   # lora_oracle: share of the steps for the common warm start
    single_snr_db: float = 10.0             # jscc: the Es/N0 of its one condition (TDL-C 300 ns)
    threads: int = 1
    train_photos: tuple[str, ...] = TRAIN_PHOTOS
    warmup_steps: int = 50
    loss: str = "psnr"                      # "psnr": 10 log10(batch MSE); "mse": batch MSE
    clip_grad_norm: float = 20.0
    log_every: int = 100
    data: str = "photos"                    # "photos" (crops of train_photos) or "generated" (see train_data)
    representation: str = "latent"          # generated data: "latent" (what the edge sends) or "image"
    data_model: str = "edge"                # generated data: the text-to-image model
    data_pack: str | None = None            # generated data: a knowledge pack applied first (the aligned edge)
    data_items: int = 4096                  # generated data: images in the fixed set; latent_model: encoded crops
    data_seed: int = 7                      # generated data: captions and sampling noise; latent_model: crops
    data_cache: str | None = "runs/cache"   # generated data / photo latents: where the set is cached
    data_prompts: str | None = None         # generated data: a prompt file to generate from (default: the
    #                                         training prompts --data-pack records, else the world's captions)
    latent_model: str | None = None         # photos: encode the crops with this model's latent map (a model spec:
    #                                         "edge", a Stable-Diffusion-layout folder with a VAE) at its resolution
    photos_dir: str | None = None           # photos with latent_model: a folder of the user's photos (default:
    #                                         the shipped train_photos)
    loss_space: str | None = None           # "image" (MSE of the decoded images) or "latent" (MSE of the latents);
    #                                         default: "latent" for VAE latents, else "image"
    device: str = "cpu"                     # "cpu", "cuda" or "auto" (dekasim.devices.resolve_device)
    rates: tuple[float, ...] | None = None  # bandwidth ratios one rate-adaptive network serves (one per step)
    train_rates: tuple[float, ...] | None = None  # the rates drawn in training (default: all of ``rates``), e.g.
    #                                               one rate for a per-rate specialist of a rate-adaptive network

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ConfigError("codec", self.codec, f"one of {', '.join(CODECS)}")
        if self.steps < 1:
            raise ConfigError("steps", self.steps, "a positive number of training steps")
        if self.codec in ("cala", "lora_oracle") and not self.base:
            raise ConfigError("base", None, f"the manifest of the frozen base network that {self.codec} adapts",
                              "train one with --codec jscc --snapshot-at N and pass --base DIR/jscc_base-….json")
        if self.snapshot_at is not None and not 0 < self.snapshot_at < self.steps:
            raise ConfigError("snapshot_at", self.snapshot_at, f"a step within (0, {self.steps})")
        if not 0.0 <= self.oracle_shared_fraction < 1.0:
            raise ConfigError("oracle_shared_fraction", self.oracle_shared_fraction, "a fraction within [0, 1)")
        if self.save_as is not None and not re.fullmatch(r"[a-z][a-z0-9_]*", self.save_as):
            raise ConfigError("save_as", self.save_as, "a file-name codec of lower-case letters, digits and '_'")
        if self.loss not in ("psnr", "mse"):
            raise ConfigError("loss", self.loss, "'psnr' (10 log10 of the batch MSE) or 'mse'")
        lo, hi = self.snr_db_range
        if not -30.0 <= lo <= hi <= 60.0:
            raise ConfigError("snr_db_range", self.snr_db_range, "[lo, hi] in dB with -30 <= lo <= hi <= 60")
        if self.data not in ("photos", "generated"):
            raise ConfigError("data", self.data, "'photos' (crops of training photographs) or 'generated' "
                              "(images/latents of a text-to-image model)")
        if self.loss_space is not None and self.loss_space not in LOSS_SPACES:
            raise ConfigError("--loss-space", self.loss_space, f"one of {list(LOSS_SPACES)}",
                              "image: MSE of the images the items decode to; latent: MSE of the latents")
        if self.latent_model is not None and self.data != "photos":
            raise ConfigError("--latent-model", self.latent_model, "a latent map for --data photos only",
                              "generated data are the latents of --data-model: leave --latent-model out")
        if self.photos_dir is not None and self.latent_model is None:
            raise ConfigError("--photos", self.photos_dir, "a folder of photos for --data photos with --latent-model",
                              "add --latent-model SPEC (e.g. edge, or your model folder)")
        if self.data_prompts is not None and self.data != "generated":
            raise ConfigError("--data-prompts", self.data_prompts, "a prompt file for --data generated only")
        from dekasim.devices import resolve_device

        resolve_device(self.device, "--device")
        if self.lr is None:
            self.lr = 5e-3 if self.codec in ("cala", "lora_oracle") else 2e-3
        self.payload_shape = tuple(int(s) for s in self.payload_shape)  # type: ignore[assignment]
        if self.rates is not None:
            rates = tuple(float(r) for r in self.rates)
            if not rates or min(rates) <= 0 or self.codec in ("jscc", "lora_oracle"):
                raise ConfigError("rates", self.rates, "positive bandwidth ratios, for jscc_mixed, jscc_generic, adjscc "
                                  "or cala (one network serves them all)")
            self.rates = tuple(sorted(set(rates)))
            self.bandwidth_ratio = self.rates[-1]
        if self.train_rates is not None:
            drawn = tuple(sorted({float(r) for r in self.train_rates}))
            if self.rates is None or not drawn or any(min(abs(r - s) for s in self.rates) > 1e-9 for r in drawn):
                raise ConfigError("train_rates", self.train_rates, f"a non-empty subset of --rates {self.rates}",
                                  "give --rates the ratios the network serves and --train-rates those to train at")
            self.train_rates = drawn
        if self.train_layers is not None:
            if self.codec in ("cala", "lora_oracle") or not self.train_layers:
                raise ConfigError("train_layers", self.train_layers, "layer names of a whole-network codec "
                                  "(jscc, jscc_mixed, jscc_generic, adjscc)", "cala/lora_oracle take --layers")
            if not self.base:
                raise ConfigError("base", None, "the checkpoint whose --train-layers a partial fine-tune trains",
                                  "pass --base DIR/<codec>-….json")
            self.train_layers = tuple(self.train_layers)


def _as_psnr(loss: float, kind: str) -> float:
    """A logged loss value as a PSNR [dB]."""
    return -loss if kind == "psnr" else -10 * math.log10(loss)


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 %."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))


def make_link(csi: str = "ls", pilot_subcarrier_spacing: int = 1, domain: str = "frequency",
              device: str | None = None):
    """The training link: :class:`~dekasim.channels.OFDMLink` (``device``: Sionna's blocks on it; None: Sionna's
    configured device)."""
    from dekasim.channels import GridConfig, OFDMLink

    return OFDMLink(GridConfig(pilot_subcarrier_spacing=pilot_subcarrier_spacing), csi=csi, domain=domain,
                    device=device)


def forward_through_link(codec: JSCCCodec, x: torch.Tensor, cond: Condition, link: torch.nn.Module,
                         adapt_override: Any = None) -> torch.Tensor:
    """Differentiable encode -> link -> decode of ``x`` at ``cond`` (the gate sees ``cond`` exactly)."""
    snr = torch.full((x.shape[0],), float(cond.snr_db), device=x.device)
    adapt, s = codec._adapt(snr, cond) if codec.condition_aware else (None, None)
    if adapt_override is not None:
        adapt = adapt_override
    z = codec.net.encode(x, adapt, s, n_send=codec.n_channel_uses)
    y, no_eff = link(z, cond)
    return codec.net.decode(y, no_eff.detach(), adapt, s)


def _versions() -> dict[str, str]:
    import sionna

    import dekasim

    return {"dekasim": dekasim.__version__, "torch": torch.__version__, "sionna": sionna.__version__,
            "python": platform.python_version()}


def _sample_condition(cfg: TrainConfig, rng: random.Random, snr_range: tuple[float, float] | None = None,
                      delay_spread_ns: float | None = None) -> Condition:
    if cfg.codec == "jscc":
        return SINGLE_CONDITION.replace(snr_db=cfg.single_snr_db)
    lo, hi = snr_range or cfg.snr_db_range
    return Condition(snr_db=rng.uniform(lo, hi),
                     delay_spread_ns=delay_spread_ns if delay_spread_ns is not None else rng.choice(cfg.delay_spreads_ns),
                     tdl_profile=rng.choice(cfg.profiles))


def train(cfg: TrainConfig, out: str | Path | None = None, command: str | None = None,
          log: Callable[[str], None] | None = None, progress: bool = False) -> dict[str, Any]:
    """Run ``cfg``; write the checkpoint(s) into ``out`` (if given). Returns losses, times and paths.
    ``progress``: a bar with ETA and the running loss (on a terminal only).

    The codec, the link and the batches live on ``cfg.device``; Sionna's configured device is set to it for
    the run and restored afterwards. Returns ``{"paths", "losses", "wall_s", "cpu_s", "codec", "loss_space",
    "device"}`` (the codec on ``cfg.device``)."""
    import sionna.phy

    from dekasim.devices import resolve_device

    log = log or (lambda msg: None)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, "--device")
    base = read_checkpoint(cfg.base, field="base") if cfg.base else None  # refused before a set is made
    if base is not None and list(base[0]["arch"]["payload_shape"]) != list(cfg.payload_shape):
        raise ConfigError("base", cfg.base, f"a base for payload {list(cfg.payload_shape)}, got one for "
                          f"{base[0]['arch']['payload_shape']}", "pass the --payload-shape the base was trained for")
    sampler = make_sampler(cfg, log, device)
    loss_space = resolve_loss_space(cfg, sampler)
    previous = sionna.phy.config.device
    sionna.phy.config.device = "cuda:0" if device == "cuda" else device   # Sionna names devices cuda:N
    try:
        return _train(cfg, sampler, loss_space, device, out, command, log, progress, base)
    finally:
        sionna.phy.config.device = previous


def resolve_loss_space(cfg: TrainConfig, sampler: Any) -> str:
    """``cfg.loss_space``, or the sampler's default (``"latent"`` for VAE latents, else ``"image"``); a
    ConfigError naming ``--loss-space`` for ``"latent"`` on image items."""
    space = cfg.loss_space or sampler.default_loss_space
    if space == "latent" and not _items_are_latents(sampler):
        raise ConfigError("--loss-space", space, "'image' for image items (photo crops, generated images)",
                          "leave --loss-space out, or train on latents")
    return space


def _items_are_latents(sampler: Any) -> bool:
    if isinstance(sampler, GeneratedSampler):
        return sampler.representation == "latent"
    return isinstance(sampler, (LatentCropSampler, PhotoLatentSampler))


def _train(cfg: TrainConfig, sampler: Any, loss_space: str, device: str, out: str | Path | None,
           command: str | None, log: Callable[[str], None], progress: bool,
           base: tuple[dict[str, Any], dict[str, torch.Tensor]] | None) -> dict[str, Any]:
    import sionna.phy

    sionna.phy.config.seed = cfg.seed          # also seeds torch's global generator
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opts: dict[str, Any] = {"checkpoint": "none", "width": cfg.width, "init_seed": cfg.seed}
    if cfg.space_to_depth is not None:
        opts["space_to_depth"] = cfg.space_to_depth
    if cfg.codec == "cala" and cfg.num_adapters is not None:
        opts["num_adapters"] = cfg.num_adapters
    if cfg.codec == "cala" and cfg.gate is not None:
        opts["gate"] = cfg.gate
    if cfg.codec == "cala" and cfg.affine:
        opts["affine"] = True
    if cfg.codec in ("lora_oracle", "cala") and cfg.rank is not None:
        opts["rank"] = cfg.rank
    if cfg.codec == "cala" and cfg.factor is not None:
        opts["factor"] = cfg.factor
    if cfg.codec == "cala" and cfg.shared_rank is not None:
        opts["shared_rank"] = cfg.shared_rank
    if cfg.codec in ("cala", "lora_oracle") and cfg.layers is not None:
        opts["layers"] = list(cfg.layers)
    if cfg.rates is not None:
        opts["rates"] = list(cfg.rates)
    if cfg.payload_shape[0] == 3 and _items_are_latents(sampler):
        opts["payload_kind"] = "latent"      # e.g. a VAE with 3 latent channels ("auto" would take them for images)
    codec: JSCCCodec = build_codec(cfg.codec, cfg.payload_shape, cfg.bandwidth_ratio, **opts)  # type: ignore[assignment]
    base_ref = None
    if base is not None:
        base_manifest, base_tensors = base
        if base_manifest["arch"] != codec.arch.to_json():
            raise ConfigError("base", cfg.base, f"a base of architecture {codec.arch.to_json()}, "
                              f"got {base_manifest['arch']}")
        codec.net.load_state_dict({k[4:]: v for k, v in base_tensors.items() if k.startswith("net.")})
        base_ref = {"file": Path(cfg.base).with_suffix(".safetensors").name, "sha256": base_manifest["sha256"],
                    "codec": base_manifest["codec"]}
    stats = sampler.channel_stats()
    normalised = stats is not None and not cfg.base and codec.arch.payload_kind == "latent"
    if normalised:  # a new network on VAE latents: per-channel input statistics of the training set
        with torch.no_grad():
            codec.net.in_mean.copy_(stats[0])
            codec.net.in_std.copy_(stats[1])
    if device != "cpu":
        for module in codec.modules_to_save().values():
            module.to(device)
        if loss_space == "image":
            sampler.to(device)
    codec.net.train()
    link = make_link(cfg.csi, cfg.pilot_subcarrier_spacing, cfg.channel_domain, device=device)
    t0w, t0c = time.perf_counter(), time.process_time()
    losses: list[float] = []
    result: dict[str, Any] = {"paths": []}
    to_loss = sampler.to_image if loss_space == "image" else (lambda v: v)
    data_facts = _data_facts(cfg, sampler)
    if normalised:
        data_facts["input_normalisation"] = "per-channel mean and std of the training set (net.in_mean, net.in_std)"
    run_facts = {"loss_space": loss_space, "device": device}

    def step_on(params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, i: int, n: int, cond: Condition,
                adapt: Any = None) -> float:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(i, n, min(cfg.warmup_steps, max(1, n // 10)))  # type: ignore[operator]
        if cfg.rates is not None:  # one rate per step, uniform (the gate sees it in the condition features)
            codec.set_rate(rng.choice(cfg.train_rates or cfg.rates))
        x = sampler.sample(cfg.batch, gen).to(device)
        a = adapt(cfg.batch) if adapt is not None else None
        # MSE of the images (a latent's PSNR is that of the image it decodes to), or of VAE latents
        loss = F.mse_loss(to_loss(forward_through_link(codec, x, cond, link, a)), to_loss(x))
        if cfg.loss == "psnr":  # -PSNR of the batch: every condition weighs alike (MSE lets 0 dB dominate)
            loss = 10.0 * torch.log10(loss + 1e-10)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        opt.step()
        return float(loss)

    from dekasim.progress import progress_bar

    bar = progress_bar(cfg.steps, f"train {cfg.codec}", enabled=progress)

    def report(i: int) -> None:
        bar.update(1)
        if losses:
            bar.set_postfix(loss=f"{losses[-1]:.5f}", refresh=False)
        if cfg.log_every and (i + 1) % cfg.log_every == 0:
            recent = losses[-cfg.log_every:]
            m = sum(recent) / len(recent)
            space = " of the latents" if loss_space == "latent" else ""
            log(f"{cfg.codec} step {i + 1}/{cfg.steps} loss {m:.5f} ({_as_psnr(m, cfg.loss):.2f} dB{space}) "
                f"wall {time.perf_counter() - t0w:.0f}s cpu {time.process_time() - t0c:.0f}s")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PhysicsWarning: TDL power beyond the cyclic prefix at 1000/3000 ns
        if cfg.codec == "lora_oracle":
            bank = codec.bank  # type: ignore[attr-defined]
            # warm start: one LoRA (bucket 0's tensors) on the whole distribution, copied to every bucket,
            # then each bucket fine-tuned on its own conditions only
            shared = int(round(cfg.steps * cfg.oracle_shared_fraction))
            per_bucket = max(1, (cfg.steps - shared) // bank.num_buckets)
            half = 0.5 * (bank.snr_centres_db[1] - bank.snr_centres_db[0]) if len(bank.snr_centres_db) > 1 else 2.5
            i_global = 0
            if shared:
                params = bank.bucket_params(0)
                opt = torch.optim.Adam(params, lr=cfg.lr)
                for i in range(shared):
                    losses.append(step_on(params, opt, i, shared, _sample_condition(cfg, rng),
                                          adapt=lambda b: bank.adapters([0] * b)))
                    report(i_global)
                    i_global += 1
                with torch.no_grad():
                    for k in range(1, bank.num_buckets):
                        for dst, src in zip(bank.bucket_params(k), bank.bucket_params(0)):
                            dst.copy_(src)
            for s_idx, snr_c in enumerate(bank.snr_centres_db):
                for d_idx, ds in enumerate(bank.delay_spreads_ns):
                    k = s_idx * len(bank.delay_spreads_ns) + d_idx
                    params = bank.bucket_params(k)
                    opt = torch.optim.Adam(params, lr=cfg.lr)
                    lo = max(cfg.snr_db_range[0], snr_c - half)
                    hi = min(cfg.snr_db_range[1], snr_c + half)
                    for i in range(per_bucket):
                        cond = _sample_condition(cfg, rng, (lo, hi), ds)
                        losses.append(step_on(params, opt, i, per_bucket, cond))
                        report(i_global)
                        i_global += 1
        else:
            if cfg.codec == "cala":
                params = [p for p in codec.bank.parameters() if p.requires_grad]  # type: ignore[attr-defined]
            else:
                params = _trained_net_params(codec.net, cfg.train_layers)
            opt = torch.optim.Adam(params, lr=cfg.lr)
            for i in range(cfg.steps):
                losses.append(step_on(params, opt, i, cfg.steps, _sample_condition(cfg, rng)))
                report(i)
                if out is not None and cfg.snapshot_at is not None and i + 1 == cfg.snapshot_at:
                    result["paths"].append(_save(codec, cfg, out, command, losses, t0w, t0c, base_ref,
                                                 stem_codec=f"{cfg.codec}_base", steps_done=i + 1,
                                                 data_facts=data_facts, run_facts=run_facts))
                    log(f"snapshot after {i + 1} steps: {result['paths'][-1]}")
    bar.close()
    codec.set_rate(cfg.bandwidth_ratio)
    codec.eval()
    result.update(losses=losses, wall_s=time.perf_counter() - t0w, cpu_s=time.process_time() - t0c, codec=codec,
                  **run_facts)
    if out is not None:
        result["paths"].append(_save(codec, cfg, out, command, losses, t0w, t0c, base_ref,
                                     stem_codec=cfg.save_as or cfg.codec, steps_done=len(losses),
                                     data_facts=data_facts, run_facts=run_facts))
    return result


def _trained_net_params(net: JSCCNet, train_layers: tuple[str, ...] | None) -> list[torch.nn.Parameter]:
    """The parameters of ``net`` that train: all, or those of the named layers (:meth:`JSCCNet.layer_names`;
    the rest get ``requires_grad = False``). Raises a ConfigError naming a layer the network does not have."""
    if train_layers is None:
        return [p for p in net.parameters() if p.requires_grad]
    names = net.layer_names()
    for layer in train_layers:
        if layer not in names:
            raise ConfigError("train_layers", layer, f"one of the network's layers: {', '.join(names)}")
    net.requires_grad_(False)
    params = [p for layer in dict.fromkeys(train_layers) for p in net.layer(layer).parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _items_of_shape(cfg: TrainConfig, sampler: Any, what: str) -> Any:
    """``sampler``, whose items must have ``cfg.payload_shape`` (else a ConfigError naming --payload-shape)."""
    if tuple(sampler.item_shape) != tuple(cfg.payload_shape):
        shape = " ".join(map(str, sampler.item_shape))
        raise ConfigError("--payload-shape", cfg.payload_shape, f"{what}, {tuple(sampler.item_shape)}",
                          f"pass --payload-shape {shape}")
    return sampler


def make_sampler(cfg: TrainConfig, log: Callable[[str], None],
                 device: str = "cpu") -> "CropSampler | GeneratedSampler | PhotoLatentSampler":
    """The training data of ``cfg`` (a generated set or photo latents made on ``device``); raises a ConfigError
    when its items do not have ``cfg.payload_shape``, before any image is generated or encoded."""
    if cfg.data == "generated":
        prompts = None
        if cfg.data_prompts is not None:
            from dekasim.generative.prompts import read_prompt_file

            prompts = read_prompt_file(cfg.data_prompts, "--data-prompts")
        _check_model_shape(cfg, cfg.data_model, "--data-model", f"generated {cfg.representation}s")
        sampler: CropSampler | GeneratedSampler | PhotoLatentSampler = GeneratedSampler(
            cfg.data_model, cfg.data_items, cfg.data_seed, representation=cfg.representation,
            cache_dir=cfg.data_cache, log=log, pack=cfg.data_pack, prompts=prompts, device=device)
        return _items_of_shape(cfg, sampler, f"the shape of the generated {cfg.representation}s")
    if cfg.latent_model is not None:
        _check_model_shape(cfg, cfg.latent_model, "--latent-model", "latents")
        sampler = PhotoLatentSampler(cfg.latent_model, cfg.data_items, cfg.data_seed, photos=cfg.train_photos,
                                     photos_dir=cfg.photos_dir, cache_dir=cfg.data_cache, device=device, log=log)
        return _items_of_shape(cfg, sampler, f"the latent shape of --latent-model {cfg.latent_model}")
    c, h, w = cfg.payload_shape
    if c == 3 * LATENT_FACTOR ** 2 and h == w:  # natural-photo latents: the world's latent map on photo crops
        return LatentCropSampler(cfg.train_photos, latent_size=h)
    if c != 3 or h != w:
        raise ConfigError("--payload-shape", cfg.payload_shape, f"[3, S, S] photo crops, or [{3 * LATENT_FACTOR ** 2}, "
                          "S, S] latents of photo crops", "or train on generated latents with --data generated, or on a "
                          "model's photo latents with --latent-model SPEC")
    return CropSampler(cfg.train_photos, size=cfg.payload_shape[-1])


def _check_model_shape(cfg: TrainConfig, spec: str, field: str, what: str) -> None:
    """Refuse a ``payload_shape`` that is not the latent shape of model ``spec`` from its config files alone
    (nothing loaded, generated or encoded); images (``representation = "image"``) are checked after loading."""
    if cfg.data == "generated" and cfg.representation != "latent":
        return
    from dekasim.generative.models import latent_shape_of

    try:
        shape = tuple(latent_shape_of(spec))
    except ConfigError:  # e.g. an unfinished training run: the loader reports what is wrong, or the shape later
        return
    if shape != tuple(cfg.payload_shape):
        raise ConfigError("--payload-shape", cfg.payload_shape, f"the shape of the {what} of {field} {spec}, {shape}",
                          f"pass --payload-shape {' '.join(map(str, shape))}")


def _data_facts(cfg: TrainConfig, sampler: "CropSampler | GeneratedSampler | PhotoLatentSampler") -> dict[str, Any]:
    """What a manifest says about the training data."""
    if isinstance(sampler, PhotoLatentSampler):
        return {**sampler.facts, "held_out_photos": list(HELD_OUT_PHOTOS) if cfg.photos_dir is None else None,
                "representation": f"latent: the {sampler.facts['latent_map']['kind']} latent map of "
                                  f"{cfg.latent_model} on each crop"}
    if isinstance(sampler, GeneratedSampler):
        facts = {**sampler.facts, "representation": cfg.representation,
                 "augmentation": "horizontal flips" if sampler.images is not None else
                 "none (VAE latents as sampled)",
                 "held_out": "the world's held-out captions are never generated for training"}
        if sampler.prompts is not None:
            facts["held_out"] = ("the pack's recorded training prompts only" if facts["prompts_source"] == "pack"
                                 else "only the prompts of the file are generated")
            if cfg.data_prompts is not None:
                facts["data_prompts"] = cfg.data_prompts
        return facts
    size = sampler.size
    facts = {"train_photos": list(cfg.train_photos), "held_out_photos": list(HELD_OUT_PHOTOS),
             "crops": f"{size}px random crops of an image pyramid, crop <= {MAX_CROP_FRACTION} of the short side, "
                      "horizontal flips"}
    if isinstance(sampler, LatentCropSampler):
        facts["representation"] = f"latent: pixel_unshuffle(2 x - 1, {LATENT_FACTOR}) of each crop (the world's map)"
    return facts


def _save(codec: JSCCCodec, cfg: TrainConfig, out: str | Path, command: str | None, losses: list[float],
          t0w: float, t0c: float, base_ref: dict[str, str] | None, stem_codec: str, steps_done: int,
          data_facts: dict[str, Any], run_facts: dict[str, Any] | None = None) -> Path:
    run_facts = run_facts or {}
    tail = losses[-100:]
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    if "loss_space" in run_facts:
        config["loss_space"] = run_facts["loss_space"]      # as resolved
    manifest: dict[str, Any] = {
        "codec": cfg.codec, "arch": codec.arch.to_json(), "payload_shape": list(cfg.payload_shape),
        "bandwidth_ratio": cfg.bandwidth_ratio,
        "bandwidth_ratio_fraction": str(Fraction(cfg.bandwidth_ratio).limit_denominator(10_000)),
        "n_channel_uses": codec.n_channel_uses, "params": codec.num_parameters(),
        "training": {
            "command": command or "(library call)", "seed": cfg.seed, "steps": steps_done,
            "config": config,
            "wall_s": round(time.perf_counter() - t0w, 1), "cpu_s": round(time.process_time() - t0c, 1),
            "threads": cfg.threads, "final_train_loss": sum(tail) / len(tail), "loss": cfg.loss,
            **run_facts,
            "loss_every_100": [round(sum(losses[i:i + 100]) / len(losses[i:i + 100]), 6)
                               for i in range(0, len(losses), 100)],
            "channel": {"link": "OFDMLink", "csi": cfg.csi, "domain": cfg.channel_domain,
                        "grid": f"GridConfig(pilot_subcarrier_spacing={cfg.pilot_subcarrier_spacing})",
                        "conditions": (f"Es/N0 {cfg.single_snr_db:g} dB, TDL-C 300 ns" if cfg.codec == "jscc" else
                                       f"Es/N0 U{list(cfg.snr_db_range)} dB, delay spread {list(cfg.delay_spreads_ns)} "
                                       f"ns, TDL {list(cfg.profiles)}, one condition per step")},
            "data": data_facts,
            "versions": _versions(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
        },
    }
    if cfg.latent_model is not None:  # whose latents this network was made for
        manifest["latent_model"] = {k: data_facts[k] for k in ("latent_model", "model_fingerprint", "latent_map",
                                                               "latent_shape", "resolution_px") if k in data_facts}
        manifest["latent_model"]["spec"] = manifest["latent_model"].pop("latent_model")
    if isinstance(codec, CALACodec):
        manifest["cala"] = codec.bank.settings()
    if isinstance(codec, LoRAOracleCodec):
        b = codec.bank
        manifest["lora_oracle"] = {"layers": list(b.layers), "rank": b.rank, "snr_centres_db": list(b.snr_centres_db),
                                   "delay_spreads_ns": list(b.delay_spreads_ns)}
    if base_ref is not None and hasattr(codec, "bank"):  # an adapter bank: its frozen base stays in its own file
        manifest["base"] = base_ref
        tensors = {f"bank.{k}": v for k, v in codec.bank.state_dict().items()}  # type: ignore[attr-defined]
    else:
        if base_ref is not None:  # a whole network fine-tuned from another checkpoint
            manifest["initialised_from"] = base_ref
        tensors = {f"net.{k}": v for k, v in codec.net.state_dict().items()}
    stem = checkpoint_stem(stem_codec, cfg.payload_shape, cfg.bandwidth_ratio)
    return save_checkpoint(out, stem, tensors, manifest)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------

def evaluate(codec: Any, images: torch.Tensor, conditions: list[Condition], link: torch.nn.Module,
             repeats: int = 8, seed: int = 0, chunk: int = 256,
             to_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
             indices: list[int] | None = None) -> list[float]:
    """Mean PSNR [dB] of ``codec`` at each condition, through its public encode/decode.

    ``images`` (the codec's items: images, or latents with ``to_image`` their decoder) are repeated
    ``repeats`` times with fresh channel and noise draws. The draws depend only on ``seed`` and the
    condition's index, so every codec sees the same channels (paired comparison). ``indices``: the
    conditions' indices in a larger grid (default 0, 1, ...), so that a codec evaluated at a few of its
    conditions sees the draws the others saw there.
    """
    to_image = to_image or (lambda v: v)
    import sionna.phy

    from dekasim.metrics import psnr_db

    out = []
    x_all = images.repeat(repeats, 1, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, cond in zip(range(len(conditions)) if indices is None else indices, conditions):
            sionna.phy.config.seed = seed * 1000 + i
            vals = []
            for j in range(0, x_all.shape[0], chunk):
                x = x_all[j:j + chunk]
                z = codec.encode(x, cond)
                with torch.no_grad():
                    y, no_eff = link(z, cond)
                vals.append(psnr_db(to_image(x), to_image(codec.decode(y, no_eff, cond).payload)))
            out.append(float(torch.cat(vals).mean()))
    return out


def grid_conditions(snrs: tuple[float, ...] = EVAL_SNR_DB, spreads: tuple[float, ...] = EVAL_DELAY_SPREADS_NS,
                    profile: str = "C", bandwidth_ratio: float = 1 / 6) -> list[Condition]:
    return [Condition(snr_db=s, delay_spread_ns=d, tdl_profile=profile, bandwidth_ratio=bandwidth_ratio)
            for d in spreads for s in snrs]


_cli_log = logging.getLogger("dekasim.train_jscc")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error: one line naming the field, no traceback)."""
    from dekasim.errors import DekasimError

    try:
        return _main(argv)
    except DekasimError as err:
        _cli_log.error(f"train_jscc: error: {err}")
        return 2


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the command's console output
    p = argparse.ArgumentParser(prog="python -m dekasim.training.jscc", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one codec through the OFDM/TDL link and write its checkpoint")
    t.add_argument("--codec", required=True, choices=list(CODECS))
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--payload-shape", type=int, nargs=3, default=[3, 32, 32])
    t.add_argument("--bandwidth-ratio", type=Fraction, default=Fraction(1, 6), help="e.g. 1/6")
    t.add_argument("--csi", default="ls", choices=["perfect", "ls", "lmmse"])
    t.add_argument("--channel-domain", default="frequency", choices=["frequency", "time", "auto"],
                   help="OFDMLink domain: 'time' trains through ISI beyond the cyclic prefix and ICI at speed")
    t.add_argument("--base", default=None, help="cala/lora_oracle: manifest of the frozen base network; other "
                   "codecs: a checkpoint of the same architecture to start from (a full fine-tune)")
    t.add_argument("--rates", type=Fraction, nargs="+", default=None,
                   help="bandwidth ratios one rate-adaptive network serves, e.g. 1/24 1/12 1/6 (one per step)")
    t.add_argument("--train-rates", type=Fraction, nargs="+", default=None,
                   help="the subset of --rates drawn in training (default: all), e.g. 1/12 for a per-rate specialist")
    t.add_argument("--snapshot-at", type=int, default=None)
    t.add_argument("--save-as", default=None,
                   help="file-name codec of the checkpoint, e.g. jscc_mixed_base for a base trained on its own schedule")
    t.add_argument("--width", type=int, default=64)
    t.add_argument("--space-to-depth", type=int, default=None,
                   help="the network's pixel_unshuffle factor (default: 4 for 32x32 images, 1 for latents)")
    t.add_argument("--num-adapters", type=int, default=None)
    t.add_argument("--gate", default=None, choices=["mlp", "snr_anchored"], help="cala: the gate's kind")
    t.add_argument("--affine", action="store_true", help="cala: the bank also scales and shifts each output channel")
    t.add_argument("--rank", type=int, default=None,
                   help="lora_oracle: the LoRAs' rank (default 4); cala: the rank of each adapter (default 1)")
    t.add_argument("--factor", default=None, choices=["full", "cp", "scale", "kron"],
                   help="cala: each component's input vector over the whole kernel (full), a channel vector "
                        "times a spatial kernel (cp), components that rescale the base's filters (scale), or "
                        "Kronecker products of two small factors (kron)")
    t.add_argument("--shared-rank", type=int, default=None,
                   help="cala: components per layer that no gate weighs (on at every condition; default 0)")
    t.add_argument("--layers", nargs="+", default=None, help="cala/lora_oracle: adapted layers, e.g. enc.res2 dec.inp")
    t.add_argument("--train-layers", nargs="+", default=None,
                   help="whole-network codecs: train only these layers of --base (a partial fine-tune), e.g. dec.out")
    t.add_argument("--loss", default="psnr", choices=["psnr", "mse"])
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--single-snr-db", type=float, default=10.0, help="jscc: the one Es/N0 it trains at (TDL-C 300 ns)")
    t.add_argument("--snr-db-range", type=float, nargs=2, default=[0.0, 20.0], metavar=("LO", "HI"),
                   help="Es/N0 range [dB] the condition-sampling codecs train over (uniform)")
    t.add_argument("--data", default="photos", choices=["photos", "generated"],
                   help="photo crops, or a fixed set generated by a text-to-image model (--data-model)")
    t.add_argument("--representation", default="latent", choices=["latent", "image"],
                   help="generated data: the model's latents (what the edge sends) or its images")
    t.add_argument("--data-model", default="edge", help="generated data: model spec (edge, cloud, a directory)")
    t.add_argument("--data-pack", default=None,
                   help="generated data: a knowledge pack (dekasim align) applied to the model first (S_EG)")
    t.add_argument("--data-items", type=int, default=4096,
                   help="generated data: images in the set; --latent-model: photo crops in the encoded set")
    t.add_argument("--data-seed", type=int, default=7,
                   help="generated data: seed of captions and noise; --latent-model: seed of the crops")
    t.add_argument("--data-cache", default="runs/cache", help="generated data and photo latents: cache directory")
    t.add_argument("--data-prompts", default=None, metavar="FILE",
                   help="generated data: a prompt file (one per line) to generate from; default: the training prompts "
                        "--data-pack records (dekasim align --prompts), else the world's training captions")
    t.add_argument("--latent-model", default=None, metavar="SPEC",
                   help="photos: encode photo crops with this model's latent map at its resolution (edge, or a "
                        "Stable-Diffusion-layout folder with a VAE); --payload-shape is its latent shape")
    t.add_argument("--photos", default=None, metavar="DIR",
                   help="with --latent-model: a folder of your photos (.png .jpg .jpeg .webp) instead of the shipped ones")
    t.add_argument("--loss-space", default=None, choices=list(LOSS_SPACES),
                   help="MSE of the decoded images or of the latents (default: latent for VAE latents, else image)")
    t.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto: the codec, link and batches")
    t.add_argument("--out", required=True, help="directory for <codec>-<shape>-bw<p>_<q>.{safetensors,json}")
    e = sub.add_parser("evaluate", help="PSNR of codecs over an SNR x delay-spread grid (TDL-C, LS CSI)")
    e.add_argument("--codecs", nargs="+", default=["jscc", "jscc_mixed", "adjscc", "cala", "lora_oracle"],
                   help="codec names, or NAME=CHECKPOINT.json")
    e.add_argument("--snr-db", type=float, nargs="+", default=list(EVAL_SNR_DB))
    e.add_argument("--delay-spreads-ns", type=float, nargs="+", default=list(EVAL_DELAY_SPREADS_NS))
    e.add_argument("--repeats", type=int, default=8)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--payload", default="photos", choices=["photos", "latent"],
                   help="photos: PhotoSource(32), 3x32x32; latent: the edge's 48x8x8 latents of 64 prompts")
    e.add_argument("--split", default="heldout", choices=["heldout", "train"],
                   help="latent payload: the world split of the prompts (train + a seed other than the training "
                        "set's 7: a validation set of new images, for choosing designs without the test prompts)")
    a = p.parse_args(argv)
    if a.cmd == "train":
        cfg = TrainConfig(codec=a.codec, steps=a.steps, seed=a.seed, batch=a.batch, lr=a.lr,
                          payload_shape=tuple(a.payload_shape), bandwidth_ratio=float(a.bandwidth_ratio), csi=a.csi,
                          channel_domain=a.channel_domain, base=a.base, snapshot_at=a.snapshot_at,
                          save_as=a.save_as, width=a.width, space_to_depth=a.space_to_depth,
                          num_adapters=a.num_adapters, gate=a.gate, affine=a.affine, rank=a.rank, factor=a.factor, shared_rank=a.shared_rank, threads=a.threads, loss=a.loss,
                          layers=None if a.layers is None else tuple(a.layers),
                          train_layers=None if a.train_layers is None else tuple(a.train_layers), single_snr_db=a.single_snr_db,
                          snr_db_range=(float(a.snr_db_range[0]), float(a.snr_db_range[1])),
                          data=a.data, representation=a.representation, data_model=a.data_model, data_pack=a.data_pack,
                          data_items=a.data_items, data_seed=a.data_seed, data_cache=a.data_cache,
                          data_prompts=a.data_prompts, latent_model=a.latent_model, photos_dir=a.photos,
                          loss_space=a.loss_space, device=a.device,
                          rates=None if a.rates is None else tuple(float(r) for r in a.rates),
                          train_rates=None if a.train_rates is None else tuple(float(r) for r in a.train_rates))
        command = "python -m dekasim.training.jscc " + " ".join(shlex.quote(s) for s in argv)
        res = train(cfg, a.out, command, log=_cli_log.info, progress=True)
        for path in res["paths"]:
            _cli_log.info(f"wrote {path} (sha256 {json.loads(Path(path).read_text())['sha256'][:12]}…)")
        _cli_log.info(f"training: {res['wall_s']:.0f} s wall, {res['cpu_s']:.0f} s CPU")
        return 0
    from dekasim.deka.generated import GeneratedSource
    from dekasim.photos import PhotoSource

    torch.set_num_threads(a.threads)
    shape = (48, 8, 8) if a.payload == "latent" else (3, 32, 32)
    codecs = []
    for spec in a.codecs:  # every checkpoint is checked before the payload is generated
        name, _, ckpt = spec.partition("=")
        codecs.append((name, build_codec(name, shape, 1 / 6, **({"checkpoint": ckpt} if ckpt else {}))))
    if a.payload == "latent":
        source = GeneratedSource("edge", prompts=a.split, n_prompts=64, seed=a.seed, representation="latent")
        images, to_image = source.latents, lambda v: source.to_image(v, "latent")
    else:
        images, to_image = PhotoSource(32).images, None
    conds = grid_conditions(tuple(a.snr_db), tuple(a.delay_spreads_ns))
    link = make_link("ls", 1)
    _cli_log.info("codec".ljust(14) + "".join(f"{c.snr_db:g}dB/{c.delay_spread_ns:g}ns".rjust(14) for c in conds))
    for name, codec in codecs:
        psnr = evaluate(codec, images, conds, link, a.repeats, a.seed, to_image=to_image)
        _cli_log.info(name.ljust(14) + "".join(f"{v:14.2f}" for v in psnr))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
