"""What one MAKD alignment is about, beside the two models: an :class:`AlignmentTask`.

The alignment core (:func:`dekasim.generative.makd.align_method`, :func:`dekasim.deka.alignment.run_alignment`)
knows nothing of shapes or captions: it needs prompt sets, a way to score an edge image against the
cloud's image of the same prompt and seed, the score that stops training early, and the scores the
report shows. Two providers fill that in:

* :func:`world_task` -- the embedded world: its caption blocks (:func:`~dekasim.generative.align_config.alignment_prompts`),
  its attribute checker and feature encoder (:func:`~dekasim.generative.consistency.consistency`);
* :func:`prompt_file_task` -- a user's own subject and prompt files (:mod:`dekasim.generative.prompts`)
  scored by the user's image encoders (DINO, CLIP, any transformers vision model from a local folder,
  or any callable images -> embeddings, the world's feature encoder included):
  :func:`~dekasim.metrics.consistency.encoder_consistency`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from dekasim.errors import ConfigError
from dekasim.generative.align_config import AlignConfig, AlignmentPrompts
from dekasim.metrics.consistency import ConsistencyReport

#: The world's report columns (its checker's agreement, the feature encoder's cosine, pixel similarity).
WORLD_METRICS = ("attribute_agreement", "all_attributes_agree", "feature_cosine", "psnr_db", "ssim")


@dataclass
class AlignmentTask:
    """Prompt sets and scoring of one alignment.

    :param prompts: train (S_CG), validation, test and control prompts with the seed of every image.
    :param score: ``(edge_images, cloud_images) -> ConsistencyReport``, pair ``i`` the same prompt and seed.
    :param val_metric: the per-pair metric whose mean over the validation prompts stops each phase early.
    :param metrics: the metrics the report tables show, in order.
    :param config: the alignment settings, with the prompt counts of this task.
    :param source: JSON facts on where prompts and scores come from (written into reports and packs).
    """

    prompts: AlignmentPrompts
    score: Callable[[torch.Tensor, torch.Tensor], ConsistencyReport]
    val_metric: str
    metrics: tuple[str, ...]
    config: AlignConfig
    source: dict[str, Any] = field(default_factory=dict)

    def prompt_record(self) -> dict[str, Any]:
        """What a pack keeps of the split: the source, and for prompt files the training and validation prompts
        (a scenario then knows which of a file's prompts the alignment never saw)."""
        rec: dict[str, Any] = {"source": self.source.get("kind", "world")}
        if rec["source"] != "world":
            rec.update(subject=self.config.subject, train=list(dict.fromkeys(self.prompts.train)),
                       val=list(self.prompts.val), test=list(self.prompts.test))
        return rec


def world_task(edge, config: AlignConfig) -> AlignmentTask:
    """The embedded world's alignment of ``config.subject`` on ``edge`` (a world model)."""
    from dekasim.generative.align_config import alignment_prompts
    from dekasim.generative.consistency import consistency
    from dekasim.generative.features import load_encoder
    from dekasim.generative.models import model_world

    encoder = load_encoder()
    prompts = alignment_prompts(model_world(edge), config)
    if config.val_metric not in WORLD_METRICS:
        raise ConfigError("align.val_metric", config.val_metric, f"one of {list(WORLD_METRICS)}")
    return AlignmentTask(prompts, lambda e, c: consistency(e, c, encoder=encoder), config.val_metric, WORLD_METRICS,
                         config, {"kind": "world"})


def load_image_encoders(spec: Mapping[str, str | Path], device: str | torch.device = "cpu",
                        field_name: str = "--image-encoder", dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """``{name: local model folder}`` -> ``{name: encoder}`` (:func:`~dekasim.metrics.consistency.local_image_encoder`;
    the name ``feature`` with the folder ``world`` is the embedded world's feature encoder)."""
    from dekasim.metrics.consistency import local_image_encoder

    out: dict[str, Any] = {}
    for name, path in spec.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(field_name, name, "NAME=DIR with NAME a Python identifier (scores are '<NAME>_cosine')",
                              "e.g. --image-encoder dino=models/dinov2-small")
        if str(path) == "world":
            out[name] = world_feature_encoder()
            continue
        try:
            out[name] = local_image_encoder(path, device=device, dtype=dtype)
        except ConfigError as err:
            raise ConfigError(f"{field_name} {name}", err.value, err.expected, err.fix) from None
    return out


def world_feature_encoder() -> Callable[[torch.Tensor], torch.Tensor]:
    """The embedded world's shipped feature encoder as an image encoder (images in [0, 1] -> ``[N, 64]``)."""
    from dekasim.generative.features import load_encoder

    encoder = load_encoder().eval()

    def embed(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return encoder.embed(images)

    embed.info = {"kind": "world feature encoder", "sha256": (getattr(encoder, "manifest", None) or {}).get("sha256")}
    return embed


def prompt_file_task(config: AlignConfig, prompts: Sequence[str], encoders: Mapping[str, Any], *,
                     control: Sequence[str] = (), val: Sequence[str] | None = None,
                     test: Sequence[str] | None = None, images_per_prompt: int = 1, val_fraction: float = 0.2,
                     test_fraction: float = 0.3, files: Mapping[str, Any] | None = None) -> AlignmentTask:
    """A user's alignment: ``config.subject`` in ``prompts`` (split by :func:`~dekasim.generative.prompts.split_prompts`),
    scored by ``encoders`` (name -> callable images -> embeddings).

    The early-stopping score is ``config.val_metric`` when it names one of the encoders' metrics
    (``<name>_cosine``), else the first encoder's (the default ``feature_cosine`` of the world becomes e.g.
    ``dino_cosine``).

    :param files: where the prompts came from (paths), recorded with the sha256 of each split.
    :raises ConfigError: no encoder, or a ``val_metric`` the encoders do not give.
    """
    from dekasim.generative.prompts import prompts_sha256, split_prompts
    from dekasim.metrics.consistency import encoder_consistency

    if not encoders:
        raise ConfigError("--image-encoder", "none", "at least one image encoder NAME=DIR (DINO, CLIP, any "
                          "transformers vision model saved locally)", "e.g. --image-encoder dino=models/dinov2-small")
    split = split_prompts(prompts, config.subject, config.seed, val_fraction=val_fraction, test_fraction=test_fraction,
                          images_per_prompt=images_per_prompt, control=control, val=val, test=test)
    metrics = tuple(f"{name}_cosine" for name in encoders)
    val_metric = config.val_metric
    if val_metric not in metrics:
        if val_metric != AlignConfig.val_metric:
            raise ConfigError("align.val_metric", val_metric, f"one of the image encoders' scores {list(metrics)}",
                              f"e.g. --set val_metric={metrics[0]}")
        val_metric = metrics[0]
    cfg = replace(config, n_train_images=len(split.train), n_val_prompts=len(split.val),
                  n_test_prompts=len(split.test), n_control_prompts=len(split.control), val_metric=val_metric)
    source = {"kind": "prompt_files", "files": {k: str(v) for k, v in (files or {}).items()},
              "images_per_prompt": int(images_per_prompt),
              "sha256": {k: prompts_sha256(getattr(split, k)) for k in ("train", "val", "test", "control")},
              "image_encoders": {name: getattr(fn, "info", type(fn).__name__) for name, fn in encoders.items()}}
    encoders = dict(encoders)
    return AlignmentTask(split, lambda e, c: encoder_consistency(e, c, encoders), val_metric,
                         metrics + ("psnr_db", "ssim"), cfg, source)
