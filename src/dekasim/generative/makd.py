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
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dekasim.errors import ConfigError
from dekasim.generative.ldm import TextToImageLDM
from dekasim.generative.pack import (KnowledgePack, load_lora_into_unet, lora_config_dict, lora_state_dict,
                                     model_fingerprint)
from dekasim.generative.world import ATTRIBUTE_NAMES, Attributes, World

METHODS = ("none", "metaword", "lora", "makd")
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER_NAME = "g_lora"


@dataclass
class AlignConfig:
    """One MAKD alignment and its baselines.

    :param subject: the caption word to align (a shape or colour word of the world).
    :param metaword: the new token; default ``"<{subject}*>"``.
    :param placement: ``"before_subject"`` (``a red <triangle*> triangle ...``) or ``"prefix"``.
    :param n_train_images: |S_CG|, cloud images to distil from (the paper used 40 per subject).
    :param n_val_prompts: validation prompts for early stopping (a new background or a new position).
    :param n_test_prompts: test prompts with the subject (other backgrounds and positions).
    :param n_control_prompts: test prompts without the subject.
    :param budget_steps: optimiser steps per method (MAKD: both phases together).
    :param metaword_fraction: MAKD's share of the budget for phase (a).
    :param lora_rank, lora_alpha: G-LoRA rank and scale numerator (alpha = rank: scale 1).
    :param lr_metaword, lr_lora: AdamW learning rates.
    :param batch_size: S_CG images per step (drawn with replacement).
    :param eval_every: steps between validation scores; ``patience``: evaluations without a gain
        before a phase stops.
    :param val_metric: the early-stopping score (a :class:`~dekasim.metrics.consistency.ConsistencyReport` metric).
    :param sample_steps, guidance: DDIM steps and CFG scale for every generated image.
    :param seed: seeds prompts, S_CG, noise, timesteps, LoRA initialisation and sampling.
    :param threads: torch threads during alignment (None = leave as is).
    """

    subject: str = "triangle"
    metaword: str | None = None
    placement: str = "before_subject"
    n_train_images: int = 40
    n_val_prompts: int = 32
    n_test_prompts: int = 128
    n_control_prompts: int = 64
    budget_steps: int = 400
    metaword_fraction: float = 0.5
    lora_rank: int = 8
    lora_alpha: float | None = None
    lr_metaword: float = 5e-3
    lr_lora: float = 1e-3
    batch_size: int = 16
    eval_every: int = 50
    patience: int = 4
    val_metric: str = "feature_cosine"
    sample_steps: int = 25
    guidance: float = 1.5
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        if self.placement not in ("before_subject", "prefix"):
            raise ConfigError("align.placement", self.placement, "'before_subject' or 'prefix'")
        for name in ("n_train_images", "n_val_prompts", "n_test_prompts", "budget_steps", "lora_rank",
                     "batch_size", "eval_every", "patience", "sample_steps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"align.{name}", getattr(self, name), "a positive integer")
        if self.n_control_prompts < 0:
            raise ConfigError("align.n_control_prompts", self.n_control_prompts, "an integer >= 0")
        if not 0.0 < self.metaword_fraction < 1.0:
            raise ConfigError("align.metaword_fraction", self.metaword_fraction, "a fraction within (0, 1)")
        for name in ("lr_metaword", "lr_lora"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"align.{name}", v, "a positive learning rate")
        if self.metaword is None:
            self.metaword = f"<{self.subject}*>"
        if " " in self.metaword or not self.metaword:
            raise ConfigError("align.metaword", self.metaword, "one token without spaces, e.g. '<triangle*>'")

    @property
    def alpha(self) -> float:
        return float(self.lora_alpha if self.lora_alpha is not None else self.lora_rank)


# ----------------------------------------------------------------------------------------------
# Prompts


@dataclass
class AlignmentPrompts:
    """The prompt sets of one alignment (captions, and the seed of each image)."""

    train: list[str]
    val: list[str]
    test: list[str]
    control: list[str]
    seeds: dict[str, list[int]] = field(default_factory=dict)


def _subject_attribute(world: World, subject: str) -> str:
    for name in ATTRIBUTE_NAMES:
        if subject in world.spec.values(name):
            return name
    words = sorted({w for n in ("shape", "colour") for w in world.spec.values(n)})
    raise ConfigError("align.subject", subject, f"a shape or colour word of the world, one of {words}")


def alignment_prompts(world: World, config: AlignConfig) -> AlignmentPrompts:
    """S_CG, validation, test and control prompts (see the module docstring for the split).

    Align region: backgrounds ``[:half]`` x positions ``[::2]`` (corners and centre); test region:
    backgrounds ``[half:]`` x positions ``[1::2]`` (edges); validation region: the two mixed blocks
    (align backgrounds x test positions, test backgrounds x align positions). Among captions holding
    the subject, S_CG prompts are drawn from the align region (without replacement, or with it when
    the region is smaller than ``n_train_images``), validation and test prompts from their regions;
    control prompts are test-region captions *without* the subject.
    """
    attr = _subject_attribute(world, config.subject)
    sp = world.spec
    half = max(1, len(sp.backgrounds) // 2)
    align_bg, test_bg = set(sp.backgrounds[:half]), set(sp.backgrounds[half:]) or set(sp.backgrounds)
    align_pos, test_pos = set(sp.positions[::2]), set(sp.positions[1::2]) or set(sp.positions)
    combos = world.split("all")
    has = [a for a in combos if getattr(a, attr) == config.subject]
    align = [a for a in has if a.background in align_bg and a.position in align_pos]
    test = [a for a in has if a.background in test_bg and a.position in test_pos]
    val = [a for a in has if (a.background in align_bg) != (a.position in align_pos)]
    control = [a for a in combos if getattr(a, attr) != config.subject and a.background in test_bg
               and a.position in test_pos]
    rng = np.random.default_rng([config.seed, 0xA11])
    n_tr = config.n_train_images
    if n_tr <= len(align):
        tr_idx = rng.permutation(len(align))[:n_tr]
    else:  # small worlds: S_CG repeats prompts (with other seeds)
        tr_idx = rng.integers(0, len(align), size=n_tr)

    def pick(pool: list[Attributes], n: int, salt: int) -> list[str]:
        if n == 0 or not pool:
            return []
        r = np.random.default_rng([config.seed, salt])
        idx = r.permutation(len(pool))[:n] if n <= len(pool) else r.integers(0, len(pool), size=n)
        return [pool[i].caption() for i in idx]

    out = AlignmentPrompts(train=[align[i].caption() for i in tr_idx], val=pick(val or align, config.n_val_prompts, 0x7A1),
                           test=pick(test, config.n_test_prompts, 0x7E57),
                           control=pick(control, config.n_control_prompts, 0xC0))
    base = {"train": 1_000_000, "val": 2_000_000, "test": 3_000_000, "control": 4_000_000}
    out.seeds = {k: [base[k] + 1000 * config.seed + i for i in range(len(getattr(out, k)))] for k in base}
    return out


# ----------------------------------------------------------------------------------------------
# The edge model's trainable parts


def add_metaword(model: TextToImageLDM, token: str, init_word: str | None) -> int:
    """Add ``token`` to the edge tokenizer and text encoder (one new embedding row, initialised from
    ``init_word``'s first sub-token, or the mean embedding); returns its id."""
    tok = model.tokenizer
    if token in tok.get_vocab():
        raise ConfigError("align.metaword", token, "a token the edge tokenizer does not know yet",
                          "choose another metaword, e.g. '<subject*>'")
    tok.add_tokens([token])
    new_id = tok.convert_tokens_to_ids(token)
    te = model.text_encoder
    te.resize_token_embeddings(len(tok), mean_resizing=False)
    emb = te.get_input_embeddings().weight
    with torch.no_grad():
        init = None
        if init_word:
            ids = tok(init_word, add_special_tokens=False)["input_ids"]
            if ids and ids[0] != tok.unk_token_id:
                init = emb[ids[0]].clone()
        emb[new_id] = init if init is not None else emb[:new_id].mean(0)
    return int(new_id)


def set_metaword(model: TextToImageLDM, token: str, embedding: torch.Tensor) -> int:
    """Add ``token`` with a given embedding ``[D]`` (applying a pack)."""
    d = model.text_encoder.get_input_embeddings().weight.shape[1]
    if embedding.shape != (d,):
        raise ConfigError("pack.metaword_embedding", tuple(embedding.shape), f"a vector of the edge text encoder's "
                          f"width ({d})", "align again against this edge model")
    new_id = add_metaword(model, token, None)
    with torch.no_grad():
        model.text_encoder.get_input_embeddings().weight[new_id] = embedding.to(
            model.text_encoder.get_input_embeddings().weight.dtype)
    return new_id


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


class AlignedEdge:
    """An edge model with a knowledge pack applied: :meth:`sample` rewrites prompts with the metaword."""

    def __init__(self, model: TextToImageLDM, pack: KnowledgePack | None) -> None:
        self.model, self.pack = model, pack

    def prompts(self, prompts: Sequence[str]) -> list[str]:
        return [self.pack.rewrite(p) for p in prompts] if self.pack is not None else list(prompts)

    def sample(self, prompts: Sequence[str], seeds: Sequence[int], steps: int = 25, guidance: float = 1.5,
               batch_size: int = 64) -> torch.Tensor:
        return self.model.sample(self.prompts(prompts), seeds, steps=steps, guidance=guidance, batch_size=batch_size)

    def sample_latents(self, prompts: Sequence[str], seeds: Sequence[int], steps: int = 25, guidance: float = 1.5,
                       batch_size: int = 64) -> torch.Tensor:
        return self.model.sample_latents(self.prompts(prompts), seeds, steps=steps, guidance=guidance,
                                         batch_size=batch_size)


def apply_pack(edge: TextToImageLDM, pack: KnowledgePack, copy_model: bool = True) -> AlignedEdge:
    """Apply ``pack`` to ``edge`` (a deep copy unless ``copy_model=False``): checks that the pack was
    made for this edge model, adds the metaword, loads the G-LoRA."""
    fp = model_fingerprint(edge)
    if pack.base_model_hash != fp:
        raise ConfigError("pack.base_model_hash", pack.base_model_hash, f"the fingerprint of this edge model ({fp})",
                          "align again against this edge model, or load the edge model the pack was made for")
    model = copy.deepcopy(edge) if copy_model else edge
    if pack.metaword is not None and pack.metaword_embedding is not None:
        set_metaword(model, pack.metaword, pack.metaword_embedding)
    if pack.lora:
        load_lora_into_unet(model.unet, pack.lora, pack.lora_config or {}, adapter_name=ADAPTER_NAME)
    model.unet.eval()
    model.text_encoder.eval()
    return AlignedEdge(model, pack)


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
                 lr: float, config: AlignConfig, score: Callable[[], float], metaword_id: int | None,
                 params: list[torch.nn.Parameter], seed_salt: int) -> PhaseLog:
    """Optimise ``params`` (the metaword row's matrix, or the LoRA) with the noise-prediction loss on
    (``latents``, ``prompts``) for up to ``steps`` steps, scoring every ``eval_every``; keeps the best."""
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
    for step in range(steps):
        idx = torch.randint(0, n, (config.batch_size,), generator=g)
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=g)
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
        if (step + 1) % config.eval_every == 0 or step + 1 == steps:
            s = score()
            log.history.append({"step": step + 1, "score": s, "loss": float(loss.item())})
            if s > log.best_score:
                log.best_score, log.best_step, best, bad = s, step + 1, snapshot(), 0
            else:
                bad += 1
                if bad >= config.patience:
                    log.stopped = "early"
                    break
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
                 base_hash: str | None = None) -> MethodResult:
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
                                   lambda: val_score(aligned), token_id, [emb], 0x3E7A))
        pack.metaword_embedding = emb[token_id].detach().clone()
    if uses_lora:
        params = add_g_lora(model, config.lora_rank, config.alpha, config.seed)
        train_prompts = aligned.prompts(prompts.train)
        phases.append(_train_phase(model, "lora", latents, train_prompts, lora_steps, config.lr_lora, config,
                                   lambda: val_score(aligned), None, params, 0x10A))
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
