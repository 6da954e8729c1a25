"""T-KA as DeKA-g frames it: a generic pre-installed JSCC at the edge, and what a CALA bank trained on S_EG
(the MAKD-aligned edge's own latents) adds to it, against a full fine-tune of the same base on S_EG.

Codecs (48x8x8 latents, sent as latents, scored on the 32x32 images they decode to):

- ``base``: the generic pre-installed JSCC (``jscc_generic``: rate-adaptive, trained on natural-photo
  latents over the condition distribution; no knowledge of any model's images). "Without knowledge
  alignment".
- ``cala``: the same frozen base plus a CALA bank + gate trained on S_EG over SNR x delay spread x rate.
- ``finetune``: the base with every weight fine-tuned on S_EG (what a non-compact alignment reaches).
- ``--extra NAME=CKPT``: more checkpoints (single-rate ones are evaluated at their own rate only).
- ``--specialists CKPT ...``: per-(SNR, rate) specialists, each trained at one Es/N0 (``--snr-db-range S S``)
  and one rate (``--train-rates R``) and evaluated at that SNR and rate only (over the five delay spreads,
  on the draws every codec sees there); the table's ``specialist`` column and the paired gaps to them.

Grid: Es/N0 0, 5, 10, 15, 20 dB x RMS delay spread 30, 100, 300, 1000, 3000 ns (TDL-C, 3.5 GHz, static)
x bandwidth ratio 1/24, 1/12, 1/6 (128, 256, 512 symbols); LS on comb-1 pilots, LMMSE equalisation,
frequency-domain link (what the codecs were trained through). Every codec sees the same channel and
noise draws at a point (paired).

Payload, ``--split``:

- ``heldout`` (default): the aligned edge's images for ``--prompts`` captions of the world's held-out split
  (never used to align the pack or train any codec), seed ``--seed``.
- ``val``: images of *training* captions with a seed no training set uses, for design choices.

Prints the PSNR table (mean over delay spreads) per rate and SNR, and per comparison the paired mean
difference over the 75 points with its 95 % interval (t over points). It also prints the share of the
base -> fine-tune gap that CALA recovers, the bank's parameters against the base's, and the bank's bytes
(fp16 and 8/4/2-bit) with their downlink channel uses.

    .venv/bin/python benchmarks/tka_generic.py --base B.json --cala C.json --finetune F.json \\
        [--extra NAME=CKPT ...] [--split heldout|val] [--repeats 4] [--threads 2] [--json out.json]
    .venv/bin/python benchmarks/tka_generic.py --render out.json --markdown table.md [--title T]
        (a saved run's gains over the base, paired over points, with each bank's share of the base's parameters)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

RATES = (1 / 24, 1 / 12, 1 / 6)
SNRS = (0.0, 5.0, 10.0, 15.0, 20.0)
SPREADS = (30.0, 100.0, 300.0, 1000.0, 3000.0)
SHIPPED_PACK = Path(__file__).resolve().parents[1] / "src" / "dekasim" / "deka" / "data" / "pack"


def _t95(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1)) if n > 1 else float("nan")


def _paired(a: list[float], b: list[float]) -> tuple[float, float]:
    d = [x - y for x, y in zip(a, b)]
    return statistics.fmean(d), _t95(len(d)) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else 0.0


def _bank_bytes(codec) -> dict[str, int]:
    """Bytes of the CALA bank + gate: fp16, and quantised by the pack's quantiser (per-row scale)."""
    from dekasim.generative.quantise import quantise_tensor, stored_bytes

    tensors = codec.bank.state_dict()
    out = {"fp16": sum(v.numel() * 2 for v in tensors.values())}
    for bits in (8, 4, 2):
        out[f"{bits}-bit"] = sum(stored_bytes(quantise_tensor(v.float(), bits)) for v in tensors.values())
    return out


