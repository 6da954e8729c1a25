"""An edge model with a knowledge pack applied: the loader side of MAKD (the trainer is
:mod:`dekasim.generative.makd`). :func:`apply_pack` checks that the pack was made for this edge model,
adds the metaword token with its learned embedding and loads the G-LoRA; :class:`AlignedEdge` rewrites
prompts with the metaword when it samples.
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
