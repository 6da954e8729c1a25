"""``dekasim align --subject A --subject B``: one knowledge pack that aligns several subjects of the
embedded world, its G-LoRA per subject or joint, chosen on validation prompts.

For each subject the cloud draws its S_CG, validation and test prompts exactly as a single-subject
alignment would (:func:`~dekasim.generative.align_config.alignment_prompts` with that subject); control
prompts name *none* of the subjects (:func:`~dekasim.generative.align_config.control_prompts`), on the
validation region for the choice and on the test region for the report. Two designs, each under the
same total step budget (``budget_steps`` per subject):

* **per subject** -- MAKD of each subject alone (its metaword, its G-LoRA), the G-LoRAs then side by side
  as named peft adapters and *routed*: a prompt is drawn with the adapters of the subjects it names
  (:class:`~dekasim.generative.aligned.AlignedEdge`);
* **joint** -- one metaword per subject trained together on the union of the S_CG, then one G-LoRA
  (:func:`~dekasim.generative.makd.align_joint`).

Both are scored, with the unaligned edge, each subject alone, and the per-subject adapters all on for
every prompt (what loading every file into one pipeline does: the interference that routing avoids), on
every validation split; the design with the higher mean validation score over all validation prompts
(every subject's and the control prompts, pooled) ships, and the report says so. Test prompts -- other
backgrounds and positions, never seen by the choice -- give the reported numbers. The chosen pack is
written unquantised and at each requested bit width (with the CALA bank when given), as
``dekasim align`` writes a single-subject pack (``pack/``, ``pack-q{bits}/``); both designs also unquantised
(``pack-per_subject/``, ``pack-joint/``), so either can be used or a subject selected from it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from dekasim.deka.alignment import (_cala_setup, _grid, _pack_sizes, _paired, _sample, check_bits, finish_report,
                                    setup_run)
from dekasim.deka.pack_codec import with_cala
from dekasim.errors import ConfigError
from dekasim.generative.align_config import AlignConfig, control_prompts
from dekasim.generative.aligned import AlignedEdge, apply_pack
from dekasim.generative.makd import align_joint, align_method
from dekasim.generative.pack import (KnowledgePack, SubjectPart, load_pack, model_fingerprint, pack_size_bytes,
                                     save_pack)

log = logging.getLogger(__name__)

#: The designs scored, in the report's order (the two candidates are ``per_subject`` and ``joint``).
VARIANTS = ("none", "only", "per_subject", "per_subject_all_on", "joint")
CANDIDATES = ("per_subject", "joint")
#: Rows of ``grid.png``: the first test prompts of each subject in turn.
GRID_ROWS = 6


def variant_label(name: str) -> str:
    """A report row's label: ``only:triangle`` -> ``triangle only``."""
    if name.startswith("only:"):
        return f"{name[5:]} only"
    return {"none": "unaligned", "per_subject": "per-subject, routed", "per_subject_all_on": "per-subject, all on",
            "joint": "joint G-LoRA"}[name]


