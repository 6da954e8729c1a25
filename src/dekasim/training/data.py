"""Training data of the learned codecs: photo crops, photo latents of a model, or what a text-to-image model generates.

Samplers share one interface, ``sample(batch, generator) -> [batch, *item_shape]`` float32 (on the CPU),
``to_image(items)`` (items -> images for an image-space loss), ``default_loss_space`` and
``channel_stats()``:

- :class:`CropSampler` (in :mod:`dekasim.training.jscc`): random crops of training photographs,
  ``[3, S, S]`` in [0, 1] (and :class:`~dekasim.training.jscc.LatentCropSampler`: the same crops through
  the embedded world's exact latent map, ``[48, S, S]``).
- :class:`PhotoLatentSampler`: natural-photo latents encoded by a *given model's* latent map (a VAE for a
  Stable-Diffusion-layout folder: ``[4, R/8, R/8]``; the embedded world's ``pixel_unshuffle``: ``[48, R/4,
  R/4]``) at the model's resolution ``R``: a fixed set of ``n_items`` random crops (side uniform in
  :data:`CROP_FRACTION_RANGE` of the photo's short side, random position, horizontal flip with probability
  1/2, resized to ``R x R`` with Lanczos) of the shipped training photos (:data:`TRAIN_PHOTOS`) or of a
  folder of the user's photos (:data:`PHOTO_SUFFIXES`), encoded once and then drawn uniformly. The
  generic pre-installed JSCC of an edge model trains on it: data that knows nothing of the model's images.
- :class:`GeneratedSampler`: a fixed set of ``n_items`` images that a text-to-image model (default the
  shipped ``edge``) generates -- for captions of the world's *training* split (the held-out captions,
  which the ``generated`` scenario payload uses by default, are never generated here), or for a list of
  prompts (a prompt file, or the training prompts a knowledge pack records) -- with horizontal flips.
  ``representation = "image"`` gives ``[3, R, R]`` in [0, 1]; ``"latent"`` gives the model's latents (the
  embedded world: ``pixel_unshuffle(2 x - 1, 4)``, ``[48, R/4, R/4]`` in [-1, 1]; a VAE model: its
  sampled latents as they are, without flips, since the latent of a flipped image needs a VAE round trip
  that the edge never makes), i.e. what the edge hands to its transmitter in DeKA-g.

Generating 4096 images costs about 7 min on 2 CPU threads (and encoding 4096 photo crops with an SD VAE
far longer), so each set is cached as one safetensors file (written by this module only; the parameters
and the model's fingerprint are in its name and metadata, and a mismatch makes it anew).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dekasim.errors import ConfigError

_log = logging.getLogger(__name__)
#: Representations a generated training set can be served in.
REPRESENTATIONS = ("image", "latent")
#: Spaces a training loss can be measured in: the images the items decode to, or the latents themselves.
LOSS_SPACES = ("image", "latent")
#: Photographs the shipped checkpoints were trained on (scikit-image names + matplotlib's sample).
TRAIN_PHOTOS = ("chelsea", "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "motorcycle_right",
                "retina", "grace_hopper")
#: Image files a ``--photos`` folder contributes (case-insensitive suffixes; other files are ignored).
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Side of a :class:`PhotoLatentSampler` crop as a fraction of the photo's short side (uniform in this range).
CROP_FRACTION_RANGE = (0.3, 1.0)


def load_training_photo(name: str) -> np.ndarray:
    """``[H, W, 3]`` uint8 photo: a PhotoSource name or ``"grace_hopper"`` (matplotlib sample data)."""
    if name == "grace_hopper":
        import matplotlib
        from PIL import Image

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return np.asarray(Image.open(path).convert("RGB"))
    from dekasim.photos import load_photo

    return np.ascontiguousarray(load_photo(name)[..., :3])


def photo_files(folder: str | Path, field: str = "--photos") -> list[Path]:
    """The image files (:data:`PHOTO_SUFFIXES`) directly inside ``folder``, sorted by name.

    :raises ConfigError: (naming ``field``) a folder that does not exist or holds no such file.
    """
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise ConfigError(field, str(folder), "an existing folder of photos (.png, .jpg, .jpeg, .webp)",
                          "give the path of a local folder")
    try:
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in PHOTO_SUFFIXES)
    except OSError as exc:
        raise ConfigError(field, str(folder), f"a readable folder ({exc})") from None
    if not files:
        raise ConfigError(field, str(folder), f"a folder holding at least one photo ({', '.join(PHOTO_SUFFIXES)})",
                          "copy photos into it, or leave --photos out to use the photos dekasim ships")
    return files


def read_photo_file(path: Path, field: str = "--photos") -> np.ndarray:
    """``[H, W, 3]`` uint8 of an image file, upright as its EXIF orientation says; a ConfigError naming ``field``
    when Pillow cannot read it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(field, str(path), f"a readable image file ({type(exc).__name__}: {exc})",
                          "remove or replace the file") from None


