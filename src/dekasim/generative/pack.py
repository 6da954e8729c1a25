"""The knowledge pack: what MAKD's cloud-side alignment sends to the edge.

A pack holds a **metaword** (one learned token embedding for the edge text encoder), a **G-LoRA** (peft
LoRA weights on the edge UNet's attention projections) and optionally a **CALA bank + gate** (the
condition-aware adapters of a frozen DeepJSCC, :mod:`dekasim.codecs.cala`). On disk it is a directory
in diffusers' own layouts, plus a JSON manifest that makes it verifiable::

    pack_dir/
      manifest.json                       compact JSON: kind, format version, base-model hash, metaword, subject,
                                          placement, LoRA config, info, bits, n_params, payload_bytes, size_bytes,
                                          per file: size, sha256, quantisation, tensors (name -> shape, dtype),
                                          and, with a CALA bank only, ``cala``: layers, num_adapters, gate_hidden,
                                          gate, arch, bandwidth_ratio, base (file, sha256, codec), source, and
                                          where not at their defaults ``affine`` (true), ``rank`` (> 1),
                                          ``factor`` ("cp", "scale", "kron") and ``shared_rank`` (> 0)
      learned_embeds.safetensors          textual-inversion layout: {metaword: embedding [D] float32}
      pytorch_lora_weights.safetensors    unquantised LoRA, the layout of diffusers' ``save_lora_adapter``
      pytorch_lora_weights.q{bits}.safetensors   ... or the LoRA quantised to 8, 4 or 2 bits
      cala_bank.safetensors               CALA bank + gate, float32, keys of ``CALABank.state_dict()``:
                                          a.<layer_key> [K, fan_in], b.<layer_key> [K, out] per adapted layer
                                          (layer_key: "enc.res2" -> "enc_res2"; K r + s rows at rank r with
                                          s shared components; with factor "cp" a.* is [K r, in] and
                                          spatial.<layer_key> [K r, k*k]; with "scale" a.* is [K r, in];
                                          with "kron" a.* [K r, o1 i1] and b.* [K r, o2 i2]),
                                          with ``affine`` also scale.<layer_key> and shift.<layer_key> [K, out],
                                          gate.0.weight [H, 10], gate.0.bias [H], gate.2.weight [K, H],
                                          gate.2.bias [K]
      cala_bank.q{bits}.safetensors       ... or the adapters (a.*, b.*, spatial.*, scale.*, shift.*) quantised
                                          per row (one row per adapter component) and the gate in float16
                                          (manifest: ``"stored": "quantised"`` / ``"float16"``)

**Several subjects** (format version 2): a pack may align several subjects at once
(:class:`SubjectPart`, one metaword each). Its G-LoRA is then either *joint* (one LoRA trained on all
subjects' S_CG, in ``pytorch_lora_weights[.q{bits}].safetensors`` as above) or *per subject* (one LoRA per
subject, each a named peft adapter on the edge UNet, routed by the subjects a prompt names)::

      learned_embeds-<subject>.safetensors              {metaword: embedding [D] float32}, one file per subject
      pytorch_lora_weights-<subject>[.q{bits}].safetensors   per-subject G-LoRA (the single-subject layouts)

and the manifest lists ``subjects`` (per subject: ``subject``, ``metaword``, ``embeds`` and ``lora`` file
names) and ``lora_mode`` (``"joint"``, ``"per_subject"`` or ``"none"``). diffusers loads them file by file:
``pipe.load_textual_inversion(pack_dir, weight_name="learned_embeds-triangle.safetensors")`` and
``pipe.load_lora_weights(pack_dir, weight_name="pytorch_lora_weights-triangle.safetensors",
adapter_name="triangle")``. Single-subject packs keep format version 1, byte for byte.

LoRA keys are those diffusers 0.42 writes with ``unet.save_lora_adapter`` (no adapter name), e.g.
``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight`` (``[r, in]``) and
``....to_q.lora_B.weight`` (``[out, r]``). The unquantised file is a *pipeline* LoRA file, as
``StableDiffusionPipeline.save_lora_weights`` writes one: every key prefixed ``unet.``, and the LoRA config
in its safetensors header (``lora_adapter_metadata``, keys prefixed ``unet.`` as well). So a plain
diffusers pipeline of the edge folder takes a pack directory as it is::

    pipe.load_textual_inversion(pack_dir)          # learned_embeds.safetensors: the metaword
    pipe.load_lora_weights(pack_dir)               # pytorch_lora_weights.safetensors: the G-LoRA

(or, on the UNet alone, ``unet.load_lora_adapter(pack_dir, weight_name="pytorch_lora_weights.safetensors",
prefix="unet")``). Packs written before the prefix (the manifest lists each file's tensor names) load
alike; in memory (:attr:`KnowledgePack.lora`) the keys are always the UNet's own.
:func:`load_lora_into_unet` loads a state dict and checks that every tensor landed.

Quantisation (``bits`` in {8, 4, 2}) is per output row (first dimension), asymmetric and uniform:
``x[i, j] ~= codes[i, j] * scale[i] + zero[i]`` with ``codes`` in ``[0, 2**bits - 1]``, ``scale`` and
``zero`` (the row minimum) in float16, and the codes of the flattened matrix packed into bytes
(``8 // bits`` codes per byte, the first code in the lowest bits). The metaword embedding is never
quantised: it is ``D`` float32 values.

**CALA bank.** A pack may carry a CALA bank + gate (:class:`CALABankPart`); attaching one from a CALA
checkpoint, rebuilding the codec from it and pricing a pack's downlink live where the pack meets the
codecs, in :mod:`dekasim.deka.pack_codec` (``with_cala``, ``cala_codec_from_pack``, ``pack_downlink_cost``).

Sizes: ``size_bytes`` counts the files as stored (safetensors headers and manifest included);
``payload_bytes`` counts the tensor data alone. For small LoRAs the headers dominate (each quantised
tensor has three ~90-character keys): on the toy UNet an r=2 G-LoRA's files *grow* when quantised
(52 KB float32 -> 71/68/67 KB at 8/4/2 bits) while its payload shrinks (23 -> 12/9/8 KB); at r=8 both
shrink (122 -> 90/78/72 KB files, 93 -> 31/19/13 KB payload).

Loading refuses, with a :class:`~dekasim.errors.ConfigError` naming the field, a pack that is incomplete,
altered (sha256), inconsistent with its manifest (shapes), of an unknown kind or version, or made for
another base model; a pack's CALA bank is refused on another base JSCC. Only JSON and safetensors are read;
nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from dekasim.checksums import sha256_file
from dekasim.errors import ConfigError
from dekasim.generative.lora import (LORA_METADATA_KEY, load_lora_into_unet, lora_config_dict, lora_state_dict,
                                    peft_kwargs)
from dekasim.generative.quantise import (BITS, QUANT_SCHEME, _check_bits, _n_packed_bytes, dequantise_tensor,
                                        pack_codes, quantise_tensor, unpack_codes)

#: The LoRA helpers (:mod:`dekasim.generative.lora`) and the quantisation (:mod:`dekasim.generative.quantise`)
#: live beside the pack; their names stay importable from here.
__all__ = ["MULTI_FORMAT_VERSION", "SubjectPart", "embeds_name", "insert_metaword", "names_subject",
           "subject_lora_name", "BITS", "CALA_NAME", "EMBEDS_NAME", "FORMAT_VERSION", "KIND", "LORA_METADATA_KEY", "LORA_NAME", "LORA_PREFIX",
           "MANIFEST_NAME", "PLACEMENTS", "QUANT_SCHEME", "CALABankPart", "KnowledgePack", "cala_file_name",
           "dequantise_tensor", "load_lora_into_unet", "load_pack", "lora_config_dict", "lora_state_dict",
           "model_fingerprint", "pack_codes", "pack_size_bytes", "quantise_tensor", "quantised_cala_name",
           "quantised_lora_name", "read_manifest", "save_pack", "unpack_codes"]

FORMAT_VERSION = 1
#: The format version of packs with several subjects (:attr:`KnowledgePack.parts`); readers take both.
MULTI_FORMAT_VERSION = 2
KIND = "dekasim-knowledge-pack"
MANIFEST_NAME = "manifest.json"
EMBEDS_NAME = "learned_embeds.safetensors"
LORA_NAME = "pytorch_lora_weights.safetensors"
PLACEMENTS = ("before_subject", "prefix")
#: the unquantised CALA bank + gate (float32); quantised: :func:`quantised_cala_name`.
CALA_NAME = "cala_bank.safetensors"
#: Key prefix of the unquantised LoRA file (a pipeline-level LoRA file: ``pipe.load_lora_weights`` takes the
#: keys under ``unet.``); packs written before it carry the UNet's own keys and load alike.
LORA_PREFIX = "unet."
#: Inputs of the CALA gate (the condition features of :func:`dekasim.codecs.jscc.condition_features`).
CALA_GATE_INPUTS = 10


def quantised_lora_name(bits: int) -> str:
    """File name of the LoRA quantised to ``bits`` bits."""
    return f"pytorch_lora_weights.q{bits}.safetensors"


def quantised_cala_name(bits: int) -> str:
    """File name of the CALA bank with its adapters quantised to ``bits`` bits (gate in float16)."""
    return f"cala_bank.q{bits}.safetensors"


def cala_file_name(bits: int | None) -> str:
    """File name of a pack's CALA bank at ``bits`` (None: unquantised)."""
    return CALA_NAME if bits is None else quantised_cala_name(bits)