def _evaluate_specialists(a, results: dict[str, dict[str, list[float]]], latents, to_image, link) -> None:
    """``results["specialist"]``: each grid point by the specialist of its (SNR, rate), with the draws of
    the full-grid evaluation at that point (the same seed and condition index)."""
    from dekasim.codecs import build_codec
    from dekasim.training.jscc import evaluate, grid_conditions

    by_point: dict[tuple[float, int], str] = {}
    for ckpt in a.specialists:
        cfg = json.loads(Path(ckpt).read_text())["training"]["config"]
        lo, hi = cfg["snr_db_range"]
        rates = cfg.get("train_rates") or []
        if lo != hi or len(rates) != 1:
            raise SystemExit(f"--specialists: {ckpt} was not trained at one Es/N0 and one rate "
                             f"(snr_db_range {cfg['snr_db_range']}, train_rates {rates})")
        by_point[(float(lo), round(1 / rates[0]))] = ckpt
    for r_i, ratio in enumerate(RATES):
        conds = grid_conditions(SNRS, SPREADS, bandwidth_ratio=ratio)
        psnr = [float("nan")] * len(conds)
        for s_i, snr in enumerate(SNRS):
            ckpt = by_point.get((snr, round(1 / ratio)))
            if ckpt is None:
                raise SystemExit(f"--specialists: none for Es/N0 {snr:g} dB at 1/{round(1 / ratio)}")
            codec = build_codec(json.loads(Path(ckpt).read_text())["codec"], (48, 8, 8), ratio, checkpoint=ckpt)
            idx = [d * len(SNRS) + s_i for d in range(len(SPREADS))]
            vals = evaluate(codec, latents, [conds[i] for i in idx], link, a.repeats, a.seed * 10 + r_i,
                            to_image=to_image, indices=idx)
            for i, v in zip(idx, vals):
                psnr[i] = v
        results.setdefault("specialist", {})[f"1/{round(1 / ratio)}"] = psnr
        print(f"  specialists at 1/{round(1 / ratio)}: mean {statistics.fmean(psnr):.2f} dB", file=sys.stderr,
              flush=True)


