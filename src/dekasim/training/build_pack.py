"""``dekasim build-pack``: a whole DeKA-g knowledge pack for a user's cloud and edge models, in order.

Stages, each with its product and manifest under ``OUT`` (the progress file ``OUT/build.json`` records
each finished stage: its settings, its product, the product's sha256, wall time)::

    1. align   MAKD on the user's subject and prompts (dekasim align --prompts ...)   OUT/align/  (report, pack-makd)
    2. base    the edge's generic pre-installed JSCC: rate-adaptive, trained on natural-photo latents
               encoded by the edge's own latent map (VAE), unless --base gives one      OUT/jscc/jscc_generic-*.json
    3. s_eg    S_EG: the aligned edge's latents of the training prompts (cached)         OUT/cache/generated-*.safetensors
    4. cala    the CALA bank + gate over the frozen base, trained on S_EG through the link  OUT/jscc/cala_generic-*.json
    5. pack    the MAKD pack carrying the bank (diffusers layouts + manifest)             OUT/pack/

A rerun of the same command skips finished stages (an interrupted stage runs again from its start); a
rerun with other settings for a finished stage is refused (choose another ``--out``), so the products
of one directory always belong together. A DeKA-g scenario then takes ``pack = "OUT/pack"``: the base the
bank names is found in ``OUT/jscc/`` beside it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

from dekasim.checksums import sha256_file
from dekasim.errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("align", "base", "s_eg", "cala", "pack")
PROGRESS_FILE = "build.json"
#: Rates of the generic base (each a share of the latent values; one network serves all of them).
DEFAULT_RATES = (Fraction(1, 24), Fraction(1, 12), Fraction(1, 6))


@dataclass
class BuildSettings:
    """What ``dekasim build-pack`` trains (every field lands in ``build.json``).

    :param base: a pre-installed JSCC checkpoint manifest to use instead of training one (stage 2 skipped).
    :param rates: bandwidth ratios the generic base serves (latent values -> complex channel uses).
    :param base_steps, cala_steps: optimiser steps of the base and of the bank.
    :param base_items: natural-photo latents in the base's training set; ``photos``: a folder of the user's
        photos instead of the shipped training photos.
    :param seg_items: S_EG: images the aligned edge generates for the bank's training.
    :param cala: the bank's layout (``num_adapters``, ``rank``, ``factor``, ``affine``, ``gate``, ``lr``).
    :param batch: training batch of base and bank; ``seed``: seeds both (the bank ``seed + 1``).
    :param device: where every stage runs; ``dtype``: the cloud's sampling precision (the edge trains in float32).
    """

    base: str | None = None
    rates: tuple[str, ...] = tuple(str(r) for r in DEFAULT_RATES)
    base_steps: int = 4000
    base_items: int = 2048
    photos: str | None = None
    seg_items: int = 1024
    cala_steps: int = 2000
    cala: dict[str, Any] = field(default_factory=lambda: {"num_adapters": 2, "rank": 4, "factor": "cp",
                                                           "affine": True, "gate": "snr_anchored", "lr": 1e-2})
    batch: int = 32
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("base_steps", "base_items", "seg_items", "cala_steps", "batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}", getattr(self, name), "a positive integer")
        try:
            self.rates = tuple(str(Fraction(r)) for r in self.rates)
        except (ValueError, ZeroDivisionError):
            raise ConfigError("--rates", self.rates, "bandwidth ratios such as 1/24 1/12 1/6") from None


def _stage_record(out: Path) -> dict[str, Any]:
    path = out / PROGRESS_FILE
    if not path.is_file():
        return {"stages": {}}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"stages": {}}


def _write_record(out: Path, record: dict[str, Any]) -> None:
    tmp = out / (PROGRESS_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))  # stages in the order they ran
    tmp.replace(out / PROGRESS_FILE)


def _run_stage(out: Path, record: dict[str, Any], name: str, settings: dict[str, Any],
               work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run stage ``name`` unless ``build.json`` holds it finished with the same ``settings``; returns its product."""
    done = record["stages"].get(name)
    canonical = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if done is not None:
        if done.get("settings") != canonical:
            raise ConfigError("--out", str(out), f"a build directory of these settings: its stage '{name}' was made "
                              f"with {json.dumps(done.get('settings'), sort_keys=True)[:300]}",
                              "choose another --out (the products of one directory belong together)")
        product = done["product"]
        if all((out / p).exists() for p in product.get("files", [])):
            log.info("build-pack: stage %s already done", name)
            return product
    log.info("build-pack: stage %s", name)
    t0 = time.perf_counter()
    product = work()
    # paths relative to the build directory: a build directory moved or reached from elsewhere still resumes
    product = {k: (_relative(v, out) if k in ("pack", "checkpoint") else v) for k, v in product.items()}
    product["files"] = [_relative(p, out) for p in product.get("files", [])]
    product["sha256"] = {Path(p).name: sha256_file(out / p) for p in product["files"] if (out / p).is_file()}
    record["stages"][name] = {"settings": canonical, "product": product,
                              "wall_s": round(time.perf_counter() - t0, 1),
                              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_record(out, record)
    return product


def _relative(path: str | Path, out: Path) -> str:
    return os.path.relpath(Path(path).resolve(), out.resolve())


def build_pack(cloud_spec: str, edge_spec: str, task_factory: Callable[[], Any], out_dir: str | Path,
               settings: BuildSettings | None = None, command: str | None = None,
               align_methods: Sequence[str] = ("none", "makd"), progress: bool = False) -> dict[str, Any]:
    """Run the stages (module docstring) into ``out_dir``; returns ``build.json``'s content.

    :param cloud_spec, edge_spec: model specs (:func:`~dekasim.generative.models.load_model`).
    :param task_factory: builds the :class:`~dekasim.generative.align_task.AlignmentTask` (prompts, encoders,
        settings); called once, before anything is written, so bad input leaves nothing behind.
    """
    import torch

    from dekasim.deka.alignment import run_alignment
    from dekasim.deka.pack_codec import with_cala
    from dekasim.generative.models import latent_shape_of, load_model
    from dekasim.generative.pack import load_pack, save_pack
    from dekasim.training.data import GeneratedSampler
    from dekasim.training.jscc import TrainConfig, train

    s = settings or BuildSettings()
    task = task_factory()
    shape = latent_shape_of(edge_spec)
    base_given = None
    if s.base is not None:
        from dekasim.codecs.jscc import Arch, read_checkpoint

        manifest, _ = read_checkpoint(s.base, field="--base")
        if tuple(Arch.from_json(manifest["arch"]).payload_shape) != tuple(shape):
            raise ConfigError("--base", s.base, f"a JSCC checkpoint for the edge's latents {shape}",
                              "leave --base out to train the generic base for this edge")
        base_given = Path(s.base).with_suffix(".json")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = _stage_record(out)
    record.update(command=command, cloud=str(cloud_spec), edge=str(edge_spec), latent_shape=list(shape),
                  settings=asdict(s))
    jscc_dir, cache = out / "jscc", out / "cache"
    rates = tuple(float(Fraction(r)) for r in s.rates)
    threads = torch.get_num_threads()

    def align() -> dict[str, Any]:
        from dekasim.devices import resolve_dtype

        cloud, edge = load_model(cloud_spec), load_model(edge_spec)
        cloud.to(dtype=resolve_dtype(s.dtype))  # the cloud only samples
        report = run_alignment(cloud, edge, out_dir=out / "align", methods=align_methods, bits=(), command=command,
                               progress=progress, task=task, device=s.device)
        return {"pack": str(out / "align" / "pack"), "files": [out / "align" / "pack" / "manifest.json",
                                                               out / "align" / "report.json"],
                "test": {m: report["results"][m]["test"]["metrics"] for m in report["methods"]}}

    # the prompts by content (sha256 of each split), not by the path they were read from
    align_settings = {"task": {k: v for k, v in task.source.items() if k != "files"}, "config": asdict(task.config),
                      "methods": list(align_methods), "device": s.device, "dtype": s.dtype}
    aligned = _run_stage(out, record, "align", align_settings, align)
    makd_pack = out / aligned["pack"]

    common = {"payload_shape": shape, "rates": rates, "batch": s.batch, "threads": threads, "device": s.device}

    def base() -> dict[str, Any]:
        cfg = TrainConfig(codec="jscc_generic", steps=s.base_steps, seed=s.seed, data="photos",
                          latent_model=str(edge_spec), photos_dir=s.photos, data_items=s.base_items,
                          data_cache=str(cache), **common)
        res = train(cfg, out=jscc_dir, command=command, log=log.info, progress=progress)
        return {"checkpoint": str(res["paths"][-1]), "files": res["paths"][-1:]}

    if base_given is None:
        base_settings = {k: v for k, v in asdict(s).items() if k in ("rates", "base_steps", "base_items", "photos",
                                                                      "batch", "seed", "device")}
        base_ckpt = out / _run_stage(out, record, "base", base_settings, base)["checkpoint"]
    else:
        jscc_dir.mkdir(parents=True, exist_ok=True)
        base_ckpt = _copy_checkpoint(base_given, jscc_dir)

    def s_eg() -> dict[str, Any]:
        sampler = GeneratedSampler(str(edge_spec), s.seg_items, s.seed + 7, representation="latent",
                                   cache_dir=cache, log=log.info, pack=makd_pack, device=s.device)
        return {"key": sampler.key, "facts": sampler.facts,
                "files": [cache / f"generated-{sampler.key}.safetensors"]}

    seg = _run_stage(out, record, "s_eg", {"items": s.seg_items, "seed": s.seed + 7,
                                           "pack": sha256_file(makd_pack / "manifest.json")}, s_eg)

    def cala() -> dict[str, Any]:
        opts = dict(s.cala)
        cfg = TrainConfig(codec="cala", steps=s.cala_steps, seed=s.seed + 1, base=str(base_ckpt), data="generated",
                          data_model=str(edge_spec), data_pack=str(makd_pack), data_items=s.seg_items,
                          data_seed=s.seed + 7, data_cache=str(cache), save_as="cala_generic",
                          num_adapters=opts.get("num_adapters"), rank=opts.get("rank"), factor=opts.get("factor"),
                          affine=bool(opts.get("affine", False)), gate=opts.get("gate"), lr=opts.get("lr"), **common)
        res = train(cfg, out=jscc_dir, command=command, log=log.info, progress=progress)
        return {"checkpoint": str(res["paths"][-1]), "files": res["paths"][-1:]}

    cala_settings = {"cala": s.cala, "cala_steps": s.cala_steps, "seed": s.seed + 1, "s_eg": seg["key"],
                     "base": sha256_file(base_ckpt), "batch": s.batch, "device": s.device}
    bank = out / _run_stage(out, record, "cala", cala_settings, cala)["checkpoint"]

    def pack() -> dict[str, Any]:
        d = save_pack(with_cala(load_pack(makd_pack), bank), out / "pack")
        return {"pack": str(d), "files": [d / "manifest.json"]}

    _run_stage(out, record, "pack", {"makd": sha256_file(makd_pack / "manifest.json"), "cala": sha256_file(bank)},
               pack)
    return _stage_record(out)


def _copy_checkpoint(manifest: Path, directory: Path) -> Path:
    """``manifest`` (and its tensor file) copied into ``directory``, where a CALA checkpoint finds its base."""
    import shutil

    for suffix in (".json", ".safetensors"):
        src = manifest.with_suffix(suffix)
        dst = directory / src.name
        if not dst.exists() or sha256_file(dst) != sha256_file(src):
            shutil.copyfile(src, dst)
    return directory / manifest.name