# ----------------------------------------------------------------------------------------------
# The CALA part


@dataclass
class CALABankPart:
    """A CALA bank + gate (:class:`~dekasim.codecs.cala.CALABank`) and the base it adapts.

    :param tensors: the bank's state dict, floating tensors: ``a.<layer_key>`` ``[K, fan_in]`` and
        ``b.<layer_key>`` ``[K, out]`` per adapted layer (``layer_key``: the layer name with ``.`` -> ``_``,
        e.g. ``enc_res2``; ``fan_in = in_channels * k * k``), with ``affine`` also ``scale.<layer_key>`` and
        ``shift.<layer_key>`` ``[K, out]``, ``gate.0.weight`` ``[H, 10]``,
        ``gate.0.bias`` ``[H]``, ``gate.2.weight`` ``[K, H]``, ``gate.2.bias`` ``[K]``.
    :param layers: adapted layer names, e.g. ``["enc.res2", "enc.out", "dec.inp"]``.
    :param num_adapters: ``K``.
    :param gate_hidden: ``H``.
    :param gate: the gate's kind, ``"mlp"`` or ``"snr_anchored"`` (:class:`~dekasim.codecs.cala.CALABank`).
    :param arch: the base network's architecture (``Arch.to_json()``: payload_shape, n_symbols, ...).
    :param bandwidth_ratio: of the codec: complex channel uses per real payload sample.
    :param base: the frozen base JSCC checkpoint: ``{"file": "jscc_base-....safetensors", "sha256":
        <sha256 of that file>, "codec": "jscc"}``.
    :param source: ``{"file", "sha256"}`` of the CALA checkpoint the bank came from, or None.
    :param affine: each adapter also scales and shifts its layers' output channels
        (:class:`~dekasim.codecs.cala.CALABank`'s ``affine``).
    :param rank: the rank ``r`` of each adapter: ``a.*`` and ``b.*`` have ``K r`` rows.
    :param factor: ``"full"``, ``"cp"`` (then ``a.*`` is ``[K r, in]`` and ``spatial.<layer_key>``
        ``[K r, k * k]``), ``"scale"`` (``a.*`` ``[K r, in]``, no spatial kernels; the components rescale
        the base's filters) or ``"kron"`` (Kronecker factors); :class:`~dekasim.codecs.cala.CALABank`.
    :param shared_rank: ``s`` ungated components per layer, the last ``s`` rows of ``a.*``, ``b.*`` and
        ``spatial.*`` (:class:`~dekasim.codecs.cala.CALABank`'s ``shared_rank``).
    """

    tensors: dict[str, torch.Tensor]
    layers: list[str]
    num_adapters: int
    gate_hidden: int
    arch: dict[str, Any]
    bandwidth_ratio: float
    base: dict[str, Any]
    source: dict[str, Any] | None = None
    gate: str = "mlp"
    affine: bool = False
    rank: int = 1
    factor: str = "full"
    shared_rank: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def expected_shapes(self) -> dict[str, list[int] | None]:
        """Tensor name -> shape (None where only the rank and first dimension are fixed: the adapters)."""
        k, h = self.num_adapters, self.gate_hidden
        out: dict[str, list[int] | None] = {}
        kinds = ("a", "b") + (("spatial",) if self.factor == "cp" else ()) + \
            (("scale", "shift") if self.affine else ())
        for layer in self.layers:
            for kind in kinds:
                out[f"{kind}.{layer.replace('.', '_')}"] = None
        out.update({"gate.0.weight": [h, CALA_GATE_INPUTS], "gate.0.bias": [h], "gate.2.weight": [k, h],
                    "gate.2.bias": [k]})
        return out

    def validate(self) -> None:
        """Reject inconsistent fields (ConfigError naming ``pack.cala.<field>``)."""
        for name in ("num_adapters", "gate_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"pack.cala.{name}", v, "a positive integer")
        if self.gate not in ("mlp", "snr_anchored"):
            raise ConfigError("pack.cala.gate", self.gate, "'mlp' or 'snr_anchored'")
        if not isinstance(self.affine, bool):
            raise ConfigError("pack.cala.affine", self.affine, "true or false")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError("pack.cala.rank", self.rank, "a positive integer")
        if self.factor not in ("full", "cp", "scale", "kron"):
            raise ConfigError("pack.cala.factor", self.factor, "'full', 'cp', 'scale' or 'kron'")
        if isinstance(self.shared_rank, bool) or not isinstance(self.shared_rank, int) or self.shared_rank < 0:
            raise ConfigError("pack.cala.shared_rank", self.shared_rank, "a non-negative integer")
        if not isinstance(self.layers, list) or not self.layers or not all(isinstance(n, str) for n in self.layers):
            raise ConfigError("pack.cala.layers", self.layers, "a non-empty list of layer names, e.g. ['enc.res2']")
        sha = self.base.get("sha256") if isinstance(self.base, dict) else None
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha) or not self.base.get("file"):
            raise ConfigError("pack.cala.base", self.base, "{'file': ..., 'sha256': <64 hex digits>} of the base "
                              "JSCC checkpoint", "attach the bank with with_cala(pack, 'cala-....json')")
        if not isinstance(self.arch, dict) or not {"payload_shape", "n_symbols", "width"} <= set(self.arch):
            raise ConfigError("pack.cala.arch", self.arch, "the base network's Arch.to_json()")
        r = self.bandwidth_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < math.inf:
            raise ConfigError("pack.cala.bandwidth_ratio", r, "a positive number (channel uses per real sample)")
        self._validate_tensors()

    def _validate_tensors(self) -> None:
        want = self.expected_shapes()
        if not isinstance(self.tensors, dict) or set(self.tensors) != set(want):
            got = sorted(self.tensors) if isinstance(self.tensors, dict) else type(self.tensors).__name__
            raise ConfigError("pack.cala.tensors", got, f"exactly the bank's tensors {sorted(want)}")
        for name, shape in want.items():
            t = self.tensors[name]
            if not torch.is_tensor(t) or not t.is_floating_point():
                raise ConfigError(f"pack.cala.tensors[{name}]", type(t).__name__, "a floating-point tensor")
            rows = self.num_adapters if name.startswith(("scale.", "shift.")) else \
                self.num_adapters * self.rank + self.shared_rank
            ok = list(t.shape) == shape if shape is not None else (t.ndim == 2 and t.shape[0] == rows)
            if not ok:
                raise ConfigError(f"pack.cala.tensors[{name}].shape", list(t.shape),
                                  f"{shape if shape is not None else f'[{rows}, n]'} "
                                  f"(num_adapters={self.num_adapters}, gate_hidden={self.gate_hidden})")

    def n_params(self) -> int:
        """Numbers in the bank and gate."""
        return sum(t.numel() for t in self.tensors.values())

    def settings(self) -> dict[str, Any]:
        """The JSON-able ``cala`` section of the pack manifest (everything but the tensors)."""
        out = {"layers": list(self.layers), "num_adapters": self.num_adapters, "gate_hidden": self.gate_hidden,
               "gate": self.gate, "arch": self.arch, "bandwidth_ratio": self.bandwidth_ratio, "base": dict(self.base),
               "source": None if self.source is None else dict(self.source)}
        if self.affine:  # absent at their defaults: manifests of earlier banks stay as they were
            out["affine"] = True
        if self.rank != 1:
            out["rank"] = self.rank
        if self.factor != "full":
            out["factor"] = self.factor
        if self.shared_rank:
            out["shared_rank"] = self.shared_rank
        return out

    @staticmethod
    def from_settings(settings: Mapping[str, Any], tensors: dict[str, torch.Tensor]) -> "CALABankPart":
        """Inverse of :meth:`settings` (ConfigError ``pack.cala`` for a section that is not one)."""
        keys = ("layers", "num_adapters", "gate_hidden", "arch", "bandwidth_ratio", "base")
        if not isinstance(settings, Mapping) or any(k not in settings for k in keys):
            raise ConfigError("pack.cala", settings, f"a manifest section with {list(keys)}", "save the pack again")
        return CALABankPart(tensors=tensors, layers=settings["layers"], num_adapters=settings["num_adapters"],
                            gate_hidden=settings["gate_hidden"], arch=settings["arch"],
                            bandwidth_ratio=settings["bandwidth_ratio"], base=settings["base"],
                            source=settings.get("source"), gate=settings.get("gate", "mlp"),
                            affine=settings.get("affine", False), rank=settings.get("rank", 1),
                            factor=settings.get("factor", "full"), shared_rank=settings.get("shared_rank", 0))



