"""A G-LoRA as data: peft's adapter on an edge UNet to and from diffusers' LoRA state-dict layout (see
:mod:`dekasim.generative.pack` for the keys)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from dekasim.errors import ConfigError

#: the safetensors header key under which diffusers stores a LoRA's config (``LORA_ADAPTER_METADATA_KEY``).
LORA_METADATA_KEY = "lora_adapter_metadata"


def peft_kwargs(lora_config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The entries of ``lora_config`` that peft's ``LoraConfig`` accepts."""
    if lora_config is None:
        return None
    import dataclasses

    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig)}
    return {k: v for k, v in lora_config.items() if k in known}


def lora_state_dict(unet: torch.nn.Module, adapter_name: str = "g_lora") -> dict[str, torch.Tensor]:
    """The LoRA tensors of ``adapter_name`` on ``unet``, keyed as diffusers' ``save_lora_adapter`` writes
    them (``....to_q.lora_A.weight`` ``[r, in]``, ``....to_q.lora_B.weight`` ``[out, r]``): detached CPU
    copies, ready for :attr:`KnowledgePack.lora`."""
    from peft.utils import get_peft_model_state_dict

    adapters = sorted(getattr(unet, "peft_config", {}))
    if adapter_name not in adapters:
        raise ConfigError("adapter_name", adapter_name, f"an adapter of the UNet: {adapters}",
                          "add one with unet.add_adapter(LoraConfig(...), adapter_name=...)")
    sd = get_peft_model_state_dict(unet, adapter_name=adapter_name)
    return {k: v.detach().to("cpu").clone() for k, v in sd.items()}


def lora_config_dict(unet: torch.nn.Module, adapter_name: str = "g_lora") -> dict[str, Any]:
    """The JSON-able :attr:`KnowledgePack.lora_config` of ``adapter_name`` on ``unet``: ``r``,
    ``lora_alpha``, sorted ``target_modules``, and ``rank_pattern``/``alpha_pattern``/``use_rslora``/
    ``use_dora`` where they are not defaults."""
    cfg = unet.peft_config[adapter_name]
    targets = cfg.target_modules
    alpha = float(cfg.lora_alpha)
    out: dict[str, Any] = {"r": int(cfg.r), "lora_alpha": int(alpha) if alpha.is_integer() else alpha,
                           "target_modules": targets if isinstance(targets, str) else sorted(targets)}
    for key in ("rank_pattern", "alpha_pattern"):
        if getattr(cfg, key, None):
            out[key] = dict(getattr(cfg, key))
    for key in ("use_rslora", "use_dora"):
        if getattr(cfg, key, False):
            out[key] = True
    return out


def load_lora_into_unet(unet: torch.nn.Module, lora: Mapping[str, torch.Tensor], lora_config: Mapping[str, Any] | None,
                        adapter_name: str = "g_lora") -> None:
    """Add a pack's LoRA to ``unet`` as adapter ``adapter_name`` (active), in the UNet's dtype.

    Equivalent to diffusers' ``unet.load_lora_adapter(dict(lora), prefix=None, adapter_name=adapter_name,
    metadata=lora_config)``; without ``lora_config`` diffusers assumes ``lora_alpha = r`` (scale 1).
    Keys prefixed ``unet.`` (a pipeline-level LoRA file) are accepted. Every tensor must land in the UNet
    with its shape, else a ConfigError.
    """
    from peft.utils import get_peft_model_state_dict

    state = dict(lora)
    if state and all(k.startswith("unet.") for k in state):
        state = {k[len("unet."):]: v for k, v in state.items()}
    if adapter_name in getattr(unet, "peft_config", {}):
        raise ConfigError("adapter_name", adapter_name, "a name not yet used by an adapter of this UNet",
                          "choose another adapter_name, or unet.delete_adapters(name) first")
    from dekasim.generative.ldm import _quiet

    try:
        with _quiet():
            unet.load_lora_adapter(state, prefix=None, adapter_name=adapter_name, metadata=peft_kwargs(lora_config))
    except (ValueError, RuntimeError, KeyError) as exc:  # peft: no matching module; torch: size mismatch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError("pack.lora", f"{len(state)} tensors", f"LoRA tensors that fit this UNet ({first[:200]})",
                          "apply the pack to the edge model it was aligned on (see pack.base_model_hash)") from None
    landed = set(get_peft_model_state_dict(unet, adapter_name=adapter_name)) if adapter_name in getattr(
        unet, "peft_config", {}) else set()
    missing = sorted(set(state) - landed)
    if missing:
        raise ConfigError("pack.lora", missing[:3] + (["..."] if len(missing) > 3 else []),
                          "LoRA keys naming attention projections of this UNet",
                          "apply the pack to the edge model it was aligned on (see pack.base_model_hash)")
