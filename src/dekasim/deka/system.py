"""DeKA-g as one system, from the cloud's prompt to the user's image.

The paper's diagram, and where each box lives::

    prompt ──▶ cloud LDM ──────────────────────────────────────────▶ reference image (end-to-end metric)
       │
       └─▶ edge LDM + pack (metaword + G-LoRA)  [G-KA: dekasim.generative.makd.apply_pack]
              └─▶ latents 48x8x8 ─▶ JSCC encoder + CALA bank (pack: bank + gate, base pinned by sha256)
                                        [T-KA: dekasim.deka.pack_codec.cala_codec_from_pack]
                     ─▶ OFDM / TDL channel ─▶ JSCC decoder ─▶ latents ─▶ user's image

A scenario (``[payload] kind = "deka"``) compares *systems*: each is a (which edge, which codec) pair,
a :class:`SystemSpec`. ``edge = "aligned"`` is the edge with the pack's metaword and G-LoRA;
``"unaligned"`` the edge as pre-installed. ``codec = "preinstalled"`` is the edge's pre-installed
JSCC, the base network the pack's bank adapts; ``bank = "pack"`` adds the pack's CALA bank + gate to it
(T-KA). Any registered codec can stand beside them (the digital chain, the ideal bound, ...).

:class:`DekaPayload` holds what the systems of a scenario share: the prompts (held-out prompts with
the pack's subject, never used to align it, plus control prompts without it), one seed per prompt,
the cloud's reference images and each edge's latents, all sampled through one
:class:`~dekasim.deka.generated.LatentCache`. :meth:`DekaPayload.view` gives one edge as a payload
source of the Monte-Carlo loop.

Pre-installed JSCC: the one the pack's bank names. The shipped pack's is the generic ``jscc_generic``
(rate-adaptive 1/24, 1/12, 1/6; trained on natural-photo latents, so it knows nothing of any model's
images), as in the paper's T-KA: the systems without the bank are the baselines *without knowledge
alignment*. A sweep may use any rate the pre-installed JSCC serves.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from dekasim.devices import resolve_dtype
from dekasim.errors import ConfigError
from dekasim.generative.consistency import ReferenceScorer

#: Which edge a system uses.
EDGES = ("aligned", "unaligned")
#: The codec name of the edge's pre-installed JSCC (the base of the pack's CALA bank).
PREINSTALLED = "preinstalled"
#: Where a system's CALA bank may come from.
BANKS = ("pack",)
#: The options a system with ``bank = "pack"`` takes (:func:`~dekasim.deka.pack_codec.cala_codec_from_pack`).
BANK_OPTIONS = ("condition_error_db",)
#: The shipped default knowledge pack (package data, made by ``dekasim align``; see its ``SHIPPED.json``).
DEFAULT_PACK_DIR = Path(__file__).resolve().parent / "data" / "pack"
#: ``[payload]`` keys of ``kind = "deka"`` and their defaults.
DEKA_DEFAULTS: dict[str, Any] = {"cloud": "cloud", "edge": "edge", "pack": "default", "base": "default",
                                 "n_subject_prompts": 48, "n_control_prompts": 16, "sample_steps": 25,
                                 "guidance": 1.5, "cache_dir": "runs/cache", "image_encoders": {},
                                 "prompts": None, "control_prompts": None, "dtype": "float32"}
#: Keys of :data:`DEKA_DEFAULTS` that enter a scenario's resolved options only when not at their default
#: (scenarios written before they existed keep their hash).
DEKA_OPTIONAL_KEYS = ("image_encoders", "prompts", "control_prompts", "dtype")


def resolve_pack_dir(spec: str | Path) -> Path:
    """``"default"`` -> the shipped pack; anything else a pack directory (checked to hold a manifest)."""
    d = DEFAULT_PACK_DIR if str(spec) == "default" else Path(spec)
    if not (d / "manifest.json").is_file():
        raise ConfigError("payload.pack", str(spec), "'default' or a knowledge-pack directory holding manifest.json",
                          "make one with `dekasim align --out DIR --cala CALA.json` and give DIR/pack")
    return d


def preinstalled_checkpoint(pack, base: str | Path = "default", pack_dir: str | Path | None = None) -> Path:
    """The manifest of the edge's pre-installed JSCC: ``base``, or by default the checkpoint the pack's CALA
    bank names (its sha256 is checked when the bank is attached), looked up among the shipped checkpoints,
    then in ``jscc/`` beside the pack directory (where ``dekasim build-pack`` puts the generic base it trains)."""
    from dekasim.codecs.jscc import CHECKPOINT_DIR

    if str(base) != "default":
        p = Path(base)
        if not p.with_suffix(".json").is_file():
            raise ConfigError("payload.base", str(base), "a JSCC checkpoint manifest (*.json)",
                              "give the checkpoint the pack's bank was trained on")
        return p.with_suffix(".json")
    if pack.cala is None:
        raise ConfigError("payload.pack", "a pack without a CALA bank", "a pack carrying a CALA bank (it names the "
                          "edge's pre-installed JSCC)", "align with `dekasim align --cala CALA.json`, or set "
                          "payload.base")
    name = Path(pack.cala.base["file"]).with_suffix(".json").name
    places = [CHECKPOINT_DIR] + ([Path(pack_dir).resolve().parent / "jscc"] if pack_dir is not None else [])
    for d in places:
        if (d / name).is_file():
            return d / name
    raise ConfigError("payload.base", "default", f"the pre-installed JSCC {name} the pack's CALA bank names, found "
                      f"in {' or '.join(str(d) for d in places)}", "set payload.base to its manifest (*.json)")


@dataclass(frozen=True)
class SystemFacts:
    """What a row says about its system: which edge, which knowledge was active, and which pack."""

    edge: str
    metaword: bool
    g_lora: bool
    cala: bool
    pack_sha256: str | None
    codec_checkpoint: str | None

    def as_row(self) -> dict[str, Any]:
        return {"edge": self.edge, "metaword": self.metaword, "g_lora": self.g_lora, "cala": self.cala,
                "pack_sha256": self.pack_sha256, "codec_checkpoint": self.codec_checkpoint}


class EdgeView:
    """One edge of a :class:`DekaPayload` as a payload source (the interface of
    :class:`~dekasim.deka.generated.GeneratedSource`, plus the cloud references).

    Items cycle through the prompts: item ``i`` is prompt ``i mod N``.
    """

    kind = "image"

    def __init__(self, payload: "DekaPayload", edge: str) -> None:
        if edge not in EDGES:
            raise ConfigError("systems.edge", edge, f"one of {list(EDGES)}")
        self.payload, self.edge = payload, edge
        self.latents = payload.latents[edge]
        self.images = payload.images[edge]

    def _idx(self, start: int, size: int) -> torch.Tensor:
        return torch.arange(start, start + size) % len(self.latents)

    def shape(self, representation: str) -> tuple[int, ...]:
        return tuple((self.latents if representation == "latent" else self.images).shape[1:])

    def items(self, start: int, size: int, representation: str = "image") -> torch.Tensor:
        return (self.latents if representation == "latent" else self.images)[self._idx(start, size)]

    def to_image(self, payload: torch.Tensor, representation: str = "image") -> torch.Tensor:
        if representation == "image":
            return payload
        with torch.no_grad():
            return self.payload.latent_map.to(payload.device).decode(payload.float()).float()

    def end_to_end_scores(self, user_images: torch.Tensor, start: int = 0) -> dict[str, Any]:
        """Per-pair consistency (:data:`CONSISTENCY_METRICS`, plus ``<name>_cosine`` per local image encoder
        of ``payload.image_encoders`` -> ``[n]``) of the user's images of items
        ``start .. start+n-1`` with the cloud's images of the same prompts and seeds."""
        return self.payload.scorer.score(user_images, self._idx(start, len(user_images)))

    def subject_mask(self, start: int, size: int) -> torch.Tensor:
        """``[size]`` bool: the item's prompt holds the pack's subject (False: a control prompt)."""
        return self.payload.is_subject[self._idx(start, size)]