# ----------------------------------------------------------------------------------------------
# The pack


def file_safe(subject: str) -> str:
    """``subject`` as a file-name and adapter-name fragment (``"sks dog"`` -> ``"sks_dog"``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", subject.strip()) or "_"


def embeds_name(subject: str) -> str:
    """The metaword file of ``subject`` in a multi-subject pack."""
    return f"learned_embeds-{file_safe(subject)}.safetensors"


def subject_lora_name(subject: str, bits: int | None) -> str:
    """The per-subject G-LoRA file of ``subject`` in a multi-subject pack (quantised: ``.q{bits}``)."""
    return f"pytorch_lora_weights-{file_safe(subject)}" + (f".q{bits}" if bits is not None else "") + ".safetensors"


def insert_metaword(prompt: str, metaword: str | None, subject: str | None, placement: str) -> str:
    """``prompt`` with ``metaword`` inserted (see :meth:`KnowledgePack.rewrite` for the rules)."""
    if metaword is None or not prompt.strip():
        return prompt
    if re.search(rf"(?<!\S){re.escape(metaword)}(?!\S)", prompt):
        return prompt
    match = None
    if subject:
        match = names_subject(prompt, subject)
        if match is None:
            return prompt
    if placement == "prefix":
        return f"{metaword} {prompt}"
    if match is None:  # before_subject without a subject: nowhere to put it
        return prompt
    return f"{prompt[:match.start()]}{metaword} {prompt[match.start():]}"


def names_subject(prompt: str, subject: str) -> re.Match | None:
    """The first whole-word, case-insensitive occurrence of ``subject`` in ``prompt`` (None: not there)."""
    return re.search(rf"(?<!\w){re.escape(subject)}(?!\w)", prompt, flags=re.IGNORECASE)


@dataclass
class SubjectPart:
    """One subject of a multi-subject pack.

    :param subject: the caption word, e.g. ``"purple"``.
    :param metaword: its token, e.g. ``"<purple*>"``, with ``metaword_embedding`` ``[D]`` float32 (or neither).
    :param lora, lora_config: this subject's own G-LoRA (a pack whose ``lora_mode`` is ``"per_subject"``);
        None when the pack's G-LoRA is joint.
    """

    subject: str
    metaword: str | None = None
    metaword_embedding: torch.Tensor | None = None
    lora: dict[str, torch.Tensor] | None = None
    lora_config: dict | None = None


@dataclass
class KnowledgePack:
    """An alignment result for one edge model.

    :param base_model_hash: :func:`model_fingerprint` of the edge model the pack applies to.
    :param metaword: the new token, e.g. ``"<triangle*>"`` (no whitespace).
    :param metaword_embedding: its embedding ``[D]`` float32, ``D`` = the edge text encoder's width.
    :param subject: the caption word the metaword goes with, e.g. ``"triangle"``.
    :param placement: ``"before_subject"`` (``"a red <triangle*> triangle"``) or ``"prefix"``
        (``"<triangle*> a red triangle"``).
    :param lora: LoRA state dict in diffusers' layout (see the module docstring), tensors ``[r, in]`` /
        ``[out, r]``.
    :param lora_config: JSON-able peft ``LoraConfig`` fields, e.g.
        ``{"r": 8, "lora_alpha": 8, "target_modules": ["to_k", "to_out.0", "to_q", "to_v"]}``.
    :param info: JSON-able facts (method, steps, losses, ...).
    :param cala: a CALA bank + gate for the edge's DeepJSCC (:func:`with_cala`), or None.
    :param parts: several subjects (:class:`SubjectPart`): then ``metaword``, ``metaword_embedding`` and
        ``subject`` are None, and ``lora`` is the joint G-LoRA (no part has its own) or None (each part may
        carry its own: ``lora_mode == "per_subject"``).
    """

    base_model_hash: str
    metaword: str | None = None
    metaword_embedding: torch.Tensor | None = None
    subject: str | None = None
    placement: str = "before_subject"
    lora: dict[str, torch.Tensor] | None = None
    lora_config: dict | None = None
    info: dict = field(default_factory=dict)
    cala: CALABankPart | None = None
    parts: list[SubjectPart] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def subjects(self) -> list[str]:
        """The subjects this pack aligns, in order."""
        if self.parts:
            return [p.subject for p in self.parts]
        return [self.subject] if self.subject else []

    @property
    def lora_mode(self) -> str:
        """``"joint"`` (one G-LoRA for every subject, or the single subject's), ``"per_subject"`` or ``"none"``."""
        if self.lora is not None:
            return "joint"
        return "per_subject" if any(p.lora is not None for p in self.parts) else "none"

    def select(self, subjects: list[str] | tuple[str, ...]) -> "KnowledgePack":
        """This pack restricted to ``subjects`` (a multi-subject pack; a joint G-LoRA stays whole, as it
        cannot be split by subject).

        :raises ConfigError: a subject the pack does not align, or an empty selection.
        """
        have = self.subjects
        unknown = [s for s in subjects if s not in have]
        if unknown or not subjects:
            raise ConfigError("pack.subjects", list(subjects), f"a non-empty subset of the pack's subjects {have}")
        if not self.parts:
            return self
        keep = [p for p in self.parts if p.subject in subjects]
        return KnowledgePack(base_model_hash=self.base_model_hash, placement=self.placement, lora=self.lora,
                             lora_config=self.lora_config, info={**self.info, "selected": list(subjects)},
                             cala=self.cala, parts=keep)

    def subjects_in(self, prompt: str) -> list[str]:
        """The pack's subjects that ``prompt`` names (whole words, any case), in the pack's order."""
        return [s for s in self.subjects if names_subject(prompt, s) is not None]

    def validate(self) -> None:
        """Reject inconsistent fields (called on construction and by :func:`save_pack`)."""
        if self.placement not in PLACEMENTS:
            raise ConfigError("pack.placement", self.placement, f"one of {list(PLACEMENTS)}")
        if (self.metaword is None) != (self.metaword_embedding is None):
            raise ConfigError("pack.metaword", self.metaword, "a metaword together with its embedding (or neither)",
                              "set both metaword and metaword_embedding")
        if self.metaword is not None:
            if not self.metaword or re.search(r"\s", self.metaword):
                raise ConfigError("pack.metaword", self.metaword, "one token without whitespace, e.g. '<triangle*>'")
            if not torch.is_tensor(self.metaword_embedding) or self.metaword_embedding.ndim != 1:
                got = (tuple(self.metaword_embedding.shape) if torch.is_tensor(self.metaword_embedding)
                       else type(self.metaword_embedding).__name__)
                raise ConfigError("pack.metaword_embedding", got, "a 1-D tensor [D]")
        if self.lora is not None:
            for k, v in self.lora.items():
                if not torch.is_tensor(v) or not v.is_floating_point():
                    raise ConfigError(f"pack.lora[{k}]", type(v).__name__, "a floating-point tensor")
        if self.parts:
            if self.metaword is not None or self.subject is not None:
                raise ConfigError("pack.parts", [p.subject for p in self.parts], "subjects given either as parts or "
                                  "as the single metaword/subject, not both")
            names = [p.subject for p in self.parts]
            if len(set(map(file_safe, names))) != len(names) or not all(isinstance(n, str) and n.strip() for n in names):
                raise ConfigError("pack.parts", names, "distinct, non-empty subject words")
            tokens = [p.metaword for p in self.parts if p.metaword is not None]
            if len(set(tokens)) != len(tokens):
                raise ConfigError("pack.parts", tokens, "one distinct metaword per subject")
            for p in self.parts:  # each part obeys the single-subject rules
                KnowledgePack(self.base_model_hash, metaword=p.metaword, metaword_embedding=p.metaword_embedding,
                              subject=p.subject, placement=self.placement, lora=p.lora, lora_config=p.lora_config)
            if self.lora is not None and any(p.lora is not None for p in self.parts):
                raise ConfigError("pack.lora", "joint and per-subject", "either one joint G-LoRA or one per subject")
        if self.cala is not None:
            if not isinstance(self.cala, CALABankPart):
                raise ConfigError("pack.cala", type(self.cala).__name__, "a CALABankPart or None",
                                  "attach a CALA checkpoint with with_cala(pack, 'cala-....json')")
            self.cala.validate()

    def rewrite(self, prompt: str) -> str:
        """``prompt`` with the metaword inserted.

        ``"before_subject"`` puts it before the first whole-word, case-insensitive occurrence of
        ``subject`` (``"a red triangle at"`` -> ``"a red <triangle*> triangle at"``; ``"triangles"`` does not
        match ``"triangle"``). ``"prefix"`` puts it first. A prompt without the subject, an empty prompt (the
        classifier-free-guidance null prompt), a prompt that already holds the metaword, and a pack without
        a metaword give the prompt unchanged. With ``"prefix"`` and no ``subject``, every non-empty prompt
        gets it. A multi-subject pack inserts each subject's metaword before that subject.
        """
        if self.parts:
            for p in self.parts:
                prompt = insert_metaword(prompt, p.metaword, p.subject, self.placement)
            return prompt
        return insert_metaword(prompt, self.metaword, self.subject, self.placement)

    def generation_fingerprint(self) -> str:
        """sha256 (hex) of what this pack changes in the images the edge generates: the base model's hash, the
        metaword (token, embedding, subject, placement) and the G-LoRA (config and tensors as loaded, i.e.
        after any quantisation). Not the CALA bank, ``info`` or the files' bytes: packs that differ only there
        generate the same images, so a generated set is cached under this and a bank swap samples nothing."""
        h = hashlib.sha256(json.dumps([self.base_model_hash, self.metaword, self.subject, self.placement,
                                       self.lora_config], sort_keys=True).encode())
        tensors = {f"lora.{k}": v for k, v in (self.lora or {}).items()}
        if self.metaword_embedding is not None:
            tensors["metaword_embedding"] = self.metaword_embedding
        for p in self.parts:
            h.update(json.dumps([p.subject, p.metaword, p.lora_config], sort_keys=True).encode())
            tensors.update({f"{p.subject}.lora.{k}": v for k, v in (p.lora or {}).items()})
            if p.metaword_embedding is not None:
                tensors[f"{p.subject}.metaword_embedding"] = p.metaword_embedding
        _hash_tensors(h, tensors)
        return h.hexdigest()

    def n_params(self) -> int:
        """Learned numbers carried: metaword embedding + LoRA + CALA bank and gate (not counting
        quantisation side data)."""
        n = 0 if self.metaword_embedding is None else self.metaword_embedding.numel()
        n += 0 if self.cala is None else self.cala.n_params()
        for p in self.parts:
            n += 0 if p.metaword_embedding is None else p.metaword_embedding.numel()
            n += sum(v.numel() for v in (p.lora or {}).values())
        return n + sum(v.numel() for v in (self.lora or {}).values())


# ----------------------------------------------------------------------------------------------
# Fingerprint


def model_fingerprint(model: Any) -> str:
    """sha256 (hex) of an edge model's weights: the ``base_model_hash`` a pack is checked against.

    Hashes, in sorted key order, each entry of ``model.unet.state_dict()`` and
    ``model.text_encoder.state_dict()`` (keys prefixed ``unet.`` / ``text_encoder.``): its name, shape,
    the word ``float32`` and the bytes of the float32, contiguous CPU tensor. Keys containing ``lora_``
    are skipped and peft's ``.base_layer.`` is removed from names, so adding a LoRA adapter (not fusing
    it) leaves the fingerprint unchanged; changing any base weight changes it.

    Values are hashed as float32: a model saved in fp16 and loaded back hashes its loaded (rounded)
    values, so it differs from the float32 model it was saved from. Adding the metaword token to the text
    encoder (resizing its embedding) changes the fingerprint: take it from the model before alignment.
    """
    parts = [(name, getattr(model, name, None)) for name in ("unet", "text_encoder")]
    parts = [(name, mod) for name, mod in parts if mod is not None]
    if not parts:
        raise ConfigError("model", type(model).__name__, "a model with .unet and/or .text_encoder modules")
    entries: dict[str, torch.Tensor] = {}
    for prefix, module in parts:
        for key, value in module.state_dict().items():
            if "lora_" in key:
                continue
            entries[f"{prefix}.{key.replace('.base_layer.', '.')}"] = value
    h = hashlib.sha256()
    _hash_tensors(h, entries)
    return h.hexdigest()


def _hash_tensors(h: Any, entries: Mapping[str, torch.Tensor]) -> None:
    """Feed ``h`` each entry in sorted key order: name, shape, the word ``float32``, float32 CPU bytes."""
    for key in sorted(entries):
        t = entries[key].detach().to(device="cpu", dtype=torch.float32).contiguous()
        h.update(key.encode())
        h.update(json.dumps(list(t.shape)).encode())
        h.update(b"float32")
        h.update(t.numpy().tobytes())


# ----------------------------------------------------------------------------------------------
# Save / load


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _quantisation_entry(bits: int) -> dict[str, Any]:
    return {"scheme": QUANT_SCHEME, "bits": bits, "axis": 0, "codes_per_byte": 8 // bits,
            "keys": "<name>.codes (uint8, packed), <name>.scale and <name>.zero (float16, one per row)",
            "formula": "x[i, j] = codes[i, j] * scale[i] + zero[i]; rows = first dimension; codes of the "
                       "flattened tensor, first code in the lowest bits",
            "dequantised_dtype": "float32"}


def save_pack(pack: KnowledgePack, directory: str | Path, bits: int | None = None) -> Path:
    """Write ``pack`` into ``directory`` (created; earlier pack files there are replaced).

    The manifest (compact JSON) lists every file with its size, sha256, quantisation and tensors (name ->
    shape and dtype as given, before quantisation), plus ``payload_bytes`` (the tensor data alone, without
    safetensors headers or manifest: what a wire format that derives names and shapes from the base model
    and ``lora_config`` would send) and ``size_bytes`` (all files, the manifest included, as
    :func:`pack_size_bytes`).

    :param bits: None (LoRA stored in its own dtype, float32 or float16; CALA bank in float32) or 8/4/2
        (LoRA and the CALA adapters ``a.*``/``b.*`` quantised per row, :func:`quantise_tensor`; the CALA
        gate in float16); the metaword embedding is always float32.
    :return: the directory. The manifest is written last: a directory without one is not a pack.
    """
    from safetensors.torch import save_file

    pack.validate()
    if bits is not None:
        _check_bits(bits)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for stale in [d / MANIFEST_NAME, d / EMBEDS_NAME, d / LORA_NAME, *(d / quantised_lora_name(b) for b in BITS),
                  d / CALA_NAME, *(d / quantised_cala_name(b) for b in BITS),
                  *d.glob("learned_embeds-*.safetensors"), *d.glob("pytorch_lora_weights-*.safetensors")]:
        stale.unlink(missing_ok=True)
    files: list[dict[str, Any]] = []  # name, quantisation, tensors; sizes and hashes added below
    payload = 0
    if pack.metaword is not None:
        entry, n_bytes = _write_embedding(pack.metaword, pack.metaword_embedding, d / EMBEDS_NAME)
        files.append(entry)
        payload += n_bytes
    subjects = []
    for part in pack.parts:
        rec = {"subject": part.subject, "metaword": part.metaword, "embeds": None, "lora": None}
        if part.metaword is not None:
            entry, n_bytes = _write_embedding(part.metaword, part.metaword_embedding, d / embeds_name(part.subject))
            files.append(entry)
            payload += n_bytes
            rec["embeds"] = entry["name"]
        if part.lora is not None:
            entry, n_bytes = _write_lora(part.lora, part.lora_config, d, subject_lora_name(part.subject, None),
                                         subject_lora_name(part.subject, bits), bits)
            files.append(entry)
            payload += n_bytes
            rec.update(lora=entry["name"], lora_config=part.lora_config)
        subjects.append(rec)
    if pack.lora is not None:
        entry, n_bytes = _write_lora(pack.lora, pack.lora_config, d, LORA_NAME,
                                     LORA_NAME if bits is None else quantised_lora_name(bits), bits)
        files.append(entry)
        payload += n_bytes
    if pack.cala is not None:
        entry, n_bytes = _write_cala(pack.cala, d, bits)
        files.append(entry)
        payload += n_bytes
    for f in files:
        f["size_bytes"] = (d / f["name"]).stat().st_size
        f["sha256"] = sha256_file(d / f["name"])
    manifest = {
        "format_version": MULTI_FORMAT_VERSION if pack.parts else FORMAT_VERSION, "kind": KIND,
        "base_model_hash": pack.base_model_hash,
        "metaword": pack.metaword, "subject": pack.subject, "placement": pack.placement,
        "lora_config": pack.lora_config, "info": pack.info, "bits": bits,
        "metaword_embedding": None if pack.metaword is None else "float32, not quantised (it is tiny)",
        "n_params": pack.n_params(), "payload_bytes": payload, "files": files}
    if pack.cala is not None:  # absent, not null, without a bank: such packs stay as they were
        manifest["cala"] = pack.cala.settings()
    if pack.parts:
        manifest.update(subjects=subjects, lora_mode=pack.lora_mode)
    (d / MANIFEST_NAME).write_text(_manifest_text(manifest, sum(f["size_bytes"] for f in files)))
    return d


def _write_embedding(token: str, embedding: torch.Tensor, path: Path) -> tuple[dict[str, Any], int]:
    """One metaword in the textual-inversion layout: (manifest entry without size/sha256, payload bytes)."""
    from safetensors.torch import save_file

    emb = embedding.detach().to(device="cpu", dtype=torch.float32).contiguous()
    save_file({token: emb}, str(path), metadata={"format": "pt"})
    return ({"name": path.name, "quantisation": None, "tensors": {token: {"shape": list(emb.shape), "dtype": "float32"}}},
            emb.numel() * emb.element_size())


def _write_lora(lora: Mapping[str, torch.Tensor], lora_config: dict | None, d: Path, name: str, q_name: str,
                bits: int | None) -> tuple[dict[str, Any], int]:
    """One G-LoRA: unquantised as ``name`` in the layout of ``StableDiffusionPipeline.save_lora_weights``
    (``pipe.load_lora_weights`` reads it), else quantised as ``q_name``; (manifest entry, payload bytes)."""
    from safetensors.torch import save_file

    lora = {k: v.detach().to("cpu").contiguous() for k, v in sorted(lora.items())}
    listed = {k: {"shape": list(v.shape), "dtype": _dtype_name(v)} for k, v in lora.items()}
    if bits is None:
        header = {"format": "pt"}
        kwargs = peft_kwargs(lora_config)
        if kwargs:
            header[LORA_METADATA_KEY] = json.dumps({f"{LORA_PREFIX}{k}": v for k, v in kwargs.items()}, sort_keys=True)
        save_file({f"{LORA_PREFIX}{k}": v for k, v in lora.items()}, str(d / name), metadata=header)
        return ({"name": name, "quantisation": None, "tensors": {f"{LORA_PREFIX}{k}": v for k, v in listed.items()}},
                sum(v.numel() * v.element_size() for v in lora.values()))
    out: dict[str, torch.Tensor] = {}
    for k, v in lora.items():
        q = quantise_tensor(v, bits)
        out.update({f"{k}.codes": q["codes"], f"{k}.scale": q["scale"], f"{k}.zero": q["zero"]})
    save_file(out, str(d / q_name), metadata={"format": "pt", "quantisation": QUANT_SCHEME, "bits": str(bits)})
    return ({"name": q_name, "quantisation": _quantisation_entry(bits), "tensors": listed},
            sum(v.numel() * v.element_size() for v in out.values()))


def _is_cala_adapter(name: str) -> bool:
    """True for a CALA bank's adapter tensors (``a.*``, ``b.*``, ``spatial.*``, ``scale.*``, ``shift.*``),
    false for its gate."""
    return name.startswith(("a.", "b.", "spatial.", "scale.", "shift."))


def _float16(name: str, t: torch.Tensor) -> torch.Tensor:
    """``t`` in float16, refusing values that float16 cannot hold."""
    if not torch.isfinite(t).all() or t.abs().max() > torch.finfo(torch.float16).max:
        raise ConfigError(f"pack.cala.tensors[{name}]", "values beyond float16 range or not finite",
                          "finite values with |x| <= 65504", "save the pack unquantised (bits=None)")
    return t.to(torch.float16)


def _write_cala(cala: CALABankPart, d: Path, bits: int | None) -> tuple[dict[str, Any], int]:
    """Write the CALA bank into ``d``: (manifest file entry without size/sha256, payload bytes).

    Unquantised: every tensor in float32. Quantised: the adapters as ``<name>.codes/.scale/.zero``
    (:func:`quantise_tensor`, one row per adapter), the gate tensors in float16.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().to(device="cpu", dtype=torch.float32).contiguous()
               for k, v in sorted(cala.tensors.items())}
    listed: dict[str, dict[str, Any]] = {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()}
    name = cala_file_name(bits)
    if bits is None:
        save_file(tensors, str(d / name), metadata={"format": "pt"})
        return {"name": name, "quantisation": None, "tensors": listed}, sum(4 * v.numel() for v in tensors.values())
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if _is_cala_adapter(k):
            q = quantise_tensor(v, bits)
            out.update({f"{k}.codes": q["codes"], f"{k}.scale": q["scale"], f"{k}.zero": q["zero"]})
            listed[k]["stored"] = "quantised"
        else:
            out[k] = _float16(k, v)
            listed[k]["stored"] = "float16"
    save_file(out, str(d / name), metadata={"format": "pt", "quantisation": QUANT_SCHEME, "bits": str(bits)})
    kinds = list(dict.fromkeys(f"{k.split('.')[0]}.*" for k in cala.expected_shapes() if _is_cala_adapter(k)))
    adapters = ", ".join(kinds[:-1]) + " and " + kinds[-1]
    quantisation = {**_quantisation_entry(bits), "applies_to": f"the tensors with stored = 'quantised' (the "
                    f"adapters {adapters}, one row per adapter); the gate is stored in float16"}
    return ({"name": name, "quantisation": quantisation, "tensors": listed},
            sum(v.numel() * v.element_size() for v in out.values()))


def _manifest_text(manifest: dict[str, Any], file_bytes: int) -> str:
    """Compact JSON of ``manifest`` whose ``size_bytes`` equals the pack's total size, this file included."""
    size = file_bytes
    for _ in range(10):  # a fixed point: the size's own digits are part of the size
        text = json.dumps({**manifest, "size_bytes": size}, sort_keys=True, separators=(",", ":")) + "\n"
        total = file_bytes + len(text.encode())
        if total == size:
            return text
        size = total
    return text  # pragma: no cover  (converges in two or three rounds)


def read_manifest(d: Path) -> dict[str, Any]:
    """The checked ``manifest.json`` of the pack directory ``d`` (kind and format version)."""
    path = d / MANIFEST_NAME
    if not path.is_file():
        raise ConfigError("pack.manifest", str(path), f"a knowledge-pack directory holding {MANIFEST_NAME}",
                          "give the directory written by save_pack; an interrupted save leaves no manifest")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("pack.manifest", str(path), f"valid JSON ({exc})", "copy the pack again") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        kind = manifest.get("kind") if isinstance(manifest, dict) else type(manifest).__name__
        raise ConfigError("pack.kind", kind, f"'{KIND}'", "this directory is not a dekasim knowledge pack")
    if manifest.get("format_version") not in (FORMAT_VERSION, MULTI_FORMAT_VERSION):
        raise ConfigError("pack.format_version", manifest.get("format_version"),
                          f"{FORMAT_VERSION} or {MULTI_FORMAT_VERSION}",
                          "use the dekasim version that wrote the pack, or save it again with this one")
    bits = manifest.get("bits")
    if bits is not None and bits not in BITS:
        raise ConfigError("pack.bits", bits, f"null or one of {list(BITS)}")
    allowed = {EMBEDS_NAME, LORA_NAME if bits is None else quantised_lora_name(bits)}
    if "cala" in manifest:
        allowed.add(cala_file_name(bits))
    subjects = manifest.get("subjects")
    if manifest.get("format_version") == MULTI_FORMAT_VERSION:
        if not isinstance(subjects, list) or not subjects or not all(
                isinstance(r, dict) and isinstance(r.get("subject"), str) for r in subjects):
            raise ConfigError("pack.subjects", subjects, "a non-empty list of {subject, metaword, embeds, lora}",
                              "save the pack again")
        allowed.discard(EMBEDS_NAME)
        allowed |= {embeds_name(r["subject"]) for r in subjects} | {subject_lora_name(r["subject"], bits) for r in subjects}
    files = manifest.get("files")
    if not isinstance(files, list) or any(not isinstance(f, dict) or f.get("name") not in allowed for f in files):
        names = [f.get("name") if isinstance(f, dict) else f for f in files] if isinstance(files, list) else files
        raise ConfigError("pack.files", names, f"a list of file entries named from {sorted(allowed)}",
                          "save the pack again")
    return manifest


def _load_verified(d: Path, entry: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of one manifest file entry, after checking the file exists and its sha256."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    name = entry["name"]
    path = d / name
    if not path.is_file():
        raise ConfigError(f"pack.files[{name}]", str(path), "a file of the pack, as listed in manifest.json",
                          "copy the whole pack directory again")
    digest = sha256_file(path)
    if digest != entry.get("sha256"):
        raise ConfigError(f"pack.sha256[{name}]", digest, f"sha256 {entry.get('sha256')} as recorded in "
                          "manifest.json", "the file was altered or damaged in transit: fetch the pack again")
    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise ConfigError(f"pack.files[{name}]", str(path), f"a safetensors file ({exc})",
                          "fetch the pack again") from None


def _check_shape(field_name: str, got: list[int], want: Any) -> None:
    if got != want:
        raise ConfigError(field_name, got, f"shape {want} as recorded in manifest.json",
                          "the tensor file and the manifest disagree: save the pack again")


def _file_tensors(entry: dict[str, Any], content: dict[str, torch.Tensor], bits: int | None) -> dict[str, torch.Tensor]:
    """The tensors a file entry lists, checked against the manifest (quantised ones dequantised)."""
    listed = entry.get("tensors") or {}
    q = entry.get("quantisation")
    if q is not None and (q.get("scheme") != QUANT_SCHEME or q.get("bits") != bits):
        raise ConfigError(f"pack.files[{entry['name']}].quantisation", q, f"{QUANT_SCHEME} at the pack's bits={bits}")
    suffixes = (".codes", ".scale", ".zero")

    def quantised(spec: Any) -> bool:  # a LoRA file is quantised as a whole; a CALA file marks each tensor
        return q is not None and (spec.get("stored", "quantised") == "quantised" if isinstance(spec, dict) else True)

    expected = {f"{n}{s}" for n, spec in listed.items() for s in (suffixes if quantised(spec) else ("",))}
    if set(content) != expected:
        odd = sorted(set(content) ^ expected)
        raise ConfigError(f"pack.files[{entry['name']}]", odd[:3] + (["..."] if len(odd) > 3 else []),
                          "exactly the tensors listed in manifest.json", "save the pack again")
    out = {}
    for name, spec in listed.items():
        shape, where = spec.get("shape"), f"pack.tensors[{name}]"
        if not quantised(spec):
            t = content[name]
            _check_shape(f"{where}.shape", list(t.shape), shape)
            stored = spec.get("stored", spec.get("dtype"))
            if _dtype_name(t) != stored:
                raise ConfigError(f"{where}.dtype", _dtype_name(t), f"{stored} as recorded in manifest.json",
                                  "save the pack again")
            if stored != spec.get("dtype"):  # the CALA gate of a quantised pack: float16 on disk, float32 back
                t = t.to(torch.float32)
        else:
            codes, scale, zero = (content[f"{name}{s}"] for s in suffixes)
            rows = shape[0] if isinstance(shape, list) and len(shape) >= 2 else 1
            want = [_n_packed_bytes(shape, bits), rows, rows] if isinstance(shape, list) else shape
            _check_shape(f"{where}.shape", [codes.numel(), scale.numel(), zero.numel()], want)
            t = dequantise_tensor({"codes": codes, "scale": scale, "zero": zero, "bits": torch.tensor(bits),
                                   "shape": torch.tensor(shape, dtype=torch.int64)})
        out[name] = t
    return out


def load_pack(directory: str | Path, base_model_hash: str | None = None) -> KnowledgePack:
    """Read and verify a pack written by :func:`save_pack`.

    :param base_model_hash: the :func:`model_fingerprint` of the edge model the pack will be applied to;
        when given, a pack made for another model is refused.
    :return: the pack; a quantised LoRA comes back dequantised to float32 under the diffusers keys, a CALA
        bank in float32 (quantised adapters dequantised, the float16 gate widened).
    """
    d = Path(directory)
    manifest = read_manifest(d)
    if base_model_hash is not None and manifest.get("base_model_hash") != base_model_hash:
        raise ConfigError("pack.base_model_hash", manifest.get("base_model_hash"),
                          f"{base_model_hash} (the fingerprint of this edge model)",
                          "align again against this edge model, or load the edge model the pack was made for")
    bits = manifest.get("bits")
    metaword, embedding, lora, cala = manifest.get("metaword"), None, None, None
    records = {r["subject"]: r for r in manifest.get("subjects") or []}
    by_file = {r.get(k): (r["subject"], k) for r in records.values() for k in ("embeds", "lora") if r.get(k)}
    loaded: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for entry in manifest["files"]:
        tensors = _file_tensors(entry, _load_verified(d, entry), bits)
        if entry["name"] in by_file:
            loaded[by_file[entry["name"]]] = tensors
        elif entry["name"] == EMBEDS_NAME:
            if list(tensors) != [metaword]:
                raise ConfigError("pack.metaword", metaword, f"the token stored in {EMBEDS_NAME} ({list(tensors)})",
                                  "save the pack again")
            embedding = tensors[metaword]
        elif entry["name"] == cala_file_name(bits):
            cala = CALABankPart.from_settings(manifest["cala"], tensors)
        else:  # in memory the keys are the UNet's own (the unquantised file prefixes them with "unet.")
            lora = {k.removeprefix(LORA_PREFIX): v for k, v in tensors.items()}
    if "cala" in manifest and cala is None:
        raise ConfigError("pack.cala", cala_file_name(bits), "the CALA bank file listed in manifest.json's files",
                          "save the pack again")
    if (metaword is None) != (embedding is None):
        raise ConfigError("pack.metaword", metaword, f"a metaword with its embedding in {EMBEDS_NAME} (or neither)",
                          "save the pack again")
    parts = [_part(d, r, loaded) for r in records.values()]
    return KnowledgePack(base_model_hash=manifest.get("base_model_hash", ""), metaword=metaword,
                         metaword_embedding=embedding, subject=manifest.get("subject"),
                         placement=manifest.get("placement", "before_subject"), lora=lora,
                         lora_config=manifest.get("lora_config"), info=manifest.get("info") or {}, cala=cala,
                         parts=parts)


def _part(d: Path, record: dict[str, Any], loaded: dict[tuple[str, str], dict[str, torch.Tensor]]) -> SubjectPart:
    """One subject of a multi-subject pack from its manifest record and the tensors of its files."""
    subject, token = record["subject"], record.get("metaword")
    for key in ("embeds", "lora"):
        if record.get(key) and (subject, key) not in loaded:
            raise ConfigError(f"pack.subjects[{subject}].{key}", record[key], "a file listed in manifest.json's files",
                              "save the pack again")
    embedding = None
    if token is not None:
        got = loaded.get((subject, "embeds")) or {}
        if list(got) != [token]:
            raise ConfigError(f"pack.subjects[{subject}].metaword", token, f"the token stored in its embeds file "
                              f"({list(got)})", "save the pack again")
        embedding = got[token]
    lora = loaded.get((subject, "lora"))
    if lora is not None:
        lora = {k.removeprefix(LORA_PREFIX): v for k, v in lora.items()}
    return SubjectPart(subject=subject, metaword=token, metaword_embedding=embedding, lora=lora,
                       lora_config=record.get("lora_config"))


def pack_size_bytes(directory: str | Path) -> int:
    """Bytes of the pack in ``directory``: its tensor files plus ``manifest.json`` (what a downlink sends)."""
    d = Path(directory)
    manifest = read_manifest(d)
    total = (d / MANIFEST_NAME).stat().st_size
    for f in manifest.get("files", []):
        path = d / f["name"]
        if not path.is_file():
            raise ConfigError(f"pack.files[{f['name']}]", str(path), "a file of the pack, as listed in manifest.json",
                              "copy the whole pack directory again")
        total += path.stat().st_size
    return total
