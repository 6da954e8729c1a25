"""An edge model with a knowledge pack applied: the loader side of MAKD (the trainer is
:mod:`dekasim.generative.makd`). :func:`apply_pack` checks that the pack was made for this edge model,
adds the metaword token with its learned embedding and loads the G-LoRA; :class:`AlignedEdge` rewrites
prompts with the metaword when it samples.

A pack with several subjects adds one metaword per subject. Its joint G-LoRA is one adapter, always on;
per-subject G-LoRAs are named peft adapters (``g_lora_<subject>``) side by side, and :class:`AlignedEdge`
*routes* them: each prompt is drawn with the adapters of the subjects it names active (``set_adapters``),
and none for a prompt that names none -- so a control prompt is drawn by the base edge, and aligning one
subject cannot touch another's prompts. ``routing=False`` keeps every adapter on for every prompt (what
``pipe.load_lora_weights`` of each file does), the interference this avoids.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch

from dekasim.errors import ConfigError
from dekasim.generative.ldm import TextToImageLDM
from dekasim.generative.lora import load_lora_into_unet
from dekasim.generative.pack import KnowledgePack, model_fingerprint

#: The peft adapter name of the G-LoRA in an edge UNet.
ADAPTER_NAME = "g_lora"


def subject_adapter_name(subject: str) -> str:
    """The peft adapter name of ``subject``'s own G-LoRA in a multi-subject pack."""
    from dekasim.generative.pack import file_safe

    return f"{ADAPTER_NAME}_{file_safe(subject)}"


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


class AlignedEdge:
    """An edge model with a knowledge pack applied: :meth:`sample` rewrites prompts with the metaword(s)
    and, for per-subject G-LoRAs, activates the adapters of the subjects each prompt names.

    :param routing: per-subject G-LoRAs only: True activates per prompt the adapters of its subjects;
        False keeps all on.
    """

    def __init__(self, model: TextToImageLDM, pack: KnowledgePack | None, routing: bool = True) -> None:
        self.model, self.pack, self.routing = model, pack, routing
        self.adapter_switches = 0  #: times the active adapter set changed (per-subject packs)

    def prompts(self, prompts: Sequence[str]) -> list[str]:
        return [self.pack.rewrite(p) for p in prompts] if self.pack is not None else list(prompts)

    def _routed(self) -> bool:
        return self.routing and self.pack is not None and self.pack.lora_mode == "per_subject"

    def _groups(self, prompts: Sequence[str]) -> dict[tuple[str, ...], list[int]]:
        """Prompt indices by the per-subject adapters they need (one group of all when not routing)."""
        if not self._routed():
            return {(): list(range(len(prompts)))}
        with_lora = {p.subject for p in self.pack.parts if p.lora is not None}
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(tuple(s for s in self.pack.subjects_in(p) if s in with_lora), []).append(i)
        return groups

    def activate(self, subjects: Sequence[str]) -> None:
        """Make the G-LoRAs of ``subjects`` the active adapters (none: the base UNet)."""
        unet = self.model.unet
        if subjects:
            unet.enable_adapters()
            unet.set_adapters([subject_adapter_name(s) for s in subjects])
        else:
            unet.disable_adapters()
        self.adapter_switches += 1

    def _draw(self, fn, prompts: Sequence[str], seeds: Sequence[int], **kw) -> torch.Tensor:
        groups = self._groups(prompts)
        if len(groups) == 1 and not self._routed():
            return fn(self.prompts(prompts), seeds, **kw)
        out: torch.Tensor | None = None
        try:
            for subjects, idx in groups.items():
                self.activate(subjects)
                part = fn(self.prompts([prompts[i] for i in idx]), [seeds[i] for i in idx], **kw)
                if out is None:
                    out = part.new_empty((len(prompts), *part.shape[1:]))
                out[idx] = part
        finally:
            self.activate([p.subject for p in self.pack.parts if p.lora is not None])  # the loaded state: all on
            self.adapter_switches -= 1
        return out

    def sample(self, prompts: Sequence[str], seeds: Sequence[int], steps: int = 25, guidance: float = 1.5,
               batch_size: int = 64) -> torch.Tensor:
        return self._draw(self.model.sample, prompts, seeds, steps=steps, guidance=guidance, batch_size=batch_size)

    def sample_latents(self, prompts: Sequence[str], seeds: Sequence[int], steps: int = 25, guidance: float = 1.5,
                       batch_size: int = 64) -> torch.Tensor:
        return self._draw(self.model.sample_latents, prompts, seeds, steps=steps, guidance=guidance,
                          batch_size=batch_size)


def apply_pack(edge: TextToImageLDM, pack: KnowledgePack, copy_model: bool = True,
               routing: bool = True) -> AlignedEdge:
    """Apply ``pack`` to ``edge`` (a deep copy unless ``copy_model=False``): checks that the pack was
    made for this edge model, adds the metaword(s), loads the G-LoRA(s) (see :class:`AlignedEdge` for
    ``routing``)."""
    fp = model_fingerprint(edge)
    if pack.base_model_hash != fp:
        raise ConfigError("pack.base_model_hash", pack.base_model_hash, f"the fingerprint of this edge model ({fp})",
                          "align again against this edge model, or load the edge model the pack was made for")
    model = copy.deepcopy(edge) if copy_model else edge
    if pack.metaword is not None and pack.metaword_embedding is not None:
        set_metaword(model, pack.metaword, pack.metaword_embedding)
    for part in pack.parts:
        if part.metaword is not None and part.metaword_embedding is not None:
            set_metaword(model, part.metaword, part.metaword_embedding)
    if pack.lora:
        load_lora_into_unet(model.unet, pack.lora, pack.lora_config or {}, adapter_name=ADAPTER_NAME)
    names = []
    for part in pack.parts:
        if part.lora:
            load_lora_into_unet(model.unet, part.lora, part.lora_config or {},
                                adapter_name=subject_adapter_name(part.subject))
            names.append(subject_adapter_name(part.subject))
    if names:
        model.unet.set_adapters(names)
    model.unet.eval()
    model.text_encoder.eval()
    return AlignedEdge(model, pack, routing=routing)
