"""JSCC / CALA quality and cost benchmark (issue #4).

Evaluates the shipped learned codecs (``jscc``, ``jscc_mixed``, ``adjscc``, ``cala``, ``lora_oracle``),
CALA's frozen base alone (``jscc_base``) and the uncoded ``analog`` reference on a held-out grid: Es/N0 0, 5, 10, 15, 20 dB x RMS delay spread
30, 100, 300, 1000, 3000 ns, TDL-C, 3.5 GHz, static receiver, LS channel estimation on
``GridConfig(pilot_subcarrier_spacing=1)`` (the default comb-2 grid rejects LS at 3000 ns), LMMSE
equalisation. Images: the 9 photographs of ``PhotoSource(32)`` (whole centre square resized to 32x32),
each sent ``--repeats`` times with fresh channel and noise draws; every codec sees the same draws at a
point (paired comparison), so differences carry much less noise than the PSNRs themselves. Columns
"held-out" average only the photos never used in training (astronaut, coffee, rocket).

Prints: the PSNR table of every codec at every point; CALA's average gain over each baseline and its
gap to the per-condition LoRA oracle (mean over the 25 points, with a 95 % interval of the paired
per-item difference); CALA's parameter and byte overhead over its base JSCC; CALA (and ADJSCC, the
oracle) when the SNR the codec believes is off by a fixed offset, or carries a random error
(``condition_error_db``), or when the delay spread is unknown; the training times recorded in the
checkpoint manifests; the cost of one training step against the channel alone (CPU and wall time,
median of interleaved repeats).

``--payload latent`` evaluates the family shipped for DeKA-g's payload instead: the ``48x8x8``
checkpoints trained on the shipped edge model's latents, sent as latents and scored on the images
they decode to, for ``--prompts`` (64) captions of the world's held-out split that the edge generates
(seed ``--seed``; never generated for training). ``--extra NAME=CHECKPOINT.json`` adds any other
checkpoint of the family to the tables (e.g. single-SNR specialists, to measure how much a
condition-aware codec could gain at all) and prints its paired difference to ``jscc_mixed`` per SNR.

    .venv/bin/python benchmarks/jscc_cala.py [--payload photos|latent] [--repeats 16] [--threads 2] [--quick]
                                             [--extra NAME=CHECKPOINT.json ...] [--json out.json]

On a shared machine wall time can swing several-fold while CPU time stays put: both are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings

import torch

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--repeats", type=int, default=16, help="channel draws per photo and point")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seed", type=int, default=2024)
parser.add_argument("--quick", action="store_true", help="3x3 grid, 4 repeats (a smoke run)")
parser.add_argument("--json", default=None, help="also write every number to this JSON file")
parser.add_argument("--payload", default="photos", choices=["photos", "latent"],
                    help="photos: the 3x32x32 family on PhotoSource; latent: the 48x8x8 family on edge latents")
parser.add_argument("--prompts", type=int, default=64, help="latent payload: held-out prompts the edge draws")
parser.add_argument("--extra", nargs="*", default=[], help="NAME=CHECKPOINT.json: more codecs of the family")
ARGS = parser.parse_args()
torch.set_num_threads(ARGS.threads)

import sionna.phy  # noqa: E402

from dekasim import Condition  # noqa: E402
from dekasim.codecs import build_codec  # noqa: E402
from dekasim.codecs.jscc import CHECKPOINT_DIR, checkpoint_stem  # noqa: E402
from dekasim.training.jscc import (EVAL_DELAY_SPREADS_NS, EVAL_SNR_DB, HELD_OUT_PHOTOS,  # noqa: E402
                                       forward_through_link, make_link)
from dekasim.metrics import psnr_db  # noqa: E402
from dekasim.sim.payloads import PHOTO_NAMES, GeneratedSource, PhotoSource  # noqa: E402

LEARNED = ["jscc", "jscc_mixed", "adjscc", "cala", "lora_oracle"]
BASELINES = ["jscc", "jscc_mixed", "adjscc"]
LATENT = ARGS.payload == "latent"
SHAPE, RATIO = ((48, 8, 8) if LATENT else (3, 32, 32)), 1 / 6
STEM_TAIL = checkpoint_stem("x", SHAPE, RATIO)[2:]          # e.g. "48x8x8-bw1_6"
SNRS = (0.0, 10.0, 20.0) if ARGS.quick else EVAL_SNR_DB
SPREADS = (30.0, 300.0, 3000.0) if ARGS.quick else EVAL_DELAY_SPREADS_NS
REPEATS = 4 if ARGS.quick else ARGS.repeats
OUT: dict = {"args": vars(ARGS), "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                              "threads": ARGS.threads, "cpu": platform.processor() or platform.machine()}}

warnings.simplefilter("ignore")  # PhysicsWarning: TDL-C at 1000/3000 ns reaches past the 7 us cyclic prefix
t_start_w, t_start_c = time.perf_counter(), time.process_time()
if LATENT:
    source = GeneratedSource("edge", prompts="heldout", n_prompts=ARGS.prompts, seed=ARGS.seed,
                             representation="latent")
    items = source.latents                                   # [N, 48, 8, 8] in [-1, 1]: what the edge sends
else:
    source = PhotoSource(32)
    items = source.images
REPRESENTATION = "latent" if LATENT else "image"
x_all = items.repeat(REPEATS, 1, 1, 1)
images_all = source.to_image(x_all, REPRESENTATION)
held = None if LATENT else torch.tensor([PHOTO_NAMES[i % len(PHOTO_NAMES)] in HELD_OUT_PHOTOS
                                         for i in range(len(x_all))])
link = make_link("ls", 1)
points = [Condition(snr_db=s, delay_spread_ns=d, tdl_profile="C", bandwidth_ratio=RATIO) for d in SPREADS for s in SNRS]


def run(codec, cond: Condition, seed: int, tx_cond: Condition | None = None) -> torch.Tensor:
    """Per-item PSNR [dB] of ``codec`` at ``cond``; the codec believes ``tx_cond`` (default: ``cond``) at
    both ends, the channel applies ``cond``. Same channel and noise draws for every codec at a seed."""
    seen = tx_cond or cond
    sionna.phy.config.seed = seed
    z = codec.encode(x_all, seen)
    with torch.no_grad():
        y, no_eff = link(z, cond)
    return psnr_db(images_all, source.to_image(codec.decode(y, no_eff, seen).payload, REPRESENTATION))


def seed_of(i: int) -> int:
    return ARGS.seed * 1000 + i


codecs = {name: build_codec(name, SHAPE, RATIO) for name in LEARNED}
_base_manifest = CHECKPOINT_DIR / json.loads((CHECKPOINT_DIR / f"cala-{STEM_TAIL}.json").read_text())["base"]["file"]
BASE_NAME = _base_manifest.stem.split("-")[0]          # e.g. "jscc_base": CALA's frozen base, evaluated alone
codecs[BASE_NAME] = build_codec(json.loads(_base_manifest.with_suffix(".json").read_text())["codec"], SHAPE, RATIO,
                                checkpoint=str(_base_manifest.with_suffix(".json")))
codecs["analog"] = build_codec("analog", SHAPE, RATIO)
EXTRA = []
for spec in ARGS.extra:
    name, _, path = spec.partition("=")
    codecs[name] = build_codec(json.loads(open(path).read())["codec"], SHAPE, RATIO, checkpoint=path)
    EXTRA.append(name)

# ---------------------------------------------------------------------------------------------- table
psnr: dict[str, list[torch.Tensor]] = {name: [] for name in codecs}
for i, cond in enumerate(points):
    for name, codec in codecs.items():
        psnr[name].append(run(codec, cond, seed_of(i)))


def table(rows: dict[str, list[torch.Tensor]], mask: torch.Tensor | None = None, title: str = "") -> dict:
    print(f"\n{title}")
    print("codec".ljust(13) + "ds[ns]".rjust(7) + "".join(f"{s:>7g}dB" for s in SNRS) + "   mean")
    out = {}
    for name, vals in rows.items():
        means = [float(v[mask].mean() if mask is not None else v.mean()) for v in vals]
        out[name] = means
        for k, d in enumerate(SPREADS):
            row = means[k * len(SNRS):(k + 1) * len(SNRS)]
            last = f"{statistics.mean(means):7.2f}" if k == 0 else ""
            print((name if k == 0 else "").ljust(13) + f"{d:7g}" + "".join(f"{v:9.2f}" for v in row) + "  " + last)
    return out


what = (f"{len(items)} edge images of held-out prompts, sent as 48x8x8 latents, scored on the decoded images"
        if LATENT else f"{len(items)} photos")
print(f"PSNR [dB], TDL-C, LS CSI (pilot_subcarrier_spacing=1), Es/N0 per data RE, bandwidth ratio 1/6 "
      f"({codecs['cala'].n_channel_uses} symbols per item of {SHAPE}), {what} x {REPEATS} draws")
OUT["psnr_all"] = table(psnr, None, "Edge-generated images (held-out prompts)" if LATENT else "All 9 PhotoSource photos")
if held is not None:
    OUT["psnr_held_out"] = table(psnr, held, "Held-out photos only (astronaut, coffee, rocket)")


def paired(a: str, b: str, mask: torch.Tensor | None = None) -> tuple[float, float]:
    """Mean over points of mean(a - b), and the 95 % half-width (items pooled, paired)."""
    diffs = [(x - y)[mask] if mask is not None else x - y for x, y in zip(psnr[a], psnr[b])]
    allv = torch.cat(diffs)
    return float(allv.mean()), 1.96 * float(allv.std()) / math.sqrt(len(allv))


print("\nCALA against the others (mean over the grid of the per-point mean difference; 95 % interval, paired):")
OUT["cala_vs"] = {}
for other in BASELINES + [BASE_NAME, "lora_oracle", "analog"]:
    m, h = paired("cala", other)
    OUT["cala_vs"][other] = {"all": [m, h]}
    label = "gap to oracle" if other == "lora_oracle" else "gain over"
    tail = ""
    if held is not None:
        mh, hh = paired("cala", other, held)
        OUT["cala_vs"][other]["held_out"] = [mh, hh]
        tail = f"   (held-out photos {mh:+6.2f} ± {hh:.2f} dB)"
    print(f"  {label:>14} {other:<12} {m:+6.2f} ± {h:.2f} dB{tail}")
gains = [paired("cala", b)[0] for b in ("jscc", "jscc_mixed")]
print(f"  average gain over the non-adapted baselines (jscc, jscc_mixed): {statistics.mean(gains):+.2f} dB")
# where does CALA help: per SNR and per delay spread
for other in ("jscc", "jscc_mixed", BASE_NAME, "lora_oracle"):
    print(f"  CALA - {other} per point [dB] (rows: delay spread; columns: Es/N0 {', '.join(f'{s:g}' for s in SNRS)} dB):")
    for k, d in enumerate(SPREADS):
        row = [float((psnr["cala"][k * len(SNRS) + j] - psnr[other][k * len(SNRS) + j]).mean()) for j in range(len(SNRS))]
        print(f"    {d:6g} ns " + "".join(f"{v:+7.2f}" for v in row))
print("  CALA gate weights g(c) (exact condition, TDL-C):")
for d in (30.0, 3000.0):
    for s_db in (0.0, 10.0, 20.0):
        g = codecs["cala"].gate_weights(Condition(snr_db=s_db, delay_spread_ns=d, tdl_profile="C"))[0]
        print(f"    {s_db:4g} dB {d:6g} ns  " + " ".join(f"{v:.2f}" for v in g.tolist()))

print("\nDifference to jscc_mixed by Es/N0, mean over delay spreads [dB] (paired; how much knowing or "
      "specialising to the condition buys):")
print(" " * 14 + "".join(f"{s:>7g}dB" for s in SNRS))
OUT["vs_mixed_by_snr"] = {}
for name in EXTRA + ["jscc", "adjscc", "cala", "lora_oracle"]:
    per_snr = [statistics.mean(float((psnr[name][k * len(SNRS) + j] - psnr["jscc_mixed"][k * len(SNRS) + j]).mean())
                               for k in range(len(SPREADS))) for j in range(len(SNRS))]
    OUT["vs_mixed_by_snr"][name] = per_snr
    print(f"  {name:<12}" + "".join(f"{v:+9.2f}" for v in per_snr))

# ---------------------------------------------------------------------------------------------- overhead
cala = codecs["cala"]
n = cala.num_parameters()
m_cala = json.loads((CHECKPOINT_DIR / f"cala-{STEM_TAIL}.json").read_text())
m_base = json.loads((CHECKPOINT_DIR / m_cala["base"]["file"]).with_suffix(".json").read_text())
m_oracle = json.loads((CHECKPOINT_DIR / f"lora_oracle-{STEM_TAIL}.json").read_text())
extra = n["adapters"] + n["gate"]
print(f"\nOverhead over the base JSCC ({n['base']} params, {m_base['bytes']} B fp16 safetensors):")
print(f"  CALA bank {n['adapters']} + gate {n['gate']} = {extra} params ({100 * extra / n['base']:.2f} %), "
      f"file {m_cala['bytes']} B ({100 * m_cala['bytes'] / m_base['bytes']:.2f} %), "
      f"K = {m_cala['cala']['num_adapters']} rank-1 adapters on {', '.join(m_cala['cala']['layers'])}")
no = codecs["lora_oracle"].num_parameters()
print(f"  LoRA oracle: {no['adapters']} params ({100 * no['adapters'] / n['base']:.1f} %), file {m_oracle['bytes']} B "
      f"({100 * m_oracle['bytes'] / m_base['bytes']:.1f} %), 25 buckets x rank {m_oracle['lora_oracle']['rank']}")
OUT["overhead"] = {"params": n, "cala_bytes": m_cala["bytes"], "base_bytes": m_base["bytes"],
                   "oracle_params": no["adapters"], "oracle_bytes": m_oracle["bytes"]}

# ---------------------------------------------------------------------------------------------- condition errors
print(f"\nWrong condition (mean PSNR over the grid, {'all items' if LATENT else 'all photos'}) -- the channel is the true one:")
OUT["condition_error"] = {}
aware = ["cala", "adjscc", "lora_oracle"]
print("  SNR believed = true + offset   " + "".join(f"{o:>+8g}dB" for o in (-6, -3, 0, 3, 6)))
for name in aware:
    vals = []
    for off in (-6.0, -3.0, 0.0, 3.0, 6.0):
        r = [run(codecs[name], c, seed_of(i), c.replace(snr_db=c.snr_db + off)).mean() for i, c in enumerate(points)]
        vals.append(float(torch.stack(r).mean()))
    OUT["condition_error"][f"{name}_offset"] = vals
    print(f"  {name:<30}" + "".join(f"{v:10.2f}" for v in vals))
for ref_name in ("jscc", "jscc_mixed"):
    ref = statistics.mean(OUT["psnr_all"][ref_name])
    print(f"  {'(' + ref_name + ', needs no condition)':<30}" + f"{ref:10.2f}" * 5)
print("  random SNR error, std (condition_error_db)" + "".join(f"{s:>8g}dB" for s in (0, 1, 3, 6)))
for name in aware:
    vals = []
    for sd in (0.0, 1.0, 3.0, 6.0):
        codec = build_codec(name, SHAPE, RATIO, condition_error_db=sd)
        vals.append(float(torch.stack([run(codec, c, seed_of(i)).mean() for i, c in enumerate(points)]).mean()))
    OUT["condition_error"][f"{name}_random"] = vals
    print(f"  {name:<42}" + "".join(f"{v:10.2f}" for v in vals))
vals = [float(torch.stack([run(codecs[name], c, seed_of(i), c.replace(delay_spread_ns=300.0)).mean()
                           for i, c in enumerate(points)]).mean()) for name in ("cala", "lora_oracle")]
OUT["condition_error"]["delay_spread_believed_300ns"] = vals
print(f"  delay spread unknown (believed 300 ns, SNR exact): cala {vals[0]:.2f}, lora_oracle {vals[1]:.2f} dB "
      f"(exact: {statistics.mean(OUT['psnr_all']['cala']):.2f}, {statistics.mean(OUT['psnr_all']['lora_oracle']):.2f})")

# ---------------------------------------------------------------------------------------------- training times
print("\nTraining (from the manifests; CPU seconds are the honest measure on this shared machine):")
OUT["training"] = {}
for path in sorted(CHECKPOINT_DIR.glob(f"*-{STEM_TAIL}.json")):
    m = json.loads(path.read_text())
    t = m["training"]
    OUT["training"][path.stem] = {k: t[k] for k in ("steps", "seed", "wall_s", "cpu_s", "threads", "command")}
    print(f"  {path.stem:<32} {t['steps']:>5} steps  {t['cpu_s']:7.0f} s CPU  {t['wall_s']:7.0f} s wall  "
          f"{t['threads']} thread  seed {t['seed']}  {m['bytes'] / 1e3:6.0f} kB")
print(f"  (cala and lora_oracle start from {BASE_NAME}, whose time is in its run's manifest; their total is that plus theirs)")

# ---------------------------------------------------------------------------------------------- step cost
print("\nCost of one training step (batch 32, 512 symbols per item, TDL-C 300 ns, 10 dB, LS), median of 7:")
cond = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")
xb = x_all[:32]
train_codecs = {"jscc_mixed": build_codec("jscc_mixed", SHAPE, RATIO, checkpoint="none"),
                "cala": build_codec("cala", SHAPE, RATIO)}
z0 = torch.complex(torch.randn(32, 512), torch.randn(32, 512)) / math.sqrt(2)


def channel_fwd():
    with torch.no_grad():
        link(z0, cond)


def channel_fwd_bwd():
    z = z0.clone().requires_grad_(True)
    y, _ = link(z, cond)
    y.abs().square().sum().backward()


def make_step(codec, params):
    opt = torch.optim.Adam(params, 1e-4)

    def step():
        loss = torch.nn.functional.mse_loss(forward_through_link(codec, xb, cond, link), xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def codec_only(codec):
    def f():  # encoder + decoder forward/backward without the channel (y = x, tiny noise)
        z = codec.net.encode(xb)
        xh = codec.net.decode(z, torch.full(z.shape, 1e-3))
        torch.nn.functional.mse_loss(xh, xb).backward()
    return f


jobs = {"channel forward": channel_fwd, "channel forward+backward": channel_fwd_bwd,
        "jscc net fwd+bwd, no channel": codec_only(train_codecs["jscc_mixed"]),
        "jscc_mixed training step": make_step(train_codecs["jscc_mixed"], list(train_codecs["jscc_mixed"].net.parameters())),
        "cala training step (base frozen)": make_step(train_codecs["cala"], list(train_codecs["cala"].bank.parameters()))}
for f in jobs.values():
    f()  # warm-up (builds the channel blocks)
times: dict[str, list[tuple[float, float]]] = {k: [] for k in jobs}
for _ in range(7):
    for k, f in jobs.items():  # interleaved
        w, c = time.perf_counter(), time.process_time()
        f()
        times[k].append((time.perf_counter() - w, time.process_time() - c))
OUT["step_cost"] = {}
ch = statistics.median(c for _, c in times["channel forward+backward"])
for k, v in times.items():
    wall, cpu = statistics.median(w for w, _ in v), statistics.median(c for _, c in v)
    OUT["step_cost"][k] = {"wall_s": wall, "cpu_s": cpu}
    print(f"  {k:<34} {1e3 * cpu:8.1f} ms CPU {1e3 * wall:8.1f} ms wall  ({cpu / ch:5.2f} x channel fwd+bwd)")

print(f"\nbenchmark: {time.perf_counter() - t_start_w:.0f} s wall, {time.process_time() - t_start_c:.0f} s CPU, "
      f"{ARGS.threads} threads, torch {torch.__version__}, python {platform.python_version()}")
if ARGS.json:
    with open(ARGS.json, "w") as fh:
        json.dump(OUT, fh, indent=1)
sys.exit(0)
