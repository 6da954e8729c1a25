"""Training the embedded world's text-to-image LDMs.

The recipe (measured on this project's 2-core CPU, see DESIGN.md "Measured facts"): v-prediction on
a cosine (``squaredcos_cap_v2``) schedule, AdamW with warm-up and cosine decay, gradient clipping, an
EMA of the weights (the EMA is what is saved), 10 % caption dropout to the empty prompt (which
classifier-free guidance needs), fresh procedural images every step (the world never repeats a
render), and -- for a frozen text encoder such as MiniLM -- token states computed once per caption
and cached. A trainable text encoder (the edge's small CLIP) is trained jointly with the UNet from
cached token ids.

:func:`train` writes into its ``out_dir`` only: ``train_log.jsonl`` (one row per log step),
``train_config.json``, ``checkpoint/`` (to resume), and ``model/`` (the pipeline, written by
:meth:`~dekasim.generative.ldm.TextToImageLDM.save_pretrained`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dekasim.errors import ConfigError
from dekasim.generative.ldm import TextToImageLDM, build_ldm
from dekasim.generative.run_dir import RESUME_FREE as _RESUME_FREE
from dekasim.generative.run_dir import model_from_checkpoint, trainable_parameters as _trainable  # noqa: F401
from dekasim.generative.train_config import TrainConfig
from dekasim.generative.world import World

__all__ = ["TrainConfig", "TrainResult", "model_from_checkpoint", "step_time", "train"]


@dataclass
class TrainResult:
    """What :func:`train` did: steps run, losses, timings, where the model is."""

    steps: int
    model_dir: Path | None
    train_loss: list[float] = field(default_factory=list)
    eval_loss_start: float = float("nan")
    eval_loss_end: float = float("nan")
    eval_loss_ema_end: float = float("nan")
    wall_s: float = 0.0
    cpu_s: float = 0.0
    model: TextToImageLDM | None = None

    @property
    def step_time_s(self) -> float:
        return self.wall_s / max(self.steps, 1)


_EVAL_STEP = 2 ** 40  # the validation batch's "step" (never reached by training)


class EMA:
    """Exponential moving average of a set of parameters (kept in float32 beside them)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        self.params = params
        self.decay = decay
        self.shadow = [p.detach().clone().float() for p in params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach().float(), 1.0 - d)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange live and EMA weights (call twice to undo)."""
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s.to(p.dtype))
            s.copy_(tmp.float())


class _Conditioning:
    """Text conditioning per caption index: cached states (frozen encoder) or cached token ids."""

    def __init__(self, model: TextToImageLDM, captions: list[str], trainable: bool, chunk: int = 256) -> None:
        self.model, self.trainable = model, trainable
        self.captions = captions + [""]  # the last one is the empty prompt (caption dropout, CFG)
        self.empty = len(captions)
        tokens = model.tokenize(self.captions)
        self.input_ids, self.attention_mask = tokens["input_ids"], tokens["attention_mask"]
        self.states: torch.Tensor | None = None
        if not trainable:
            with torch.no_grad():
                parts = [model.encode_tokens({"input_ids": self.input_ids[i:i + chunk],
                                              "attention_mask": self.attention_mask[i:i + chunk]})[0]
                         for i in range(0, len(self.captions), chunk)]
            self.states = torch.cat(parts)

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = self.attention_mask[idx] if self.model.config.text_attention_mask else None
        if self.states is not None:
            return self.states[idx], mask
        tokens = {"input_ids": self.input_ids[idx], "attention_mask": self.attention_mask[idx]}
        return self.model.encode_tokens(tokens)[0], mask


def _diffusion_batch(model: TextToImageLDM, world: World, captions_attrs: list, seed: int, step: int,
                     batch_size: int, dropout: float, empty: int) -> dict[str, torch.Tensor]:
    """Images rendered for random training captions, their latents, noise, timesteps and targets."""
    rng = np.random.default_rng([seed, step, 0xDA7A])
    idx = rng.integers(0, len(captions_attrs), size=batch_size)
    batch = world.render([captions_attrs[i] for i in idx], seed=[seed, step, 0x1A6E])
    x0 = model.latents.encode(batch.torch_images())
    g = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))
    noise = torch.randn(x0.shape, generator=g)
    sched = model.scheduler
    t = torch.randint(0, sched.config.num_train_timesteps, (batch_size,), generator=g)
    xt = sched.add_noise(x0, noise, t)
    if model.prediction_type == "v_prediction":
        target = sched.get_velocity(x0, noise, t)
    elif model.prediction_type == "epsilon":
        target = noise
    else:
        target = x0
    cond = torch.as_tensor(idx)
    drop = torch.as_tensor(rng.random(batch_size) < dropout)
    cond = torch.where(drop, torch.full_like(cond, empty), cond)
    dev = model.device
    return {"xt": xt.to(dev), "t": t.to(dev), "target": target.to(dev), "cond": cond}


def _loss(model: TextToImageLDM, conditioning: _Conditioning, b: dict[str, torch.Tensor]) -> torch.Tensor:
    states, mask = conditioning(b["cond"])
    return F.mse_loss(model.predict(b["xt"], b["t"], states, mask), b["target"])




def _save_checkpoint(path: Path, config: TrainConfig, step: int, params: list[torch.nn.Parameter], ema: EMA,
                     opt: torch.optim.Optimizer, train_loss: list[float], wall_s: float, cpu_s: float) -> None:
    """Everything needed to continue bit-exactly: live and EMA weights, AdamW moments, step, losses.
    Tensors go to safetensors, the rest to JSON; written to a temporary folder, then renamed."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for i, (p, e) in enumerate(zip(params, ema.shadow)):
        tensors[f"param.{i}"] = p.detach().contiguous().cpu()
        tensors[f"ema.{i}"] = e.contiguous().cpu()
        for k, v in opt.state.get(p, {}).items():
            tensors[f"adam.{i}.{k}"] = torch.as_tensor(v).detach().contiguous().cpu()
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps({
        "step": step, "ema_updates": ema.updates, "n_params": len(params), "train_loss": train_loss,
        "wall_s": wall_s, "cpu_s": cpu_s,
        "config": {k: v for k, v in asdict(config).items() if k not in _RESUME_FREE}}, default=str))
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)


