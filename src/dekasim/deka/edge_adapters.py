"""What switching knowledge packs costs the edge, measured on a real edge model (CPU or GPU time).

:func:`measure_adapter_costs` loads the edge (``"edge"``: the embedded world's shipped edge LDM), applies a
pack with :func:`~dekasim.generative.aligned.apply_pack` (metaword + G-LoRA as peft adapter ``g_lora``), adds a
second named LoRA adapter with :func:`~dekasim.generative.lora.load_lora_into_unet` (the catalogue's second
real pack, else the first one again under another name: the same shapes, so the same costs), and times, as
the median of ``repeats`` calls [ms]:

- ``set_adapter_ms``: ``unet.set_adapter(name)`` from one loaded adapter to the other (peft keeps both
  loaded and unmerged; diffusers' ``set_adapters(name, 1.0)`` is timed as ``set_adapters_ms``);
- ``disable_adapters_ms``: ``unet.disable_adapters()`` (to the unaligned edge);
  ``enable_adapter_ms``: ``set_adapter(name)`` + ``enable_adapters()`` (back from it);
- ``fuse_ms`` / ``unfuse_ms``: ``unet.fuse_lora(adapter_names=[name])`` / ``unet.unfuse_lora()`` (peft's
  ``merge`` / ``unmerge`` on every LoRA layer: the base weights are rewritten, the LoRA branch skipped);
- ``load_pack_ms``: :func:`~dekasim.generative.pack.load_pack` of the pack directory (read, sha256-verify,
  dequantise); ``load_adapter_ms``: its LoRA into the UNet as a new named adapter;
  ``delete_adapter_ms``: ``unet.delete_adapters(name)``;
- ``sample_ms``: one image (25 DDIM steps, CFG 1.5, batch 1) with no adapter, the adapter unmerged, and the
  adapter merged (the latents of the last two are compared: ``merged_max_abs_diff``).

The metaword is not switched: every pack's metaword is its own token in the tokenizer, and a prompt selects
it by being rewritten (:meth:`~dekasim.generative.pack.KnowledgePack.rewrite`).
"""

from __future__ import annotations

import os
import platform
import statistics
import warnings
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dekasim.errors import ConfigError

#: The prompt the sampling times use (the subject is replaced by the pack's).
SAMPLE_PROMPT = "a large red {subject} at the center on a white background"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else :func:`platform.processor`, else ``"unknown"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _times_ms(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> dict[str, Any]:
    xs = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(xs), "min_ms": min(xs), "max_ms": max(xs), "n": repeats}


def measure_adapter_costs(pack_dirs: Sequence[str | Path], edge: str = "edge", *, repeats: int = 20,
                          sample_repeats: int = 3, device: str = "cpu") -> dict[str, Any]:
    """Time the edge's adapter operations (see the module doc) on ``edge`` with the packs in ``pack_dirs``.

    :param pack_dirs: one or more pack directories made for ``edge`` (the first two distinct ones are used).
    :param edge: a model spec of :func:`dekasim.generative.models.load_model`.
    :param repeats: calls per timed operation (``sample_repeats`` for a whole image).
    :return: ``{"edge", "packs", "device", "cpu", "torch_threads", "<operation>": {"median_ms", "min_ms",
        "max_ms", "n"}, ..., "sample_ms": {"none"|"unmerged"|"merged": {...}}, "merged_max_abs_diff", "wall_s"}``.
    """
    with warnings.catch_warnings():  # peft's notes on what the timing loops do on purpose
        warnings.filterwarnings("ignore", message=r".*(Already unmerged|already merged|Already found a `peft_config`|"
                                r"was active which is now deleted).*")
        return _measure(pack_dirs, edge, repeats, sample_repeats, device)


