"""A small feature encoder trained on the world's own renders: the embedded default for a
feature-space similarity between two images (edge vs cloud), in place of DINO/CLIP.

Architecture (:class:`WorldFeatureEncoder`, ~0.16 M parameters): four 3x3 convolutions with
GroupNorm and SiLU (32 -> 16 -> 8 -> 4 px), the 4x4x64 map flattened and projected to a 64-d
embedding, L2-normalised. The map is flattened rather than globally pooled because one of the five
attributes is the object's *position*, which global pooling would discard. On top of the unit
embedding sit five linear heads (a cosine classifier with a fixed temperature), one per attribute,
classifying the *rendered* values::

    shape       circle square triangle diamond cross star triangle_down
    colour      red orange yellow green blue purple magenta
    size        small medium large
    position    the 9 grid positions
    background  black white gray navy

so that two images whose rendered attributes agree lie close on the unit sphere and two that
differ in any attribute do not. The embedding, not the heads, is the feature
(:meth:`WorldFeatureEncoder.embed`); the heads are kept so that a loaded encoder can show it still
reads the world (:meth:`WorldFeatureEncoder.predict`).

Training (:func:`train_feature_encoder`): fresh renders every step, half from the ``standard``
world and half from the ``edge`` dialect (so point-down triangles and magenta are seen), a third of
each batch clean, a third with white noise (std up to 0.08) and a third blurred (sigma up to 1 px)
and noisy (generated images are neither clean nor sharp); AdamW with warm-up and cosine decay;
one thread; deterministic from the seed on a given torch build. Held-out accuracy is measured on
fresh renders of the captions the world holds out (both dialects), clean and degraded.

Files (:func:`save_encoder`, :func:`load_encoder`)::

    model.safetensors   the weights (fp32)
    config.json         architecture and class vocabularies
    manifest.json       sha256 of model.safetensors, the command that reproduces it, seed, steps,
                        wall time, held-out accuracies, torch version

The package ships one in ``dekasim/generative/data/feature_encoder/``, rebuilt (from the repository
root, one thread, 276 s wall on a busy 2-core CPU; 100 % held-out accuracy on every attribute, 2000
renders of both dialects; 99.75 % shape accuracy on degraded renders) with::

    python -m dekasim.generative.features train --out src/dekasim/generative/data/feature_encoder \
        --seed 0 --steps 1500 --batch-size 128 --lr 0.003
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dekasim.checksums import sha256_file
from dekasim.errors import ConfigError
from dekasim.generative.world import ATTRIBUTE_NAMES, DIALECTS, Attributes, World, WorldSpec

log = logging.getLogger(__name__)

FORMAT = "dekasim-feature-encoder/1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
MANIFEST_NAME = "manifest.json"
#: The encoder shipped as package data.
DEFAULT_DIR = Path(__file__).resolve().parent / "data" / "feature_encoder"
EMBEDDING_DIM = 64
_HEAD_TEMPERATURE = 16.0
_TRAIN_DIALECTS = ("standard", "edge")


def default_classes(spec: WorldSpec | None = None) -> dict[str, list[str]]:
    """Class vocabulary per attribute: the spec's caption words plus every dialect-only rendered value
    (the same vocabulary the :class:`~dekasim.generative.checker.Checker` recovers, minus ``"none"``)."""
    spec = spec or WorldSpec()
    out = {}
    for name in ATTRIBUTE_NAMES:
        extra = sorted({v for d in DIALECTS.values() for v in d.get(name, {}).values()})
        out[name] = list(dict.fromkeys([*spec.values(name), *extra]))
    return out


class WorldFeatureEncoder(torch.nn.Module):
    """CNN embedding of world images with one classification head per attribute.

    :param classes: per attribute (keys :data:`~dekasim.generative.world.ATTRIBUTE_NAMES`), the class
        names of its head (default :func:`default_classes`).
    :param resolution_px: image side the encoder takes (the flattened map needs a fixed size).
    :param channels: output channels of the four convolutions.
    :param embedding_dim: size of the embedding.
    """

    def __init__(self, classes: dict[str, Sequence[str]] | None = None, resolution_px: int = 32,
                 channels: Sequence[int] = (32, 64, 64, 64), embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        classes = classes or default_classes()
        if sorted(classes) != sorted(ATTRIBUTE_NAMES):
            raise ConfigError("feature_encoder.classes", sorted(classes), f"one class list per attribute "
                              f"{list(ATTRIBUTE_NAMES)}")
        if resolution_px % 8 or resolution_px < 8:
            raise ConfigError("feature_encoder.resolution_px", resolution_px, "a multiple of 8, at least 8")
        if len(channels) != 4:
            raise ConfigError("feature_encoder.channels", list(channels), "four channel counts")
        self.classes = {n: list(classes[n]) for n in ATTRIBUTE_NAMES}
        self.resolution_px, self.channels, self.embedding_dim = int(resolution_px), tuple(int(c) for c in channels), \
            int(embedding_dim)
        layers: list[torch.nn.Module] = []
        c_in = 3
        for i, c in enumerate(self.channels):
            layers += [torch.nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1),
                       torch.nn.GroupNorm(8, c), torch.nn.SiLU()]
            c_in = c
        self.conv = torch.nn.Sequential(*layers)
        side = self.resolution_px // 8
        self.project = torch.nn.Linear(c_in * side * side, self.embedding_dim)
        self.heads = torch.nn.ModuleDict({n: torch.nn.Linear(self.embedding_dim, len(v))
                                          for n, v in self.classes.items()})

    def config(self) -> dict[str, Any]:
        """What :func:`load_encoder` needs to rebuild the module (written to ``config.json``)."""
        return {"format": FORMAT, "resolution_px": self.resolution_px, "channels": list(self.channels),
                "embedding_dim": self.embedding_dim, "classes": self.classes,
                "input": "[B, 3, R, R] float RGB in [0, 1]"}

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3 \
                or images.shape[2] != self.resolution_px or images.shape[3] != self.resolution_px:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ConfigError("images", shape, f"a [B, 3, {self.resolution_px}, {self.resolution_px}] float tensor "
                              "in [0, 1]", "the world encoder reads world-resolution images; for other images pass a "
                              "DINO/CLIP encoder from local weights (dekasim.metrics.consistency."
                              "local_image_encoder)")
        p = next(self.parameters())
        return images.to(device=p.device, dtype=p.dtype)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embedding and per-attribute logits.

        :param images: ``[B, 3, R, R]`` float RGB in [0, 1].
        :return: ``([B, D]`` unit-norm embedding, ``{attribute: [B, K_attribute]}`` logits``)``.
        """
        z = self.embed(images)
        return z, {n: head(z * _HEAD_TEMPERATURE) for n, head in self.heads.items()}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` L2-normalised embeddings of ``[B, 3, R, R]`` images in [0, 1] (the feature)."""
        x = self._check(images) * 2.0 - 1.0
        h = self.conv(x).flatten(1)
        return F.normalize(self.project(h), dim=1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[Attributes]:
        """The heads' reading of each image (rendered vocabulary), ``B`` :class:`Attributes`."""
        _, logits = self.forward(images)
        idx = {n: lg.argmax(dim=1).tolist() for n, lg in logits.items()}
        return [Attributes(**{n: self.classes[n][idx[n][i]] for n in ATTRIBUTE_NAMES}) for i in range(len(images))]


# ----------------------------------------------------------------------------------------------
# Training


def _labels(encoder: WorldFeatureEncoder, rendered: Sequence[Attributes]) -> dict[str, torch.Tensor]:
    lookup = {n: {v: i for i, v in enumerate(encoder.classes[n])} for n in ATTRIBUTE_NAMES}
    return {n: torch.tensor([lookup[n][getattr(a, n)] for a in rendered], dtype=torch.long) for n in ATTRIBUTE_NAMES}


def _gaussian_blur(images: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur of ``[B, 3, R, R]`` with ``sigma_px`` ``[B]`` (7x7 kernel, replicate edges)."""
    x = torch.arange(7, dtype=images.dtype) - 3.0
    g = torch.exp(-(x[None] ** 2) / (2 * sigma_px.clamp_min(1e-3)[:, None] ** 2))
    g = g / g.sum(dim=1, keepdim=True)  # [B, 7]
    b, c, h, w = images.shape
    y = F.pad(images.reshape(1, b * c, h, w), (3, 3, 3, 3), mode="replicate")
    kx = g.repeat_interleave(c, dim=0)[:, None, None, :]  # [B*C, 1, 1, 7]
    ky = g.repeat_interleave(c, dim=0)[:, None, :, None]
    y = F.conv2d(F.conv2d(y, kx, groups=b * c), ky, groups=b * c)
    return y.reshape(b, c, h, w)


def _degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Training augmentation: thirds of the batch clean, noisy, and blurred-then-noisy."""
    b = images.shape[0]
    third = b // 3
    noise_std = torch.rand(b, generator=generator) * 0.08
    noise_std[:third] = 0.0
    sigma = 0.3 + 0.7 * torch.rand(b, generator=generator)
    out = images.clone()
    out[2 * third:] = _gaussian_blur(images[2 * third:], sigma[2 * third:])
    out = out + noise_std[:, None, None, None] * torch.randn(out.shape, generator=generator)
    return out.clamp(0.0, 1.0)


def _batch(worlds: Sequence[World], n: int, seed: Sequence[int], split: str) -> tuple[torch.Tensor, list[Attributes]]:
    """``n`` renders split evenly over ``worlds``: ``[n, 3, R, R]`` images and their rendered attributes."""
    images, rendered = [], []
    per = [n // len(worlds) + (1 if i < n % len(worlds) else 0) for i in range(len(worlds))]
    for i, (w, k) in enumerate(zip(worlds, per)):
        b = w.sample(k, seed=[*seed, i], split=split)
        images.append(b.torch_images())
        rendered += [s.rendered for s in b.scenes]
    return torch.cat(images), rendered


@torch.no_grad()
def heldout_accuracy(encoder: WorldFeatureEncoder, n: int = 2000, seed: int = 0, degraded: bool = False,
                     batch_size: int = 500) -> dict[str, float]:
    """Accuracy of the heads on ``n`` fresh renders of the world's held-out captions (half standard,
    half edge dialect), per attribute and ``"fully_correct"``; ``degraded`` applies the training
    augmentation (noise and blur) first."""
    worlds = [World(dialect=d) for d in _TRAIN_DIALECTS]
    images, rendered = _batch(worlds, n, [seed, 0xE7A1], "heldout")
    if degraded:
        images = _degrade(images, torch.Generator().manual_seed(seed + 0xDE6))
    encoder.eval()
    preds: list[Attributes] = []
    for start in range(0, n, batch_size):
        preds += encoder.predict(images[start:start + batch_size])
    correct = {name: np.array([getattr(p, name) == getattr(r, name) for p, r in zip(preds, rendered)])
               for name in ATTRIBUTE_NAMES}
    out = {name: float(c.mean()) for name, c in correct.items()}
    out["fully_correct"] = float(np.logical_and.reduce(list(correct.values())).mean())
    return out


def train_feature_encoder(steps: int = 1500, batch_size: int = 128, seed: int = 0, lr: float = 3e-3,
                          warmup_steps: int = 50, eval_n: int = 2000, log_every: int = 100,
                          threads: int = 1) -> tuple[WorldFeatureEncoder, dict[str, Any]]:
    """Train a :class:`WorldFeatureEncoder` on fresh renders of the standard and edge worlds.

    :param steps: optimiser steps (the learning-rate schedule spans them).
    :param batch_size: images per step (half per dialect).
    :param seed: seeds the initial weights, the renders and the augmentation.
    :param lr: peak AdamW learning rate (weight decay 1e-4), linear warm-up then cosine decay to 0.
    :param eval_n: held-out renders for the accuracies in ``info``.
    :param threads: torch intra-op threads during training (restored afterwards).
    :return: ``(encoder, info)``, ``info`` holding ``heldout_accuracy`` (clean) and
        ``heldout_accuracy_degraded`` (per attribute and fully correct), ``train_wall_s``,
        ``train_cpu_s``, ``steps``, ``seed``, ``batch_size``, ``lr``, ``final_loss`` and ``command``.
    """
    if steps < 1:
        raise ConfigError("steps", steps, "a positive number of optimiser steps")
    if batch_size < 6:
        raise ConfigError("batch_size", batch_size, "at least 6 images per step")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError("lr", lr, "a positive finite learning rate")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        torch.manual_seed(seed)
        encoder = WorldFeatureEncoder()
        worlds = [World(dialect=d) for d in _TRAIN_DIALECTS]
        opt = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        gen = torch.Generator().manual_seed(seed + 0xA06)
        t0, c0 = time.perf_counter(), time.process_time()
        encoder.train()
        running = 0.0
        for step in range(steps):
            images, rendered = _batch(worlds, batch_size, [seed, step], "train")
            images = _degrade(images, gen)
            labels = _labels(encoder, rendered)
            _, logits = encoder(images)
            loss = sum(F.cross_entropy(logits[n], labels[n]) for n in ATTRIBUTE_NAMES)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
                log.info("step %d/%d  loss %.4f  lr %.2e  %.1f s", step + 1, steps, running,
                         sched.get_last_lr()[0], time.perf_counter() - t0)
        wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        encoder.eval()
        info: dict[str, Any] = {
            "steps": int(steps), "seed": int(seed), "batch_size": int(batch_size), "lr": float(lr),
            "warmup_steps": int(warmup_steps), "threads": int(threads),
            "train_wall_s": round(wall_s, 2), "train_cpu_s": round(cpu_s, 2), "final_loss": round(running, 5),
            "heldout_accuracy": heldout_accuracy(encoder, n=eval_n, seed=seed),
            "heldout_accuracy_degraded": heldout_accuracy(encoder, n=eval_n, seed=seed, degraded=True),
            "eval_n": int(eval_n),
            "worlds": {d: w.fingerprint() for d, w in zip(_TRAIN_DIALECTS, worlds)},
            "command": _command(steps=steps, seed=seed, batch_size=batch_size, lr=lr, out="DIR"),
        }
        return encoder, info
    finally:
        torch.set_num_threads(old_threads)


def _command(*, steps: int, seed: int, batch_size: int, lr: float, out: str) -> str:
    return (f"python -m dekasim.generative.features train --out {out} --seed {seed} --steps {steps} "
            f"--batch-size {batch_size} --lr {lr:g}")


# ----------------------------------------------------------------------------------------------
# Save / load



def save_encoder(encoder: WorldFeatureEncoder, directory: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` (fp32), ``config.json`` and ``manifest.json`` into ``directory``
    (created if needed; only these three files are written).

    :param info: the training record of :func:`train_feature_encoder` (copied into the manifest).
    :return: the directory.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in encoder.state_dict().items()}
    weights = out / WEIGHTS_NAME
    save_file(state, str(weights), metadata={"format": FORMAT})
    (out / CONFIG_NAME).write_text(json.dumps(encoder.config(), indent=2) + "\n", encoding="utf-8")
    manifest = {"format": FORMAT, "file": WEIGHTS_NAME, "sha256": sha256_file(weights), "bytes": weights.stat().st_size,
                "parameters": int(sum(v.numel() for v in state.values())), "dtype": "float32",
                "torch_version": torch.__version__, "numpy_version": np.__version__,
                "reproducible": "bit-exact only on the same torch build and thread count",
                **dict(info or {})}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def _fix(directory: Path) -> str:
    return ("restore the files (reinstall dekasim for the shipped encoder) or retrain: "
            + _command(steps=1500, seed=0, batch_size=128, lr=3e-3, out=str(directory)))


