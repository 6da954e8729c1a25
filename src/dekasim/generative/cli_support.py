"""The ``dekasim world …`` commands (argument handling and output only); ``dekasim align`` lives in the
CLI itself (:mod:`dekasim.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path


log = logging.getLogger(__name__)

#: The seeds of the shipped models (``dekasim world train --preset cloud|edge`` uses them by default).
DEFAULT_SEEDS = {"cloud": 11, "edge": 12, "toy": 0}


def world_train(args: argparse.Namespace, command: str | None) -> int:
    from dekasim.generative.models import write_manifest
    from dekasim.generative.quality import generation_quality
    from dekasim.generative.train import TrainConfig, train

    from dekasim.devices import resolve_device

    seed = DEFAULT_SEEDS[args.preset] if args.seed is None else args.seed
    cfg = TrainConfig(preset=args.preset, steps=args.steps, batch_size=args.batch_size, seed=seed,
                      threads=args.threads, device=resolve_device(args.device), time_budget_s=args.time_budget_s, checkpoint_every=args.checkpoint_every,
                      log_every=250, save_unet_dtype="float32" if args.float32 else "float16")
    out = Path(args.out)
    res = train(cfg, out, progress=True)
    if res.model_dir is None:
        print(f"stopped at step {res.steps}/{cfg.steps}; rerun the same command to resume -> {out}")
        return 0
    quality = generation_quality(res.model, n=args.check_n, split="heldout")
    ceiling_note = "fully-correct fraction of held-out prompts by the attribute checker (seed 0, 25 DDIM steps, CFG 1.5)"
    prov = res.model.config.provenance
    extra = {}
    if (res.model.config.world or {}).get("dialect", "standard") != "standard":
        q_std = generation_quality(res.model, n=args.check_n, split="heldout", dialect="standard")
        extra["quality_heldout_by_standard_convention"] = {
            **q_std.as_dict(), "what": "the same check judged by the cloud's (standard) rendering convention: "
                                      "the designed misalignment"}
    write_manifest(res.model_dir, {**extra,
        "command": command or f"dekasim world train --preset {args.preset} --out {args.out} --steps {args.steps} "
                              f"--seed {seed}",
        "seed": seed, "preset": args.preset, "steps": prov.get("steps_done"), "wall_s": prov.get("wall_s"),
        "cpu_s": prov.get("cpu_s"), "train_config": dataclasses.asdict(cfg),
        "quality_heldout": {**quality.as_dict(), "what": ceiling_note}})
    print(f"model -> {res.model_dir}; held-out fully correct {quality.fully_correct:.1%} "
          f"(95 % CI {quality.fully_correct_ci95[0]:.1%}-{quality.fully_correct_ci95[1]:.1%}), "
          f"{quality.ratio_to_ceiling:.1%} of the checker's ceiling")
    return 0


def world_check(args: argparse.Namespace, command: str | None) -> int:
    from dekasim.generative.models import load_model
    from dekasim.generative.quality import generation_quality

    from dekasim.devices import resolve_device

    model = load_model(args.model).to(resolve_device(args.device))
    q = generation_quality(model, n=args.n, split=args.split, seed=args.seed, dialect=args.dialect)
    lo, hi = q.fully_correct_ci95
    print(f"{args.model}: {q.split} prompts, judged by the '{q.dialect}' convention: fully correct "
          f"{q.fully_correct:.1%} (95 % CI {lo:.1%}-{hi:.1%}) of {q.n}; checker ceiling {q.ceiling:.1%}; "
          f"ratio {q.ratio_to_ceiling:.1%}; per attribute "
          + ", ".join(f"{k} {v:.1%}" for k, v in q.per_attribute.items())
          + f"; {1000 * q.sample_s_per_image:.0f} ms/image")
    if args.out:
        Path(args.out).write_text(json.dumps({**q.as_dict(), "model": args.model, "command": command}, indent=2))
    return 0


def world_sample(args: argparse.Namespace, command: str | None) -> int:
    import numpy as np
    from PIL import Image

    from dekasim.generative.models import load_model

    from dekasim.devices import resolve_device

    model = load_model(args.model).to(resolve_device(args.device))
    imgs = model.sample(args.prompt, seeds=args.seed).cpu()
    tiles = [(im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in imgs]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(args.out)
    print(f"{len(tiles)} image(s) -> {args.out}")
    return 0
