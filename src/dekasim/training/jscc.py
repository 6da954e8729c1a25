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
the scenario payload's held-out captions are never generated for training). The loss is always the
MSE of the *images* (a latent is decoded by the model's exact latent map first).

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
from dekasim.training.data import GeneratedSampler
from dekasim.conditions import Condition
from dekasim.errors import ConfigError

#: Photographs the shipped checkpoints were trained on (scikit-image names + matplotlib's sample).
TRAIN_PHOTOS = ("chelsea", "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "motorcycle_right",
                "retina", "grace_hopper")
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


def load_training_photo(name: str) -> np.ndarray:
    """``[H, W, 3]`` uint8 photo: a PhotoSource name or ``"grace_hopper"`` (matplotlib sample data)."""
    if name == "grace_hopper":
        import matplotlib
        from PIL import Image

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return np.asarray(Image.open(path).convert("RGB"))
    from dekasim.photos import load_photo

    return np.ascontiguousarray(load_photo(name)[..., :3])


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
    data_items: int = 4096                  # generated data: images in the fixed training set
    data_seed: int = 7                      # generated data: captions and sampling noise
    data_cache: str | None = "runs/cache"   # generated data: where the set is cached
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


def make_link(csi: str = "ls", pilot_subcarrier_spacing: int = 1, domain: str = "frequency"):
    from dekasim.channels import GridConfig, OFDMLink

    return OFDMLink(GridConfig(pilot_subcarrier_spacing=pilot_subcarrier_spacing), csi=csi, domain=domain)


def forward_through_link(codec: JSCCCodec, x: torch.Tensor, cond: Condition, link: torch.nn.Module,
                         adapt_override: Any = None) -> torch.Tensor:
    """Differentiable encode -> link -> decode of ``x`` at ``cond`` (the gate sees ``cond`` exactly)."""
    snr = torch.full((x.shape[0],), float(cond.snr_db))
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
    ``progress``: a bar with ETA and the running loss (on a terminal only)."""
    import sionna.phy

    log = log or (lambda msg: None)
    torch.set_num_threads(cfg.threads)
    sampler = make_sampler(cfg, log)
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
    codec: JSCCCodec = build_codec(cfg.codec, cfg.payload_shape, cfg.bandwidth_ratio, **opts)  # type: ignore[assignment]
    base_ref = None
    if cfg.base:
        base_manifest, base_tensors = read_checkpoint(cfg.base, field="base")
        if base_manifest["arch"] != codec.arch.to_json():
            raise ConfigError("base", cfg.base, f"a base of architecture {codec.arch.to_json()}, "
                              f"got {base_manifest['arch']}")
        codec.net.load_state_dict({k[4:]: v for k, v in base_tensors.items() if k.startswith("net.")})
        base_ref = {"file": Path(cfg.base).with_suffix(".safetensors").name, "sha256": base_manifest["sha256"],
                    "codec": base_manifest["codec"]}
    codec.net.train()
    link = make_link(cfg.csi, cfg.pilot_subcarrier_spacing, cfg.channel_domain)
    t0w, t0c = time.perf_counter(), time.process_time()
    losses: list[float] = []
    result: dict[str, Any] = {"paths": []}
    to_image = sampler.to_image
    data_facts = _data_facts(cfg, sampler)

    def step_on(params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, i: int, n: int, cond: Condition,
                adapt: Any = None) -> float:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(i, n, min(cfg.warmup_steps, max(1, n // 10)))  # type: ignore[operator]
        if cfg.rates is not None:  # one rate per step, uniform (the gate sees it in the condition features)
            codec.set_rate(rng.choice(cfg.train_rates or cfg.rates))
        x = sampler.sample(cfg.batch, gen)
        a = adapt(cfg.batch) if adapt is not None else None
        # MSE of the images (a latent's PSNR is that of the image it decodes to)
        loss = F.mse_loss(to_image(forward_through_link(codec, x, cond, link, a)), to_image(x))
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
            log(f"{cfg.codec} step {i + 1}/{cfg.steps} loss {m:.5f} ({_as_psnr(m, cfg.loss):.2f} dB) "
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
                                                 data_facts=data_facts))
                    log(f"snapshot after {i + 1} steps: {result['paths'][-1]}")
    bar.close()
    codec.set_rate(cfg.bandwidth_ratio)
    codec.eval()
    result.update(losses=losses, wall_s=time.perf_counter() - t0w, cpu_s=time.process_time() - t0c, codec=codec)
    if out is not None:
        result["paths"].append(_save(codec, cfg, out, command, losses, t0w, t0c, base_ref,
                                     stem_codec=cfg.save_as or cfg.codec, steps_done=len(losses),
                                     data_facts=data_facts))
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


def make_sampler(cfg: TrainConfig, log: Callable[[str], None]) -> "CropSampler | GeneratedSampler":
    """The training data of ``cfg``; raises a ConfigError when its items do not have ``cfg.payload_shape``."""
    if cfg.data == "generated":
        sampler: CropSampler | GeneratedSampler = GeneratedSampler(
            cfg.data_model, cfg.data_items, cfg.data_seed, representation=cfg.representation,
            cache_dir=cfg.data_cache, log=log, pack=cfg.data_pack)
        if tuple(sampler.item_shape) != tuple(cfg.payload_shape):
            shape = " ".join(map(str, sampler.item_shape))
            raise ConfigError("payload_shape", cfg.payload_shape,
                              f"the shape of the generated {cfg.representation}s, {tuple(sampler.item_shape)}",
                              f"pass --payload-shape {shape}")
        return sampler
    c, h, w = cfg.payload_shape
    if c == 3 * LATENT_FACTOR ** 2 and h == w:  # natural-photo latents: the world's latent map on photo crops
        return LatentCropSampler(cfg.train_photos, latent_size=h)
    if c != 3 or h != w:
        raise ConfigError("payload_shape", cfg.payload_shape, f"[3, S, S] photo crops, or [{3 * LATENT_FACTOR ** 2}, "
                          "S, S] latents of photo crops", "or train on generated latents with --data generated")
    return CropSampler(cfg.train_photos, size=cfg.payload_shape[-1])


def _data_facts(cfg: TrainConfig, sampler: "CropSampler | GeneratedSampler") -> dict[str, Any]:
    """What a manifest says about the training data."""
    if isinstance(sampler, GeneratedSampler):
        return {**sampler.facts, "representation": cfg.representation, "augmentation": "horizontal flips",
                "held_out": "the world's held-out captions are never generated for training"}
    size = sampler.size
    facts = {"train_photos": list(cfg.train_photos), "held_out_photos": list(HELD_OUT_PHOTOS),
             "crops": f"{size}px random crops of an image pyramid, crop <= {MAX_CROP_FRACTION} of the short side, "
                      "horizontal flips"}
    if isinstance(sampler, LatentCropSampler):
        facts["representation"] = f"latent: pixel_unshuffle(2 x - 1, {LATENT_FACTOR}) of each crop (the world's map)"
    return facts


def _save(codec: JSCCCodec, cfg: TrainConfig, out: str | Path, command: str | None, losses: list[float],
          t0w: float, t0c: float, base_ref: dict[str, str] | None, stem_codec: str, steps_done: int,
          data_facts: dict[str, Any]) -> Path:
    tail = losses[-100:]
    manifest: dict[str, Any] = {
        "codec": cfg.codec, "arch": codec.arch.to_json(), "payload_shape": list(cfg.payload_shape),
        "bandwidth_ratio": cfg.bandwidth_ratio,
        "bandwidth_ratio_fraction": str(Fraction(cfg.bandwidth_ratio).limit_denominator(10_000)),
        "n_channel_uses": codec.n_channel_uses, "params": codec.num_parameters(),
        "training": {
            "command": command or "(library call)", "seed": cfg.seed, "steps": steps_done,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "wall_s": round(time.perf_counter() - t0w, 1), "cpu_s": round(time.process_time() - t0c, 1),
            "threads": cfg.threads, "final_train_loss": sum(tail) / len(tail), "loss": cfg.loss,
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
    t.add_argument("--data-items", type=int, default=4096, help="generated data: images in the set")
    t.add_argument("--data-seed", type=int, default=7, help="generated data: seed of captions and noise")
    t.add_argument("--data-cache", default="runs/cache", help="generated data: cache directory")
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