def load_encoder(directory: str | Path | None = None) -> WorldFeatureEncoder:
    """Load an encoder written by :func:`save_encoder` (default: the one shipped with the package),
    after checking the weights' sha256 against ``manifest.json``.

    :raises ConfigError: (field ``feature_encoder``) if a file is missing or unreadable, or the
        weights do not match the manifest's sha256.
    """
    from safetensors.torch import load_file

    path = Path(directory) if directory is not None else DEFAULT_DIR
    if not path.is_dir():
        raise ConfigError("feature_encoder", str(path), f"a directory holding {WEIGHTS_NAME}, {CONFIG_NAME} and "
                          f"{MANIFEST_NAME}", _fix(path))
    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME, MANIFEST_NAME) if not (path / n).is_file()]
    if missing:
        raise ConfigError("feature_encoder", str(path), f"a directory holding {WEIGHTS_NAME}, {CONFIG_NAME} and "
                          f"{MANIFEST_NAME} (missing: {', '.join(missing)})", _fix(path))
    try:
        config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("feature_encoder", str(path), f"readable JSON in {CONFIG_NAME} and {MANIFEST_NAME} ({exc})",
                          _fix(path)) from None
    if config.get("format") != FORMAT:
        raise ConfigError("feature_encoder", f"{path / CONFIG_NAME}: format {config.get('format')!r}",
                          f"format {FORMAT!r}", _fix(path))
    actual = sha256_file(path / WEIGHTS_NAME)
    if actual != manifest.get("sha256"):
        raise ConfigError("feature_encoder", f"{path / WEIGHTS_NAME} (sha256 {actual})",
                          f"the sha256 recorded in {MANIFEST_NAME}: {manifest.get('sha256')}",
                          "the weights were altered or corrupted; " + _fix(path))
    encoder = WorldFeatureEncoder(classes=config["classes"], resolution_px=config["resolution_px"],
                                  channels=config["channels"], embedding_dim=config["embedding_dim"])
    try:
        encoder.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
    except (RuntimeError, OSError, ValueError) as exc:
        raise ConfigError("feature_encoder", str(path / WEIGHTS_NAME), f"weights matching {CONFIG_NAME} ({exc})",
                          _fix(path)) from None
    encoder.manifest = manifest  # type: ignore[attr-defined]
    return encoder.eval()


