"""Where text-to-image models come from: the shipped default models, local directories, training runs.

A *model spec* is one of

* ``"cloud"`` / ``"edge"`` -- the embedded world's models shipped as package data
  (``dekasim/generative/data/models/<name>/``, fp16 UNet, with ``manifest.json``: the sha256 of every
  file, the command and seed that trained it, steps, CPU and wall time, quality on held-out prompts);
* a local pipeline directory (a saved :class:`~dekasim.generative.ldm.TextToImageLDM`, or any
  Stable-Diffusion-layout folder) -- never a hub id;
* the ``--out`` directory of a ``dekasim world train`` run: its finished ``model/`` if there is one,
  else the EMA weights of its latest checkpoint (to look at a run while it trains).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dekasim.checksums import sha256_file
from dekasim.errors import ConfigError

MANIFEST_NAME = "manifest.json"
SHIPPED_NAMES = ("cloud", "edge")


def shipped_dir(name: str) -> Path:
    """The package-data directory of shipped model ``name`` (may not exist in a checkout without it)."""
    return Path(__file__).parent / "data" / "models" / name



def write_manifest(model_dir: str | Path, facts: dict[str, Any]) -> Path:
    """Write ``manifest.json`` into ``model_dir``: the sha256 and size of every file below it plus ``facts``
    (command, seed, steps, times, quality ...)."""
    d = Path(model_dir)
    files = {str(p.relative_to(d)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(d.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}
    manifest = {"kind": "dekasim-ldm", "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **facts, "files": files, "total_bytes": sum(f["bytes"] for f in files.values())}
    path = d / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return path


def verify_manifest(model_dir: str | Path) -> dict[str, Any]:
    """Check every file listed in ``model_dir/manifest.json`` against its sha256; returns the manifest."""
    d = Path(model_dir)
    path = d / MANIFEST_NAME
    if not path.exists():
        raise ConfigError("model", str(d), f"a model directory with {MANIFEST_NAME}")
    manifest = json.loads(path.read_text())
    for name, info in manifest.get("files", {}).items():
        f = d / name
        if not f.is_file():
            raise ConfigError(f"model.files[{name}]", str(f), "a file listed in the manifest",
                              "reinstall dekasim, or retrain with the manifest's command")
        if sha256_file(f) != info["sha256"]:
            raise ConfigError(f"model.sha256[{name}]", sha256_file(f)[:16] + "...", f"{info['sha256'][:16]}... "
                              "(the manifest's)", "the file was modified: reinstall dekasim, or retrain with the "
                              f"manifest's command ({manifest.get('command', '?')})")
    return manifest


def model_world(model, dialect: str | None = None):
    """The :class:`~dekasim.generative.world.World` a model was trained on (vocabulary, resolution and
    caption split from its config; the defaults for a foreign model), drawn in ``dialect`` (default:
    the model's own)."""
    from dekasim.generative.world import World, WorldSpec

    cfg = model.config.world or {}
    return World(spec=WorldSpec.from_dict(cfg["spec"]) if cfg.get("spec") else None,
                 dialect=dialect or cfg.get("dialect") or "standard", split=cfg.get("split", "combo"),
                 holdout_fraction=cfg.get("holdout_fraction", 0.1), split_seed=cfg.get("split_seed", 0))


def check_model_spec(spec: str | Path) -> None:
    """The errors :func:`load_model` would raise about where ``spec`` points, without loading anything."""
    text = str(spec)
    if text in SHIPPED_NAMES and not Path(text).exists():
        if not shipped_dir(text).is_dir():
            raise ConfigError("model", text, "a shipped model (package data dekasim/generative/data/models/"
                              f"{text}/)", f"train it: dekasim world train --preset {text} --out runs/world-{text}, "
                              f"then pass runs/world-{text}")
        return
    if not Path(text).is_dir():
        raise ConfigError("model", text, "'cloud', 'edge', or an existing local directory",
                          "models are never downloaded: give a local path")


def load_model(spec: str | Path):
    """A :class:`~dekasim.generative.ldm.TextToImageLDM` from a model spec (see the module docstring)."""
    from dekasim.generative.ldm import TextToImageLDM
    from dekasim.generative.run_dir import model_from_checkpoint

    check_model_spec(spec)
    text = str(spec)
    if text in SHIPPED_NAMES and not Path(text).exists():
        d = shipped_dir(text)
        verify_manifest(d)
        return TextToImageLDM.from_pretrained(d)
    d = Path(text)
    if (d / "model_index.json").exists() or (d / "unet").is_dir():
        if (d / MANIFEST_NAME).exists():
            verify_manifest(d)
        return TextToImageLDM.from_pretrained(d)
    if (d / "model" / "model_index.json").exists():
        return load_model(d / "model")
    if (d / "checkpoint").is_dir():
        return model_from_checkpoint(d)
    raise ConfigError("model", text, "a pipeline directory (unet/, text_encoder/, ...) or a `dekasim world train` "
                      "output directory")


def model_dir(spec: str | Path) -> Path:
    """The pipeline directory a model spec names (shipped name, pipeline folder, or a run's finished
    ``model/``); checkpoints of an unfinished run have none."""
    check_model_spec(spec)
    text = str(spec)
    if text in SHIPPED_NAMES and not Path(text).exists():
        return shipped_dir(text)
    d = Path(text)
    return d / "model" if not (d / "unet").is_dir() and (d / "model" / "unet").is_dir() else d


def latent_shape_of(spec: str | Path) -> tuple[int, int, int]:
    """The latent shape ``(C, h, w)`` a model spec's pipeline samples, read from its config files only (no
    weights are loaded): ``dekasim_ldm.json``'s latent map for the embedded world's models, else the UNet's
    ``in_channels`` and ``sample_size`` (a Stable-Diffusion-layout folder: 4 x 64 x 64 for SD 1.5)."""
    from dekasim.generative.ldm import LDM_CONFIG_NAME

    d = model_dir(spec)
    unet_cfg = d / "unet" / "config.json"
    try:
        cfg = json.loads((d / LDM_CONFIG_NAME).read_text()) if (d / LDM_CONFIG_NAME).is_file() else {}
        latent = cfg.get("latent") or {}
        if latent.get("kind") == "pixel_unshuffle":
            f, r = int(latent.get("factor", 4)), int(cfg["resolution_px"])
            return 3 * f * f, r // f, r // f
        unet = json.loads(unet_cfg.read_text())
        size = unet["sample_size"]
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return int(unet["in_channels"]), int(h), int(w)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError("model", str(spec), f"a pipeline directory whose unet/config.json gives in_channels and "
                          f"sample_size ({type(exc).__name__}: {exc})") from None
