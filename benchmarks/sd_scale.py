"""Cost of DeKA-g's stages at Stable-Diffusion-1.5 scale: seconds per image and peak memory, CPU or CUDA.

Every model has random weights and is built from the configs kept in the repository
(:data:`dekasim.generative.random_models.PRESETS`; nothing is downloaded), written in diffusers' /
transformers' own layouts and loaded back the way a user's folders are:

* ``--preset sd15``: the cloud is SD 1.5 (UNet 859.5 M, KL VAE 83.7 M, CLIP ViT-L/14 text encoder 123.1 M);
  the edge is BK-SDM-Tiny's UNet (323.4 M) with the same VAE and text encoder; image scorers DINOv2-B and
  CLIP ViT-L/14's image tower; images 512 px, latents 4x64x64;
* ``--preset tiny``: the test-sized models (64 px, 4x8x8 latents), so that this script is checked in seconds.

Stages (each in float32 unless ``--dtype`` says otherwise for sampling, the VAE and the image encoders;
training steps and the channel are always float32):

* cloud / edge sampling: :meth:`TextToImageLDM.sample_latents` run for a few DDIM steps with
  classifier-free guidance (two UNet passes per step) and the text encoding timed alone; 25-step sampling
  per image is *estimated* as text + 25 x (one step) + one VAE decode (``--full-sampling`` also times the
  25 steps, the default for the tiny preset, to check the estimate);
* a MAKD step on the edge: one metaword step (textual inversion: gradients through the UNet into the
  text encoder's new embedding row) and one G-LoRA step (peft LoRA rank 8 on the UNet's attention
  projections), with the noise-prediction loss of :mod:`dekasim.generative.makd`'s ``_train_phase``,
  on latents that stand for S_CG;
* a generic-JSCC training step and a CALA step (bank over that frozen random base) on C x h x w latents,
  through the OFDM/TDL link (:func:`dekasim.training.jscc.forward_through_link`, LS, TDL-C 300 ns, 10 dB);
* the link per image at 1/6: encode -> OFDM/TDL channel -> decode;
* DINO / CLIP scoring per image (:func:`dekasim.metrics.consistency.local_image_encoder`);
* VAE encode and decode per image.

Memory: on the CPU the peak resident set of the process during the timed calls (``getrusage`` ru_maxrss after
resetting the kernel's high-water mark through ``/proc/self/clear_refs``), beside the RSS just before them;
on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. Wall and CPU time
(``time.process_time``, all threads) are printed side by side; nothing is asserted.

Writes ``<out>.json`` and ``<out>.md`` (default ``plots/sd_scale_<device>`` for sd15, ``runs/sd_scale_tiny_<device>``
for tiny), each with the command, the machine and the date; the docs (docs/benchmarks.md) quote
``plots/sd_scale_*.md`` when they are built. ``--readme FILE.md`` also puts the Markdown into any Markdown file
between its ``sd_scale`` markers; ``--render FILE.json`` re-renders a result without running.

    .venv/bin/python benchmarks/sd_scale.py --preset tiny                         # seconds
    .venv/bin/python benchmarks/sd_scale.py --preset sd15 --device cpu            # ~10 min on 2 threads
    .venv/bin/python benchmarks/sd_scale.py --preset sd15 --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]

#: Parameter counts from the public model cards / configs (millions), for the table.
MODEL_CARDS_M = {"cloud_unet": 859.5, "vae": 83.7, "text_encoder": 123.1, "edge_unet": 323.0,
                 "dino": 86.6, "clip_vision": 304.0}
#: The SD-1.5 inference defaults the estimate uses.
SAMPLING_STEPS, GUIDANCE = 25, 7.5
RATES = (1 / 24, 1 / 12, 1 / 6)
README_BEGIN, README_END = "<!-- sd_scale:{name} begin -->", "<!-- sd_scale:{name} end -->"
PROMPTS = ("a photo of a sks dog on the beach", "a red car in the snow", "a small house with a tree",
           "a photo of a cat on the grass", "a blue car on the street", "a large dog in the snow",
           "a yellow house at the beach", "a green tree in the street")

# per preset: the cloud and edge pipelines (random_models preset, UNet overrides), image encoders' preset
SETUPS: dict[str, dict[str, Any]] = {
    "sd15": {"cloud": ("sd15", None), "edge": ("bk-sdm-tiny", None), "encoders": "sd15"},
    "tiny": {"cloud": ("tiny", None), "edge": ("tiny", {"block_out_channels": [8, 16]}), "encoders": "tiny"},
}


# ------------------------------------------------------------------------------------------------
# Measuring


class Memory:
    """Current and peak memory in MiB: the process RSS on the CPU, the CUDA caching allocator on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.resettable = True
        if self.cuda:
            self.kind = "torch.cuda.max_memory_allocated (reset before each stage's timed calls)"
        else:
            self.kind = ("peak RSS of the process: getrusage ru_maxrss, high-water mark reset through "
                         "/proc/self/clear_refs before each stage's timed calls")

    def current(self) -> float:
        if self.cuda:
            return torch.cuda.memory_allocated(self.device) / 2 ** 20
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def reset(self) -> float:
        """Reset the peak to the current value; returns the current value."""
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.resettable = False
                self.kind = "peak RSS of the process since it started (getrusage ru_maxrss; no reset possible here)"
        return self.current()

    def peak(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mib(*modules: torch.nn.Module) -> float:
    return sum(t.numel() * t.element_size() for m in modules for t in list(m.parameters()) + list(m.buffers())) / 2 ** 20


def _present(*modules: torch.nn.Module | None) -> tuple[torch.nn.Module, ...]:
    return tuple(m for m in modules if m is not None)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Bench:
    """Runs the stages, collects rows (one per timed operation) and the facts about the models."""

    def __init__(self, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
        self.args, self.device, self.dtype = args, device, dtype
        self.memory = Memory(device)
        self.rows: list[dict[str, Any]] = []
        self.params: dict[str, int] = {}
        self.facts: dict[str, Any] = {}
        self.errors: list[str] = []

    def heavy(self) -> tuple[int, int]:
        """(timed calls, warm-up calls) of a stage that runs a large network."""
        a = self.args
        return a.calls, (a.warmup if a.warmup is not None else (0 if self.slow_cpu else 1))

    @property
    def slow_cpu(self) -> bool:
        return self.device.type == "cpu" and self.args.preset == "sd15"

    def time(self, stage: str, label: str, fn: Callable[[], Any], *, items: int, calls: int, warmup: int,
             modules: tuple[torch.nn.Module, ...] = (), dtype: str | None = None, note: str = "") -> dict[str, Any]:
        """Time ``calls`` calls of ``fn`` (after ``warmup`` untimed ones), each handling ``items`` images; a row."""
        print(f"  {label} ... ", end="", flush=True)
        for _ in range(warmup):
            fn()
        _sync(self.device)
        start = self.memory.reset()
        walls, cpus = [], []
        for _ in range(calls):
            _sync(self.device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(self.device)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        row = {"stage": stage, "label": label, "items_per_call": items, "calls": calls, "warmup": warmup,
               "dtype": dtype or "float32", "wall_s_per_call": wall, "cpu_s_per_call": cpu,
               "wall_s_per_image": wall / items, "cpu_s_per_image": cpu / items, "estimated": False,
               "weights_mib": _mib(*modules) if modules else None, "start_mib": start,
               "peak_mib": max(self.memory.peak(), start),  # ru_maxrss and VmRSS round differently
               "note": note}
        self.rows.append(row)
        print(f"{row['wall_s_per_image']:.4g} s/image wall, {row['cpu_s_per_image']:.4g} s CPU, "
              f"peak {row['peak_mib']:.0f} MiB", flush=True)
        return row

    def failed(self, stage: str, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.errors.append(f"{stage}: {msg}")
        self.rows.append({"stage": stage, "label": f"{stage} (failed)", "error": msg})
        print(f"\n  {stage} FAILED: {msg}", flush=True)


@contextlib.contextmanager
def _autocast(device: torch.device, dtype: torch.dtype):
    """Half-precision compute for modules whose weights were loaded in ``dtype`` (float32: nothing)."""
    if dtype == torch.float32:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def _link(device: torch.device):
    """The trainers' link, ``make_link("ls", 1)``: LS estimation, comb-1 pilots, frequency domain."""
    from dekasim.training.jscc import make_link

    if device.type == "cpu":
        return make_link("ls", 1)
    from dekasim.channels import GridConfig, OFDMLink

    return OFDMLink(GridConfig(pilot_subcarrier_spacing=1), csi="ls", device=str(device)).to(device)


def _condition():
    from dekasim.conditions import Condition

    return Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")


# ------------------------------------------------------------------------------------------------
# Stages


def _write_pipeline(bench: Bench, role: str, tmp: Path) -> Path:
    from dekasim.generative.random_models import write_sd_pipeline

    preset, unet = SETUPS[bench.args.preset][role]
    t0 = time.perf_counter()
    d = write_sd_pipeline(tmp / role, preset, seed=1 if role == "cloud" else 2, unet=unet)
    bench.facts[f"{role}_write_s"] = time.perf_counter() - t0
    bench.facts[f"{role}_preset"] = preset
    return d


def _load(bench: Bench, d: Path, role: str, dtype: torch.dtype):
    from dekasim.generative.ldm import TextToImageLDM

    t0 = time.perf_counter()
    model = TextToImageLDM.from_pretrained(d, torch_dtype=dtype).to(bench.device)
    bench.facts[f"{role}_load_s"] = time.perf_counter() - t0
    return model


def stage_sampling(bench: Bench, role: str, model) -> None:
    """Text encoding, a few CFG DDIM steps (and, with --full-sampling, all 25) of ``model``."""
    a, dev, dt = bench.args, bench.device, bench.dtype
    b = a.batch
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(b)]
    seeds = list(range(b))
    dname = str(dt).replace("torch.", "")
    calls, warmup = bench.heavy()
    bench.params[f"{role}_unet"] = _params(model.unet)
    bench.facts[f"{role}_unet_mib"] = _mib(model.unet)
    bench.params.setdefault("text_encoder", _params(model.text_encoder))
    bench.facts["latent_shape"] = list(model.latent_shape)
    bench.facts["resolution_px"] = model.config.resolution_px
    with torch.no_grad(), _autocast(dev, dt):
        text = bench.time(f"{role}_text", f"{role}: text encoding (prompts + empty prompt)",
                          lambda: (model.encode_prompts(prompts), model.encode_prompts([""])),
                          items=b, calls=3, warmup=1, modules=(model.text_encoder,), dtype=dname)
        n = a.sampling_steps
        steps = bench.time(f"{role}_steps", f"{role}: sample_latents, {n} DDIM steps, CFG {GUIDANCE}",
                           lambda: model.sample_latents(prompts, seeds, steps=n, guidance=GUIDANCE, batch_size=b),
                           items=b, calls=calls, warmup=warmup, modules=(model.unet, model.text_encoder), dtype=dname,
                           note=f"each step: 2 UNet passes (CFG) on a batch of {2 * b}")
        steps["sampling_steps"] = n
        per_step_wall = max(steps["wall_s_per_call"] - text["wall_s_per_call"], 0.0) / n
        per_step_cpu = max(steps["cpu_s_per_call"] - text["cpu_s_per_call"], 0.0) / n
        bench.facts[f"{role}_step"] = {"wall_s_per_call": per_step_wall, "cpu_s_per_call": per_step_cpu, "batch": b}
        if a.full_sampling:
            full = bench.time(f"{role}_full", f"{role}: sample_latents, {SAMPLING_STEPS} DDIM steps, CFG {GUIDANCE}",
                              lambda: model.sample_latents(prompts, seeds, steps=SAMPLING_STEPS, guidance=GUIDANCE,
                                                           batch_size=b),
                              items=b, calls=calls, warmup=0, modules=(model.unet, model.text_encoder), dtype=dname,
                              note="measured, to check the estimate from a few steps")
            full["sampling_steps"] = SAMPLING_STEPS


def stage_vae(bench: Bench, model) -> None:
    a, dev, dt = bench.args, bench.device, bench.dtype
    b = a.batch
    lat = model.latents
    bench.params["vae"] = _params(lat.vae)
    res = model.config.resolution_px
    calls, warmup = bench.heavy()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(b, 3, res, res, generator=g).to(dev)
    latents = torch.randn(b, *model.latent_shape, generator=g).to(dev)
    dname = str(dt).replace("torch.", "")
    with torch.no_grad(), _autocast(dev, dt):
        bench.time("vae_encode", f"VAE encode ({res} px -> {'x'.join(map(str, model.latent_shape))})",
                   lambda: lat.encode(images), items=b, calls=calls, warmup=warmup,
                   modules=_present(lat.vae.encoder, getattr(lat.vae, "quant_conv", None)), dtype=dname)
        bench.time("vae_decode", f"VAE decode ({'x'.join(map(str, model.latent_shape))} -> {res} px)",
                   lambda: lat.decode(latents), items=b, calls=calls, warmup=warmup,
                   modules=_present(lat.vae.decoder, getattr(lat.vae, "post_quant_conv", None)), dtype=dname)


def stage_makd(bench: Bench, model) -> None:
    """One metaword step, then one G-LoRA step, on the edge (float32), as MAKD's ``_train_phase`` computes them."""
    from dekasim.generative.makd import add_g_lora, add_metaword

    a, dev = bench.args, bench.device
    b = a.batch
    calls, warmup = bench.heavy()
    model.unet.requires_grad_(False)       # as align_method: everything frozen but the trained part
    model.text_encoder.requires_grad_(False)
    model.unet.eval()
    model.text_encoder.eval()
    token_id = add_metaword(model, "<sks*>", "sks")
    emb = model.text_encoder.get_input_embeddings().weight
    emb.requires_grad_(True)
    frozen_rows = emb.detach().clone()
    keep = torch.ones(emb.shape[0], dtype=torch.bool, device=emb.device)
    keep[token_id] = False
    sched = model.scheduler
    x0 = torch.randn(b, *model.latent_shape, generator=torch.Generator().manual_seed(3)).to(dev)  # stands for S_CG
    tokens = model.tokenize([f"a photo of a <sks*> sks dog {p}" for p in ("on the beach", "in the snow")] * b)
    tokens = {k: v[:b] for k, v in tokens.items()}

    def step(phase: str, opt: torch.optim.Optimizer) -> float:
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (b,), device=dev)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t) if model.prediction_type == "v_prediction" else (
            noise if model.prediction_type == "epsilon" else x0)
        with torch.set_grad_enabled(phase == "metaword"):
            states, mask = model.encode_tokens(tokens)
        loss = F.mse_loss(model.predict(xt, t, states, mask), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if phase == "metaword":
            emb.grad[keep] = 0.0
        opt.step()
        if phase == "metaword":
            with torch.no_grad():
                emb[keep] = frozen_rows[keep]
        return loss.item()

    opt = torch.optim.AdamW([emb], lr=5e-3, weight_decay=0.0)
    bench.time("makd_metaword", "MAKD: metaword step (textual inversion, grad through the UNet)",
               lambda: step("metaword", opt), items=b, calls=calls, warmup=warmup,
               modules=(model.unet, model.text_encoder), note="AdamW on the embedding matrix, one row kept")
    emb.requires_grad_(False)
    params = add_g_lora(model, rank=8, alpha=8.0, seed=0)
    bench.params["g_lora"] = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    bench.time("makd_lora", "MAKD: G-LoRA step (rank 8 on to_q/k/v/out)", lambda: step("lora", opt),
               items=b, calls=calls, warmup=warmup, modules=(model.unet, model.text_encoder),
               note=f"{bench.params['g_lora']:,} LoRA parameters")


def _jscc_step(codec, params, lr: float, x: torch.Tensor, link) -> Callable[[], float]:
    """One training step of the JSCC trainer (-PSNR of the batch's latents, Adam, gradient clipping)."""
    from dekasim.training.jscc import forward_through_link

    opt = torch.optim.Adam(params, lr=lr)
    cond = _condition()

    def step() -> float:
        codec.set_rate(1 / 6)
        out = forward_through_link(codec, x, cond, link)
        loss = 10.0 * torch.log10(F.mse_loss(out, x) + 1e-10)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 20.0)
        opt.step()
        return loss.item()

    return step


def stage_codecs(bench: Bench) -> None:
    """Generic JSCC step, CALA step, and the link per image at 1/6 on latents of the cloud's shape."""
    from dekasim.codecs import build_codec

    a, dev = bench.args, bench.device
    shape = tuple(bench.facts.setdefault("latent_shape", list(_latent_shape(a.preset))))
    b = a.jscc_batch
    x = torch.randn(b, *shape, generator=torch.Generator().manual_seed(4)).to(dev)
    warm = 1 if a.warmup is None else a.warmup
    link = _link(dev)
    generic = build_codec("jscc_generic", shape, 1 / 6, checkpoint="none", rates=list(RATES))
    generic.net.to(dev).train()
    bench.params["jscc_generic"] = _params(generic.net)
    n = generic.n_channel_uses
    bench.facts["channel_uses_per_image"] = n
    bench.facts["ofdm_slots_per_image"] = link.num_slots(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bench.time("jscc_generic_step", f"generic JSCC: training step on {'x'.join(map(str, shape))} latents",
                       _jscc_step(generic, list(generic.net.parameters()), 2e-3, x, link), items=b, calls=a.cheap_calls,
                       warmup=warm, modules=(generic.net,), note="through the link (LS, TDL-C 300 ns, 10 dB), rate 1/6")
        except Exception as exc:  # noqa: BLE001 -- a stage that fails is reported, the others still run
            bench.failed("jscc_generic_step", exc)
        try:
            cala = build_codec("cala", shape, 1 / 6, checkpoint="none", rates=list(RATES))
            cala.net.to(dev).train()
            cala.bank.to(dev)
            bank_params = [p for p in cala.bank.parameters() if p.requires_grad]
            counts = cala.num_parameters()
            bench.params["cala_bank"] = counts["adapters"] + counts["gate"]
            bench.time("cala_step", "CALA: training step (bank over the frozen random base)",
                       _jscc_step(cala, bank_params, 5e-3, x, link), items=b, calls=a.cheap_calls, warmup=warm,
                       modules=(cala.net, cala.bank), note=f"K = 2 rank-1 adapters on 8 layers: "
                       f"{counts['adapters']:,} + gate {counts['gate']:,} parameters")
        except Exception as exc:  # noqa: BLE001
            bench.failed("cala_step", exc)
        try:
            generic.eval()
            cond = _condition()

            def send() -> torch.Tensor:
                with torch.no_grad():
                    y, no_eff = link(generic.encode(x, cond), cond)
                    return generic.decode(y, no_eff, cond).payload

            bench.time("link", f"link at 1/6: encode -> OFDM/TDL -> decode ({n} symbols, "
                       f"{link.num_slots(n)} OFDM slot(s) per image)", send, items=b, calls=a.cheap_calls, warmup=warm,
                       modules=(generic.net,), note="LS + LMMSE equalisation, TDL-C 300 ns, 10 dB")
        except Exception as exc:  # noqa: BLE001
            bench.failed("link", exc)


def _latent_shape(preset: str) -> tuple[int, int, int]:
    from dekasim.generative.random_models import PRESETS

    p = PRESETS[SETUPS[preset]["cloud"][0]]
    down = 2 ** (len(p["vae"]["block_out_channels"]) - 1)
    return p["vae"]["latent_channels"], p["resolution_px"] // down, p["resolution_px"] // down


def stage_encoders(bench: Bench, tmp: Path) -> None:
    from dekasim.generative.random_models import PRESETS, write_clip_vision, write_dino
    from dekasim.metrics.consistency import local_image_encoder

    a, dev, dt = bench.args, bench.device, bench.dtype
    preset = SETUPS[a.preset]["encoders"]
    res = bench.facts.get("resolution_px") or PRESETS[SETUPS[a.preset]["cloud"][0]]["resolution_px"]
    b = a.batch
    images = torch.rand(b, 3, res, res, generator=torch.Generator().manual_seed(5))
    dname = str(dt).replace("torch.", "")
    warm = 1 if a.warmup is None else a.warmup
    for name, write, key in (("dino", write_dino, "dino"), ("clip", write_clip_vision, "clip_vision")):
        try:
            d = write(tmp / name, preset, seed=6)
            enc = local_image_encoder(d, device=dev)
            enc.model.to(dt)
            bench.params[key] = _params(enc.model)
            bench.time(f"{name}_score", f"{name.upper()} score: embed one image ({res} px -> {enc.image_size} px)",
                       lambda: enc(images), items=b, calls=a.cheap_calls, warmup=warm, modules=(enc.model,),
                       dtype=dname, note="the reference side is embedded once (EncoderReferences)")
            del enc
        except Exception as exc:  # noqa: BLE001
            bench.failed(f"{name}_score", exc)
        gc.collect()


def _estimates(bench: Bench) -> None:
    """25-step sampling per image from the per-step time: text + 25 x step + one VAE decode."""
    dec = next((r for r in bench.rows if r.get("stage") == "vae_decode"), None)
    for role in ("cloud", "edge"):
        step = bench.facts.get(f"{role}_step")
        text = next((r for r in bench.rows if r.get("stage") == f"{role}_text"), None)
        steps_row = next((r for r in bench.rows if r.get("stage") == f"{role}_steps"), None)
        if step is None or text is None or dec is None:
            continue
        b = step["batch"]
        full = next((r for r in bench.rows if r.get("stage") == f"{role}_full"), None)
        if full is not None:
            full["note"] += (f"; with one VAE decode per image: {full['wall_s_per_image'] + dec['wall_s_per_image']:.4g} "
                             f"s wall, {full['cpu_s_per_image'] + dec['cpu_s_per_image']:.4g} s CPU (compare the estimate)")
        wall = (text["wall_s_per_call"] + SAMPLING_STEPS * step["wall_s_per_call"]) / b + dec["wall_s_per_image"]
        cpu = (text["cpu_s_per_call"] + SAMPLING_STEPS * step["cpu_s_per_call"]) / b + dec["cpu_s_per_image"]
        bench.rows.append({
            "stage": f"{role}_sampling", "label": f"{role} sampling: {SAMPLING_STEPS} DDIM steps, CFG {GUIDANCE}, "
            f"+ VAE decode (estimated)", "items_per_call": b, "calls": None, "warmup": None,
            "dtype": steps_row["dtype"], "wall_s_per_image": wall, "cpu_s_per_image": cpu, "estimated": True,
            "weights_mib": steps_row["weights_mib"], "start_mib": steps_row["start_mib"],
            # the VAE decode was timed without a UNet resident: add this UNet's weights to its peak
            "peak_mib": max(steps_row["peak_mib"], dec["peak_mib"] + bench.facts[f"{role}_unet_mib"]),
            "note": f"(text + {SAMPLING_STEPS} x one step) / batch + VAE decode per image; peak: max(steps, VAE "
                    f"decode + UNet weights); one step = "
                    f"({steps_row['sampling_steps']}-step call - text) / {steps_row['sampling_steps']} = "
                    f"{step['wall_s_per_call']:.4g} s wall for the batch of {b}"})


# ------------------------------------------------------------------------------------------------
# Machine facts, output


def machine(device: torch.device) -> dict[str, Any]:
    import importlib.metadata as md

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for dist in ("torch", "diffusers", "transformers", "peft", "sionna-no-rt"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = "absent"
    mem_gib = None
    with contextlib.suppress(OSError, ValueError):
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "memory_gib": mem_gib, "python": platform.python_version(), "versions": versions,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cuda": torch.version.cuda if device.type == "cuda" else None}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        if v == 0:
            return "0"
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def render_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    v = m["versions"]
    load = result.get("load_average", {})
    lines = [f"SD-scale cost: preset `{result['preset']}`, device `{result['device']}`, dtype `{result['dtype']}` "
             f"(sampling, VAE, image encoders; training steps and the channel in float32), random weights.",
             "",
             f"- command: `{result['command']}`",
             f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['torch_threads']} torch threads, "
             f"{_fmt(m['memory_gib'], 3)} GiB; GPU: {m['gpu'] or 'none'}; torch {v['torch']}, diffusers "
             f"{v['diffusers']}, transformers {v['transformers']}, peft {v['peft']}, Python {m['python']}",
             f"- date: {result['date']}; load average (1 min) at start / end: {_fmt(load.get('start'), 3)} / "
             f"{_fmt(load.get('end'), 3)}; total wall {_fmt(result['total_wall_s'], 4)} s",
             f"- memory: {result['memory_kind']}",
             ""]
    lines += ["| component | parameters (built here) | model card |", "|---|---|---|"]
    names = {"cloud_unet": "cloud UNet", "edge_unet": "edge UNet", "vae": "VAE (KL, 4 latent channels)",
             "text_encoder": "text encoder (CLIP)", "dino": "DINO image encoder", "clip_vision": "CLIP image tower",
             "g_lora": "G-LoRA (rank 8)", "jscc_generic": "generic JSCC", "cala_bank": "CALA bank + gate"}
    for key, label in names.items():
        if key in result["params"]:
            card = MODEL_CARDS_M.get(key) if result["preset"] == "sd15" else None
            lines.append(f"| {label} | {result['params'][key] / 1e6:.2f} M | "
                         f"{f'{card} M' if card else '—'} |")
    lines += ["", "| stage | batch | timed calls (warm-up) | s/image wall | s/image CPU | weights MiB | "
              "memory before MiB | peak MiB | note |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['label']} | — | — | — | — | — | — | — | {r['error']} |")
            continue
        label = f"**{r['label']}**" if r["estimated"] else r["label"]
        calls = "estimate" if r["estimated"] else f"{r['calls']} ({r['warmup']})"
        lines.append(f"| {label} | {r['items_per_call']} | {calls} | {_fmt(r['wall_s_per_image'])} | "
                     f"{_fmt(r['cpu_s_per_image'])} | {_fmt(r['weights_mib'], 4)} | {_fmt(r['start_mib'], 4)} | "
                     f"{_fmt(r['peak_mib'], 4)} | {r['note']} |")
    lines += ["", f"Measured: every row without \"estimated\" (median over its timed calls, per image = per call / "
              f"batch). Estimated: {SAMPLING_STEPS}-step sampling from the per-step time of the timed "
              f"`sample_latents` call (text encoding subtracted) plus one VAE decode per image. "
              f"CPU seconds are summed over threads. Latents "
              f"{'x'.join(map(str, result['facts'].get('latent_shape', [])))}; at 1/6: "
              f"{result['facts'].get('channel_uses_per_image', '—')} channel uses, "
              f"{result['facts'].get('ofdm_slots_per_image', '—')} OFDM slots per image."]
    f = result["facts"]
    setup = [f"{role} ({f[role + '_preset']}) written in {f[role + '_write_s']:.1f} s" +
             "".join(f", loaded{' for MAKD (float32)' if k.endswith('_makd') else ''} in {f[k + '_load_s']:.1f} s"
                     for k in (role, role + "_makd") if k + "_load_s" in f)
             for role in ("cloud", "edge") if role + "_write_s" in f]
    if setup:
        lines += ["", "Set-up, not in the rows (random initialisation, `save_pretrained`, `from_pretrained`): "
                  + "; ".join(setup) + "."]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, name: str, md: str, source: str) -> None:
    text = readme.read_text()
    begin, end = README_BEGIN.format(name=name), README_END.format(name=name)
    if begin not in text or end not in text:
        raise SystemExit(f"{readme}: no '{begin}' ... '{end}' markers to put {source} between")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    block = f"{begin}\n<!-- made by `python benchmarks/sd_scale.py --render {source} --readme {readme.name}`: " \
            f"do not edit by hand -->\n{md}{end}"
    readme.write_text(head + block + tail)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device (use --device cpu or auto)")
    return torch.device(name)


def _resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(SETUPS), default="sd15")
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    ap.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), default="auto",
                    help="sampling, VAE and image encoders (auto: float16 on CUDA, float32 on the CPU)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--batch", type=int, default=None, help="images per call of the generative stages "
                    "(default: 1 for sd15 on the CPU, 4 on CUDA, 2 for tiny)")
    ap.add_argument("--jscc-batch", type=int, default=None, help="latents per JSCC/CALA step (default 4 CPU, 16 CUDA)")
    ap.add_argument("--sampling-steps", type=int, default=None, help="DDIM steps timed (default 2 for sd15 on "
                    "the CPU, 5 otherwise); 25-step sampling is estimated from them")
    ap.add_argument("--full-sampling", action=argparse.BooleanOptionalAction, default=None,
                    help="also time the 25 steps (default: on for tiny only)")
    ap.add_argument("--calls", type=int, default=None, help="timed calls of the large-network stages "
                    "(default 1 for sd15 on the CPU, 3 otherwise)")
    ap.add_argument("--cheap-calls", type=int, default=3, help="timed calls of the small stages (JSCC, link, encoders)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls before each stage (default 1; 0 for "
                    "the large networks of sd15 on the CPU)")
    ap.add_argument("--stages", default="cloud,edge,makd,codecs,encoders",
                    help="comma-separated subset of cloud (sampling + VAE), edge, makd, codecs, encoders")
    ap.add_argument("--out", default=None, help="output prefix (writes PREFIX.json and PREFIX.md)")
    ap.add_argument("--readme", default=None, help="also put the Markdown into this Markdown file between its sd_scale markers")
    ap.add_argument("--render", default=None, help="re-render a result JSON (no run)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        src = Path(args.render)
        result = json.loads(src.read_text())
        md = render_markdown(result)
        src.with_suffix(".md").write_text(md)
        if args.readme:
            shown = src.resolve().relative_to(ROOT) if src.resolve().is_relative_to(ROOT) else src
            update_readme(Path(args.readme), src.stem, md, str(shown))
        print(md)
        return 0
    device = _resolve_device(args.device)
    dtype = _resolve_dtype(args.dtype, device)
    torch.set_num_threads(args.threads)
    slow = device.type == "cpu" and args.preset == "sd15"
    if args.batch is None:
        args.batch = 2 if args.preset == "tiny" else (1 if device.type == "cpu" else 4)
    if args.jscc_batch is None:
        args.jscc_batch = 4 if device.type == "cpu" else 16
    if args.sampling_steps is None:
        args.sampling_steps = 2 if slow else 5
    if args.full_sampling is None:
        args.full_sampling = args.preset == "tiny"
    if args.calls is None:
        args.calls = 1 if slow else 3
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in ("cloud", "edge", "makd", "codecs", "encoders")]
    if bad:
        raise SystemExit(f"--stages: unknown {bad}; choose among cloud, edge, makd, codecs, encoders")
    out = Path(args.out) if args.out else ROOT / ("plots" if args.preset == "sd15" else "runs") / (
        f"sd_scale_{device.type}" if args.preset == "sd15" else f"sd_scale_tiny_{device.type}")
    argv_shown = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/sd_scale.py " + " ".join(shlex.quote(x) for x in argv_shown)
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    bench = Bench(args, device, dtype)
    print(f"sd_scale: preset {args.preset}, {device} ({machine(device)['gpu'] or 'CPU'}), dtype {dtype}, "
          f"{torch.get_num_threads()} threads, load {load0:.2f}", flush=True)
    from dekasim.progress import quiet_libraries

    with tempfile.TemporaryDirectory(prefix="sd_scale_") as tmp_name, quiet_libraries():
        tmp = Path(tmp_name)
        if "cloud" in stages:
            try:
                print("cloud", flush=True)
                model = _load(bench, _write_pipeline(bench, "cloud", tmp), "cloud", dtype)
                stage_sampling(bench, "cloud", model)
                del model.unet  # the VAE rows without the UNet resident
                gc.collect()
                stage_vae(bench, model)
                del model
            except Exception as exc:  # noqa: BLE001
                bench.failed("cloud", exc)
            gc.collect()
        if "edge" in stages or "makd" in stages:
            try:
                print("edge", flush=True)
                d = _write_pipeline(bench, "edge", tmp)
                model = None
                if "edge" in stages:
                    model = _load(bench, d, "edge", dtype)
                    stage_sampling(bench, "edge", model)
                if "makd" in stages:
                    if model is None or dtype != torch.float32:  # training steps in float32
                        model = None
                        gc.collect()
                        model = _load(bench, d, "edge_makd", torch.float32)
                    bench.params.setdefault("edge_unet", _params(model.unet))
                    stage_makd(bench, model)
                del model
            except Exception as exc:  # noqa: BLE001
                bench.failed("edge/makd", exc)
            gc.collect()
        if "codecs" in stages:
            print("codecs", flush=True)
            try:
                stage_codecs(bench)
            except Exception as exc:  # noqa: BLE001
                bench.failed("codecs", exc)
        if "encoders" in stages:
            print("encoders", flush=True)
            stage_encoders(bench, tmp)
    _estimates(bench)
    order = ["cloud_text", "cloud_steps", "cloud_full", "cloud_sampling", "edge_text", "edge_steps", "edge_full",
             "edge_sampling", "makd_metaword", "makd_lora", "jscc_generic_step", "cala_step", "link", "dino_score",
             "clip_score", "vae_encode", "vae_decode"]
    bench.rows.sort(key=lambda r: order.index(r["stage"]) if r["stage"] in order else len(order))
    result = {"preset": args.preset, "device": device.type, "dtype": str(dtype).replace("torch.", ""),
              "command": command, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(device), "load_average": {"start": load0, "end": os.getloadavg()[0]},
              "total_wall_s": time.perf_counter() - t_start, "memory_kind": bench.memory.kind,
              "settings": {k: v for k, v in vars(args).items() if k not in ("render", "readme", "out")},
              "params": bench.params, "model_cards_m": MODEL_CARDS_M if args.preset == "sd15" else {},
              "facts": bench.facts, "rows": bench.rows, "errors": bench.errors}
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_name(out.name + ".json")
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md = render_markdown(result)
    out.with_name(out.name + ".md").write_text(md)
    if args.readme:
        src = json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path
        update_readme(Path(args.readme), out.name, md, str(src))
    print()
    print(md)
    print(f"wrote {json_path} and {out.with_name(out.name + '.md')}")
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
