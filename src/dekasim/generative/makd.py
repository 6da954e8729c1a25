"""MAKD: metaword-aided knowledge distillation of a cloud text-to-image model into an edge model.

For a *subject* (a caption word the cloud draws its own way, e.g. ``triangle``) the cloud generates a
training set S_CG. On the edge model, everything else frozen:

(a) **metaword** -- one new token (e.g. ``<triangle*>``) is added to the edge tokenizer and text
    encoder, initialised from the subject word's embedding, and its embedding row alone is optimised
    with the edge's own noise-prediction loss on S_CG, the metaword written into the prompts
    (textual inversion; :meth:`KnowledgePack.rewrite` decides where);
(b) **G-LoRA** -- a peft LoRA (rank ``lora_rank``) on the UNet attention projections
    (``to_q, to_k, to_v, to_out.0``) learns the residual, the metaword kept in the prompts.

Baselines under the same step budget: ``none`` (no alignment), ``metaword`` (phase (a) only: textual
inversion), ``lora`` (phase (b) only, plain prompts: DreamBooth-LoRA style). MAKD splits the budget
between (a) and (b) (``metaword_fraction``). Every phase stops early on a validation consistency
score (edge vs cloud on validation prompts disjoint from S_CG), evaluated every ``eval_every`` steps;
the best state is kept -- training depth is chosen by the data, not by hand.

Prompts (:func:`alignment_prompts`): S_CG comes from one half of the backgrounds and the
corner/centre positions; the test prompts, on which consistency is reported, use the *other*
backgrounds and the edge positions -- never seen in alignment -- plus control prompts without the
subject, which show what alignment costs elsewhere. Validation prompts (early stopping) take a new
background *or* a new position, never both: they measure generalisation along each axis, so that the
stopping point is not chosen on the training distribution (where a LoRA only keeps improving),
while the test block stays unseen.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dekasim.errors import ConfigError
from dekasim.generative.ldm import TextToImageLDM
from dekasim.generative.align_config import AlignConfig, AlignmentPrompts, alignment_prompts
from dekasim.generative.aligned import ADAPTER_NAME, AlignedEdge, add_metaword, apply_pack, set_metaword
from dekasim.generative.lora import lora_config_dict, lora_state_dict
from dekasim.generative.pack import KnowledgePack, SubjectPart, model_fingerprint

#: The loader side (:mod:`dekasim.generative.aligned`) and the settings (:mod:`dekasim.generative.align_config`)
#: are re-exported here for the callers that knew them from this module.
__all__ = ["ADAPTER_NAME", "METHODS", "AlignConfig", "AlignedEdge", "AlignmentPrompts", "MethodResult", "PhaseLog",
           "add_g_lora", "add_metaword", "align_joint", "align_method", "alignment_prompts", "apply_pack", "set_metaword"]

METHODS = ("none", "metaword", "lora", "makd")
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


# ----------------------------------------------------------------------------------------------
# The edge model's trainable parts


def add_g_lora(model: TextToImageLDM, rank: int, alpha: float, seed: int) -> list[torch.nn.Parameter]:
    """Add a peft LoRA adapter (``B = 0``: the model is unchanged until it trains) on the UNet's
    attention projections; returns its parameters (the only trainable ones)."""
    from peft import LoraConfig

    cfg = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=list(LORA_TARGETS), init_lora_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.unet.add_adapter(cfg, adapter_name=ADAPTER_NAME)
    params = [p for n, p in model.unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


# ----------------------------------------------------------------------------------------------
# Training


@dataclass
class PhaseLog:
    """One optimisation phase: validation scores as it went, where it stopped and why."""

    phase: str
    steps_run: int = 0
    best_step: int = 0
    best_score: float = float("nan")
    start_score: float = float("nan")
    stopped: str = "budget"
    history: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0


def _latents_of(model: TextToImageLDM, images: torch.Tensor) -> torch.Tensor:
    res = model.config.resolution_px
    if images.shape[-1] != res:
        images = F.interpolate(images, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        return model.latents.encode(images.to(model.device))


def _train_phase(model: TextToImageLDM, phase: str, latents: torch.Tensor, prompts: list[str], steps: int,
                 lr: float, config: AlignConfig, score: Callable[[], float], metaword_id: int | list[int] | None,
                 params: list[torch.nn.Parameter], seed_salt: int, progress: bool = False) -> PhaseLog:
    """Optimise ``params`` (the metaword row's matrix, or the LoRA) with the noise-prediction loss on
    (``latents``, ``prompts``) for up to ``steps`` steps, scoring every ``eval_every``; keeps the best.
    ``metaword_id``: the embedding row(s) that may move in the ``"metaword"`` phase."""
    log = PhaseLog(phase)
    t0 = time.perf_counter()
    sched = model.scheduler
    tokens = model.tokenize(prompts)
    emb = model.text_encoder.get_input_embeddings().weight
    frozen_rows = keep = None
    if phase == "metaword":  # every row but the metaword's is restored after each step
        frozen_rows = emb.detach().clone()
        keep = torch.ones(emb.shape[0], dtype=torch.bool)
        keep[metaword_id] = False
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def snapshot() -> list[torch.Tensor]:
        return [p.detach().clone() for p in params]

    def restore(state: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, s in zip(params, state):
                p.copy_(s)

    model.unet.eval()  # no dropout/batch statistics in these models; eval keeps sampling identical
    model.text_encoder.eval()
    log.start_score = log.best_score = score()
    best = snapshot()
    log.history.append({"step": 0, "score": log.start_score})
    bad = 0
    g = torch.Generator().manual_seed(int(np.random.default_rng([config.seed, seed_salt]).integers(2 ** 62)))
    n = len(latents)
    from dekasim.progress import progress_bar

    bar = progress_bar(steps, f"align {phase}", enabled=progress)
    bar.set_postfix(score=f"{log.start_score:.4f}")
    for step in range(steps):
        idx = torch.randint(0, n, (config.batch_size,), generator=g)
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=g).to(x0.device)  # drawn on the CPU: the same on every device
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=g).to(x0.device)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t) if model.prediction_type == "v_prediction" else (
            noise if model.prediction_type == "epsilon" else x0)
        tk = {k: v[idx] for k, v in tokens.items()}
        with torch.set_grad_enabled(phase == "metaword"):
            states, mask = model.encode_tokens(tk)
        loss = F.mse_loss(model.predict(xt, t, states, mask), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if keep is not None:
            emb.grad[keep] = 0.0
        opt.step()
        if keep is not None:
            with torch.no_grad():  # exactly one row may move
                emb[keep] = frozen_rows[keep]
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"alignment loss became {loss.item()} in phase {phase}; lower align.lr_{phase}")
        log.steps_run = step + 1
        bar.update(1)
        if (step + 1) % config.eval_every == 0 or step + 1 == steps:
            s = score()
            bar.set_postfix(loss=f"{loss.item():.4f}", score=f"{s:.4f}", best=f"{max(s, log.best_score):.4f}")
            log.history.append({"step": step + 1, "score": s, "loss": float(loss.item())})
            if s > log.best_score:
                log.best_score, log.best_step, best, bad = s, step + 1, snapshot(), 0
            else:
                bad += 1
                if bad >= config.patience:
                    log.stopped = "early"
                    break
    bar.close()
    restore(best)
    for p in params:
        p.requires_grad_(False)
    log.wall_s = time.perf_counter() - t0
    return log


@dataclass
class MethodResult:
    """One alignment method: the pack it made, its phases, and the aligned edge."""

    method: str
    pack: KnowledgePack
    phases: list[PhaseLog]
    edge: AlignedEdge
    wall_s: float


def align_method(method: str, edge: TextToImageLDM, cloud_images: torch.Tensor, prompts: AlignmentPrompts,
                 config: AlignConfig, val_score: Callable[[AlignedEdge], float],
                 base_hash: str | None = None, progress: bool = False) -> MethodResult:
    """Run one method (:data:`METHODS`) on a deep copy of ``edge``.

    :param cloud_images: S_CG, ``[n_train_images, 3, R, R]`` in [0, 1], the cloud's images of ``prompts.train``.
    :param val_score: scores an aligned edge on the validation prompts (higher is better).
    """
    if method not in METHODS:
        raise ConfigError("align.method", method, f"one of {list(METHODS)}")
    t0 = time.perf_counter()
    base_hash = base_hash or model_fingerprint(edge)
    model = copy.deepcopy(edge)
    model.unet.requires_grad_(False)
    model.text_encoder.requires_grad_(False)
    pack = KnowledgePack(base_model_hash=base_hash, subject=config.subject, placement=config.placement,
                         info={"method": method})
    aligned = AlignedEdge(model, None)
    phases: list[PhaseLog] = []
    latents = _latents_of(model, cloud_images)
    uses_metaword = method in ("metaword", "makd")
    uses_lora = method in ("lora", "makd")
    meta_steps = config.budget_steps if method == "metaword" else int(round(config.budget_steps
                                                                            * config.metaword_fraction))
    lora_steps = config.budget_steps if method == "lora" else config.budget_steps - meta_steps
    if uses_metaword:
        token_id = add_metaword(model, config.metaword, config.subject)
        pack.metaword = config.metaword
        emb = model.text_encoder.get_input_embeddings().weight
        emb.requires_grad_(True)
        pack.metaword_embedding = emb[token_id].detach().clone()
        aligned.pack = pack
        train_prompts = aligned.prompts(prompts.train)
        phases.append(_train_phase(model, "metaword", latents, train_prompts, meta_steps, config.lr_metaword, config,
                                   lambda: val_score(aligned), token_id, [emb], 0x3E7A, progress))
        pack.metaword_embedding = emb[token_id].detach().clone()
    if uses_lora:
        params = add_g_lora(model, config.lora_rank, config.alpha, config.seed)
        train_prompts = aligned.prompts(prompts.train)
        phases.append(_train_phase(model, "lora", latents, train_prompts, lora_steps, config.lr_lora, config,
                                   lambda: val_score(aligned), None, params, 0x10A, progress))
        pack.lora = lora_state_dict(model.unet, ADAPTER_NAME)
        pack.lora_config = lora_config_dict(model.unet, ADAPTER_NAME)
    aligned.pack = pack if uses_metaword or uses_lora else None
    pack.info.update({"steps": {p.phase: p.steps_run for p in phases},
                      "best_step": {p.phase: p.best_step for p in phases},
                      "stopped": {p.phase: p.stopped for p in phases},
                      "budget_steps": config.budget_steps, "n_train_images": len(cloud_images),
                      "config": asdict(config)})
    model.unet.eval()
    model.text_encoder.eval()
    return MethodResult(method, pack, phases, aligned, time.perf_counter() - t0)


def align_joint(edge: TextToImageLDM, subjects: list[str], cloud_images: torch.Tensor, train_prompts: list[str],
                config: AlignConfig, val_score: Callable[[AlignedEdge], float], base_hash: str | None = None,
                progress: bool = False) -> MethodResult:
    """MAKD of several subjects at once on a deep copy of ``edge``: one metaword per subject (``<subject*>``),
    their embedding rows trained together, then one *joint* G-LoRA; ``config.budget_steps`` for both phases
    (split by ``metaword_fraction``), early stopping on ``val_score``.

    :param cloud_images: the union of the subjects' S_CG, ``[N, 3, R, R]`` in [0, 1], image ``i`` of
        ``train_prompts[i]``.
    """
    t0 = time.perf_counter()
    base_hash = base_hash or model_fingerprint(edge)
    model = copy.deepcopy(edge)
    model.unet.requires_grad_(False)
    model.text_encoder.requires_grad_(False)
    ids = [add_metaword(model, f"<{s}*>", s) for s in subjects]
    emb = model.text_encoder.get_input_embeddings().weight
    emb.requires_grad_(True)

    def parts() -> list[SubjectPart]:
        return [SubjectPart(s, f"<{s}*>", emb[i].detach().clone()) for s, i in zip(subjects, ids)]

    pack = KnowledgePack(base_model_hash=base_hash, placement=config.placement, parts=parts(),
                         info={"method": "makd", "lora_mode": "joint"})
    aligned = AlignedEdge(model, pack)
    latents = _latents_of(model, cloud_images)
    meta_steps = int(round(config.budget_steps * config.metaword_fraction))
    rewritten = aligned.prompts(train_prompts)
    phases = [_train_phase(model, "metaword", latents, rewritten, meta_steps, config.lr_metaword, config,
                           lambda: val_score(aligned), ids, [emb], 0x3E7A, progress)]
    pack.parts = parts()
    params = add_g_lora(model, config.lora_rank, config.alpha, config.seed)
    phases.append(_train_phase(model, "lora", latents, rewritten, config.budget_steps - meta_steps, config.lr_lora,
                               config, lambda: val_score(aligned), None, params, 0x10A, progress))
    pack.lora = lora_state_dict(model.unet, ADAPTER_NAME)
    pack.lora_config = lora_config_dict(model.unet, ADAPTER_NAME)
    pack.info.update({"steps": {p.phase: p.steps_run for p in phases},
                      "best_step": {p.phase: p.best_step for p in phases},
                      "stopped": {p.phase: p.stopped for p in phases},
                      "budget_steps": config.budget_steps, "n_train_images": len(cloud_images),
                      "config": asdict(config), "subjects": list(subjects)})
    model.unet.eval()
    model.text_encoder.eval()
    return MethodResult("makd_joint", pack, phases, aligned, time.perf_counter() - t0)
