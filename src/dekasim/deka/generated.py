"""What the LDMs generate, sampled once: the one generated-set function, its cache, and the
``generated`` payload source of a scenario (:class:`GeneratedSource`).

Every generated payload of the project -- the scenario payloads (edge latents, cloud references) and
the JSCC trainer's generated training set -- comes from :func:`generate_latents`. With a
:class:`LatentCache` it samples only what was never sampled before: each latent is keyed by

    (model fingerprint, knowledge pack's generation fingerprint or none, prompt, seed, DDIM steps, CFG scale)

(:meth:`~dekasim.generative.pack.KnowledgePack.generation_fingerprint`: its metaword and G-LoRA, not its CALA
bank, so packs that differ only in the bank share their latents)

so a sweep never samples the same latent twice and a rerun samples nothing. The cache is a directory
of safetensors files written by this module only, one per (model, pack, sampler settings) group:
``latents-<group>.safetensors`` holds ``latents`` ``[N, *latent_shape]`` float32 and, in its metadata,
the ``N`` (prompt, seed) keys in row order plus the group's fields; a file whose fields disagree with its
name is ignored (and rewritten). Writes are atomic (temporary file + rename); two processes filling one
group at once can only cost each other re-sampling, never a wrong latent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch

from dekasim.checksums import sha256_file
from dekasim.errors import ConfigError
from dekasim.photos import check_representation

_log = logging.getLogger(__name__)


class LatentSampler(Protocol):
    """Anything with ``sample_latents(prompts, seeds, steps=, guidance=) -> [N, *latent_shape]``: a
    :class:`~dekasim.generative.ldm.TextToImageLDM` or an aligned edge (:class:`~dekasim.generative.makd.AlignedEdge`)."""

    def sample_latents(self, prompts: Sequence[str], seeds: Sequence[int], steps: int = 25,
                       guidance: float = 1.5) -> torch.Tensor: ...


def pack_sha256(pack_dir: str | Path) -> str:
    """sha256 of a knowledge pack's ``manifest.json``: it pins the sha256 of every file of the pack, so it
    names the pack's whole content."""
    from dekasim.generative.pack import MANIFEST_NAME

    path = Path(pack_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ConfigError("pack", str(pack_dir), f"a knowledge-pack directory holding {MANIFEST_NAME}",
                          "make one with `dekasim align --out DIR` and give DIR/pack")
    return sha256_file(path)


@dataclass(frozen=True)
class SampleGroup:
    """The identity of a set of latents, less the (prompt, seed) of each: whose model, which pack, which sampler.

    ``pack_sha256`` is the pack's :meth:`~dekasim.generative.pack.KnowledgePack.generation_fingerprint` (a
    sha256 of its metaword and G-LoRA), or None for the model alone."""

    model_fingerprint: str
    pack_sha256: str | None
    steps: int
    guidance: float

    def key(self) -> str:
        text = json.dumps([self.model_fingerprint, self.pack_sha256, int(self.steps), float(self.guidance)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def fields(self) -> dict[str, str]:
        return {"model_fingerprint": self.model_fingerprint, "pack_sha256": str(self.pack_sha256),
                "steps": str(int(self.steps)), "guidance": repr(float(self.guidance)), "group": self.key()}


class LatentCache:
    """Latents on disk, keyed per item (see the module docstring); counts what it served and sampled.

    :param directory: where the group files live (created on the first write).
    """

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.hits = 0
        self.sampled = 0

    def path(self, group: SampleGroup) -> Path:
        return self.dir / f"latents-{group.key()}.safetensors"

    def read(self, group: SampleGroup) -> dict[tuple[str, int], torch.Tensor]:
        """(prompt, seed) -> latent of every item of ``group`` on disk (empty when there is none)."""
        from safetensors import safe_open

        path = self.path(group)
        if not path.is_file():
            return {}
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if any(meta.get(k) != v for k, v in group.fields().items()):
                    return {}
                keys = [tuple(k) for k in json.loads(meta["items"])]
                latents = f.get_tensor("latents").float()
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:  # damaged: sample again
            _log.warning("ignoring the unreadable cache file %s (%s); it will be rewritten", path, exc)
            return {}
        return {(str(p), int(s)): latents[i] for i, (p, s) in enumerate(keys)}

    def write(self, group: SampleGroup, items: dict[tuple[str, int], torch.Tensor]) -> None:
        from safetensors.torch import save_file

        self.dir.mkdir(parents=True, exist_ok=True)
        keys = list(items)
        meta = {**group.fields(), "items": json.dumps([[p, s] for p, s in keys])}
        tmp = self.path(group).with_suffix(f".tmp{os.getpid()}")
        save_file({"latents": torch.stack([items[k] for k in keys]).contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, self.path(group))

    def stats(self) -> dict[str, int]:
        return {"sampled": self.sampled, "cache_hits": self.hits}


def generate_latents(sampler: LatentSampler, prompts: Sequence[str], seeds: Sequence[int], *, steps: int = 25,
                     guidance: float = 1.5, cache: LatentCache | None = None, group: SampleGroup | None = None,
                     chunk: int = 256, log: Callable[[str], None] | None = None,
                     what: str = "latents") -> torch.Tensor:
    """Latents ``[N, *latent_shape]`` float32 (CPU) that ``sampler`` generates for ``prompts[i]`` with
    ``seeds[i]`` (DDIM ``steps``, CFG ``guidance``).

    With ``cache`` (and ``group``, the identity of ``sampler`` and these settings) only the (prompt,
    seed) pairs the cache lacks are sampled, in chunks of ``chunk``, and then stored; repeated pairs
    are sampled once. ``log`` gets ``"generated k/n <what> (s)"`` after each chunk.
    """
    if len(prompts) != len(seeds):
        raise ConfigError("seeds", len(seeds), f"one seed per prompt ({len(prompts)})")
    if cache is not None and group is None:
        raise ValueError("generate_latents: a cache needs the group (model fingerprint, pack, sampler settings)")
    if group is not None and (group.steps != steps or group.guidance != guidance):
        raise ValueError("generate_latents: the group's sampler settings differ from steps/guidance")
    keys = [(str(p), int(s)) for p, s in zip(prompts, seeds)]
    have = cache.read(group) if cache is not None else {}
    missing = list(dict.fromkeys(k for k in keys if k not in have))
    if cache is not None:
        cache.hits += len(keys) - sum(1 for k in keys if k in missing)
    t0 = time.perf_counter()
    for start in range(0, len(missing), chunk):
        part = missing[start:start + chunk]
        with torch.no_grad():
            out = sampler.sample_latents([p for p, _ in part], [s for _, s in part], steps=steps,
                                         guidance=guidance).cpu().float()
        have.update(zip(part, out))
        if log is not None:
            log(f"generated {min(start + chunk, len(missing))}/{len(missing)} {what} ({time.perf_counter() - t0:.0f} s)")
    if cache is not None and missing:
        cache.sampled += len(missing)
        cache.write(group, have)
    if not keys:
        raise ConfigError("prompts", [], "at least one prompt")
    return torch.stack([have[k] for k in keys])


class GeneratedSource:
    """Images an edge text-to-image model generates, ``[N, 3, R, R]`` float32 in [0, 1].

    Prompts are ``n_prompts`` captions of a world split drawn from ``seed``; image ``i`` is sampled with
    seed ``seed * 1_000_003 + i`` (DDIM, ``sample_steps``, CFG ``guidance``). Generated once per process.

    :param model: ``"edge"``, ``"cloud"``, a model directory or a ``dekasim world train`` run directory.
    :param pack: a knowledge-pack directory (``dekasim align``) to apply to the model first, or None.
    :param sample: False loads and checks everything but samples nothing (:meth:`shape` works; call
        :meth:`sample` before :meth:`items`). ``dekasim validate`` uses this.
    """

    kind = "image"

    def __init__(self, model: str = "edge", pack: str | None = None, prompts: str = "heldout", n_prompts: int = 64,
                 sample_steps: int = 25, guidance: float = 1.5, seed: int = 0, resolution_px: int = 32,
                 device: str = "cpu", representation: str = "image", sample: bool = True) -> None:
        from dekasim.generative.models import load_model, model_world

        ldm = load_model(model)
        if ldm.config.resolution_px != resolution_px:
            raise ConfigError("payload.resolution_px", resolution_px,
                              f"the model's image side ({ldm.config.resolution_px} px)",
                              f"set resolution_px = {ldm.config.resolution_px} or leave it out")
        sampler = ldm
        if pack is not None:
            from dekasim.generative.aligned import apply_pack
            from dekasim.generative.pack import load_pack

            sampler = apply_pack(ldm, load_pack(pack), copy_model=False)
        batch = model_world(ldm).sample(n_prompts, seed=seed, split=prompts)
        self.prompts = batch.captions
        self.seeds = [seed * 1_000_003 + i for i in range(n_prompts)]
        self.resolution_px = resolution_px
        check_representation(representation, ("image", "latent"), "generated")
        self.representation = representation
        self.latent_map = ldm.latents
        latent = tuple(int(v) for v in ldm.latent_shape)
        with torch.no_grad():
            image = tuple(self.latent_map.decode(torch.zeros(1, *latent)).shape[1:])
        self._shapes = {"latent": latent, "image": image}
        self._sampler, self._steps, self._guidance = sampler, sample_steps, guidance
        self.sampled = False
        if sample:
            self.sample()

    def sample(self) -> None:
        """Generate the latents and their images (once)."""
        if self.sampled:
            return
        self.latents = generate_latents(self._sampler, self.prompts, self.seeds, steps=self._steps,
                                        guidance=self._guidance)
        with torch.no_grad():
            self.images = self.latent_map.decode(self.latents).float()  # [N, 3, R, R] in [0, 1]
        self.sampled = True

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def batch(self, start: int, size: int) -> torch.Tensor:
        """Images ``start .. start+size-1``, cycling through the generated set."""
        return self.items(start, size, "image")

    def shape(self, representation: str) -> tuple[int, ...]:
        check_representation(representation, ("image", "latent"), "generated")
        return self._shapes[representation]

    def items(self, start: int, size: int, representation: str = "image") -> torch.Tensor:
        """Items ``start .. start+size-1`` as images or as the edge's latents, cycling through the set."""
        check_representation(representation, ("image", "latent"), "generated")
        idx = torch.arange(start, start + size) % len(self.images)
        return (self.latents if representation == "latent" else self.images)[idx]

    def to_image(self, payload: torch.Tensor, representation: str = "image") -> torch.Tensor:
        """A batch of ``representation`` items as images ``[B, 3, R, R]`` in [0, 1] (latents: the model's
        latent decoder, as the DeKA-g receiver does)."""
        if representation == "image":
            return payload
        with torch.no_grad():
            return self.latent_map.to(payload.device).decode(payload.float()).float()
