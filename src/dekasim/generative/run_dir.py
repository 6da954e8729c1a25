"""Reading a ``dekasim world train`` run directory: the model of an unfinished (or finished) run from its
``checkpoint/``, without the trainer (what :func:`dekasim.generative.models.load_model` does for a run
directory)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from dekasim.errors import ConfigError
from dekasim.generative.ldm import TextToImageLDM, build_ldm
from dekasim.generative.train_config import TrainConfig

#: Run settings that may change between the calls of one run (they are not part of its identity).
RESUME_FREE = ("steps_this_call", "time_budget_s", "log_every", "checkpoint_every", "threads", "device")


def trainable_parameters(model: TextToImageLDM, config: TrainConfig) -> tuple[list[torch.nn.Parameter], bool]:
    """The parameters a run trains (in checkpoint order) and whether the text encoder is among them
    (``train_text_encoder`` None: all but the pretrained, packaged MiniLM)."""
    trainable_te = config.train_text_encoder
    if trainable_te is None:
        trainable_te = not model.config.text_encoder_source.startswith("package:")
    params = list(model.unet.parameters()) + (list(model.text_encoder.parameters()) if trainable_te else [])
    return params, bool(trainable_te)


def model_from_checkpoint(run_dir: str | Path, weights: str = "ema") -> TextToImageLDM:
    """The model of an unfinished (or finished) run from its ``checkpoint/``: ``weights="ema"`` (what
    the run will ship) or ``"live"``. For looking at a long run while it trains; nothing is written.

    :param run_dir: the ``out_dir`` of :func:`train` (holds ``train_config.json`` and ``checkpoint/``).
    """
    from safetensors.torch import load_file

    run = Path(run_dir)
    ckpt = run / "checkpoint"
    if not (ckpt / "state.json").exists() or not (run / "train_config.json").exists():
        raise ConfigError("run_dir", str(run), "a training directory holding train_config.json and checkpoint/",
                          "give the --out directory of `dekasim world train`")
    if weights not in ("ema", "live"):
        raise ConfigError("weights", weights, "'ema' or 'live'")
    config = TrainConfig(**json.loads((run / "train_config.json").read_text()))
    info = json.loads((ckpt / "state.json").read_text())
    model = build_ldm(config.preset, world=config.world(), unet=config.unet, tiny_clip=config.tiny_clip,
                      seed=config.seed)
    params, _ = trainable_parameters(model, config)
    if info["n_params"] != len(params):
        raise ConfigError("checkpoint", info["n_params"], f"{len(params)} parameter tensors for preset {config.preset}")
    tensors = load_file(str(ckpt / "state.safetensors"))
    key = "ema" if weights == "ema" else "param"
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"{key}.{i}"].to(p.dtype))
    model.config.provenance.update({"train": {k: v for k, v in asdict(config).items() if k not in RESUME_FREE},
                                    "steps_done": int(info["step"]), "weights": weights, "snapshot": True})
    model.text_encoder.requires_grad_(False).eval()
    model.unet.eval()
    return model
