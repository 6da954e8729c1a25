"""Consistency of edge-model and cloud-model images generated for the same prompt and seed: the report,
its statistics, paired differences, and local DINO/CLIP encoders. The scores of the embedded world
(checker, feature encoder) are computed by :func:`dekasim.generative.consistency.consistency`, beside
the world they read.

DeKA-g's generation-alignment metric: pair ``i`` is the edge model's image and the cloud model's
image for one prompt and one seed, and each pair gets five scores (plus one per optional encoder):

``attribute_agreement``
    fraction of the five world attributes (shape, colour, size, position, background) that the
    attribute :class:`~dekasim.generative.checker.Checker` recovers *equally from both images* -- the
    two readings are compared with each other, not with the caption, so a cloud image the checker
    misreads is not counted against the edge. The checker knows the dialect-only values
    (``triangle_down``, ``magenta``), so an unaligned edge's point-down triangle disagrees.
``all_attributes_agree``
    1 if all five agree, else 0 (its interval over pairs is Wilson).
``feature_cosine``
    cosine of the two images' embeddings by the project's own
    :class:`~dekasim.generative.features.WorldFeatureEncoder` (trained on the world's standard and
    edge renders, shipped with a manifest): near 1 when everything a classifier of the world's
    attributes sees is the same, lower when shape, colour, size, position or background differ.
``psnr_db``, ``ssim``
    pixel similarity of the two images (:func:`~dekasim.metrics.psnr_db`, capped at 100 dB for an
    exact copy; :func:`~dekasim.metrics.ssim`). Two correct images of one prompt still differ in
    the nuisances (object jitter, colour jitter), so these measure more than alignment.
``<name>_cosine``
    cosine of embeddings from each callable in ``extra_encoders`` -- DINO or CLIP from local weights
    via :func:`local_image_encoder` (nothing is downloaded).

Measured on 400 held-out captions, the edge dialect's render against the standard render (different
seeds, so the nuisances differ): pairs whose caption names neither ``triangle`` nor ``purple`` score
attribute agreement 1.000, feature cosine 0.954, 25.4 dB, SSIM 0.873; pairs the dialect redraws score
0.789, 0.528, 23.1 dB, 0.800 -- the pixel metrics barely see the misalignment, the other two do.

Every metric is summarised by its mean and a 95 % interval over the pairs (the independent units) that
stays inside the metric's range (:func:`metric_interval`): Wilson for ``all_attributes_agree``, Wilson at
the effective sample size for the bounded means (agreement in [0, 1], cosines and SSIM in [-1, 1]),
Student-t for PSNR; fewer than three pairs get no interval and a note. The raw per-pair arrays are kept
so that two methods scored on the same pairs can be compared with a paired interval
(:func:`paired_difference`), which is much tighter than comparing two unpaired means.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dekasim.errors import ConfigError
from dekasim.metrics.stats import (Interval, bounded_mean_interval, mean_ci95, proportion_interval,
                                   student_t_interval, unit_stats)


#: The built-in per-pair metrics, in report order.
METRICS = ("attribute_agreement", "all_attributes_agree", "feature_cosine", "psnr_db", "ssim")
#: ImageNet mean/std, used when a local model has no ``preprocessor_config.json``.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Bounds of the bounded per-pair metrics (``<name>_cosine`` of any encoder: [-1, 1] too).
METRIC_RANGES = {"attribute_agreement": (0.0, 1.0), "feature_cosine": (-1.0, 1.0), "ssim": (-1.0, 1.0)}
#: Per-pair metrics that are 0/1 (a proportion of pairs).
BINARY_METRICS = ("all_attributes_agree",)


def metric_range(name: str) -> tuple[float, float] | None:
    """The bounds of per-unit metric ``name`` (None: unbounded, e.g. ``psnr_db``)."""
    if name in METRIC_RANGES:
        return METRIC_RANGES[name]
    return (-1.0, 1.0) if name.endswith("_cosine") else None


def metric_interval(name: str, values: np.ndarray | Sequence[float], unit: str = "prompt") -> Interval:
    """The 95 % interval of the mean of per-unit metric ``name`` over independent units (``unit``), inside the
    metric's range: Wilson for a 0/1 metric (:data:`BINARY_METRICS`), Wilson at the effective sample
    size for a bounded one (:func:`metric_range`), Student-t otherwise (PSNR [dB]).

    :param values: ``[n]`` per-unit values.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if name in BINARY_METRICS:
        return proportion_interval(int(round(float(v.sum()))), len(v), unit, "wilson")
    bounds = metric_range(name)
    if bounds is not None:
        return bounded_mean_interval(unit_stats(v), unit, bounds)
    return student_t_interval(unit_stats(v), unit)