def load_latent_model(spec: str | Path, field: str = "--latent-model"):
    """:func:`dekasim.generative.models.load_model` with its errors reported against ``field``."""
    from dekasim.generative.models import load_model

    try:
        return load_model(spec)
    except ConfigError as err:
        raise ConfigError(field, str(spec), err.expected, err.fix) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # a folder diffusers cannot read
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(field, str(spec), f"a model folder that loads ({type(exc).__name__}: {text})",
                          "give a Stable-Diffusion-layout folder (unet/, vae/, text_encoder/, tokenizer/, "
                          "scheduler/), 'edge' or 'cloud'") from None


def module_sha256(module: torch.nn.Module) -> str:
    """sha256 (hex) of a module's state: each entry in sorted key order (name, shape, its float32 CPU bytes)."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        v = value.detach().to("cpu", torch.float32).contiguous()
        h.update(key.encode())
        h.update(json.dumps(list(v.shape)).encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def _is_exact(latent_map: torch.nn.Module) -> bool:
    """A latent map whose decoder inverts its encoder exactly (the world's ``pixel_unshuffle``)."""
    from dekasim.generative.ldm import PixelUnshuffleLatents

    return isinstance(latent_map, PixelUnshuffleLatents)


def _channel_stats(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation ``[C]`` of ``[N, C, h, w]`` latents (std at least 1e-6)."""
    x = latents.to(torch.float64).transpose(0, 1).reshape(latents.shape[1], -1)
    return x.mean(1).float(), x.std(1).clamp_min(1e-6).float()


def _read_cache(path: Path, key: str, fingerprint: str) -> tuple[torch.Tensor, dict[str, str]] | None:
    """The ``latents`` of a cached set and its metadata, or None when the file is of another key/model."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("key") != key or meta.get("model_fingerprint") != fingerprint:
            return None
        return f.get_tensor("latents").float(), meta


def _write_cache(path: Path, latents: torch.Tensor, facts: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
            for k, v in facts.items()}
    tmp = path.with_suffix(".tmp")
    save_file({"latents": latents.contiguous()}, str(tmp), metadata=meta)
    tmp.replace(path)


def photo_latent_key(model_fingerprint: str, latent_map_sha256: str, resolution_px: int, photos: Sequence[Any],
                     n_items: int, seed: int) -> str:
    """Short hash naming one :class:`PhotoLatentSampler` set (model, latent map, photos, every setting)."""
    fields = ["photo-latents/1", model_fingerprint, latent_map_sha256, int(resolution_px), list(photos),
              int(n_items), int(seed), list(CROP_FRACTION_RANGE), "lanczos", "hflip 0.5"]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


class PhotoLatentSampler:
    """Natural-photo latents of one model's latent map (see the module docstring).

    :param model: a model spec of :func:`dekasim.generative.models.load_model` (``"edge"``, a
        Stable-Diffusion-layout folder with a VAE, ...); errors name ``--latent-model``.
    :param n_items: crops in the fixed set.
    :param seed: seed of the crops (photo, side, position, flip of each).
    :param photos: names of shipped photos (:func:`load_training_photo`), used when ``photos_dir`` is None.
    :param photos_dir: a folder of the user's photos (:data:`PHOTO_SUFFIXES`); errors name ``--photos``.
    :param cache_dir: where the encoded set is kept (``None``: not kept).
    :param device: where the latent map encodes the crops (``"cpu"``, ``"cuda"``); the set is kept on the CPU.
    :param chunk: crops encoded per call of the latent map.
    :param log: progress messages.

    ``latents``: ``[n_items, C, h, w]`` float32, ``(C, h, w) = item_shape`` the model's latent shape at its
    resolution ``resolution_px`` (4 x 64 x 64 for SD 1.5 at 512 px).
    """

    def __init__(self, model: str | Path = "edge", n_items: int = 4096, seed: int = 7,
                 photos: Sequence[str] = TRAIN_PHOTOS, photos_dir: str | Path | None = None,
                 cache_dir: str | Path | None = "runs/cache", device: str = "cpu", chunk: int = 16,
                 log: Callable[[str], None] | None = None) -> None:
        from dekasim.generative.pack import model_fingerprint

        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
            raise ConfigError("--data-items", n_items, "a positive number of photo crops in the set")
        log = log or _log.info
        self.model = str(model)
        if photos_dir is not None:
            self.files: list[Path] | None = photo_files(photos_dir)
            labels = [f.name for f in self.files]
            from dekasim.checksums import sha256_file

            identity: list[Any] = [[f.name, sha256_file(f)] for f in self.files]
        else:
            self.files = None
            labels = list(photos)
            if not labels:
                raise ConfigError("train_photos", photos, "at least one shipped photo name")
            identity = list(labels)
        self.photo_labels = labels
        self.ldm = load_latent_model(model)
        self.latent_map = self.ldm.latents
        self.resolution_px = int(self.ldm.config.resolution_px)
        self.exact = _is_exact(self.latent_map)
        self.fingerprint = model_fingerprint(self.ldm)
        map_sha = module_sha256(self.latent_map) if not self.exact else json.dumps(self.latent_map.config())
        self.key = photo_latent_key(self.fingerprint, map_sha, self.resolution_px, identity, n_items, seed)
        self.facts: dict[str, Any] = {
            "latent_model": self.model, "model_fingerprint": self.fingerprint, "latent_map": self.latent_map.config(),
            "latent_map_sha256": map_sha if not self.exact else None, "resolution_px": self.resolution_px,
            "latent_shape": list(self.ldm.latent_shape), "n_items": n_items, "seed": seed,
            "photos": str(photos_dir) if photos_dir is not None else "shipped", "photo_names": labels,
            "crops": f"side U{list(CROP_FRACTION_RANGE)} of the short side, random position, horizontal flip "
                     f"p=0.5, Lanczos to {self.resolution_px}px; encoded once, drawn uniformly", "key": self.key}
        if self.facts["latent_map_sha256"] is None:
            del self.facts["latent_map_sha256"]
        path = None if cache_dir is None else Path(cache_dir) / f"photo-latents-{self.key}.safetensors"
        cached = _read_cache(path, self.key, self.fingerprint) if path is not None and path.exists() else None
        if cached is not None:
            latents = cached[0]
        else:
            latents = self._encode(n_items, seed, device, max(1, int(chunk)), log)
            if path is not None:
                _write_cache(path, latents, self.facts)
                log(f"cached the photo latents in {path}")
        self.latents = latents

    def _photo(self, i: int) -> np.ndarray:
        return read_photo_file(self.files[i]) if self.files is not None else load_training_photo(self.photo_labels[i])

    def crop_plan(self, n_items: int, seed: int) -> np.ndarray:
        """``[n_items, 5]``: photo index, side fraction, relative y and x of the corner in [0, 1), flip (0/1)."""
        rng = np.random.default_rng([int(seed), 0x9407])
        lo, hi = CROP_FRACTION_RANGE
        return np.stack([rng.integers(0, len(self.photo_labels), n_items), rng.uniform(lo, hi, n_items),
                         rng.random(n_items), rng.random(n_items), rng.random(n_items) < 0.5], axis=1)

    def _encode(self, n_items: int, seed: int, device: str, chunk: int, log: Callable[[str], None]) -> torch.Tensor:
        import time

        from PIL import Image

        plan = self.crop_plan(n_items, seed)
        r = self.resolution_px
        self.latent_map.to(device)
        out: torch.Tensor | None = None
        pending: list[tuple[int, np.ndarray]] = []
        t0, done = time.perf_counter(), 0

        def flush() -> None:
            nonlocal out, done
            idx = [i for i, _ in pending]
            x = torch.from_numpy(np.stack([a for _, a in pending])).permute(0, 3, 1, 2).float().div(255.0)
            with torch.no_grad():
                z = self.latent_map.encode(x.to(device)).to("cpu", torch.float32)
            if out is None:
                out = torch.empty(n_items, *z.shape[1:])
            out[idx] = z
            done += len(idx)
            pending.clear()
            if done == n_items or done % (chunk * 16) < len(idx):
                log(f"encoded {done}/{n_items} photo crops with {self.model} ({time.perf_counter() - t0:.0f} s)")

        for p in range(len(self.photo_labels)):        # one photo in memory at a time
            items = np.nonzero(plan[:, 0] == p)[0]
            if not len(items):
                continue
            img = Image.fromarray(np.ascontiguousarray(self._photo(p)))
            w, h = img.size
            for i in items:
                side = max(1, int(round(plan[i, 1] * min(h, w))))
                y0, x0 = int(plan[i, 2] * (h - side + 1)), int(plan[i, 3] * (w - side + 1))
                crop = img.crop((x0, y0, x0 + side, y0 + side)).resize((r, r), Image.Resampling.LANCZOS)
                if plan[i, 4]:
                    crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                pending.append((int(i), np.asarray(crop)))
                if len(pending) == chunk:
                    flush()
        if pending:
            flush()
        self.latent_map.to("cpu")
        assert out is not None
        return out

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.latents.shape[1:])

    @property
    def default_loss_space(self) -> str:
        """``"image"`` for an exact latent map (the loss of today's trainers), ``"latent"`` for a VAE (decoding
        every step through it would cost more than the JSCC)."""
        return "image" if self.exact else "latent"

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-channel mean and std ``[C]`` of the set, for a new network's input normalisation (VAE latents;
        None for the exact map, whose latents already lie in [-1, 1])."""
        return None if self.exact else _channel_stats(self.latents)

    def to(self, device: str) -> "PhotoLatentSampler":
        """Move the latent map (what :meth:`to_image` runs) to ``device``; the set stays on the CPU."""
        self.latent_map.to(device)
        return self

    def to_image(self, items: torch.Tensor) -> torch.Tensor:
        """Latents -> images ``[B, 3, R, R]`` (unclamped, for losses) through the model's latent decoder."""
        return self.latent_map.decode(items, clamp=False)

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """``[batch, *item_shape]`` float32: set members drawn uniformly (their crops hold the flips)."""
        n = len(self.latents)
        idx = (torch.rand(batch, generator=gen) * n).long().clamp_max(n - 1)
        return self.latents[idx]