def render_gains(run: dict, title: str, layouts: dict[str, str]) -> str:
    """Markdown: each codec's mean gain over ``base`` (paired over the run's points, t interval) and its bank's
    share of the base's parameters."""
    base = run["results"]["base"]
    lines = [f"# {title}", "", f"{run.get('split', '')} images; every point a (rate, Es/N0, delay spread) of the run, "
             "paired draws.", "", "| codec | layout | share of the base's parameters | points | mean gain over the base "
             "| ± 95 % (paired over points) |", "|---|---|---:|---:|---:|---:|"]
    for name, res in run["results"].items():
        if name == "base":
            continue
        d = [x - y for k in sorted(base) if k in res for x, y in zip(res[k], base[k])]
        f = run["facts"][name]["params"]
        share = (f.get("adapters", 0) + f.get("gate", 0)) / f["base"] if "adapters" in f else 1.0
        half = 1.96 * statistics.stdev(d) / len(d) ** 0.5
        lines.append(f"| `{name}` | {layouts.get(name, '')} | {100 * share:.1f} % | {len(d)} | "
                     f"{statistics.fmean(d):+.2f} dB | {half:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=None, help="the generic base checkpoint (required for a run)")
    p.add_argument("--cala", default=None)
    p.add_argument("--finetune", default=None)
    p.add_argument("--extra", nargs="*", default=[])
    p.add_argument("--specialists", nargs="*", default=[])
    p.add_argument("--split", default="heldout", choices=["heldout", "val"])
    p.add_argument("--pack", default=str(SHIPPED_PACK), help="the knowledge pack whose aligned edge draws the images "
                   "(default: the shipped pack)")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--render", metavar="JSON", default=None, help="write --markdown from a saved --json run; no run")
    p.add_argument("--markdown", default=None)
    p.add_argument("--title", default="T-KA banks: gain over the generic base")
    p.add_argument("--describe", nargs="*", default=[], metavar="NAME=TEXT", help="a layout column for --render")
    a = p.parse_args(argv)
    if a.render:
        Path(a.markdown).write_text(render_gains(json.loads(Path(a.render).read_text()), a.title,
                                                dict(d.split("=", 1) for d in a.describe)))
        return 0
    if a.base is None:
        p.error("--base is required for a run")
    torch.set_num_threads(a.threads)

    from dekasim.codecs import build_codec
    from dekasim.deka.generated import GeneratedSource
    from dekasim.errors import ConfigError
    from dekasim.training.jscc import evaluate, grid_conditions, make_link

    t0 = time.perf_counter()
    if a.split == "heldout":
        source = GeneratedSource("edge", pack=a.pack, prompts="heldout", n_prompts=a.prompts, seed=a.seed,
                                 representation="latent")
    else:
        source = GeneratedSource("edge", pack=a.pack, prompts="train", n_prompts=a.prompts, seed=11,
                                 representation="latent")
    latents, to_image = source.latents, (lambda v: source.to_image(v, "latent"))
    print(f"# T-KA on a generic JSCC: {len(latents)} {a.split} images of the aligned edge (pack {a.pack}), "
          f"{a.repeats} draws each, generated in {time.perf_counter() - t0:.0f} s", flush=True)

    specs = [("base", "jscc_generic", a.base)]
    if a.cala:
        specs.append(("cala", "cala", a.cala))
    if a.finetune:
        specs.append(("finetune", "jscc_generic", a.finetune))
    for e in a.extra:
        label, _, ckpt = e.partition("=")
        codec_name = json.loads(Path(ckpt).read_text())["codec"]
        specs.append((label, codec_name, ckpt))

    link = make_link("ls", 1)
    results: dict[str, dict[str, list[float]]] = {}
    facts: dict[str, dict] = {}
    for r_i, ratio in enumerate(RATES):
        conds = grid_conditions(SNRS, SPREADS, bandwidth_ratio=ratio)
        for label, codec_name, ckpt in specs:
            try:
                codec = build_codec(codec_name, (48, 8, 8), ratio, checkpoint=ckpt)
            except ConfigError as err:  # a single-rate checkpoint at another rate
                print(f"  ({label} skipped at 1/{round(1 / ratio)}: {str(err)[:80]})", file=sys.stderr)
                continue
            t = time.perf_counter()
            psnr = evaluate(codec, latents, conds, link, a.repeats, a.seed * 10 + r_i, to_image=to_image)
            results.setdefault(label, {})[f"1/{round(1 / ratio)}"] = psnr
            facts.setdefault(label, {"params": codec.num_parameters(), "checkpoint": ckpt,
                                     "train_wall_s": (codec.manifest or {}).get("training", {}).get("wall_s")})
            if codec_name == "cala" and "bank_bytes" not in facts[label]:
                facts[label]["bank_bytes"] = _bank_bytes(codec)
            print(f"  {label} at 1/{round(1 / ratio)}: mean {statistics.fmean(psnr):.2f} dB "
                  f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)

    if a.specialists:
        _evaluate_specialists(a, results, latents, to_image, link)
    labels = list(results)
    print("\n| rate | Es/N0 | " + " | ".join(labels) + " |")
    print("|---|---:|" + "---:|" * len(labels))
    for ratio in RATES:
        key = f"1/{round(1 / ratio)}"
        for s_i, snr in enumerate(SNRS):
            cells = []
            for lbl in labels:
                v = results[lbl].get(key)
                cells.append("—" if v is None else f"{statistics.fmean(v[d * len(SNRS) + s_i] for d in range(len(SPREADS))):.2f}")
            print(f"| {key} | {snr:g} dB | " + " | ".join(cells) + " |")

    def flat(lbl: str) -> list[float]:
        return [v for key in (f"1/{round(1 / r)}" for r in RATES) for v in results[lbl].get(key, [])]

    print("\n| comparison (paired over points) | points | mean difference [dB] | ± 95 % |")
    print("|---|---:|---:|---:|")
    summary: dict[str, object] = {}
    base = flat("base")
    if "specialist" in results:
        spec = flat("specialist")
        for lbl in labels:
            if lbl != "specialist" and len(flat(lbl)) == len(spec):
                m, ci = _paired(flat(lbl), spec)
                print(f"| {lbl} − per-(SNR, rate) specialist | {len(spec)} | {m:+.2f} | {ci:.2f} |")
                summary[f"{lbl}-specialist"] = [m, ci]
    for lbl in labels[1:]:
        if lbl == "specialist":
            continue
        other = flat(lbl)
        if len(other) != len(base):  # a single-rate codec: at its own rates only
            keys = list(results[lbl])
            mine = [v for k in keys for v in results[lbl][k]]
            m, ci = _paired(mine, [v for k in keys for v in results["base"][k]])
            print(f"| {lbl} − base ({', '.join(keys)} only) | {len(mine)} | {m:+.2f} | {ci:.2f} |")
        else:
            m, ci = _paired(other, base)
            print(f"| {lbl} − base | {len(base)} | {m:+.2f} | {ci:.2f} |")
        summary[f"{lbl}-base"] = [m, ci]
    if "cala" in results and "finetune" in results:
        cala, ft = flat("cala"), flat("finetune")
        m, ci = _paired(cala, ft)
        gap = statistics.fmean(ft) - statistics.fmean(base)
        share = (statistics.fmean(cala) - statistics.fmean(base)) / gap if gap else float("nan")
        print(f"| cala − finetune | {len(base)} | {m:+.2f} | {ci:.2f} |")
        print(f"\nCALA recovers {100 * share:.0f} % of the base -> full fine-tune gap ({gap:+.2f} dB).")
        summary["gap_share"] = share
    for lbl, f in facts.items():
        print(f"{lbl}: params {f['params']}, training {f['train_wall_s']} s wall"
              + (f", bank bytes {f['bank_bytes']}" if "bank_bytes" in f else ""))
        if "bank_bytes" in f:
            share = (f["params"]["adapters"] + f["params"]["gate"]) / f["params"]["base"]
            print(f"  bank + gate = {100 * share:.1f} % of the base's parameters")
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "facts": facts, "summary": summary,
                                            "split": a.split, "repeats": a.repeats}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