def _load_checkpoint(path: Path, config: TrainConfig, params: list[torch.nn.Parameter], ema: EMA,
                     opt: torch.optim.Optimizer) -> dict[str, Any]:
    from safetensors.torch import load_file

    info = json.loads((path / "state.json").read_text())
    want = json.loads(json.dumps({k: v for k, v in asdict(config).items() if k not in _RESUME_FREE}, default=str))
    diff = sorted(k for k in set(want) | set(info["config"]) if want.get(k) != info["config"].get(k))
    if diff:
        raise ConfigError(f"train.{diff[0]}", want.get(diff[0]),
                          f"the value of the run being resumed ({info['config'].get(diff[0])!r})",
                          f"use another out_dir, or delete {path} to start afresh")
    if info["n_params"] != len(params):
        raise ConfigError("model", len(params), f"the {info['n_params']} parameter tensors of the run being resumed",
                          f"use another out_dir, or delete {path} to start afresh")
    tensors = load_file(str(path / "state.safetensors"))
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"param.{i}"])
            ema.shadow[i].copy_(tensors[f"ema.{i}"])
            state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"adam.{i}.")}
            if state:
                opt.state[p] = state
    ema.updates = int(info["ema_updates"])
    return info


def train(config: TrainConfig, out_dir: str | Path | None, model: TextToImageLDM | None = None,
          progress: bool = False) -> TrainResult:
    """Train a text-to-image LDM on the world's training captions.

    A run with an ``out_dir`` keeps ``checkpoint/`` there (every ``checkpoint_every`` steps and when it
    stops); calling :func:`train` again with the same config and ``out_dir`` continues from it exactly
    where it stopped (every step's images, noise and timesteps derive from ``(seed, step)``), so a
    long run can be split into calls of ``steps_this_call`` steps or ``time_budget_s`` seconds.

    :param config: the run.
    :param out_dir: where to write the log, config, checkpoint and, when all ``steps`` are done,
        ``model/`` (EMA weights); None writes nothing (tests, benchmarks).
    :param model: start from this model instead of building ``config.preset`` afresh.
    :param progress: show a tqdm bar.
    """
    world = config.world()
    if model is None:
        model = build_ldm(config.preset, world=world, unet=config.unet, tiny_clip=config.tiny_clip, seed=config.seed)
    model.to(config.device)
    params, trainable_te = _trainable(model, config)
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / "checkpoint" if out is not None else None
    log_f = None
    try:
        attrs = world.split("train")
        captions = [a.caption() for a in attrs]
        model.text_encoder.requires_grad_(trainable_te)
        model.text_encoder.train(trainable_te)
        model.unet.train()
        conditioning = _Conditioning(model, captions, trainable_te)
        opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)

        def lr_at(step: int) -> float:
            if step < config.warmup_steps:
                return (step + 1) / config.warmup_steps
            frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        ema = EMA(params, config.ema_decay)
        eval_b = _diffusion_batch(model, world, attrs, config.seed, _EVAL_STEP, config.eval_batch, 0.0,
                                  conditioning.empty)

        def evaluate() -> float:
            model.unet.eval()
            model.text_encoder.eval()
            with torch.no_grad():
                v = float(_loss(model, conditioning, eval_b))
            model.unet.train()
            model.text_encoder.train(trainable_te)
            return v

        result = TrainResult(steps=0, model_dir=None, eval_loss_start=evaluate())
        start, wall_before, cpu_before = 0, 0.0, 0.0
        if ckpt is not None and ckpt.exists():
            info = _load_checkpoint(ckpt, config, params, ema, opt)
            start, wall_before, cpu_before = int(info["step"]), float(info["wall_s"]), float(info["cpu_s"])
            result.train_loss = list(info["train_loss"])
            result.eval_loss_start = float("nan")  # of this call: the run started earlier
            for group, base in zip(opt.param_groups, sched.base_lrs):
                group["lr"] = base * lr_at(start)
            sched.last_epoch = start
        result.steps = start
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2, default=str))
            log_f = open(out / "train_log.jsonl", "a" if start else "w")
        stop = config.steps if config.steps_this_call is None else min(config.steps, start + config.steps_this_call)
        t0, c0 = time.perf_counter(), time.process_time()
        bar = None
        if progress:
            from dekasim.progress import progress_bar

            bar = progress_bar(config.steps, f"train {model.config.name}", initial=start)
        running: list[float] = []
        for step in range(start, stop):
            b = _diffusion_batch(model, world, attrs, config.seed, step, config.batch_size, config.caption_dropout,
                                 conditioning.empty)
            loss = _loss(model, conditioning, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            sched.step()
            ema.update()
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at step {step}; lower train.learning_rate")
            result.train_loss.append(value)
            running.append(value)
            result.steps = step + 1
            wall = time.perf_counter() - t0
            last = step + 1 == stop or (config.time_budget_s is not None and wall >= config.time_budget_s)
            if (step + 1) % config.log_every == 0 or last:
                row = {"step": step + 1, "loss": float(np.mean(running)), "eval_loss": evaluate(),
                       "lr": sched.get_last_lr()[0], "wall_s": wall_before + wall,
                       "cpu_s": cpu_before + time.process_time() - c0}
                running = []
                if log_f:
                    log_f.write(json.dumps(row) + "\n")
                    log_f.flush()
            if ckpt is not None and (last or (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0)):
                _save_checkpoint(ckpt, config, step + 1, params, ema, opt, result.train_loss,
                                 wall_before + wall, cpu_before + time.process_time() - c0)
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
            if last:
                break
        if bar:
            bar.close()
        result.wall_s, result.cpu_s = time.perf_counter() - t0, time.process_time() - c0
        result.eval_loss_end = evaluate()
        ema.swap()  # the EMA weights are the model from here on
        result.eval_loss_ema_end = evaluate()
        model.unet.eval()
        model.text_encoder.requires_grad_(False).eval()
        model.config.provenance.update({
            "train": {k: v for k, v in asdict(config).items() if k not in _RESUME_FREE},
            "steps_done": result.steps, "wall_s": round(wall_before + result.wall_s, 2),
            "cpu_s": round(cpu_before + result.cpu_s, 2), "eval_loss_end_ema": result.eval_loss_ema_end,
            "world_fingerprint": world.fingerprint(), "weights": "ema"})
        model.to("cpu")
        if trainable_te and model.config.text_encoder_source.startswith("package:"):
            model.config.text_encoder_source = "trained"
        if out is not None and result.steps == config.steps:
            dtype = torch.float16 if config.save_unet_dtype == "float16" else None
            result.model_dir = model.save_pretrained(out / "model", unet_dtype=dtype)
        result.model = model
        return result
    finally:
        if log_f:
            log_f.close()
        torch.set_num_threads(old_threads)


def step_time(preset: str, batch_size: int = 32, steps: int = 6, warmup: int = 2, threads: int = 1,
              **overrides: Any) -> dict[str, float]:
    """Measured seconds per training step (wall and CPU) of a preset, for planning a run.

    The first ``warmup`` steps are not timed. Nothing is written.
    """
    cfg = TrainConfig(preset=preset, steps=warmup + steps, batch_size=batch_size, threads=threads,
                      log_every=10 ** 9, eval_batch=8, **overrides)
    model = build_ldm(cfg.preset, world=cfg.world(), unet=cfg.unet, tiny_clip=cfg.tiny_clip, seed=cfg.seed)
    warm = train(TrainConfig(**{**asdict(cfg), "steps": warmup}), None, model=model)
    res = train(TrainConfig(**{**asdict(cfg), "steps": steps}), None, model=model)
    return {"preset": preset, "unet_params": model.n_params("unet"),
            "text_encoder_params": model.n_params("text_encoder"),
            "batch_size": batch_size, "threads": threads, "wall_s_per_step": res.wall_s / res.steps,
            "cpu_s_per_step": res.cpu_s / res.steps, "warmup_wall_s": warm.wall_s}