def run_multi_alignment(cloud, edge, subjects: Sequence[str], config: AlignConfig | None = None,
                        out_dir: str | Path | None = None, bits: Sequence[int] = (8, 4, 2),
                        command: str | None = None, cala: str | Path | None = None, progress: bool = False,
                        device: str | torch.device | None = None, tasks: dict[str, Any] | None = None,
                        control: dict[str, tuple[list[str], list[int]]] | None = None) -> dict[str, Any]:
    """Align ``edge`` to ``cloud`` on every subject of ``subjects``; returns the report (also written to
    ``out_dir`` with the chosen pack, ``report.json`` / ``report.md`` and ``grid.png``).

    :param config: the settings of each subject's alignment (``subject`` is replaced by each of ``subjects``).
    :param bits: quantisation levels at which the chosen pack is also written and re-evaluated.
    :param cala: a CALA checkpoint manifest whose bank every written pack carries.
    :param tasks: ``{subject: AlignmentTask}`` of a user's prompt files
        (:func:`~dekasim.generative.align_task.prompt_file_task`, one per subject, the same image encoders);
        None: the embedded world's (``edge`` a world model).
    :param control: with ``tasks``: ``{"val": (prompts, seeds), "test": (prompts, seeds)}``, prompts naming none of
        the subjects (:func:`split_control`); None: none (no control rows).
    """
    config = config or AlignConfig()
    subjects = list(dict.fromkeys(subjects))
    if len(subjects) < 2:
        raise ConfigError("--subject", subjects, "two or more distinct subjects (one subject: dekasim align --subject S)")
    check_bits(bits)
    if tasks is None:
        from dekasim.generative.align_task import world_task
        from dekasim.generative.models import model_world

        world = model_world(edge)
        cfgs = {s: replace(config, subject=s, metaword=None) for s in subjects}
        tasks = {s: world_task(edge, cfgs[s]) for s in subjects}  # checks each subject is a word of the world
        control = {"val": control_prompts(world, config, subjects, "val"),
                   "test": control_prompts(world, config, subjects, "test")}
    else:
        if set(tasks) != set(subjects):
            raise ConfigError("--prompts", sorted(tasks), f"one prompt file per subject {subjects}")
        cfgs = {s: tasks[s].config for s in subjects}
        control = control or {"val": ([], []), "test": ([], [])}
    bank = _cala_setup(cala) if cala is not None else None
    out, old_threads = setup_run(cloud, edge, out_dir, device, config.threads)
    t_start = time.perf_counter()
    try:
        score = tasks[subjects[0]].score
        metric = tasks[subjects[0]].val_metric
        kw = {"steps": config.sample_steps, "guidance": config.guidance}
        prompts = {s: tasks[s].prompts for s in subjects}
        splits: dict[str, tuple[list[str], list[int]]] = {}
        for s in subjects:
            splits[f"val:{s}"] = (prompts[s].val, prompts[s].seeds["val"])
        splits["val:control"] = control["val"]
        for s in subjects:
            splits[f"test:{s}"] = (prompts[s].test, prompts[s].seeds["test"])
        splits["test:control"] = control["test"]
        t0 = time.perf_counter()
        cloud_train = {s: _sample(cloud, prompts[s].train, prompts[s].seeds["train"], kw) for s in subjects}
        cloud_imgs = {k: _sample(cloud, p, sd, kw) for k, (p, sd) in splits.items() if p}
        log.info("cloud images generated in %.1f s", time.perf_counter() - t0)

        base_hash = model_fingerprint(edge)
        walls: dict[str, float] = {}
        singles: dict[str, Any] = {}
        for s in subjects:
            log.info("aligning %s alone (MAKD)", s)
            res = align_method("makd", edge, cloud_train[s], prompts[s], cfgs[s],
                               lambda a, s=s: _val(a, splits[f"val:{s}"], cloud_imgs[f"val:{s}"], score, metric, kw),
                               base_hash=base_hash, progress=progress)
            singles[s] = res
            walls[f"only:{s}"] = res.wall_s
        record = _prompt_record(tasks, subjects)
        for r in singles.values():
            r.pack.info["prompts"] = record
        per_subject = KnowledgePack(
            base_model_hash=base_hash, placement=config.placement,
            parts=[SubjectPart(s, r.pack.metaword, r.pack.metaword_embedding, r.pack.lora, r.pack.lora_config)
                   for s, r in singles.items()],
            info={"method": "makd", "lora_mode": "per_subject", "subjects": subjects, "config": asdict(config),
                  "prompts": record,
                  "per_subject": {s: {k: r.pack.info.get(k) for k in ("steps", "best_step", "stopped")}
                                  for s, r in singles.items()}})
        walls["per_subject"] = walls["per_subject_all_on"] = sum(r.wall_s for r in singles.values())
        log.info("aligning %s jointly (MAKD, one G-LoRA)", ", ".join(subjects))
        val_keys = [f"val:{s}" for s in subjects]
        joint_val = ([p for k in val_keys for p in splits[k][0]], [x for k in val_keys for x in splits[k][1]])
        joint_cloud_val = torch.cat([cloud_imgs[k] for k in val_keys])
        joint_cfg = replace(config, subject=subjects[0], budget_steps=config.budget_steps * len(subjects))
        joint = align_joint(edge, subjects, torch.cat([cloud_train[s] for s in subjects]),
                            [p for s in subjects for p in prompts[s].train], joint_cfg,
                            lambda a: _val(a, joint_val, joint_cloud_val, score, metric, kw), base_hash=base_hash,
                            progress=progress)
        joint.pack.info["config"] = asdict(config)
        joint.pack.info["prompts"] = record
        walls["joint"] = joint.wall_s

        edges: dict[str, Any] = {"none": edge}
        for s in subjects:
            edges[f"only:{s}"] = apply_pack(edge, per_subject.select([s]))
        edges["per_subject"] = apply_pack(edge, per_subject)
        edges["per_subject_all_on"] = apply_pack(edge, per_subject, routing=False)
        edges["joint"] = joint.edge
        reports: dict[str, dict[str, Any]] = {}
        per_subject_rows = max(1, GRID_ROWS // len(subjects))
        test_images: dict[str, list[torch.Tensor]] = {}
        for name, e in edges.items():
            reports[name] = {}
            for k, (p, sd) in splits.items():
                if not p:
                    continue
                imgs = _sample(e, p, sd, kw)
                reports[name][k] = score(imgs, cloud_imgs[k])
                if k.startswith("test:") and k != "test:control":
                    test_images.setdefault(name, []).append(imgs[:per_subject_rows])
        val_pooled = {name: _pooled(reports[name], [k for k in splits if k.startswith("val:")], metric)
                      for name in edges}
        chosen = max(CANDIDATES, key=lambda n: val_pooled[n])
        pack = per_subject if chosen == "per_subject" else joint.pack
        pack.info["chosen_on_validation"] = {"design": chosen, "metric": metric,
                                             "pooled_val": {n: val_pooled[n] for n in CANDIDATES}}
        report: dict[str, Any] = {
            "kind": "multi_subject", "subjects": subjects, "config": asdict(config), "base_model_hash": base_hash,
            "metrics": list(tasks[subjects[0]].metrics), "val_metric": metric, "variants": list(edges),
            "prompts": {k: len(v[0]) for k, v in splits.items()},
            "cloud": {"name": cloud.config.name}, "edge": {"name": edge.config.name},
            "budget": {"per_subject": config.budget_steps, "joint": joint_cfg.budget_steps},
            "results": {n: {k: r.as_dict(per_pair=True) for k, r in reports[n].items()} for n in edges},
            "vs_none": {n: {k: _paired(r, reports["none"][k], tasks[subjects[0]].metrics)
                            for k, r in reports[n].items()} for n in edges if n != "none"},
            "val_pooled": val_pooled, "chosen": chosen, "wall_s_by_variant": walls,
            "phases": {**{f"only:{s}": [asdict(p) for p in r.phases] for s, r in singles.items()},
                       "joint": [asdict(p) for p in joint.phases]},
        }
        if out is not None:
            report["packs"] = _write_multi_packs(pack, edge, out, bits, splits, cloud_imgs, kw, score, bank)
            for name, candidate in (("per_subject", per_subject), ("joint", joint.pack)):  # both designs, as trained
                d = save_pack(candidate if bank is None else with_cala(candidate, bank["part"]), out / f"pack-{name}")
                report["packs"][name] = {"dir": str(d), "bytes": pack_size_bytes(d), "n_params": candidate.n_params()}
            keys = [f"test:{s}" for s in subjects]
            _grid(out / "grid.png", _GridPrompts([p for k in keys for p in splits[k][0][:per_subject_rows]]),
                  torch.cat([cloud_imgs[k][:per_subject_rows] for k in keys]),
                  {n: torch.cat(v) for n, v in test_images.items()}, per_subject_rows * len(subjects),
                  labels=variant_label)
        return finish_report(report, out, t_start, command, render_multi_markdown)
    finally:
        torch.set_num_threads(old_threads)


def _prompt_record(tasks: dict[str, Any], subjects: list[str]) -> dict[str, Any]:
    """What a pack keeps of its prompts: ``{"source": "world"}``, or each subject's train / validation / test
    prompts of its file (so a scenario knows which prompts the alignment never saw)."""
    first = tasks[subjects[0]]
    if first.source.get("kind", "world") == "world":
        return {"source": "world"}
    return {"source": first.source.get("kind"), "subjects": {s: tasks[s].prompt_record() for s in subjects}}


def split_control(prompts: Sequence[str], subjects: Sequence[str], seed: int) -> dict[str, tuple[list[str], list[int]]]:
    """A control prompt file of a multi-subject alignment into validation and test halves (seeded), each
    prompt with its image seed; refuses a prompt naming one of ``subjects``."""
    import numpy as np

    from dekasim.generative.align_config import SEED_BASE, VAL_CONTROL_SEED_BASE
    from dekasim.generative.pack import names_subject

    odd = [p for p in prompts if any(names_subject(p, s) for s in subjects)]
    if odd:
        raise ConfigError("--control-prompts", f"{len(odd)} prompt(s), e.g. {odd[0]!r}", f"prompts naming none of "
                          f"the subjects {list(subjects)}", "move these prompts to a subject's prompt file")
    order = np.random.default_rng([seed, 0xC2]).permutation(len(prompts))
    half = len(prompts) // 2
    val = [prompts[i] for i in order[:half]]
    test = [prompts[i] for i in order[half:]]
    return {"val": (val, [VAL_CONTROL_SEED_BASE + 1000 * seed + i for i in range(len(val))]),
            "test": (test, [SEED_BASE["control"] + 1000 * seed + i for i in range(len(test))])}


class _GridPrompts:
    def __init__(self, test: list[str]) -> None:
        self.test = test


def _val(aligned: AlignedEdge, split: tuple[list[str], list[int]], cloud_images: torch.Tensor, score, metric: str,
         kw: dict[str, Any]) -> float:
    return float(score(_sample(aligned, split[0], split[1], kw), cloud_images)[metric].mean)


def _pooled(reports: dict[str, Any], keys: list[str], metric: str) -> float:
    """Mean of ``metric`` over every prompt of the splits ``keys`` (each prompt weighs the same)."""
    values = [v for k in keys if k in reports for v in reports[k].per_pair[metric]]
    return float(sum(values) / len(values))


def _write_multi_packs(pack: KnowledgePack, edge, out: Path, bits: Sequence[int], splits, cloud_imgs, kw, score,
                       bank: dict[str, Any] | None) -> dict[str, Any]:
    """The chosen pack unquantised (``out/pack``) and at each bit width (``out/pack-q{bits}``), each reloaded
    from disk and scored on every test split (so the numbers are those of the files)."""
    if bank is not None:
        pack = with_cala(pack, bank["part"])
    levels: dict[str, Any] = {}
    for b in [None, *bits]:
        d = save_pack(pack, out / ("pack" if b is None else f"pack-q{b}"), bits=b)
        loaded = load_pack(d, base_model_hash=pack.base_model_hash)
        aligned = apply_pack(edge, loaded)
        tests = {k: score(_sample(aligned, p, sd, kw), cloud_imgs[k]).as_dict()
                 for k, (p, sd) in splits.items() if k.startswith("test:") and p}
        levels["none" if b is None else f"{b}-bit"] = {"dir": str(d), **_pack_sizes(d, loaded, b, bank),
                                                       "n_params": loaded.n_params(), "test": tests}
    return {"levels": levels}


def _cell(summary: dict[str, Any] | None) -> str:
    from dekasim.deka.alignment import _cell as cell

    return cell(summary)


def render_multi_markdown(report: dict[str, Any]) -> str:
    """The multi-subject report: validation table (the choice), test table, paired changes, pack sizes."""
    metrics = [m for m in report["metrics"] if m != "ssim"]
    subjects = report["subjects"]
    lines = [f"# MAKD alignment report: subjects {', '.join(f'`{s}`' for s in subjects)}", "",
             f"Prompts per split: {report['prompts']}. Budget: {report['budget']['per_subject']} steps per subject "
             f"(per-subject G-LoRAs), {report['budget']['joint']} for the joint alignment (the same total). Early "
             f"stopping and the choice on validation {report['val_metric']}. Mean and 95 % interval over prompts. "
             "Control prompts name none of the subjects.", "",
             f"**Chosen on validation: {variant_label(report['chosen'])}** (pooled validation {report['val_metric']}: "
             + ", ".join(f"{variant_label(n)} {report['val_pooled'][n]:.4f}" for n in CANDIDATES) + ").", ""]
    for region in ("val", "test"):
        title = "Validation prompts (the choice)" if region == "val" else "Test prompts (never used to align or choose)"
        lines += [f"## {title}", ""]
        for metric in metrics:
            keys = [f"{region}:{s}" for s in subjects] + [f"{region}:control"]
            lines += [f"{metric}:", "", "| design | " + " | ".join(k.split(":")[1] for k in keys) + " |",
                      "|---" * (len(keys) + 1) + "|"]
            for n in report["variants"]:
                r = report["results"][n]
                lines.append(f"| {variant_label(n)} | " + " | ".join(
                    _cell(r[k]["metrics"].get(metric)) if k in r else "n/a" for k in keys) + " |")
            lines.append("")
    lines += [f"## Change against no alignment, test prompts ({report['val_metric']}, paired over prompts and seeds)",
              "", "| design | " + " | ".join(subjects) + " | control |", "|---" * (len(subjects) + 2) + "|"]
    for n, d in report["vs_none"].items():
        keys = [f"test:{s}" for s in subjects] + ["test:control"]
        lines.append(f"| {variant_label(n)} | " + " | ".join(_cell(d.get(k, {}).get(report["val_metric"]))
                                                           for k in keys) + " |")
    lines.append("")
    levels = (report.get("packs") or {}).get("levels")
    if levels:
        lines += ["## The chosen pack by quantisation", "", "| level | bytes | parameters | "
                  + " | ".join(f"{s} {report['val_metric']}" for s in subjects) + " | control |",
                  "|---" * (len(subjects) + 4) + "|"]
        for lvl, v in levels.items():
            keys = [f"test:{s}" for s in subjects] + ["test:control"]
            lines.append(f"| {lvl} | {v['bytes']} | {v['n_params']} | " + " | ".join(
                _cell(v["test"].get(k, {}).get("metrics", {}).get(report["val_metric"])) for k in keys) + " |")
        lines.append("")
    return "\n".join(lines)


__all__ = ["CANDIDATES", "VARIANTS", "render_multi_markdown", "run_multi_alignment", "split_control", "variant_label"]