class DekaPayload:
    """The prompts, references and edge latents every system of one DeKA-g scenario shares.

    :param options: the ``[payload]`` options (:data:`DEKA_DEFAULTS`).
    :param seed: the scenario seed; prompt ``i`` is sampled with seed ``seed * 1_000_003 + i`` by every model.
    :param sample: False loads and checks everything (models, pack, pre-installed JSCC, prompts, image
        encoders) but samples nothing: :meth:`shapes` and :meth:`build_codec` work, what needs the latents
        (:meth:`view`, the references) waits for :meth:`sample`. ``dekasim validate`` uses this.
    """

    def __init__(self, options: dict[str, Any], seed: int, device: str = "cpu", sample: bool = True) -> None:
        from dekasim.deka.generated import pack_sha256
        from dekasim.generative.aligned import apply_pack
        from dekasim.generative.pack import load_pack, model_fingerprint

        t0 = time.perf_counter()
        opts = {**DEKA_DEFAULTS, **options}
        self.options = opts
        self.cloud = _load(opts["cloud"], "payload.cloud")
        self.edge = _load(opts["edge"], "payload.edge")
        self.world = bool(self.edge.config.world)  # a model of the embedded world: its checker and encoder score
        self.pack_dir = resolve_pack_dir(opts["pack"])
        self.pack_sha256 = pack_sha256(self.pack_dir)
        edge_fingerprint = model_fingerprint(self.edge)  # of the edge before any pack (hashes every weight: once)
        self._edge_fingerprint = edge_fingerprint
        try:
            self.pack = load_pack(self.pack_dir, base_model_hash=edge_fingerprint)
        except ConfigError as err:
            raise ConfigError("payload.pack", str(opts["pack"]), f"a pack for this edge model ({err})",
                              "give the pack that `dekasim align` made against payload.edge") from None
        self.base_checkpoint = preinstalled_checkpoint(self.pack, opts["base"], self.pack_dir)
        self.aligned = apply_pack(self.edge, self.pack)
        subject, control = held_out_prompts(self.pack, self.edge, opts, self.pack_dir)
        self.prompts = subject + control
        self.is_subject = torch.tensor([True] * len(subject) + [False] * len(control))
        # sampling and scoring in payload.dtype (half precision on a GPU); fingerprints and packs are of the
        # float32 weights, the latents float32, the channel float32
        dtype = resolve_dtype(opts["dtype"], "payload.dtype")
        self._precision = "" if dtype == torch.float32 else f":{opts['dtype']}"
        for model in (self.edge, self.cloud, self.aligned.model):
            model.to(device=device, dtype=dtype)
        self.seeds = [seed * 1_000_003 + i for i in range(len(self.prompts))]
        self.latent_map = self.edge.latents
        self._encoders = _image_encoders(opts["image_encoders"], device, dtype)
        if not self.world and not self._encoders:
            raise ConfigError("payload.image_encoders", {}, "at least one image encoder (a model that is not of "
                              "the embedded world has no attribute checker: its images are scored by yours)",
                              'e.g. image_encoders = { dino = "models/dinov2-small", clip = "models/clip-vit" }')
        self.sampled = False
        self._load_s = time.perf_counter() - t0  # counted in generation["wall_s"]
        if sample:
            self.sample()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Item shape by representation (``"latent"``: the edge's latents; ``"image"``: what they decode to),
        known before :meth:`sample`."""
        side = int(self.edge.config.resolution_px)  # what its latent map decodes to: no decode needed
        return {"latent": self.latent_map_shape, "image": (3, side, side)}

    def sample(self) -> None:
        """Sample (or read from the cache) every edge's latents and the cloud's references (once)."""
        from dekasim.deka.generated import LatentCache, SampleGroup, generate_latents
        from dekasim.generative.pack import model_fingerprint

        if self.sampled:
            return
        t0 = time.perf_counter()
        opts = self.options
        steps, guidance = int(opts["sample_steps"]), float(opts["guidance"])
        self.cache = LatentCache(opts["cache_dir"])
        kw = {"steps": steps, "guidance": guidance, "cache": self.cache}
        edge_key, p = self._edge_fingerprint + self._precision, self._precision  # half precision samples apart
        self.latents = {
            "unaligned": generate_latents(self.edge, self.prompts, self.seeds,
                                          group=SampleGroup(edge_key, None, steps, guidance), **kw),
            "aligned": generate_latents(self.aligned, self.prompts, self.seeds,
                                        group=SampleGroup(edge_key, self.pack.generation_fingerprint(),
                                                          steps, guidance), **kw)}
        cloud_latents = generate_latents(self.cloud, self.prompts, self.seeds,
                                         group=SampleGroup(model_fingerprint(self.cloud) + p, None, steps, guidance),
                                         **kw)
        self.images = {k: _decode(self.latent_map, v) for k, v in self.latents.items()}
        self.cloud_images = _decode(self.cloud.latents, cloud_latents)
        if self.world:
            self.scorer = ReferenceScorer(self.cloud_images, extra_encoders=self._encoders)
        else:
            from dekasim.metrics.consistency import EncoderReferences

            self.scorer = EncoderReferences(self.cloud_images, self._encoders, "payload.image_encoders")
        self.generation = {**self.cache.stats(), "wall_s": round(self._load_s + time.perf_counter() - t0, 3)}
        self.sampled = True

    def view(self, edge: str) -> EdgeView:
        if not self.sampled:
            raise RuntimeError("DekaPayload.view: call sample() first (built with sample=False)")
        return EdgeView(self, edge)

    def facts(self, spec: "SystemSpec", codec: Any) -> SystemFacts:
        aligned = spec.edge == "aligned"
        checkpoint = (getattr(codec, "manifest", None) or {}).get("file")
        if spec.codec == PREINSTALLED:
            checkpoint = self.base_checkpoint.with_suffix(".safetensors").name
        pack = self.pack
        return SystemFacts(edge=spec.edge, metaword=aligned and (pack.metaword is not None or any(
                               p.metaword is not None for p in pack.parts)),
                           g_lora=aligned and pack.lora_mode != "none", cala=spec.bank == "pack",
                           pack_sha256=self.pack_sha256 if aligned or spec.bank == "pack" else None,
                           codec_checkpoint=checkpoint)

    def build_codec(self, spec: "SystemSpec", shape: tuple[int, ...], bandwidth_ratio: float):
        """The codec of ``spec``: the pre-installed JSCC (with the pack's bank when ``bank = "pack"``), or a
        registered codec built as in any scenario."""
        from dekasim.codecs import build_codec

        if spec.codec != PREINSTALLED:
            return build_codec(spec.codec, shape, self.equal_budget_ratio(shape, bandwidth_ratio), **spec.options)
        from dekasim.codecs.jscc import Arch, read_checkpoint

        base_manifest, _ = read_checkpoint(self.base_checkpoint, field="payload.base")
        arch = Arch.from_json(base_manifest["arch"])
        n_source = math.prod(arch.payload_shape)
        n = bandwidth_ratio * n_source
        if arch.payload_shape != tuple(shape):
            raise ConfigError("payload.base", self.base_checkpoint.name, f"a pre-installed JSCC for the edge's latents "
                              f"{tuple(shape)}, not {arch.payload_shape}", "give the pack made for this edge "
                              "(`dekasim build-pack` trains its generic JSCC), or set payload.base to one")
        if not arch.serves(round(n)):  # as every codec: round(ratio x values) symbols
            ratios = ", ".join(str(Fraction(k, n_source)) for k in arch.served)
            raise ConfigError("sweep.bandwidth_ratio", bandwidth_ratio,
                              f"a rate the pre-installed JSCC {self.base_checkpoint.name} serves for payload "
                              f"{arch.payload_shape}: {ratios}", "set sweep.bandwidth_ratio to one of them")
        if spec.bank == "pack":
            from dekasim.deka.pack_codec import cala_codec_from_pack

            unknown = sorted(set(spec.options) - set(BANK_OPTIONS))
            if unknown:
                raise ConfigError(unknown[0], spec.options[unknown[0]], f"an option of the pack's CALA bank: "
                                  f"{list(BANK_OPTIONS)}", "remove it (the bank's other settings are in the pack)")
            codec = cala_codec_from_pack(self.pack, self.base_checkpoint, **spec.options)
            if abs(codec.bandwidth_ratio - bandwidth_ratio) > 1e-9:
                codec.set_rate(bandwidth_ratio)
        else:
            codec = build_codec(base_manifest["codec"], shape, bandwidth_ratio, checkpoint=str(self.base_checkpoint),
                                **spec.options)
        return codec

    def equal_budget_ratio(self, shape: tuple[int, ...], bandwidth_ratio: float) -> float:
        """The bandwidth ratio at which a codec of items ``shape`` spends the channel uses per image of the
        sweep's ratio on the edge's latents: the sweep's ratio is per latent value, and a codec of the
        *image* (the digital chain, the ideal bound) gets ``round(ratio x latent values)`` channel uses too.
        For the embedded world (48 x 8 x 8 latents of 3 x 32 x 32 images) both counts are equal and the
        ratio is returned unchanged."""
        n_latent = math.prod(self.latent_map_shape)
        n_items = math.prod(shape)
        if n_items == n_latent:
            return bandwidth_ratio
        return round(bandwidth_ratio * n_latent) / n_items

    @property
    def latent_map_shape(self) -> tuple[int, ...]:
        """The edge's latent shape (that of every sampled latent; known before :meth:`sample`)."""
        return tuple(int(v) for v in self.edge.latent_shape)

    def no_channel_consistency(self) -> dict[str, Any]:
        """Each edge's own images against the cloud's (no channel): what alignment alone reaches, per split."""
        from dekasim.metrics.consistency import summarise

        out: dict[str, Any] = {}
        index = torch.arange(len(self.prompts))
        for edge in EDGES:
            scores = self.scorer.score(self.images[edge], index)
            out[edge] = {}
            for split, mask in (("subject", self.is_subject), ("control", ~self.is_subject)):
                if mask.any():
                    out[edge][split] = {m: summarise(scores[m][mask.numpy()], binary=m == "all_attributes_agree",
                                                     name=m)
                                        .as_dict() for m in self.scorer.metrics}
        return out


#: The end-to-end metrics a DeKA-g row reports (user's image against the cloud's, same prompt and seed).
CONSISTENCY_METRICS = ReferenceScorer.METRICS


def _image_encoders(spec: dict[str, str], device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """``{name: local model directory}`` -> ``{name: encoder}`` (DINO/CLIP from local weights only:
    :func:`~dekasim.metrics.consistency.local_image_encoder`); rows get ``<name>_cosine``."""
    from dekasim.metrics.consistency import local_image_encoder

    out = {}
    for name, path in spec.items():
        try:
            out[name] = local_image_encoder(path, device=device, dtype=dtype)
        except ConfigError as err:
            raise ConfigError(f"payload.image_encoders.{name}", err.value, err.expected, err.fix) from None
    return out


def _decode(latent_map, latents: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Images ``[N, 3, R, R]`` float32 on the CPU from latents (decoded where the latent map lives)."""
    device = next(latent_map.parameters(), torch.empty(0)).device
    with torch.no_grad():
        return torch.cat([latent_map.decode(latents[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(latents), batch_size)])


def held_out_prompts(pack, edge, opts: dict[str, Any], pack_dir: Path) -> tuple[list[str], list[str]]:
    """The scenario's subject prompts (holding the pack's subject, never used to align it) and control prompts.

    Without ``payload.prompts``: the embedded world's test and control prompts of the pack's alignment
    (recomputed from the alignment settings its manifest records). With ``payload.prompts = FILE``: the
    file's prompts, less those the pack trained or validated on (recorded in its manifest: packs of
    ``dekasim align --prompts``; for a world pack, recomputed); ``payload.control_prompts = FILE`` gives the
    control prompts. ``n_subject_prompts`` / ``n_control_prompts`` take the first ones (with files: at most).
    """
    from dekasim.generative.prompts import read_prompt_file

    info = pack.info or {}
    record = info.get("prompts") or {"source": "world"}
    n_s, n_c = int(opts["n_subject_prompts"]), int(opts["n_control_prompts"])
    subjects = pack.subjects
    world_prompts = None
    if record.get("source", "world") == "world":
        cfg = info.get("config")
        if not isinstance(cfg, dict) or not edge.config.world:
            raise ConfigError("payload.pack", str(pack_dir), "a pack written by `dekasim align` (its manifest records "
                              "the alignment's prompts, hence which prompts it never saw)")
        world_prompts = _world_prompts(edge, cfg, subjects)
    if opts["prompts"] is None:
        if world_prompts is None:
            raise ConfigError("payload.prompts", None, "a prompt file (one prompt per line, each holding the pack's "
                              f"subject '{', '.join(subjects)}'): the pack was aligned on your prompts, not the world's",
                              "set payload.prompts to your prompt file (its test prompts are used)")
        if not 1 <= n_s <= len(world_prompts.test):
            raise ConfigError("payload.n_subject_prompts", n_s, f"1 .. {len(world_prompts.test)} (the held-out "
                              f"prompts with '{', '.join(subjects)}' the pack's alignment never used)")
        if not 0 <= n_c <= len(world_prompts.control):
            raise ConfigError("payload.n_control_prompts", n_c, f"0 .. {len(world_prompts.control)}")
        if opts["control_prompts"] is None:
            return world_prompts.test[:n_s], world_prompts.control[:n_c]
        subject = world_prompts.test[:n_s]
    else:
        prompts = read_prompt_file(opts["prompts"], "payload.prompts")
        _check_subjects(prompts, subjects, "payload.prompts")
        records = list((record.get("subjects") or {}).values()) or [record]  # several subjects: each one's
        seen = set(world_prompts.train + world_prompts.val) if world_prompts is not None else \
            {p for r in records for p in list(r.get("train", [])) + list(r.get("val", []))}
        held = [p for p in prompts if p not in seen]
        if not held:
            raise ConfigError("payload.prompts", opts["prompts"], "prompts the pack's alignment never trained or "
                              f"validated on ({len(prompts)} of the file's prompts were)", "add held-out prompts")
        subject = held[:n_s]
    control: list[str] = []
    if opts["control_prompts"] is not None:
        control = read_prompt_file(opts["control_prompts"], "payload.control_prompts")[:n_c]
        _check_subjects(control, subjects, "payload.control_prompts", want=False)
    return subject, control


def _check_subjects(prompts: list[str], subjects: list[str], field: str, want: bool = True) -> None:
    """Each subject prompt names one of ``subjects`` (``want=False``: no control prompt names any)."""
    from dekasim.generative.pack import names_subject
    from dekasim.generative.prompts import check_subject

    if len(subjects) <= 1:
        check_subject(prompts, subjects[0] if subjects else "", field, want=want)
        return
    odd = [p for p in prompts if any(names_subject(p, s) for s in subjects) != want]
    if odd:
        what = "naming one of" if want else "naming none of"
        raise ConfigError(field, f"{len(odd)} prompt(s), e.g. {odd[0]!r}", f"prompts each {what} the pack's subjects "
                          f"{subjects}", "move these prompts to the other file")


def _world_prompts(edge, cfg: dict[str, Any], subjects: list[str]):
    """The world's alignment prompts of a pack: one subject's (:func:`alignment_prompts`) or, for several,
    their test prompts interleaved (one of each subject in turn), train and validation prompts pooled, and
    control prompts naming none of them."""
    from dekasim.generative.align_config import AlignConfig, AlignmentPrompts, alignment_prompts, control_prompts
    from dekasim.generative.models import model_world

    world = model_world(edge)
    if len(subjects) <= 1:
        return alignment_prompts(world, AlignConfig(**cfg))
    each = [alignment_prompts(world, AlignConfig(**{**cfg, "subject": s, "metaword": None})) for s in subjects]
    longest = max(len(e.test) for e in each)
    test = [e.test[i] for i in range(longest) for e in each if i < len(e.test)]
    control, _ = control_prompts(world, AlignConfig(**cfg), subjects, "test")
    return AlignmentPrompts(train=[p for e in each for p in e.train], val=[p for e in each for p in e.val],
                            test=test, control=control)


def _load(spec: str, field: str):
    from dekasim.generative.models import load_model

    try:
        return load_model(spec)
    except ConfigError as err:
        raise ConfigError(field, err.value, err.expected, err.fix) from None


@dataclass(frozen=True)
class SystemSpec:
    """One system of a DeKA-g scenario: which edge, which codec (and whether its bank comes from the pack).

    It has the fields of :class:`~dekasim.scenarios.schema.CodecSpec` (``codec``, ``label``, ``options``),
    so a system goes wherever a codec entry goes, plus ``edge`` and ``bank``.
    """

    codec: str
    label: str
    options: dict[str, Any]
    edge: str = "aligned"
    bank: str | None = None
