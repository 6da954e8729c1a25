"""Sampling time per image of the world's cloud and edge models, against the 0.2 s target.

Batched DDIM (25 steps, classifier-free guidance 1.5: two UNet passes per step), CPU. Prints wall
and CPU seconds per image for each model and batch size, and the ratio to the target (≤ 1 meets it).
Models: the shipped ``cloud``/``edge`` by default, or any model spec (directory, training run).

    .venv/bin/python benchmarks/ldm_sampling.py                          # shipped models, 2 threads
    .venv/bin/python benchmarks/ldm_sampling.py --threads 1 --batch 64
    .venv/bin/python benchmarks/ldm_sampling.py --models runs/world-cloud runs/world-edge
"""

from __future__ import annotations

import argparse
import time

import torch

from dekasim.generative.models import load_model
from dekasim.generative.world import World

TARGET_S_PER_IMAGE = 0.2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cloud", "edge"])
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per setting (median reported)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prompts_all = World().sample(max(args.batch), seed=1, split="heldout").captions
    print(f"DDIM 25 steps, CFG 1.5, {args.threads} thread(s), median of {args.repeats}; target "
          f"{TARGET_S_PER_IMAGE} s/image")
    print(f"{'model':<24}{'batch':>6}{'wall s/img':>12}{'cpu s/img':>11}{'ratio to target':>17}")
    for spec in args.models:
        model = load_model(spec)
        model.sample(prompts_all[:2], seeds=0, steps=2)  # warm-up
        for b in args.batch:
            walls, cpus = [], []
            for r in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                model.sample(prompts_all[:b], seeds=100 * r, batch_size=b)
                walls.append((time.perf_counter() - t0) / b)
                cpus.append((time.process_time() - c0) / b)
            wall, cpu = sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]
            print(f"{spec:<24}{b:>6}{wall:>12.4f}{cpu:>11.4f}{wall / TARGET_S_PER_IMAGE:>17.2f}")


if __name__ == "__main__":
    main()
