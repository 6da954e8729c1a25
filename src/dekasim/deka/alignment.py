"""``dekasim align``: MAKD and its baselines end to end, the knowledge pack, the report.

:func:`run_alignment` generates S_CG and the reference images with the cloud, runs every method of
:data:`~dekasim.generative.makd.METHODS` on the edge under one step budget, measures edge-vs-cloud
consistency on test prompts never used in alignment (and on control prompts without the subject),
writes the MAKD knowledge pack (unquantised and at each requested bit width, each with the
consistency it keeps, its size in bytes and its downlink cost in channel uses at the MCS indices of
:data:`~dekasim.deka.pack_codec.DOWNLINK_MCS`), and a report: ``report.json``, ``report.md`` (a table)
and ``grid.png`` (cloud | edge unaligned | metaword | LoRA | MAKD, same prompts and seeds).

With ``cala`` (a CALA checkpoint manifest, ``dekasim align --cala PATH``), every pack written also
carries that checkpoint's bank + gate (quantised with the pack); the report gives each pack's size with
and without the bank, and how closely the codec rebuilt from the pack as written
(:func:`~dekasim.deka.pack_codec.cala_codec_from_pack`) matches the checkpoint's own.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dekasim.errors import ConfigError
from dekasim.generative.align_task import WORLD_METRICS, AlignmentTask, world_task
from dekasim.generative.makd import METHODS, AlignConfig, AlignedEdge, MethodResult, align_method, apply_pack
from dekasim.deka.pack_codec import (DOWNLINK_MCS, cala_base_checkpoint, cala_codec_from_pack, pack_downlink_cost,
                                     read_cala_checkpoint, with_cala)
from dekasim.generative.pack import (CALABankPart, KnowledgePack, cala_file_name, load_pack, model_fingerprint,
                                     pack_size_bytes, save_pack)

log = logging.getLogger(__name__)

#: The embedded world's report columns (a user's task reports its encoders' cosines, PSNR and SSIM).
REPORT_METRICS = WORLD_METRICS
METHOD_LABELS = {"none": "edge (unaligned)", "metaword": "metaword only", "lora": "LoRA only", "makd": "MAKD"}


def model_bytes(model, dtype_bytes: int = 4) -> int:
    """Parameter bytes of the edge model (UNet + text encoder) at ``dtype_bytes`` per parameter."""
    return (model.n_params("unet") + model.n_params("text_encoder")) * dtype_bytes


def run_alignment(cloud, edge, config: AlignConfig | None = None, out_dir: str | Path | None = None,
                  methods: Sequence[str] = METHODS, bits: Sequence[int] = (8, 4, 2),
                  grid_prompts: int = 6, command: str | None = None,
                  cala: str | Path | None = None, progress: bool = False, task: AlignmentTask | None = None,
                  device: str | torch.device | None = None) -> dict[str, Any]:
    """Align ``edge`` to ``cloud`` by every method in ``methods``; returns the report (also written to
    ``out_dir`` with the packs and figure when given).

    :param cloud, edge: :class:`~dekasim.generative.ldm.TextToImageLDM` models.
    :param config: the alignment settings (``task.config`` when a task is given).
    :param task: prompts and scoring (:mod:`dekasim.generative.align_task`); default the embedded world's
        (:func:`~dekasim.generative.align_task.world_task`).
    :param bits: quantisation levels at which the MAKD pack is also written and re-evaluated.
    :param cala: a CALA checkpoint manifest (``cala-*.json``, its base checkpoint beside it) whose bank +
        gate every written pack carries; read and checked before any training. None: packs without one.
    :param progress: a bar per phase with ETA, loss and validation score (on a terminal only).
    :param device: where both models run (default: where they are).
    """
    if task is None:
        task = world_task(edge, config or AlignConfig())
    config = task.config
    for m in methods:
        if m not in METHODS:
            raise ConfigError("align.methods", m, f"a subset of {list(METHODS)}")
    check_bits(bits)
    bank = _cala_setup(cala) if cala is not None else None
    out, old_threads = setup_run(cloud, edge, out_dir, device, config.threads)
    t_start = time.perf_counter()
    try:
        prompts = task.prompts
        kw = {"steps": config.sample_steps, "guidance": config.guidance}
        t0 = time.perf_counter()
        cloud_imgs = {k: _sample(cloud, getattr(prompts, k), prompts.seeds[k], kw) if getattr(prompts, k) else None
                      for k in ("train", "val", "test", "control")}
        cloud_s = time.perf_counter() - t0
        log.info("cloud images generated in %.1f s", cloud_s)

        def val_score(aligned: AlignedEdge) -> float:
            imgs = _sample(aligned, prompts.val, prompts.seeds["val"], kw)
            return float(task.score(imgs, cloud_imgs["val"])[task.val_metric].mean)

        base_hash = model_fingerprint(edge)
        results: dict[str, MethodResult] = {}
        reports: dict[str, dict[str, Any]] = {}  # method -> split -> ConsistencyReport
        images: dict[str, torch.Tensor] = {}
        for m in methods:
            log.info("aligning: %s", m)
            res = align_method(m, edge, cloud_imgs["train"], prompts, config, val_score, base_hash=base_hash,
                               progress=progress)
            res.pack.info["prompts"] = task.prompt_record()
            results[m] = res
            reports[m], images[m] = _evaluate(res.edge, prompts, cloud_imgs, kw, task)
            log.info("%s: test %s = %.4f (%.0f s)", m, task.val_metric,
                     reports[m]["test"][task.val_metric].mean, res.wall_s)
        report: dict[str, Any] = {
            "config": asdict(config), "methods": list(methods), "base_model_hash": base_hash,
            "metrics": list(task.metrics), "val_metric": task.val_metric, "source": task.source,
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
        if task.source.get("kind") != "world":
            report["split"] = {k: getattr(prompts, k) if k != "train" else list(dict.fromkeys(prompts.train))
                               for k in ("train", "val", "test", "control")}
        if "none" in reports:
            for m in methods:
                if m != "none":
                    report["results"][m]["vs_none"] = {k: _paired(r, reports["none"][k], task.metrics)
                                                       for k, r in reports[m].items()}
        if bank is not None:
            part: CALABankPart = bank["part"]
            report["cala"] = {"checkpoint": str(cala), "base_checkpoint": str(bank["base"]),
                              "n_params": part.n_params(), "layers": part.layers,
                              "num_adapters": part.num_adapters, "gate_hidden": part.gate_hidden}
        if out is not None:
            packs = _write_packs(results, edge, out, bits, prompts, cloud_imgs, kw, task, bank)
            report["packs"] = packs
            _grid(out / "grid.png", prompts, cloud_imgs["test"], images, grid_prompts)
        return finish_report(report, out, t_start, command, render_markdown)
    finally:
        torch.set_num_threads(old_threads)


def finish_report(report: dict[str, Any], out: Path | None, t_start: float, command: str | None,
                  render) -> dict[str, Any]:
    """``report`` with its wall time and command, written as ``report.json`` and ``report.md`` (``render``'s
    Markdown) into ``out`` when given; returns it."""
    report["wall_s"] = time.perf_counter() - t_start
    report["command"] = command
    if out is not None:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
        (out / "report.md").write_text(render(report))
    return report


def check_bits(bits: Sequence[int]) -> None:
    """Refuse quantisation levels other than 8, 4, 2 (before any work)."""
    for b in bits:
        if b not in (8, 4, 2):
            raise ConfigError("align.bits", b, "quantisation levels among 8, 4, 2")


def setup_run(cloud, edge, out_dir: str | Path | None, device, threads: int | None) -> tuple[Path | None, int]:
    """An alignment's set-up: ``out_dir`` created, both models on ``device``, torch's threads set to ``threads``;
    returns (the output directory or None, the thread count to restore when the run ends)."""
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if device is not None:
        cloud.to(device)
        edge.to(device)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    return out, old_threads


def _sample(sampler, prompts: Sequence[str], seeds: Sequence[int], kw: dict[str, Any]) -> torch.Tensor:
    """Images ``[N, 3, R, R]`` on the CPU (what the scorers read), sampled wherever the model is."""
    return sampler.sample(prompts, seeds, **kw).float().cpu()


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _paired(a, b, metrics: Sequence[str] = REPORT_METRICS) -> dict[str, dict[str, float]]:
    from dekasim.metrics.consistency import paired_difference

    out = {}
    for m in metrics:
        if m not in a.per_pair:
            continue
        d, h = paired_difference(a, b, m)
        out[m] = {"mean": d, "ci95_halfwidth": h}
    return out


def _evaluate(aligned: AlignedEdge, prompts, cloud_imgs: dict, kw: dict,
              task: AlignmentTask) -> tuple[dict[str, Any], torch.Tensor]:
    """Consistency reports of ``aligned`` against the cloud per split (test, control) and its test images."""
    reports: dict[str, Any] = {}
    test_imgs = None
    for k in ("test", "control"):
        if cloud_imgs.get(k) is None:
            continue
        imgs = _sample(aligned, getattr(prompts, k), prompts.seeds[k], kw)
        reports[k] = task.score(imgs, cloud_imgs[k])
        if k == "test":
            test_imgs = imgs
    return reports, test_imgs


def _cala_setup(cala: str | Path) -> dict[str, Any]:
    """The bank of the CALA checkpoint ``cala``, its base checkpoint and the codec the checkpoint makes
    (which checks that the base is there and unchanged): read before any training, so a bad path fails
    at once."""
    from dekasim.codecs import build_codec

    part = read_cala_checkpoint(cala)
    codec = build_codec("cala", tuple(part.arch["payload_shape"]), part.bandwidth_ratio,
                        checkpoint=str(Path(cala).with_suffix(".json")))
    return {"part": part, "base": cala_base_checkpoint(cala), "codec": codec}


def _cala_check(pack: KnowledgePack, bank: dict[str, Any]) -> dict[str, float]:
    """The codec rebuilt from ``pack`` (as loaded from disk) against the checkpoint's codec:
    ``symbols_rel_error`` = ||x_pack - x_ckpt|| / ||x_ckpt|| of the channel symbols of 8 fixed random
    payloads at Es/N0 5 dB, TDL-C 1000 ns (0 for an unquantised pack, which is bit-identical)."""
    from dekasim.conditions import Condition

    ref = bank["codec"]
    codec = cala_codec_from_pack(pack, bank["base"])
    payload = torch.rand(8, *ref.payload_shape, generator=torch.Generator().manual_seed(0))
    cond = Condition(snr_db=5.0, delay_spread_ns=1000.0, tdl_profile="C")
    want, got = ref.encode(payload, cond), codec.encode(payload, cond)
    return {"symbols_rel_error": float((got - want).norm() / want.norm())}


def _pack_sizes(d: Path, pack: KnowledgePack, bits: int | None, bank: dict[str, Any] | None) -> dict[str, Any]:
    """``bytes`` and ``downlink`` (:func:`pack_downlink_cost`) of the pack saved in ``d``; with a CALA bank
    also ``bytes_without_cala`` and ``downlink_without_cala`` (the same pack saved without it, in a
    scratch directory), ``cala_file_bytes`` and ``cala_codec`` (:func:`_cala_check` of the pack as loaded)."""
    out: dict[str, Any] = {"bytes": pack_size_bytes(d), "downlink": pack_downlink_cost(d)}
    if bank is not None:
        with tempfile.TemporaryDirectory() as tmp:
            plain = save_pack(replace(pack, cala=None), Path(tmp) / "pack", bits=bits)
            out["bytes_without_cala"] = pack_size_bytes(plain)
            out["downlink_without_cala"] = pack_downlink_cost(plain)
        out["cala_file_bytes"] = out["downlink"]["files"][cala_file_name(bits)]["size_bytes"]
        out["cala_codec"] = _cala_check(load_pack(d), bank)
    return out


def _write_packs(results: dict[str, MethodResult], edge, out: Path, bits: Sequence[int], prompts, cloud_imgs,
                 kw, task: AlignmentTask, bank: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every trained method's pack unquantised; MAKD's (or the last method's) also at each bit width,
    reloaded from disk and re-evaluated (so the numbers are those of the files). With ``bank``
    (:func:`_cala_setup`) every pack carries its CALA bank."""

    def with_bank(pack: KnowledgePack) -> KnowledgePack:
        return pack if bank is None else with_cala(pack, bank["part"])

    packs: dict[str, Any] = {}
    main = "makd" if "makd" in results else None
    for m, res in results.items():
        if m == "none":
            continue
        pack = with_bank(res.pack)
        d = save_pack(pack, out / f"pack-{m}")
        packs[m] = {"dir": str(d), **_pack_sizes(d, pack, None, bank), "n_params": pack.n_params()}
    if main is None:
        return packs
    levels: dict[str, Any] = {}
    base_hash = results[main].pack.base_model_hash
    for b in [None, *bits]:
        d = out / ("pack" if b is None else f"pack-q{b}")
        save_pack(with_bank(results[main].pack), d, bits=b)
        pack = load_pack(d, base_model_hash=base_hash)
        aligned = apply_pack(edge, pack)
        rep = task.score(_sample(aligned, prompts.test, prompts.seeds["test"], kw), cloud_imgs["test"])
        levels["none" if b is None else f"{b}-bit"] = {"dir": str(d), **_pack_sizes(d, pack, b, bank),
                                                       "test": rep.as_dict()}
    packs["makd_levels"] = levels
    return packs


