"""Is the generic DeKA-g path right? The embedded world aligned twice: by its own path and by the path a user's
models take, side by side in one run.

1. **world path**: ``dekasim align`` as shipped -- the world's caption blocks, its checker and feature encoder
   (:func:`dekasim.generative.align_task.world_task`);
2. **generic path, the world's split as files**: the same prompts written to prompt files (train, validation,
   test, control), scored by the world's feature encoder behind the image-encoder interface
   (``--image-encoder feature=world``: :func:`dekasim.metrics.consistency.encoder_consistency`), early
   stopping on ``feature_cosine`` as in (1). Same prompts, seeds and scores: the numbers must agree;
3. **generic path, split by dekasim**: every subject prompt of (1) pooled into one file, split by
   :func:`dekasim.generative.prompts.split_prompts` (seeded permutation: 20 % validation, 30 % test), so its
   test prompts differ from (1)'s: MAKD's gains over no alignment, metaword only and LoRA only should
   agree with (1)'s within their intervals.

Writes ``plots/generic_vs_world.json`` and ``.md`` (test feature cosine per method, and each method's paired
gain over no alignment with its 95 % interval over prompts). Cost: three alignments of four methods each,
about 30 min on one thread.

    python benchmarks/generic_vs_world.py [--threads 1] [--out runs/generic_vs_world]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, prompts: list[str]) -> Path:
    path.write_text("\n".join(dict.fromkeys(prompts)) + "\n", encoding="utf-8")
    return path


def _summary(report: dict) -> dict:
    out = {}
    for m in report["methods"]:
        r = report["results"][m]
        row = {"test_feature_cosine": r["test"]["metrics"]["feature_cosine"],
               "steps": [p["steps_run"] for p in r["phases"]]}
        if "attribute_agreement" in r["test"]["metrics"]:
            row["test_attribute_agreement"] = r["test"]["metrics"]["attribute_agreement"]
        if "vs_none" in r:
            row["gain_feature_cosine"] = r["vs_none"]["test"]["feature_cosine"]
        out[m] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/generic_vs_world")
    ap.add_argument("--budget-steps", type=int, default=None, help="override the alignment budget (quick checks)")
    ap.add_argument("--render", metavar="JSON", default=None, help="only rewrite the Markdown table from a JSON file")
    args = ap.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        (ROOT / "plots" / "generic_vs_world.md").write_text(render(results))
        print(render(results))
        return 0

    import torch

    from dekasim.deka.alignment import run_alignment
    from dekasim.generative.align_config import AlignConfig
    from dekasim.generative.align_task import prompt_file_task, world_feature_encoder, world_task
    from dekasim.generative.models import load_model

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kw = {"threads": args.threads} | ({"budget_steps": args.budget_steps} if args.budget_steps else {})
    config = AlignConfig(**kw)
    cloud, edge = load_model("cloud"), load_model("edge")
    world = world_task(edge, config)
    p = world.prompts
    files = {k: _write(out / f"{k}.txt", getattr(p, k)) for k in ("train", "val", "test", "control")}
    encoders = {"feature": world_feature_encoder()}
    as_files = prompt_file_task(config, list(dict.fromkeys(p.train)), encoders, control=p.control, val=p.val,
                                test=p.test, files=files)
    pooled = _write(out / "all_subject_prompts.txt", p.train + p.val + p.test)
    split = prompt_file_task(config, list(dict.fromkeys(p.train + p.val + p.test)), encoders, control=p.control,
                             files={"prompts": pooled, "control": files["control"]})
    results: dict = {"command": " ".join(["python", "benchmarks/generic_vs_world.py", *(argv or sys.argv[1:])]),
                     "date": time.strftime("%Y-%m-%d"), "threads": args.threads, "paths": {}}
    for name, task in (("world path", world), ("generic path, the world's split as files", as_files),
                       ("generic path, split by dekasim", split)):
        t0 = time.perf_counter()
        report = run_alignment(cloud, edge, out_dir=out / name.replace(" ", "_").replace(",", "").replace("'", ""),
                               bits=(), task=task)
        results["paths"][name] = {"prompts": report["prompts"], "wall_s": round(time.perf_counter() - t0, 1),
                                  "methods": _summary(report)}
    (ROOT / "plots" / "generic_vs_world.json").write_text(json.dumps(results, indent=2))
    (ROOT / "plots" / "generic_vs_world.md").write_text(render(results))
    print(render(results))
    return 0


def _ci(s: dict) -> str:
    """``mean [lo, hi]`` for a bounded score's interval, ``mean ± half`` for a paired difference."""
    if s.get("ci95_interval"):
        lo, hi = s["ci95_interval"]
        return f"{s['mean']:.3f} [{lo:.3f}, {hi:.3f}]"
    half = s.get("ci95_halfwidth")
    return f"{s['mean']:+.3f} ± {half:.3f}" if half is not None else f"{s['mean']:.3f}"


def render(results: dict) -> str:
    lines = ["| path | prompts (train/val/test/control) | method | test feature cosine | gain over no alignment "
             "(paired) | steps |", "|---|---|---|---|---|---|"]
    for name, path in results["paths"].items():
        pr = path["prompts"]
        counts = f"{pr['train']}/{pr['val']}/{pr['test']}/{pr['control']}"
        for m, row in path["methods"].items():
            gain = _ci(row["gain_feature_cosine"]) if "gain_feature_cosine" in row else "—"
            lines.append(f"| {name} | {counts} | {m} | {_ci(row['test_feature_cosine'])} | {gain} | "
                         f"{'+'.join(map(str, row['steps'])) or 0} |")
    lines += ["", f"Made by `{results['command']}` on {results['date']} ({results['threads']} thread(s)); "
              "[lo, hi] is the 95 % interval over test prompts (Wilson at the effective sample size), ± the 95 % "
              "half-width of the paired gain over the same prompts and seeds."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
