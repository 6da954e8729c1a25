"""Uncoded analog reference: low-pass DCT coefficients sent straight as symbols (linear, no coding)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from dekasim.codecs.base import Codec, Decoded, complex_to_real, real_to_complex, register_codec
from dekasim.conditions import Condition


@lru_cache(maxsize=16)
def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``[n, n]`` (float64): ``X = D @ x``, ``x = D.T @ X``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


@lru_cache(maxsize=16)
def lowpass_order(shape: tuple[int, ...]) -> torch.Tensor:
    """Indices into the flattened ``[C, H, W]`` DCT coefficients, lowest spatial frequency first
    (by u+v, then u, then channel), so that a prefix is a low-pass approximation."""
    c, h, w = shape
    cc, uu, vv = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    key = ((uu + vv) * h + uu) * c + cc
    return torch.argsort(key.flatten(), stable=True)


@register_codec("analog")
class AnalogCodec(Codec):
    """Uncoded linear transmission at the same bandwidth ratio as the learned codecs.

    Each item's 2-D DCT (per channel, orthonormal) is read in low-pass order; the first
    ``min(2 n, k)`` coefficients become the real and imaginary parts of the ``n`` symbols, scaled to
    unit average power. The scale (one float per item) is side information assumed known at the
    receiver, as is the mean of the discarded coefficients (zero). The receiver applies the LMMSE
    shrinkage ``y / (1 + no_eff)`` (unit-power prior), inverts the DCT and, for images (three channels,
    the rule the learned codecs' ``payload_kind = "auto"`` follows), clips to [0, 1]; latents keep their
    range. Payloads of one or two dimensions are sent sample by sample.
    """

    kind = "analog"

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float) -> None:
        super().__init__(payload_shape, bandwidth_ratio)
        self.n_sent = min(2 * self.n_channel_uses, self.n_source_samples)
        self._scale: torch.Tensor | None = None

    def _use_dct(self) -> bool:
        return len(self.payload_shape) == 3

    def _analyse(self, p: torch.Tensor) -> torch.Tensor:
        b = p.shape[0]
        if not self._use_dct():
            return p.reshape(b, -1).to(torch.float64)
        _, h, w = self.payload_shape
        dh, dw = dct_matrix(h).to(p.device), dct_matrix(w).to(p.device)
        coeff = dh @ p.to(torch.float64) @ dw.T
        return coeff.reshape(b, -1)[:, lowpass_order(self.payload_shape).to(p.device)]

    def _synthesise(self, v: torch.Tensor) -> torch.Tensor:
        b = v.shape[0]
        if not self._use_dct():
            return v.reshape(b, *self.payload_shape)
        _, h, w = self.payload_shape
        flat = torch.zeros_like(v)
        flat[:, lowpass_order(self.payload_shape).to(v.device)] = v
        coeff = flat.reshape(b, *self.payload_shape)
        return dct_matrix(h).to(v.device).T @ coeff @ dct_matrix(w).to(v.device)

    def encode(self, payload: torch.Tensor, cond: Condition) -> torch.Tensor:
        self.check_payload(payload)
        v = self._analyse(payload)[:, : self.n_sent]
        # unit average symbol power: sum of the sent reals^2 = n (two reals per symbol)
        scale = torch.sqrt(v.pow(2).sum(dim=1, keepdim=True) / self.n_channel_uses).clamp_min(1e-12)
        self._scale = scale
        return real_to_complex((v / scale).to(torch.float32), self.n_channel_uses).to(torch.complex64)

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor, cond_seen: Condition) -> Decoded:
        if self._scale is None or self._scale.shape[0] != y.shape[0]:
            raise RuntimeError("AnalogCodec.decode needs the side information of a matching encode() batch")
        x_hat = y / (1.0 + no_eff)
        v = complex_to_real(x_hat, self.n_sent).to(torch.float64) * self._scale
        full = torch.zeros(y.shape[0], self.n_source_samples, dtype=torch.float64, device=y.device)
        full[:, : self.n_sent] = v
        out = self._synthesise(full).to(torch.float32)
        is_image = self._use_dct() and self.payload_shape[0] == 3
        return Decoded(payload=out.clamp(0.0, 1.0) if is_image else out)