def _grid(path: Path, prompts, cloud_test: torch.Tensor, images: dict[str, torch.Tensor], n: int,
          labels=METHOD_LABELS.__getitem__) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("cloud", cloud_test)] + [(labels(m), imgs) for m, imgs in images.items()]
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


def _fmt(mean: float, ci: float | Sequence[float] | None, interval: Sequence[float] | None = None) -> str:
    """``"0.912 [0.871, 0.944]"`` with a 95 % interval (bounded metrics), ``"0.912 ± 0.030"`` with a half-width
    (PSNR, paired differences), ``"0.912"`` with neither."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if isinstance(ci, (list, tuple)):
        interval, ci = ci, None
    if interval is not None and len(interval) == 2 and ci is None:
        return f"{mean:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"{mean:.3f} ± {ci:.3f}" if ci is not None and math.isfinite(ci) else f"{mean:.3f}"


def _cell(summary: dict[str, Any] | None) -> str:
    return "n/a" if summary is None else _fmt(summary["mean"], summary.get("ci95_halfwidth"),
                                              summary.get("ci95_interval"))


def render_markdown(report: dict[str, Any]) -> str:
    """The report's table (test prompts, then control prompts) as Markdown."""
    metrics = list(report.get("metrics") or REPORT_METRICS)
    world = "attribute_agreement" in metrics
    lines = [f"# MAKD alignment report: subject `{report['config']['subject']}`", "",
             f"Prompts: {report['prompts']}. Budget: {report['config']['budget_steps']} steps per method. "
             f"Early stopping on validation {report.get('val_metric', report['config']['val_metric'])}. "
             "Mean and 95 % interval over prompts ([lo, hi] inside the metric's range; ± half-width for PSNR and "
             "paired differences).", ""]
    if not world:
        lines += ["Scores: `<name>_cosine` is the cosine of the edge and the cloud image's embeddings by image encoder "
                  "<name> (DINO: its CLS embedding, the DINO-score; CLIP: its projected image embedding, CLIP-I); "
                  "PSNR and SSIM of the edge image against the cloud image.", ""]
    extra = " | shape agrees" if world else ""
    for split in ("test", "control"):
        lines += [f"## {split} prompts", "", "| method | " + " | ".join(metrics) + f"{extra} | steps | wall s |",
                  "|---" * (len(metrics) + 3 + int(world)) + "|"]
        for m in report["methods"]:
            r = report["results"][m]
            if split not in r:
                continue
            cells = [_cell(r[split]["metrics"].get(k)) for k in metrics]
            if world:
                cells.append(_cell(r[split].get("attribute_agreement_rates", {}).get("shape")))
            steps = sum(p["steps_run"] for p in r["phases"])
            lines.append(f"| {METHOD_LABELS[m]} | " + " | ".join(cells) + f" | {steps} | {r['wall_s']:.0f} |")
        lines.append("")
    gains = [m for m in report["methods"] if "vs_none" in report["results"][m]]
    if gains:
        lines += ["## Change against no alignment (paired over the same prompts and seeds)", "",
                  "| method | split | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
        for m in gains:
            for split, d in report["results"][m]["vs_none"].items():
                cells = [_cell(d.get(k)) for k in metrics]
                lines.append(f"| {METHOD_LABELS[m]} | {split} | " + " | ".join(cells) + " |")
        lines.append("")
    if report.get("packs", {}).get("makd_levels"):
        lines += _levels_table(report)
    return "\n".join(lines)


def _channel_uses(downlink: dict[str, Any] | None) -> str:
    """``"n4 / n16 / n27"``: a pack's channel uses at each priced MCS (n/a for a report without them)."""
    if not downlink:
        return "n/a"
    return " / ".join(str(n) for n in downlink["channel_uses"].values())


def _levels_table(report: dict[str, Any]) -> list[str]:
    """The MAKD-pack-by-quantisation table (with CALA columns when the packs carry a bank)."""
    levels = report["packs"]["makd_levels"]
    first = next(iter(levels.values()))
    mcs = "/".join(first["downlink"]["channel_uses"]) if first.get("downlink") else "/".join(map(str, DOWNLINK_MCS))
    cala = "cala_file_bytes" in first
    lines = ["## MAKD pack by quantisation (test prompts)", "",
             f"Edge model (UNet + text encoder): {report['edge']['bytes_fp16']} B at fp16; its UNet alone "
             f"{report['edge']['unet_bytes_fp16']} B. Channel uses: the whole pack (files + manifest) sent by the "
             f"digital chain (CRC + 5G LDPC, blocks of 1024 symbols) at MCS {mcs} of TS 38.214 Table 5.1.3.1-1.", ""]
    if cala:
        lines += [f"Every pack carries the CALA bank + gate of `{report['cala']['checkpoint']}` "
                  f"({report['cala']['n_params']} parameters); 'without CALA' is the same pack saved without it, "
                  "'CALA error' the relative error of the channel symbols of the codec rebuilt from the pack.", ""]
    head = "| level | bytes | % of edge UNet | % of edge model | channel uses (MCS " + mcs + ") |"
    if cala:
        head += " bytes without CALA | channel uses without CALA | CALA file bytes | CALA error |"
    shown = [m for m in (report.get("metrics") or REPORT_METRICS) if m not in ("all_attributes_agree", "psnr_db",
                                                                              "ssim")][:2]
    head += "".join(f" {m} |" for m in shown)
    lines += [head, "|---" * head.count(" |") + "|"]
    for lvl, v in levels.items():
        mt = v["test"]["metrics"]
        row = (f"| {lvl} | {v['bytes']} | {100 * v['bytes'] / report['edge']['unet_bytes_fp16']:.2f} | "
               f"{100 * v['bytes'] / report['edge']['bytes_fp16']:.2f} | {_channel_uses(v.get('downlink'))} |")
        if cala:
            row += (f" {v['bytes_without_cala']} | {_channel_uses(v['downlink_without_cala'])} | "
                    f"{v['cala_file_bytes']} | {v['cala_codec']['symbols_rel_error']:.2e} |")
        row += "".join(f" {_cell(mt.get(m))} |" for m in shown)
        lines.append(row)
    lines.append("")
    return lines
