"""Edge-vs-cloud consistency on the embedded world: the scores of a
:class:`~dekasim.metrics.consistency.ConsistencyReport` computed with the world's attribute checker and
its feature encoder (see :mod:`dekasim.metrics.consistency` for what each score means).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dekasim.errors import ConfigError
from dekasim.generative.checker import Checker
from dekasim.generative.features import WorldFeatureEncoder, load_encoder
from dekasim.generative.world import ATTRIBUTE_NAMES, WorldSpec
from dekasim.metrics.consistency import (METRICS, ConsistencyReport, EncoderReferences, as_images, check_encoders,
                                         cosine_per_pair)
from dekasim.metrics.image import psnr_db, ssim


def consistency(edge_images, cloud_images, *, checker: Checker | None = None,
                encoder: WorldFeatureEncoder | None = None,
                extra_encoders: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                pair_ids: Sequence[Any] | None = None, batch_size: int = 256) -> ConsistencyReport:
    """Score aligned pairs of edge and cloud images (same prompt and seed at each index).

    :param edge_images: ``[N, 3, R, R]`` float RGB in [0, 1] (torch tensor; numpy accepted).
    :param cloud_images: same shape, the cloud model's images.
    :param checker: attribute checker (default: ``Checker(WorldSpec(resolution_px=R))``).
    :param encoder: feature encoder (default: the shipped one, :func:`~dekasim.generative.features.load_encoder`,
        which reads 32x32 world images).
    :param extra_encoders: name -> callable mapping ``[n, 3, R, R]`` images in [0, 1] to ``[n, D]``
        embeddings (e.g. :func:`local_image_encoder` for DINO/CLIP); adds ``<name>_cosine``.
    :param pair_ids: optional ``N`` identifiers of the pairs (kept in the report).
    :param batch_size: images per encoder call.
    :return: a :class:`ConsistencyReport`.
    :raises ConfigError: on mismatched or malformed batches, or a bad encoder.

    >>> from dekasim.generative.world import World
    >>> x = World().sample(4, seed=0).torch_images()
    >>> r = consistency(x, x)
    >>> r["attribute_agreement"].mean, r["psnr_db"].mean
    (1.0, 100.0)
    """
    edge, cloud = as_images(edge_images, "edge_images"), as_images(cloud_images, "cloud_images")
    if edge.shape != cloud.shape:
        raise ConfigError("cloud_images", tuple(cloud.shape), f"the shape of edge_images {tuple(edge.shape)}",
                          "pair each edge image with the cloud image of the same prompt and seed")
    n = edge.shape[0]
    if pair_ids is not None and len(pair_ids) != n:
        raise ConfigError("pair_ids", len(pair_ids), f"one identifier per pair ({n})")
    if batch_size < 1:
        raise ConfigError("batch_size", batch_size, "a positive number of images per call")
    extra = check_encoders(extra_encoders)
    checker = checker or Checker(WorldSpec(resolution_px=edge.shape[-1]))
    encoder = encoder if encoder is not None else load_encoder()

    # attributes: recovered vs recovered
    rec_edge = checker.check(edge).recovered
    rec_cloud = checker.check(cloud).recovered
    agree = {a: np.array([getattr(e, a) == getattr(c, a) for e, c in zip(rec_edge, rec_cloud)], dtype=bool)
             for a in ATTRIBUTE_NAMES}
    stacked = np.stack([agree[a] for a in ATTRIBUTE_NAMES]).astype(np.float64)  # [5, N]
    per_pair: dict[str, np.ndarray] = {"attribute_agreement": stacked.mean(axis=0),
                                       "all_attributes_agree": stacked.min(axis=0)}
    # feature space
    was_training = encoder.training
    encoder.eval()
    try:
        per_pair["feature_cosine"] = cosine_per_pair(encoder.embed, edge, cloud, "feature_encoder", batch_size)
    finally:
        encoder.train(was_training)
    # pixels
    psnr, ss = [], []
    for start in range(0, n, batch_size):
        e, c = edge[start:start + batch_size], cloud[start:start + batch_size]
        psnr.append(psnr_db(c, e))
        ss.append(ssim(c, e))
    per_pair["psnr_db"] = torch.cat(psnr).double().numpy()
    per_pair["ssim"] = torch.cat(ss).double().numpy()
    for name, fn in extra.items():
        per_pair[f"{name}_cosine"] = cosine_per_pair(fn, edge, cloud, name, batch_size)

    manifest = getattr(encoder, "manifest", None) or {}
    settings = {"checker": {"min_contrast": checker.min_contrast, "resolution_px": checker.spec.resolution_px},
                "feature_encoder": {"sha256": manifest.get("sha256"), "format": manifest.get("format")},
                "extra_encoders": {name: getattr(fn, "info", type(fn).__name__) for name, fn in extra.items()},
                "psnr_reference": "cloud image", "psnr_cap_db": 100.0}
    return ConsistencyReport(per_pair, agree, rec_edge, rec_cloud,
                             list(pair_ids) if pair_ids is not None else None, settings)


class ReferenceScorer:
    """The reference side of :func:`consistency` done once: the cloud's images read by the checker and
    embedded by the feature encoder, so that many batches of user images are scored against them at the
    cost of their own side only (a sweep scores every point against the same cloud images).

    :param cloud_images: ``[N, 3, R, R]`` in [0, 1], the references.
    :param checker, encoder: as in :func:`consistency` (defaults: the world's checker, the shipped encoder).
    :param extra_encoders: as in :func:`consistency` (e.g. DINO/CLIP from local weights): adds
        ``<name>_cosine`` to the scores.
    """

    #: The per-pair scores :meth:`score` returns (those of :func:`consistency` that need no pixels).
    METRICS = ("attribute_agreement", "all_attributes_agree", "feature_cosine")

    def __init__(self, cloud_images, checker: Checker | None = None, encoder: WorldFeatureEncoder | None = None,
                 extra_encoders: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> None:
        self.cloud = as_images(cloud_images, "cloud_images")
        self.checker = checker or Checker(WorldSpec(resolution_px=self.cloud.shape[-1]))
        self.encoder = encoder if encoder is not None else load_encoder()
        self.extra = EncoderReferences(self.cloud, extra_encoders, "extra_encoders", reserved=METRICS)
        self.readings = self.checker.check(self.cloud).recovered
        self.embeddings = self._embed(self.cloud)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The keys of :meth:`score`: :data:`METRICS` and ``<name>_cosine`` per extra encoder."""
        return self.METRICS + self.extra.metrics

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                return torch.as_tensor(self.encoder.embed(images)).detach().to("cpu", torch.float32)
        finally:
            self.encoder.train(was_training)

    def score(self, user_images, index) -> dict[str, np.ndarray]:
        """Per-pair scores (:data:`METRICS` -> ``[n]`` float64) of ``user_images[i]`` against reference
        ``index[i]``; the same numbers :func:`consistency` gives for those pairs."""
        user = as_images(user_images, "user_images")
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if len(idx) != len(user) or user.shape[1:] != self.cloud.shape[1:]:
            raise ConfigError("user_images", tuple(user.shape), f"one [3, R, R] image per reference index "
                              f"({len(idx)}) of shape {tuple(self.cloud.shape[1:])}")
        rec = self.checker.check(user).recovered
        stacked = np.array([[getattr(e, a) == getattr(self.readings[int(i)], a) for a in ATTRIBUTE_NAMES]
                            for e, i in zip(rec, idx)], dtype=np.float64).reshape(len(idx), len(ATTRIBUTE_NAMES))
        cos = F.cosine_similarity(self._embed(user), self.embeddings[idx], dim=1).clamp(-1.0, 1.0)
        out = {"attribute_agreement": stacked.mean(axis=1), "all_attributes_agree": stacked.min(axis=1),
               "feature_cosine": cos.double().numpy()}
        out.update(self.extra.score(user, idx))
        return out