def generation_key(model_fingerprint: str, n_items: int, seed: int, sample_steps: int, guidance: float,
                   pack_generation: str | None = None, prompts_sha256: str | None = None) -> str:
    """Short hash naming one generated set (model weights, the knowledge pack's
    :meth:`~dekasim.generative.pack.KnowledgePack.generation_fingerprint`, the prompts when they are not the
    world's, and every generation parameter)."""
    fields: list = [model_fingerprint, int(n_items), int(seed), int(sample_steps), float(guidance)]
    if pack_generation is not None:  # sets made without a pack keep the key they had before packs were allowed
        fields.append(pack_generation)
    if prompts_sha256 is not None:   # likewise sets of the world's captions
        fields.append({"prompts_sha256": prompts_sha256})
    text = json.dumps(fields)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pack_training_prompts(pack_info: dict[str, Any]) -> list[str] | None:
    """The training prompts a knowledge pack records (``info["prompts"]["train"]`` of a pack aligned on prompt
    files by ``dekasim align --prompts``), or None for a pack aligned on the world's captions."""
    rec = (pack_info or {}).get("prompts") or {}
    if rec.get("source") != "prompt_files":
        return None
    train = [str(p) for p in rec.get("train") or []]
    return train or None


class GeneratedSampler:
    """Random items (with horizontal flips) from images a text-to-image model generated.

    :param model: a model spec of :func:`dekasim.generative.models.load_model` (``"edge"``, a directory).
    :param n_items: images in the set (world captions drawn with replacement from the training split, or
        ``prompts`` in turn: image ``i`` draws ``prompts[i % len(prompts)]``).
    :param seed: seed of the captions and of the sampling noise (image ``i`` uses ``seed * 1_000_003 + i``).
    :param sample_steps: DDIM steps; :param guidance: classifier-free guidance (the payload's defaults).
    :param representation: ``"image"`` or ``"latent"`` (see the module docstring).
    :param pack: a knowledge-pack directory (``dekasim align``) applied to the model before generating:
        DeKA-g's S_EG, the aligned edge's images; None: the model as it is.
    :param prompts: the prompts to generate from; None: the training prompts ``pack`` records when it was
        aligned on prompt files (``dekasim align --prompts``), else the world's training captions.
    :param cache_dir: where the generated set is kept (``None``: not kept).
    :param device: where the model samples (``"cpu"``, ``"cuda"``); the set is kept on the CPU.
    :param log: progress messages.
    """

    def __init__(self, model: str = "edge", n_items: int = 4096, seed: int = 7, sample_steps: int = 25,
                 guidance: float = 1.5, representation: str = "latent", cache_dir: str | Path | None = "runs/cache",
                 log: Callable[[str], None] | None = None, pack: str | Path | None = None,
                 prompts: Sequence[str] | None = None, device: str = "cpu") -> None:
        from dekasim.generative.models import load_model
        from dekasim.generative.pack import model_fingerprint

        if representation not in REPRESENTATIONS:
            raise ConfigError("representation", representation, f"one of {list(REPRESENTATIONS)}")
        if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
            raise ConfigError("n_items", n_items, "a positive number of generated training images")
        if prompts is not None and not list(prompts):
            raise ConfigError("--data-prompts", "[]", "at least one prompt")
        log = log or _log.info
        self.ldm = load_model(model)
        self.representation = representation
        self.model = str(model)
        self.fingerprint = model_fingerprint(self.ldm)
        self.generator = self.ldm
        self.exact = _is_exact(self.ldm.latents)
        pack_sha = None
        prompts_source = "given"
        if pack is not None:
            from dekasim.deka.generated import pack_sha256
            from dekasim.generative.aligned import apply_pack
            from dekasim.generative.pack import load_pack

            loaded = load_pack(pack)
            self.generator = apply_pack(self.ldm, loaded)            # checks the pack was made for this model
            pack_sha = pack_sha256(pack)                              # the manifest pins every file's sha256
            generation = loaded.generation_fingerprint()              # metaword + G-LoRA: the bank changes nothing
            if prompts is None and pack_training_prompts(loaded.info) is not None:
                prompts, prompts_source = pack_training_prompts(loaded.info), "pack"
        self.prompts = None if prompts is None else [str(p) for p in prompts]
        p_sha = None
        if self.prompts is not None:
            from dekasim.generative.prompts import prompts_sha256

            p_sha = prompts_sha256(self.prompts)
        self.key = generation_key(self.fingerprint, n_items, seed, sample_steps, guidance,
                                  None if pack is None else generation, p_sha)
        self.facts = {"model": str(model), "model_fingerprint": self.fingerprint, "n_items": n_items, "seed": seed,
                      "sample_steps": sample_steps, "guidance": guidance, "split": "train", "key": self.key}
        if self.prompts is not None:
            self.facts.update(split="prompts", prompts_source=prompts_source, n_prompts=len(self.prompts),
                              prompts_sha256=p_sha)
        if pack is not None:
            self.facts.update(pack=str(pack), pack_manifest_sha256=pack_sha, pack_generation_fingerprint=generation)
        path = None if cache_dir is None else Path(cache_dir) / f"generated-{self.key}.safetensors"
        cached = _read_cache(path, self.key, self.fingerprint) if path is not None and path.exists() else None
        if cached is None:
            latents = self._generate(n_items, seed, sample_steps, guidance, log, device)
            if path is not None:
                from safetensors.torch import save_file

                path.parent.mkdir(parents=True, exist_ok=True)
                meta = {k: str(v) for k, v in self.facts.items()}
                save_file({"latents": latents.contiguous()}, str(path), metadata=meta)
                log(f"cached the generated set in {path}")
        else:
            latents = cached[0]
        self.latents = latents
        #: the decoded set (flips happen on images); None for VAE latents served as sampled
        self.images: torch.Tensor | None = None
        if self.exact or representation == "image":
            with torch.no_grad():
                self.images = self.ldm.latents.decode(latents).contiguous()

    def _generate(self, n_items: int, seed: int, sample_steps: int, guidance: float,
                  log: Callable[[str], None], device: str = "cpu") -> torch.Tensor:
        from dekasim.deka.generated import generate_latents
        from dekasim.generative.models import model_world

        if self.prompts is None:
            captions = model_world(self.ldm).sample(n_items, seed=seed, split="train").captions
        else:
            captions = [self.prompts[i % len(self.prompts)] for i in range(n_items)]
        seeds = [seed * 1_000_003 + i for i in range(n_items)]
        model = getattr(self.generator, "model", self.generator)
        if device != "cpu":
            model.to(device)
        try:
            return generate_latents(self.generator, captions, seeds, steps=sample_steps, guidance=guidance, chunk=256,
                                    log=log, what=f"training images with {self.model}")
        finally:
            if device != "cpu":
                model.to("cpu")

    @property
    def item_shape(self) -> tuple[int, ...]:
        if self.representation == "latent" or self.images is None:
            return tuple(self.latents.shape[1:])
        return tuple(self.images.shape[1:])

    @property
    def default_loss_space(self) -> str:
        """``"latent"`` for VAE latents, else ``"image"`` (images, and the world's exact latents)."""
        return "latent" if self.representation == "latent" and not self.exact else "image"

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-channel mean and std ``[C]`` of VAE latents (a new network's input normalisation), else None."""
        return _channel_stats(self.latents) if self.default_loss_space == "latent" else None

    def to(self, device: str) -> "GeneratedSampler":
        """Move the latent map (what :meth:`to_image` runs) to ``device``; the set stays on the CPU."""
        self.ldm.latents.to(device)
        return self

    def to_image(self, items: torch.Tensor) -> torch.Tensor:
        """Items of this sampler's representation -> images ``[B, 3, R, R]`` (unclamped, for losses)."""
        if self.representation == "image":
            return items
        return self.ldm.latents.decode(items, clamp=False)

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """``[batch, *item_shape]`` float32: random set members, half of them flipped left-right (VAE latents:
        the members as sampled)."""
        r = torch.rand(batch, 2, generator=gen)
        n = len(self.latents)
        idx = (r[:, 0] * n).long().clamp_max(n - 1)
        if self.images is None:
            return self.latents[idx]
        images = self.images[idx]
        flip = r[:, 1] < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if self.representation == "image":
            return images
        return self.ldm.latents.encode(images)