@dataclass(frozen=True)
class MetricSummary:
    """Mean of one per-pair metric over ``n`` pairs.

    :param ci95_halfwidth: half-width of a symmetric (Student-t, PSNR) 95 % interval; None for bounded
        metrics, whose intervals are not symmetric, and when there is no interval.
    :param ci95_interval: the 95 % interval ``(lo, hi)`` (inside the metric's range), or None when there
        is none (fewer than three pairs, or no spread; see ``note``).
    :param method: how the interval was made (a key of :data:`dekasim.metrics.stats.METHODS`).
    :param note: why there is no interval, or what limits it.
    """

    mean: float
    ci95_halfwidth: float | None
    n: int
    ci95_interval: tuple[float, float] | None = None
    method: str = "student-t"
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mean": self.mean, "ci95_halfwidth": self.ci95_halfwidth, "n": self.n,
                             "ci95_interval": None if self.ci95_interval is None else list(self.ci95_interval),
                             "method": self.method}
        if self.note:
            d["note"] = self.note
        return d


def summarise(values: np.ndarray, binary: bool = False, name: str | None = None) -> MetricSummary:
    """Mean and 95 % interval of per-pair ``values`` (:func:`metric_interval` of ``name``; ``binary``: a 0/1
    metric, Wilson; neither: Student-t)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    iv = metric_interval("all_attributes_agree" if binary else (name or "psnr_db"), v, "pair")
    mean = math.fsum(v.tolist()) / len(v) if len(v) else math.nan
    return MetricSummary(float(mean), iv.halfwidth, int(len(v)), None if iv.ci is None else tuple(iv.ci),
                         iv.method, iv.note)


@dataclass
class ConsistencyReport:
    """Per-pair consistency scores of ``n`` (edge, cloud) image pairs and their summaries.

    :param per_pair: metric name -> ``[n]`` float64 scores, pair ``i`` at index ``i`` (names:
        :data:`METRICS` plus ``<name>_cosine`` per extra encoder).
    :param attribute_agree: attribute -> ``[n]`` bool, the checker read it equally from both images (empty
        where no attribute checker scored the pairs: a user's own models, :func:`encoder_consistency`).
    :param recovered_edge, recovered_cloud: the checker's readings
        (:class:`~dekasim.generative.world.Attributes`, rendered vocabulary, ``"none"`` for an image with
        no object); empty without a checker.
    :param pair_ids: optional identifiers of the pairs (e.g. ``(prompt, seed)``), checked by
        :func:`paired_difference`.
    :param settings: what produced the scores (encoder sha256, extra encoders, checker settings).
    """

    per_pair: dict[str, np.ndarray]
    attribute_agree: dict[str, np.ndarray] = field(default_factory=dict)
    recovered_edge: list[Any] = field(default_factory=list)
    recovered_cloud: list[Any] = field(default_factory=list)
    pair_ids: list[Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, MetricSummary] = field(init=False)

    def __post_init__(self) -> None:
        self.summaries = {name: summarise(v, binary=name in BINARY_METRICS, name=name)
                          for name, v in self.per_pair.items()}

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(next(iter(self.per_pair.values()))) if self.per_pair else len(self.recovered_edge)

    @property
    def metrics(self) -> list[str]:
        """Names of the per-pair metrics in this report."""
        return list(self.per_pair)

    def __getitem__(self, metric: str) -> MetricSummary:
        if metric not in self.summaries:
            raise ConfigError("metric", metric, f"one of {self.metrics}")
        return self.summaries[metric]

    def attribute_agreement_rates(self) -> dict[str, MetricSummary]:
        """Per attribute, the fraction of pairs whose two images read the same (Wilson interval)."""
        return {name: summarise(v.astype(np.float64), binary=True) for name, v in self.attribute_agree.items()}

    def as_dict(self, per_pair: bool = False) -> dict[str, Any]:
        """JSON-serialisable summary (means, half-widths, n, intervals, settings); with ``per_pair`` also
        the raw scores and readings."""
        d: dict[str, Any] = {"n": self.n, "metrics": {k: v.as_dict() for k, v in self.summaries.items()},
                             "attribute_agreement_rates": {k: v.as_dict()
                                                           for k, v in self.attribute_agreement_rates().items()},
                             "settings": self.settings}
        if per_pair:
            d["per_pair"] = {k: v.tolist() for k, v in self.per_pair.items()}
            if self.recovered_edge:
                d["recovered_edge"] = [a.as_dict() for a in self.recovered_edge]
                d["recovered_cloud"] = [a.as_dict() for a in self.recovered_cloud]
            if self.pair_ids is not None:
                d["pair_ids"] = list(self.pair_ids)
        return d


def as_images(images, name: str) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ConfigError(name, shape, "a [N, 3, R, R] float tensor in [0, 1] with N >= 1",
                          "use Batch.torch_images() or the pipeline's [N, 3, R, R] output")
    x = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ConfigError(name, "non-finite values", "finite pixel values in [0, 1]")
    return x.clamp(0.0, 1.0)


def cosine_per_pair(fn: Callable[[torch.Tensor], Any], a: torch.Tensor, b: torch.Tensor, name: str,
            batch_size: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(a), batch_size):
            za, zb = (torch.as_tensor(fn(x[start:start + batch_size])).detach().to("cpu", torch.float32)
                      for x in (a, b))
            n = min(batch_size, len(a) - start)
            if za.dim() != 2 or za.shape != zb.shape or za.shape[0] != n:
                raise ConfigError(f"extra_encoders.{name}" if name != "feature_encoder" else name,
                                  tuple(za.shape), f"[{n}, D] embeddings for {n} images")
            out.append(F.cosine_similarity(za, zb, dim=1).clamp(-1.0, 1.0))
    return torch.cat(out).double().numpy()


def check_encoders(encoders: Mapping[str, Callable[[torch.Tensor], Any]] | None, field_name: str = "extra_encoders",
                   reserved: Sequence[str] = METRICS) -> dict[str, Callable[[torch.Tensor], Any]]:
    """``encoders`` as a dict, each name a Python identifier whose metric ``<name>_cosine`` is not in
    ``reserved``, each value a callable images -> ``[N, D]`` embeddings."""
    out = dict(encoders or {})
    for name, fn in out.items():
        if not isinstance(name, str) or not name.isidentifier() or f"{name}_cosine" in reserved or not callable(fn):
            raise ConfigError(field_name, name, "names that are Python identifiers (metric '<name>_cosine') mapped to "
                              "callables images -> [N, D] embeddings")
    return out


def encoder_consistency(edge_images, cloud_images, encoders: Mapping[str, Callable[[torch.Tensor], Any]], *,
                        pair_ids: Sequence[Any] | None = None, batch_size: int = 256) -> ConsistencyReport:
    """Consistency of aligned (edge, cloud) image pairs from image encoders alone -- a user's DINO/CLIP
    (:func:`local_image_encoder`), or any callable images -> embeddings: no attribute checker.

    Per pair: ``<name>_cosine`` for each encoder (DINO-score: cosine of DINO's CLS embedding; CLIP-I: cosine
    of CLIP's projected image embeddings, as DreamBooth reports them), and the pixel similarity ``psnr_db``
    and ``ssim`` of the edge image against the cloud image (SSIM needs sides of at least 11 pixels).

    :param edge_images, cloud_images: ``[N, 3, R, R]`` in [0, 1], pair ``i`` the same prompt and seed.
    :param encoders: name -> encoder.
    :return: a :class:`ConsistencyReport` without attribute readings.
    """
    edge, cloud = as_images(edge_images, "edge_images"), as_images(cloud_images, "cloud_images")
    if edge.shape != cloud.shape:
        raise ConfigError("cloud_images", tuple(cloud.shape), f"the shape of edge_images {tuple(edge.shape)}",
                          "pair each edge image with the cloud image of the same prompt and seed")
    if pair_ids is not None and len(pair_ids) != len(edge):
        raise ConfigError("pair_ids", len(pair_ids), f"one identifier per pair ({len(edge)})")
    enc = check_encoders(encoders, "image_encoders", reserved=("psnr_db", "ssim"))
    per_pair: dict[str, np.ndarray] = {f"{name}_cosine": cosine_per_pair(fn, edge, cloud, name, batch_size)
                                       for name, fn in enc.items()}
    from dekasim.metrics.image import psnr_db, ssim

    per_pair["psnr_db"] = psnr_db(cloud, edge).double().numpy()
    if min(edge.shape[-2:]) >= 11:
        per_pair["ssim"] = ssim(cloud, edge).double().numpy()
    settings = {"image_encoders": {name: getattr(fn, "info", type(fn).__name__) for name, fn in enc.items()},
                "psnr_reference": "cloud image", "psnr_cap_db": 100.0}
    return ConsistencyReport(per_pair, pair_ids=list(pair_ids) if pair_ids is not None else None, settings=settings)


class EncoderReferences:
    """The reference side of :func:`encoder_consistency` done once: the cloud's images embedded by each
    encoder, so that many batches of user images are scored against them at the cost of their own side.

    :param cloud_images: ``[N, 3, R, R]`` in [0, 1], the references.
    :param encoders: name -> encoder (images -> ``[N, D]``); :meth:`score` gives ``<name>_cosine``.
    """

    def __init__(self, cloud_images, encoders: Mapping[str, Callable[[torch.Tensor], Any]] | None,
                 field_name: str = "image_encoders", reserved: Sequence[str] = ()) -> None:
        self.cloud = as_images(cloud_images, "cloud_images")
        self.encoders = check_encoders(encoders, field_name, reserved)
        self.references = {name: self.embed(name, self.cloud) for name in self.encoders}

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(f"{name}_cosine" for name in self.encoders)

    def embed(self, name: str, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``[N, D]`` float32 CPU embeddings of ``images`` by encoder ``name``."""
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                part = images[start:start + batch_size]
                z = torch.as_tensor(self.encoders[name](part)).detach().to("cpu", torch.float32)
                if z.dim() != 2 or z.shape[0] != len(part):
                    raise ConfigError(f"image_encoders.{name}", tuple(z.shape), f"[{len(part)}, D] embeddings")
                out.append(z)
        return torch.cat(out)

    def score(self, user_images, index) -> dict[str, np.ndarray]:
        """``<name>_cosine`` -> ``[n]`` float64 of ``user_images[i]`` against reference ``index[i]``."""
        user = as_images(user_images, "user_images")
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if len(idx) != len(user) or user.shape[1:] != self.cloud.shape[1:]:
            raise ConfigError("user_images", tuple(user.shape), f"one [3, R, R] image per reference index "
                              f"({len(idx)}) of shape {tuple(self.cloud.shape[1:])}")
        return {f"{name}_cosine": F.cosine_similarity(self.embed(name, user), self.references[name][idx], dim=1)
                .clamp(-1.0, 1.0).double().numpy() for name in self.encoders}


def paired_difference(report_a: ConsistencyReport, report_b: ConsistencyReport, metric: str) -> tuple[float, float]:
    """Mean of ``a - b`` over the same pairs and the half-width of its 95 % paired Student-t interval.

    :param metric: a per-pair metric present in both reports (e.g. ``"feature_cosine"``).
    :return: ``(mean difference, ci95 half-width)`` in the metric's unit (dB for ``psnr_db``).
    :raises ConfigError: if the metric is missing or the reports do not cover the same pairs.
    """
    for label, r in (("report_a", report_a), ("report_b", report_b)):
        if metric not in r.per_pair:
            raise ConfigError("metric", metric, f"a metric of {label}: one of {r.metrics}")
    if report_a.n != report_b.n:
        raise ConfigError("report_b.n", report_b.n, f"the same number of pairs as report_a ({report_a.n})",
                          "score both methods on the same prompts and seeds")
    if report_a.pair_ids is not None and report_b.pair_ids is not None and \
            list(report_a.pair_ids) != list(report_b.pair_ids):
        raise ConfigError("report_b.pair_ids", "differ from report_a.pair_ids", "the same pairs in the same order",
                          "score both methods on the same prompts and seeds")
    diff = report_a.per_pair[metric].astype(np.float64) - report_b.per_pair[metric].astype(np.float64)
    mean, half = mean_ci95(diff.tolist())
    return float(mean), float(half)


# ----------------------------------------------------------------------------------------------
# DINO / CLIP from local weights


class LocalImageEncoder:
    """A transformers vision model as a callable ``[N, 3, R, R]`` images in [0, 1] -> ``[N, D]`` embeddings.

    Images are resized (bicubic) to ``image_size`` x ``image_size``, normalised with ``mean``/``std``
    per channel, and embedded: ``image_embeds`` for CLIP with a projection, the image features of a
    multimodal model, else ``pooler_output`` (DINOv2: the layer-normed CLS token), else the CLS token.
    Built by :func:`local_image_encoder`.
    """

    def __init__(self, model: torch.nn.Module, image_size: int, mean: Sequence[float], std: Sequence[float],
                 info: dict[str, Any]) -> None:
        self.model = model.eval()
        self.image_size = int(image_size)
        self.mean = torch.tensor(list(mean), dtype=torch.float32)[None, :, None, None]
        self.std = torch.tensor(list(std), dtype=torch.float32)[None, :, None, None]
        self.info = info

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = as_images(images, "images")
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False,
                              antialias=x.shape[-1] > self.image_size).clamp(0.0, 1.0)
        p = next(self.model.parameters())
        x = ((x - self.mean) / self.std).to(device=p.device, dtype=p.dtype)
        if self.info["output"] == "get_image_features":
            out = self.model.get_image_features(pixel_values=x)
            z = out if torch.is_tensor(out) else out.pooler_output
        else:
            out = self.model(pixel_values=x)
            if self.info["output"] == "image_embeds":
                z = out.image_embeds
            elif getattr(out, "pooler_output", None) is not None:
                z = out.pooler_output
            else:
                z = out.last_hidden_state[:, 0]
        return z.reshape(z.shape[0], -1).float().cpu()


def _size_from(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in ("height", "shortest_edge", "width"):
            if isinstance(value.get(key), int):
                return value[key]
    return None


def local_image_encoder(path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> LocalImageEncoder:
    """Load a DINO/CLIP-style vision model from a local directory, strictly offline.

    The directory is one written by transformers' ``save_pretrained`` (``config.json`` and
    ``model.safetensors``; pickled ``.bin`` weights are refused). CLIP checkpoints (full or vision
    only) load as ``CLIPVisionModelWithProjection`` when they hold the projection, else
    ``CLIPVisionModel``; other multimodal checkpoints use their image features; anything else
    (DINO, DINOv2, ViT) loads with ``AutoModel``. Image size, mean and std come from
    ``preprocessor_config.json`` when present (``crop_size``, else ``size``, ``image_mean``,
    ``image_std``), else from the model config's ``image_size`` and the ImageNet mean/std.

    :param path: the local model directory.
    :param device: where the model runs; ``dtype``: its precision (float16/bfloat16 on a GPU; embeddings
        come back float32).
    :return: a :class:`LocalImageEncoder`, for ``consistency(..., extra_encoders={"dino": enc})``.
    :raises ConfigError: (field ``image_encoder.path``) if ``path`` is not a directory or holds no
        loadable safetensors vision model.
    """
    from dekasim.progress import quiet_libraries

    p = Path(path).expanduser()
    fix = ("copy the model directory (config.json, model.safetensors, preprocessor_config.json) to this machine; "
           "dekasim never downloads weights")
    if not p.is_dir():
        raise ConfigError("image_encoder.path", str(path), "an existing local directory holding a transformers "
                          "vision model (DINO, DINOv2, CLIP)", fix)
    try:
        with quiet_libraries():
            return _load_local_image_encoder(p, path, device, fix, dtype)
    except (OSError, ValueError, KeyError, EnvironmentError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError("image_encoder.path", str(path), f"a transformers vision model saved with save_pretrained "
                          f"as safetensors ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                          fix) from None


def _load_local_image_encoder(p: Path, path: str | Path, device: str | torch.device, fix: str,
                              dtype: torch.dtype = torch.float32) -> LocalImageEncoder:
    from transformers import AutoConfig, AutoModel, CLIPVisionModel, CLIPVisionModelWithProjection

    try:
        config = AutoConfig.from_pretrained(p, local_files_only=True)
        model_type = config.model_type
        architectures = list(getattr(config, "architectures", None) or [])
        kwargs = {"local_files_only": True, "use_safetensors": True}
        if model_type == "clip" or (model_type == "clip_vision_model"
                                    and "CLIPVisionModelWithProjection" in architectures):
            model, output = CLIPVisionModelWithProjection.from_pretrained(p, **kwargs), "image_embeds"
        elif model_type == "clip_vision_model":
            model, output = CLIPVisionModel.from_pretrained(p, **kwargs), "pooler_output"
        else:
            vision = getattr(config, "vision_config", None) or config
            if getattr(vision, "image_size", None) is None or getattr(vision, "num_channels", 3) != 3:
                raise ConfigError("image_encoder.path", str(path), f"an image model (its config.json, model_type "
                                  f"{model_type!r}, has no image_size: it reads no images)", fix)
            model = AutoModel.from_pretrained(p, **kwargs)
            output = "get_image_features" if getattr(config, "vision_config", None) is not None \
                and hasattr(model, "get_image_features") else "pooler_output"
    except (OSError, ValueError, KeyError, EnvironmentError) as exc:
        raise ConfigError("image_encoder.path", str(path), f"a transformers vision model saved with save_pretrained "
                          f"as safetensors ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                          fix) from None
    model = model.to(device=device, dtype=dtype)
    vision_config = getattr(config, "vision_config", None) or config
    image_size = _size_from(getattr(vision_config, "image_size", None)) or 224
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    pre = p / "preprocessor_config.json"
    if pre.is_file():
        try:
            proc = json.loads(pre.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError("image_encoder.path", str(pre), f"readable JSON ({exc})", fix) from None
        image_size = _size_from(proc.get("crop_size")) or _size_from(proc.get("size")) or image_size
        if proc.get("do_normalize", True) is False:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
            mean, std = tuple(proc.get("image_mean", mean)), tuple(proc.get("image_std", std))
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 and math.isfinite(s) for s in std):
        raise ConfigError("image_encoder.path", str(pre), "image_mean and image_std of three channels, std > 0", fix)
    info = {"path": str(p.resolve()), "dtype": str(dtype).removeprefix("torch."), "model_type": model_type, "class": type(model).__name__, "output": output,
            "image_size": int(image_size), "mean": list(mean), "std": list(std)}
    return LocalImageEncoder(model, image_size, mean, std, info)