# ----------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dekasim.generative.features",
                                description="The world feature encoder (consistency metric's embedded default).")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an encoder and write it to --out")
    t.add_argument("--out", required=True, help="output directory (model.safetensors, config.json, manifest.json)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--eval-n", type=int, default=2000, help="held-out renders for the reported accuracies")
    e = sub.add_parser("eval", help="held-out accuracy of a saved encoder (default: the shipped one)")
    e.add_argument("--dir", default=None)
    e.add_argument("--n", type=int, default=2000)
    e.add_argument("--seed", type=int, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; returns the exit status (2 on a :class:`ConfigError`)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            encoder, info = train_feature_encoder(steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                                  lr=args.lr, eval_n=args.eval_n)
            info["command"] = _command(steps=args.steps, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                                       out=args.out) + (f" --eval-n {args.eval_n}" if args.eval_n != 2000 else "")
            out = save_encoder(encoder, args.out, info)
            acc = info["heldout_accuracy"]
            log.info("wrote %s: %d bytes, %.1f s, held-out accuracy %s", out, (out / WEIGHTS_NAME).stat().st_size,
                     info["train_wall_s"], " ".join(f"{k}={v:.4f}" for k, v in acc.items()))
        else:
            torch.set_num_threads(1)
            encoder = load_encoder(args.dir)
            acc = heldout_accuracy(encoder, n=args.n, seed=args.seed)
            log.info("held-out accuracy %s", " ".join(f"{k}={v:.4f}" for k, v in acc.items()))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
