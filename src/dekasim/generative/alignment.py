"""``dekasim align``: MAKD and its baselines end to end, the knowledge pack, the report.

:func:`run_alignment` generates S_CG and the reference images with the cloud, runs every method of
:data:`~dekasim.generative.makd.METHODS` on the edge under one step budget, measures edge-vs-cloud
consistency on test prompts never used in alignment (and on control prompts without the subject),
writes the MAKD knowledge pack (unquantised and at each requested bit width, each with the
consistency it keeps), and a report: ``report.json``, ``report.md`` (a table) and ``grid.png``
(cloud | edge unaligned | metaword | LoRA | MAKD, same prompts and seeds).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dekasim.errors import ConfigError
from dekasim.generative.makd import (METHODS, AlignConfig, AlignedEdge, MethodResult, align_method,
                                     alignment_prompts, apply_pack)
from dekasim.generative.pack import load_pack, model_fingerprint, pack_size_bytes, save_pack
from dekasim.generative.models import model_world

log = logging.getLogger(__name__)

REPORT_METRICS = ("attribute_agreement", "all_attributes_agree", "feature_cosine", "psnr_db", "ssim")
METHOD_LABELS = {"none": "edge (unaligned)", "metaword": "metaword only", "lora": "LoRA only", "makd": "MAKD"}


def model_bytes(model, dtype_bytes: int = 4) -> int:
    """Parameter bytes of the edge model (UNet + text encoder) at ``dtype_bytes`` per parameter."""
    return (model.n_params("unet") + model.n_params("text_encoder")) * dtype_bytes


def run_alignment(cloud, edge, config: AlignConfig | None = None, out_dir: str | Path | None = None,
                  methods: Sequence[str] = METHODS, bits: Sequence[int] = (8, 4, 2),
                  grid_prompts: int = 6, command: str | None = None) -> dict[str, Any]:
    """Align ``edge`` to ``cloud`` by every method in ``methods``; returns the report (also written to
    ``out_dir`` with the packs and figure when given).

    :param cloud, edge: :class:`~dekasim.generative.ldm.TextToImageLDM` models.
    :param bits: quantisation levels at which the MAKD pack is also written and re-evaluated.
    """
    from dekasim.metrics.consistency import consistency

    from dekasim.generative.features import load_encoder

    config = config or AlignConfig()
    encoder = load_encoder()
    for m in methods:
        if m not in METHODS:
            raise ConfigError("align.methods", m, f"a subset of {list(METHODS)}")
    for b in bits:
        if b not in (8, 4, 2):
            raise ConfigError("align.bits", b, "quantisation levels among 8, 4, 2")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    t_start = time.perf_counter()
    try:
        world = model_world(edge)
        prompts = alignment_prompts(world, config)
        kw = {"steps": config.sample_steps, "guidance": config.guidance}
        t0 = time.perf_counter()
        cloud_imgs = {k: cloud.sample(getattr(prompts, k), prompts.seeds[k], **kw) if getattr(prompts, k) else None
                      for k in ("train", "val", "test", "control")}
        cloud_s = time.perf_counter() - t0
        log.info("cloud images generated in %.1f s", cloud_s)

        def val_score(aligned: AlignedEdge) -> float:
            imgs = aligned.sample(prompts.val, prompts.seeds["val"], **kw)
            return float(consistency(imgs, cloud_imgs["val"], encoder=encoder)[config.val_metric].mean)

        base_hash = model_fingerprint(edge)
        results: dict[str, MethodResult] = {}
        reports: dict[str, dict[str, Any]] = {}  # method -> split -> ConsistencyReport
        images: dict[str, torch.Tensor] = {}
        for m in methods:
            log.info("aligning: %s", m)
            res = align_method(m, edge, cloud_imgs["train"], prompts, config, val_score, base_hash=base_hash)
            results[m] = res
            reports[m], images[m] = _evaluate(res.edge, prompts, cloud_imgs, kw, encoder)
            log.info("%s: test %s = %.4f (%.0f s)", m, config.val_metric,
                     reports[m]["test"][config.val_metric].mean, res.wall_s)
        report: dict[str, Any] = {
            "config": asdict(config), "methods": list(methods), "base_model_hash": base_hash,
            "prompts": {k: len(getattr(prompts, k)) for k in ("train", "val", "test", "control")},
            "prompt_examples": {k: getattr(prompts, k)[:3] for k in ("train", "test", "control")},
            "cloud": {"name": cloud.config.name, "unet_params": cloud.n_params("unet")},
            "edge": {"name": edge.config.name, "unet_params": edge.n_params("unet"),
                     "text_encoder_params": edge.n_params("text_encoder"), "bytes_fp32": model_bytes(edge),
                     "bytes_fp16": model_bytes(edge, 2), "unet_bytes_fp16": 2 * edge.n_params("unet")},
            "cloud_sampling_s": cloud_s,
            "results": {m: {**{k: r.as_dict() for k, r in reports[m].items()}, "wall_s": results[m].wall_s,
                            "phases": [asdict(p) for p in results[m].phases],
                            "pack_params": results[m].pack.n_params()} for m in methods},
        }
        if "none" in reports:
            for m in methods:
                if m != "none":
                    report["results"][m]["vs_none"] = {k: _paired(r, reports["none"][k])
                                                       for k, r in reports[m].items()}
        if out is not None:
            packs = _write_packs(results, edge, out, bits, prompts, cloud_imgs, kw, encoder)
            report["packs"] = packs
            _grid(out / "grid.png", prompts, cloud_imgs["test"], images, grid_prompts)
        report["wall_s"] = time.perf_counter() - t_start
        report["command"] = command
        if out is not None:
            (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
            (out / "report.md").write_text(render_markdown(report))
        return report
    finally:
        torch.set_num_threads(old_threads)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _paired(a, b) -> dict[str, dict[str, float]]:
    from dekasim.metrics.consistency import paired_difference

    out = {}
    for m in REPORT_METRICS:
        d, h = paired_difference(a, b, m)
        out[m] = {"mean": d, "ci95_halfwidth": h}
    return out


def _evaluate(aligned: AlignedEdge, prompts, cloud_imgs: dict, kw: dict,
              encoder) -> tuple[dict[str, Any], torch.Tensor]:
    """Consistency reports of ``aligned`` against the cloud per split (test, control) and its test images."""
    from dekasim.metrics.consistency import consistency

    reports: dict[str, Any] = {}
    test_imgs = None
    for k in ("test", "control"):
        if cloud_imgs.get(k) is None:
            continue
        imgs = aligned.sample(getattr(prompts, k), prompts.seeds[k], **kw)
        reports[k] = consistency(imgs, cloud_imgs[k], encoder=encoder)
        if k == "test":
            test_imgs = imgs
    return reports, test_imgs


def _write_packs(results: dict[str, MethodResult], edge, out: Path, bits: Sequence[int], prompts, cloud_imgs,
                 kw, encoder) -> dict[str, Any]:
    """Every trained method's pack unquantised; MAKD's (or the last method's) also at each bit width,
    reloaded from disk and re-evaluated (so the numbers are those of the files)."""
    from dekasim.metrics.consistency import consistency

    packs: dict[str, Any] = {}
    main = "makd" if "makd" in results else None
    for m, res in results.items():
        if m == "none":
            continue
        d = save_pack(res.pack, out / f"pack-{m}")
        packs[m] = {"dir": str(d), "bytes": pack_size_bytes(d), "n_params": res.pack.n_params()}
    if main is None:
        return packs
    levels: dict[str, Any] = {}
    base_hash = results[main].pack.base_model_hash
    for b in [None, *bits]:
        d = out / ("pack" if b is None else f"pack-q{b}")
        save_pack(results[main].pack, d, bits=b)
        pack = load_pack(d, base_model_hash=base_hash)
        aligned = apply_pack(edge, pack)
        imgs = aligned.sample(prompts.test, prompts.seeds["test"], **kw)
        rep = consistency(imgs, cloud_imgs["test"], encoder=encoder)
        levels["none" if b is None else f"{b}-bit"] = {"dir": str(d), "bytes": pack_size_bytes(d),
                                                       "test": rep.as_dict()}
    packs["makd_levels"] = levels
    return packs


def _grid(path: Path, prompts, cloud_test: torch.Tensor, images: dict[str, torch.Tensor], n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("cloud", cloud_test)] + [(METHOD_LABELS[m], imgs) for m, imgs in images.items()]
    n = min(n, len(cloud_test))
    fig, axes = plt.subplots(n, len(cols), figsize=(1.6 * len(cols), 1.6 * n + 0.4), squeeze=False)
    for i in range(n):
        for j, (label, imgs) in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(imgs[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
            if j == 0:
                ax.set_ylabel(prompts.test[i].replace(" at the ", "\n").replace(" on a ", "\n"), fontsize=5,
                              rotation=0, ha="right", va="center")
    fig.suptitle("same prompt and seed per row (test prompts, never used in alignment)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _fmt(mean: float, ci: float | Sequence[float]) -> str:
    if isinstance(ci, (list, tuple)):
        ci = (ci[1] - ci[0]) / 2 if len(ci) == 2 else float("nan")
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {ci:.3f}" if ci is not None and math.isfinite(ci) else f"{mean:.3f}"


def render_markdown(report: dict[str, Any]) -> str:
    """The report's table (test prompts, then control prompts) as Markdown."""
    lines = [f"# MAKD alignment report: subject `{report['config']['subject']}`", "",
             f"Prompts: {report['prompts']}. Budget: {report['config']['budget_steps']} steps per method. "
             "Mean ± 95 % half-width over prompts.", ""]
    for split in ("test", "control"):
        lines += [f"## {split} prompts", "", "| method | " + " | ".join(REPORT_METRICS)
                  + " | shape agrees | steps | wall s |", "|---" * (len(REPORT_METRICS) + 4) + "|"]
        for m in report["methods"]:
            r = report["results"][m]
            if split not in r:
                continue
            cells = [_fmt(r[split]["metrics"][k]["mean"], r[split]["metrics"][k]["ci95_halfwidth"])
                     for k in REPORT_METRICS]
            shape = r[split].get("attribute_agreement_rates", {}).get("shape")
            cells.append(_fmt(shape["mean"], shape["ci95_halfwidth"]) if shape else "n/a")
            steps = sum(p["steps_run"] for p in r["phases"])
            lines.append(f"| {METHOD_LABELS[m]} | " + " | ".join(cells) + f" | {steps} | {r['wall_s']:.0f} |")
        lines.append("")
    gains = [m for m in report["methods"] if "vs_none" in report["results"][m]]
    if gains:
        lines += ["## Change against no alignment (paired over the same prompts and seeds)", "",
                  "| method | split | " + " | ".join(REPORT_METRICS) + " |", "|---" * (len(REPORT_METRICS) + 2) + "|"]
        for m in gains:
            for split, d in report["results"][m]["vs_none"].items():
                cells = [_fmt(d[k]["mean"], d[k]["ci95_halfwidth"]) for k in REPORT_METRICS]
                lines.append(f"| {METHOD_LABELS[m]} | {split} | " + " | ".join(cells) + " |")
        lines.append("")
    if report.get("packs", {}).get("makd_levels"):
        lines += ["## MAKD pack by quantisation (test prompts)", "",
                  f"Edge model (UNet + text encoder): {report['edge']['bytes_fp16']} B at fp16; its UNet alone "
                  f"{report['edge']['unet_bytes_fp16']} B.", "",
                  "| level | bytes | % of edge UNet | % of edge model | attribute_agreement | feature_cosine |",
                  "|---|---|---|---|---|---|"]
        for lvl, v in report["packs"]["makd_levels"].items():
            mt = v["test"]["metrics"]
            lines.append(f"| {lvl} | {v['bytes']} | {100 * v['bytes'] / report['edge']['unet_bytes_fp16']:.2f} | "
                         f"{100 * v['bytes'] / report['edge']['bytes_fp16']:.2f} | "
                         f"{_fmt(mt['attribute_agreement']['mean'], mt['attribute_agreement']['ci95_halfwidth'])} | "
                         f"{_fmt(mt['feature_cosine']['mean'], mt['feature_cosine']['ci95_halfwidth'])} |")
        lines.append("")
    return "\n".join(lines)