def _measure(pack_dirs: Sequence[str | Path], edge: str, repeats: int, sample_repeats: int,
             device: str) -> dict[str, Any]:
    import torch

    from dekasim.generative.aligned import ADAPTER_NAME, apply_pack
    from dekasim.generative.lora import load_lora_into_unet
    from dekasim.generative.models import load_model
    from dekasim.generative.pack import load_pack

    for name, v in (("repeats", repeats), ("sample_repeats", sample_repeats)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(name, v, "an integer >= 1")
    dirs = list(dict.fromkeys(Path(d) for d in pack_dirs))[:2]
    if not dirs:
        raise ConfigError("pack_dirs", list(pack_dirs), "at least one pack directory")
    t0 = time.perf_counter()
    model = load_model(edge).to(device)
    packs = [load_pack(d) for d in dirs]
    aligned = apply_pack(model, packs[0], copy_model=False)
    unet = aligned.model.unet
    other = packs[1] if len(packs) > 1 else packs[0]
    second = "second"
    load_lora_into_unet(unet, other.lora or {}, other.lora_config, adapter_name=second)
    names = [ADAPTER_NAME, second]
    out: dict[str, Any] = {"edge": edge, "packs": [str(d) for d in dirs], "adapters": names, "device": device,
                           "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
                           "second_adapter": "the second pack" if len(packs) > 1 else
                           "the first pack's LoRA again, under another name (same shapes)"}
    state = {"i": 0}

    def flip(fn: Callable[[str], Any]) -> Callable[[], Any]:
        def call() -> None:
            state["i"] ^= 1
            fn(names[state["i"]])
        return call

    unet.enable_adapters()
    out["set_adapter_ms"] = _times_ms(flip(unet.set_adapter), repeats)
    out["set_adapters_ms"] = _times_ms(flip(lambda n: unet.set_adapters(n, 1.0)), repeats)
    out["disable_adapters_ms"] = _times_ms(unet.disable_adapters, repeats, setup=unet.enable_adapters)
    out["enable_adapter_ms"] = _times_ms(flip(lambda n: (unet.set_adapter(n), unet.enable_adapters())), repeats,
                                         setup=unet.disable_adapters)
    unet.set_adapter(ADAPTER_NAME)
    unet.enable_adapters()
    out["fuse_ms"] = _times_ms(lambda: unet.fuse_lora(adapter_names=[ADAPTER_NAME]), repeats, setup=unet.unfuse_lora)
    out["unfuse_ms"] = _times_ms(unet.unfuse_lora, repeats, setup=lambda: unet.fuse_lora(adapter_names=[ADAPTER_NAME]))
    unet.unfuse_lora()
    out["load_pack_ms"] = _times_ms(lambda: load_pack(dirs[-1]), repeats)
    counter = {"n": 0}

    def load() -> None:
        counter["n"] += 1
        load_lora_into_unet(unet, other.lora or {}, other.lora_config, adapter_name=f"tmp{counter['n']}")

    def delete() -> None:
        unet.delete_adapters(f"tmp{counter['n']}")
        counter["n"] -= 1

    out["load_adapter_ms"] = _times_ms(load, repeats)
    out["delete_adapter_ms"] = _times_ms(delete, repeats)  # newest first: every adapter loaded above
    unet.set_adapter(ADAPTER_NAME)
    prompt = SAMPLE_PROMPT.format(subject=packs[0].subject or "triangle")
    samples: dict[str, Any] = {}
    latents: dict[str, Any] = {}

    def sample(mode: str) -> None:
        latents[mode] = aligned.sample_latents([prompt], [0], steps=25, guidance=1.5)

    with torch.no_grad():
        unet.disable_adapters()
        samples["none"] = _times_ms(lambda: sample("none"), sample_repeats)
        unet.enable_adapters()
        unet.set_adapter(ADAPTER_NAME)
        samples["unmerged"] = _times_ms(lambda: sample("unmerged"), sample_repeats)
        unet.fuse_lora(adapter_names=[ADAPTER_NAME])
        samples["merged"] = _times_ms(lambda: sample("merged"), sample_repeats)
        unet.unfuse_lora()
    out["sample_ms"] = samples
    out["sample_settings"] = {"prompt": prompt, "steps": 25, "guidance": 1.5, "batch": 1}
    out["merged_max_abs_diff"] = float((latents["merged"] - latents["unmerged"]).abs().max())
    out["adapter_vs_none_max_abs_diff"] = float((latents["unmerged"] - latents["none"]).abs().max())
    out["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    return out
