"""DeepJSCC codecs: a small convolutional encoder/decoder trained *through* the OFDM/TDL link.

One family serves images (``[3, H, W]`` in [0, 1]) and latent tensors (``[C, H, W]``, any float)::

    payload --(normalise)--> conv encoder --> z [cz, h, w] --(first 2n reals, pairs)--> n complex
            --(per item: E|x|^2 = 1)--> channel --> y, no_eff
    decoder input = [Re/Im of y / (1 + no_eff), log10 no_eff per real]  (LMMSE shrink + reliability)
            --> conv decoder --> sigmoid (images) | de-normalise (latents)

A new image network first folds 4x4 pixel blocks into channels (``space_to_depth``: a 32x32 photo
enters as 48x8x8, the layout of the latents; the decoder unfolds them before its sigmoid). The encoder
then halves the resolution until the feature map is about 8x8 (none for 32x32 photos and 8x8 latents; two
stages for a network with ``space_to_depth = 1``, as the photo checkpoints had before);
``cz = ceil(2 n / (h w))`` channels hold the ``2 n`` reals of ``n`` symbols (the excess of the last
channel is computed and never sent). The decoder sees the equalised symbols and the post-equalisation
noise variance of each symbol (the honest per-symbol reliability that :class:`~dekasim.channels.OFDMLink`
returns); the condition-aware codecs also adapt to the condition they *believe* (``cond`` at the encoder,
``cond_seen`` at the decoder), never to the true one.

Shipped checkpoints (package data), both at bandwidth ratio 1/6 (512 symbols per item): RGB images
``(3, 32, 32)`` trained on photographs, and latents ``(48, 8, 8)`` trained on what the shipped edge
model generates (its exact pixel-unshuffle latents in [-1, 1]: DeKA-g's payload, ``[payload]
representation = "latent"``). Other shapes and ratios need ``checkpoint``.

Registered codecs (``kind = "learned"``):

- ``"jscc"``: trained at one condition (Es/N0 10 dB, TDL-C 300 ns) and used everywhere.
- ``"jscc_mixed"``: trained over the condition distribution, without a condition input.
- ``"jscc_generic"``: the edge's *generic* pre-installed JSCC of DeKA-g's T-KA (latents only): trained over
  the condition distribution on natural-photo latents (the world's exact latent map on crops of the
  training photographs: no model's images), rate-adaptive: one network serves 1/24, 1/12 and 1/6 of the
  48x8x8 latents (128, 256, 512 symbols) by sending a prefix of its importance-ordered symbols (trained
  with one random rate per step; the decoder treats unsent symbols as erased). Shipped at ``bw1_6``,
  which also serves the two lower rates.
- ``"adjscc"``: the same network plus ADJSCC-style attention modules (channel-wise scaling from
  pooled features and the SNR only), trained over the condition distribution.
- ``"cala"`` and ``"lora_oracle"`` live in :mod:`dekasim.codecs.cala`.

Options (all codecs of the family):

- ``checkpoint``: ``None`` (default) loads the shipped checkpoint for this codec, payload shape and
  bandwidth ratio (``dekasim/codecs/checkpoints/<codec>-<C>x<H>x<W>-bw<p>_<q>.json``), or raises a
  :class:`ConfigError` naming ``checkpoint`` with the command that trains one; a path to a manifest
  ``*.json`` (or its ``*.safetensors``) written by :mod:`dekasim.training.jscc`; or ``"none"``:
  an untrained network with seeded random weights (for tests and for training from scratch).
- ``width`` (only with ``checkpoint="none"``): channels at the bottleneck (default 64).
- ``payload_kind`` (only with ``checkpoint="none"``): ``"image"``, ``"latent"`` or ``"auto"``
  (default: image when the payload has 3 channels).
- ``init_seed`` (only with ``checkpoint="none"``): seed of the random initial weights (default 0).
- ``space_to_depth`` (only with ``checkpoint="none"``): ``"auto"`` (default: 4 for images whose sides it
  divides leaving at least 8 pixels, else 2, else 1; 1 for latents) or the pixel-unshuffle factor itself.
- ``rates`` (only with ``checkpoint="none"``): bandwidth ratios one network serves (a rate-adaptive
  network; must include the codec's own). A checkpoint trained so serves each of them.
- ``condition_error_db`` (condition-aware codecs ``adjscc``, ``cala``, ``lora_oracle``): standard
  deviation [dB] of the error of the SNR estimate the codec adapts to (default 0: exact). One error
  per item is drawn in :meth:`encode` (torch's global generator) and the decoder adapts to the same
  estimate (the receiver measured it and fed it back: both ends share one belief); the true SNR only
  acts in the channel.

Example (the shipped checkpoints; ``tests/unit/test_cala.py`` runs it)::

    codec = build_codec("cala", (3, 32, 32), 1 / 6)                   # [3, 32, 32] images, 512 symbols
    cond = Condition(snr_db=5.0, delay_spread_ns=1000.0, tdl_profile="C")
    x = codec.encode(images, cond)                                     # [B, 512] complex64, E|x|^2 = 1
    y, no_eff = OFDMLink(GridConfig(pilot_subcarrier_spacing=1), csi="ls")(x, cond)
    images_hat = codec.decode(y, no_eff, cond).payload                 # [B, 3, 32, 32] in [0, 1]

Checkpoints are safetensors (fp16) plus a JSON manifest (format, architecture, sha256 and size of the
tensor file, the training command, seed, steps, wall and CPU time, versions). Only these two kinds of
file are ever read; the sha256 is checked on load.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from dekasim.checksums import sha256_file
from dekasim.codecs.base import Codec, Decoded, complex_to_real, real_to_complex, register_codec, unit_power
from dekasim.conditions import SCALABLE_TDL_PROFILES, Condition, parse_ratio
from dekasim.errors import ConfigError

#: Manifest format tag of the checkpoints this module writes and reads.
FORMAT = "dekasim-jscc/1"
#: Directory of the shipped checkpoints (package data: ``dekasim/codecs/checkpoints/*``).
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
#: Width fractions of the resolution stages, full resolution first, bottleneck last.
_STAGE_WIDTHS = {0: (1.0,), 1: (0.75, 1.0), 2: (0.5, 0.75, 1.0), 3: (0.375, 0.5, 0.75, 1.0)}
#: Clamp of log10(no_eff) fed to the decoder (a symbol at -40 dB carries nothing anyway).
_LOG_NO_RANGE = (-6.0, 4.0)
#: ``space_to_depth`` of a new image network (``"auto"``): 32x32 photos enter as 48x8x8, the layout of the latents.
IMAGE_SPACE_TO_DEPTH = 4
#: Number of condition features (see :func:`condition_features`).
NUM_CONDITION_FEATURES = 10


# ----------------------------------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arch:
    """What fixes the tensors of a JSCC network (stored in every manifest).

    :param payload_shape: ``(C, H, W)`` of one item.
    :param n_symbols: complex channel uses per item.
    :param payload_kind: ``"image"`` (sigmoid output in [0, 1]) or ``"latent"`` (linear output).
    :param width: channels at the bottleneck.
    :param attention: ADJSCC attention modules (SNR-conditioned channel scaling).
    :param rates: symbol counts a rate-adaptive network serves (the largest is ``n_symbols``): it sends a
        prefix of ``n`` of its ``n_symbols`` importance-ordered symbols, and the decoder treats the rest as
        erased. Empty: one rate, ``n_symbols``.
    :param space_to_depth: ``f``: the normalised payload enters as ``pixel_unshuffle(x, f)``, ``[C f^2, H/f,
        W/f]``, and the decoder's output leaves through ``pixel_shuffle``; the stages work on that map. 1:
        the payload as it is (every manifest written before this field; it is not stored at 1).
    """

    payload_shape: tuple[int, int, int]
    n_symbols: int
    payload_kind: str = "image"
    width: int = 64
    attention: bool = False
    rates: tuple[int, ...] = ()
    space_to_depth: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload_shape", tuple(int(s) for s in self.payload_shape))
        object.__setattr__(self, "rates", tuple(sorted(int(r) for r in self.rates)))
        if self.rates and (self.rates[-1] != self.n_symbols or self.rates[0] < 1):
            raise ValueError(f"rates {self.rates}: the largest must be n_symbols = {self.n_symbols}")
        f = self.space_to_depth
        if f < 1 or self.payload_shape[1] % f or self.payload_shape[2] % f:
            raise ValueError(f"space_to_depth {f}: must divide the payload's H and W {self.payload_shape[1:]}")

    @property
    def network_input_shape(self) -> tuple[int, int, int]:
        """``(C f^2, H / f, W / f)``: the map the first convolution sees (``f = space_to_depth``)."""
        c, h, w = self.payload_shape
        f = self.space_to_depth
        return c * f * f, h // f, w // f

    @property
    def served(self) -> tuple[int, ...]:
        """Symbol counts per item this network sends: ``rates``, or ``(n_symbols,)`` for one rate."""
        return self.rates or (self.n_symbols,)

    def serves(self, n: int) -> bool:
        """Whether this network sends ``n`` symbols per item."""
        return n in self.served

    @property
    def stages(self) -> int:
        """Stride-2 stages: halve while the map stays at least 8x8 (at most 3)."""
        _, h, w = self.network_input_shape
        s = 0
        while s < 3 and h % 2 ** (s + 1) == 0 and w % 2 ** (s + 1) == 0 and min(h, w) // 2 ** (s + 1) >= 8:
            s += 1
        return s

    @property
    def widths(self) -> list[int]:
        return [max(8, int(round(self.width * f))) for f in _STAGE_WIDTHS[self.stages]]

    @property
    def latent_grid(self) -> tuple[int, int, int]:
        """``(cz, h, w)`` of the encoder output."""
        _, h, w = self.network_input_shape
        h, w = h // 2 ** self.stages, w // 2 ** self.stages
        return math.ceil(2 * self.n_symbols / (h * w)), h, w

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["payload_shape"] = list(self.payload_shape)
        if self.rates:
            d["rates"] = list(self.rates)
        else:  # single-rate manifests keep the architecture record they had before rates existed
            d.pop("rates")
        if self.space_to_depth == 1:  # likewise for the payload taken as it is
            d.pop("space_to_depth")
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> "Arch":
        return Arch(payload_shape=tuple(d["payload_shape"]), n_symbols=int(d["n_symbols"]),
                    payload_kind=d["payload_kind"], width=int(d["width"]), attention=bool(d["attention"]),
                    rates=tuple(d.get("rates", ())), space_to_depth=int(d.get("space_to_depth", 1)))


Adapter = tuple[torch.Tensor, ...]
"""``(A [M, in*k*k], B [M, out], G [batch, M])``: a low-rank update ``W + sum_m G[:, m] B_m A_m^T``; optionally
``(A, B, G, S [K, out], T [K, out])``, which also scales and shifts each output channel:
``out * (1 + sum_k G[:, k] S_k) + sum_k G[:, k] T_k`` (K = M), or ``(A, B, G, S, T, G_K [batch, K])`` where
``G`` repeats ``G_K`` over rank-``M / K`` adapters and the scales and shifts follow ``G_K``."""


class FilterScaling(tuple):
    """An :data:`Adapter` whose components rescale the base filters instead of adding to them: ``(A [M, in],
    B [M, out], G [batch, M], ...)`` computes with ``W ⊙ (1 + sum_m G[:, m] B_m A_m^T)`` (the ``[out, in]``
    factor broadcast over the kernel taps); the optional scales and shifts are those of :data:`Adapter`.
    ``M`` components cost ``M (in + out)`` numbers; the update re-weights the base's own filters and is not
    confined to rank ``M``."""


def kron_factors(n: int) -> tuple[int, int]:
    """``(p, n / p)`` with ``p`` the largest divisor of ``n`` not above its square root."""
    p = max(d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0)
    return p, n // p


class KroneckerUpdate(tuple):
    """An :data:`Adapter` whose components are Kronecker products: ``(A [M, o1 i1], B [M, o2 i2], G [batch, M],
    ...)`` computes with ``W + sum_m G[:, m] kron(A_m, B_m)`` over the ``[out, in*k*k]`` kernel matrix, ``(o1,
    o2) = kron_factors(out)``, ``(i1, i2) = kron_factors(in*k*k)``: ``o1 i1 + o2 i2`` numbers per component, an
    update of rank up to ``min(o1, i1) min(o2, i2)``."""


class AConv(nn.Conv2d):
    """A 2-D convolution that accepts a per-item low-rank update of its weight.

    ``forward(x, adapter)`` computes ``conv(x, W + sum_m g_bm b_m a_m^T)`` for item ``b`` without
    forming the weights: ``conv(x, W) + sum_m g_bm b_m conv(x, a_m)``. Columns of ``G`` that are zero
    for the whole batch are skipped (an oracle bank of many LoRAs costs only the ones in use). A
    :class:`FilterScaling` adapter forms the rescaled weights instead (one grouped convolution per batch).
    """

    def forward(self, x: torch.Tensor, adapter: Adapter | None = None) -> torch.Tensor:  # type: ignore[override]
        if adapter is None:
            return super().forward(x)
        if isinstance(adapter, FilterScaling):
            out = self._scaled(x, *adapter[:3])
        elif isinstance(adapter, KroneckerUpdate):
            out = self._kron(x, *adapter[:3])
        else:
            out = self._low_rank(x, super().forward(x), *adapter[:3], bool(adapter[3:]))
        affine = adapter[3:]
        if affine:  # (scale, shift) [K, out], and the [B, K] gate when g repeats it per component
            ga = affine[2] if len(affine) > 2 else adapter[2]
            scale, shift = ga @ affine[0], ga @ affine[1]                    # [B, out]
            out = out * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return out

    def _scaled(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``conv(x, W ⊙ (1 + sum_m g_bm b_m a_m^T))`` per item."""
        return self._conv_per_item(x, g, lambda gg: self.weight[None] * (
            1 + torch.einsum("bm,mo,mi->boi", gg, b, a)[:, :, :, None, None]))

    def _kron(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``conv(x, W + sum_m g_bm kron(a_m, b_m))`` per item."""
        (o1, o2), (i1, i2) = kron_factors(self.out_channels), kron_factors(self.fan_in)
        d = torch.einsum("mpq,mrs->mprqs", a.reshape(-1, o1, i1), b.reshape(-1, o2, i2))
        d = d.reshape(-1, *self.weight.shape)                                 # [M, out, in, kh, kw]
        return self._conv_per_item(x, g, lambda gg: self.weight[None] + torch.einsum("bm,m...->b...", gg, d))

    def _conv_per_item(self, x: torch.Tensor, g: torch.Tensor,
                       weights: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Each item of ``x`` convolved with its own kernel ``weights(g)`` (``[B, out, in, kh, kw]`` from the
        ``[B, M]`` gate weights): one plain convolution when the whole batch shares ``g``, else one grouped
        convolution over the batch."""
        if bool((g == g[:1]).all()):
            return F.conv2d(x, weights(g[:1])[0], self.bias, self.stride, self.padding)
        n, c, h, w = x.shape
        weight = weights(g).reshape(n * self.out_channels, c, *self.kernel_size)
        bias = None if self.bias is None else self.bias.repeat(n)
        out = F.conv2d(x.reshape(1, n * c, h, w), weight, bias, self.stride, self.padding, groups=n)
        return out.reshape(n, self.out_channels, *out.shape[2:])

    def _low_rank(self, x: torch.Tensor, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, g: torch.Tensor,
                  affine: bool) -> torch.Tensor:
        """``out + sum_m g_bm b_m conv(x, a_m)``."""
        if g.shape[1] > 1 and not g.requires_grad and not affine:
            active = g.abs().sum(0) > 0
            if not bool(active.all()):
                a, b, g = a[active], b[active], g[:, active]
        m = a.shape[0]
        u = F.conv2d(x, a.reshape(m, self.in_channels, *self.kernel_size), None, self.stride, self.padding)
        return out + torch.einsum("bmhw,mo->bohw", u * g[:, :, None, None], b)

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]


class AttentionFeature(nn.Module):
    """ADJSCC attention feature module: channel scaling from pooled features and the SNR."""

    def __init__(self, channels: int, n_cond: int = 1) -> None:
        super().__init__()
        hidden = max(8, channels // 4)
        self.fc1 = nn.Linear(channels + n_cond, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.fc2(F.relu(self.fc1(torch.cat([x.mean(dim=(2, 3)), s], dim=1)))))
        return x * a[:, :, None, None]


class JSCCNet(nn.Module):
    """The encoder/decoder pair of :class:`Arch` (see the module docstring for the data path).

    Adaptable layers are named ``"enc.<name>"`` / ``"dec.<name>"`` after the keys of :attr:`enc` and
    :attr:`dec`; :meth:`encode` and :meth:`decode` take a dict of :data:`Adapter` by layer name.
    """

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        c_in = arch.network_input_shape[0]
        ws, s = arch.widths, arch.stages
        cz, _, _ = arch.latent_grid
        w = ws[-1]
        enc: dict[str, nn.Module] = {"stem": AConv(c_in, ws[0], 3, padding=1)}
        for j in range(1, s + 1):
            enc[f"down{j}"] = AConv(ws[j - 1], ws[j], 3, stride=2, padding=1)
            enc[f"conv{j}"] = AConv(ws[j], ws[j], 3, padding=1)
        enc["res1"] = AConv(w, w, 3, padding=1)
        enc["res2"] = AConv(w, w, 3, padding=1)
        enc["out"] = AConv(w, cz, 3, padding=1)
        dec: dict[str, nn.Module] = {"inp": AConv(2 * cz, w, 3, padding=1),
                                     "res1": AConv(w, w, 3, padding=1), "res2": AConv(w, w, 3, padding=1)}
        for j in range(s, 0, -1):
            dec[f"up{j}"] = AConv(ws[j], ws[j - 1], 3, padding=1)
            dec[f"conv{j}"] = AConv(ws[j - 1], ws[j - 1], 3, padding=1)
        dec["out"] = AConv(ws[0], c_in, 3, padding=1)
        self.enc = nn.ModuleDict(enc)
        self.dec = nn.ModuleDict(dec)
        if arch.attention:
            self.enc_af = nn.ModuleList([AttentionFeature(ws[0])] + [AttentionFeature(ws[j]) for j in range(1, s + 1)]
                                        + [AttentionFeature(w)])
            self.dec_af = nn.ModuleList([AttentionFeature(w)] + [AttentionFeature(ws[j - 1]) for j in range(s, 0, -1)])
        # payload normalisation (images: fixed; latents: per-channel statistics set by training)
        mean, std = (0.5, 0.25) if arch.payload_kind == "image" else (0.0, 1.0)
        self.register_buffer("in_mean", torch.full((arch.payload_shape[0],), mean))
        self.register_buffer("in_std", torch.full((arch.payload_shape[0],), std))

    def layer(self, name: str) -> AConv:
        """The convolution called ``name`` (``"enc.res2"``, ``"dec.inp"``, …)."""
        side, key = name.split(".", 1)
        mods = {"enc": self.enc, "dec": self.dec}.get(side)
        if mods is None or key not in mods:
            raise KeyError(f"no layer {name!r}; layers: {self.layer_names()}")
        return mods[key]  # type: ignore[return-value]

    def layer_names(self) -> list[str]:
        return [f"enc.{k}" for k in self.enc] + [f"dec.{k}" for k in self.dec]

    def encode(self, x: torch.Tensor, adapt: dict[str, Adapter] | None = None,
               snr: torch.Tensor | None = None, n_send: int | None = None) -> torch.Tensor:
        """``[B, C, H, W]`` payload -> ``[B, n_send]`` complex64 symbols of unit average power per item.

        :param snr: ``[B, 1]`` SNR feature for the attention modules (``attention`` nets only).
        :param n_send: symbols to send (default ``n_symbols``): the first ``n_send`` of the encoder's order,
            normalised to unit power over what is sent (a rate-adaptive network's rates).
        """
        n_send = self.arch.n_symbols if n_send is None else int(n_send)
        a = adapt or {}
        s = self.arch.stages
        af = iter(self.enc_af) if self.arch.attention else None
        h = (x - self.in_mean[:, None, None]) / self.in_std[:, None, None]
        if self.arch.space_to_depth > 1:
            h = F.pixel_unshuffle(h, self.arch.space_to_depth)
        h = F.gelu(self.enc["stem"](h, a.get("enc.stem")))
        if af is not None:
            h = next(af)(h, snr)
        for j in range(1, s + 1):
            h = F.gelu(self.enc[f"down{j}"](h, a.get(f"enc.down{j}")))
            h = F.gelu(self.enc[f"conv{j}"](h, a.get(f"enc.conv{j}")))
            if af is not None:
                h = next(af)(h, snr)
        r = F.gelu(self.enc["res1"](h, a.get("enc.res1")))
        h = F.gelu(h + self.enc["res2"](r, a.get("enc.res2")))
        if af is not None:
            h = next(af)(h, snr)
        z = self.enc["out"](h, a.get("enc.out")).flatten(1)[:, : 2 * n_send]
        return unit_power(real_to_complex(z, n_send)).to(torch.complex64)

    def decoder_input(self, y: torch.Tensor, no_eff: torch.Tensor) -> torch.Tensor:
        """``[B, 2 cz, h, w]``: LMMSE-shrunk reals of ``y`` and log10 of their noise variance. Symbols a
        rate-adaptive network did not send (``y`` shorter than ``n_symbols``) enter as erased: value 0, the
        largest noise variance."""
        cz, h, w = self.arch.latent_grid
        m = 2 * y.shape[1]
        no = no_eff.to(torch.float32).clamp_min(0.0)
        shrunk = complex_to_real((y / (1.0 + no)).to(torch.complex64), m)
        log_no = torch.log10(no.clamp_min(10 ** _LOG_NO_RANGE[0])).clamp(*_LOG_NO_RANGE)
        log_no = log_no.repeat_interleave(2, dim=1)[:, :m] / 2.0
        pad = cz * h * w - m
        if pad:
            shrunk = F.pad(shrunk, (0, pad))
            log_no = F.pad(log_no, (0, pad), value=_LOG_NO_RANGE[1] / 2.0)
        b = y.shape[0]
        return torch.cat([shrunk.reshape(b, cz, h, w), log_no.reshape(b, cz, h, w)], dim=1)

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor, adapt: dict[str, Adapter] | None = None,
               snr: torch.Tensor | None = None) -> torch.Tensor:
        """Equalised symbols ``[B, n]`` and their noise variance ``[B, n]`` -> payload ``[B, C, H, W]``."""
        a = adapt or {}
        s = self.arch.stages
        af = iter(self.dec_af) if self.arch.attention else None
        h = F.gelu(self.dec["inp"](self.decoder_input(y, no_eff), a.get("dec.inp")))
        r = F.gelu(self.dec["res1"](h, a.get("dec.res1")))
        h = F.gelu(h + self.dec["res2"](r, a.get("dec.res2")))
        if af is not None:
            h = next(af)(h, snr)
        for j in range(s, 0, -1):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = F.gelu(self.dec[f"up{j}"](h, a.get(f"dec.up{j}")))
            h = F.gelu(self.dec[f"conv{j}"](h, a.get(f"dec.conv{j}")))
            if af is not None:
                h = next(af)(h, snr)
        out = self.dec["out"](h, a.get("dec.out"))
        if self.arch.space_to_depth > 1:
            out = F.pixel_shuffle(out, self.arch.space_to_depth)
        if self.arch.payload_kind == "image":
            return torch.sigmoid(out)
        return out * self.in_std[:, None, None] + self.in_mean[:, None, None]


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------
# Condition features (what a gate or an attention module sees)
# ----------------------------------------------------------------------------------------------------

def snr_feature(snr_db: torch.Tensor) -> torch.Tensor:
    """``[B]`` SNR [dB] -> ``[B, 1]`` feature (0 dB -> -1, 20 dB -> +1)."""
    return (snr_db.to(torch.float32) / 10.0 - 1.0)[:, None]


def condition_features(snr_db: torch.Tensor, cond: Condition, bandwidth_ratio: float) -> torch.Tensor:
    """``[B, NUM_CONDITION_FEATURES]``: SNR, log delay spread, log bandwidth ratio, speed, profile.

    ``[snr/10 - 1, log10(ds / 300 ns), log2(ratio * 6), speed / 30 m/s, one-hot A..E, flat]``; the SNR
    is per item (an estimate may differ per item), the rest comes from ``cond``.
    """
    b = snr_db.shape[0]
    ds = max(float(cond.delay_spread_ns), 1.0)
    letter = cond.tdl_profile[0] if cond.is_tdl and cond.tdl_profile != "rayleigh" else None
    onehot = [1.0 if letter == p else 0.0 for p in SCALABLE_TDL_PROFILES]
    rest = [math.log10(ds / 300.0), math.log2(bandwidth_ratio * 6.0), cond.speed_mps / 30.0,
            *onehot, 0.0 if cond.is_tdl else 1.0]
    return torch.cat([snr_feature(snr_db), torch.tensor(rest, dtype=torch.float32, device=snr_db.device).expand(b, -1)],
                     dim=1)


# ----------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------

def ratio_tag(bandwidth_ratio: float) -> str:
    """``1/6 -> "1_6"``, ``0.25 -> "1_4"`` (file-name form of a bandwidth ratio)."""
    f = Fraction(bandwidth_ratio).limit_denominator(10_000)
    return f"{f.numerator}_{f.denominator}"


def checkpoint_stem(codec: str, payload_shape: tuple[int, ...], bandwidth_ratio: float) -> str:
    """File stem of a checkpoint, e.g. ``"cala-3x32x32-bw1_6"``."""
    return f"{codec}-{'x'.join(str(int(s)) for s in payload_shape)}-bw{ratio_tag(bandwidth_ratio)}"


def shipped_checkpoints() -> list[str]:
    """Stems of the checkpoints shipped with dekasim."""
    return sorted(p.stem for p in CHECKPOINT_DIR.glob("*.json"))


def save_checkpoint(directory: str | Path, stem: str, tensors: dict[str, torch.Tensor], manifest: dict[str, Any],
                    dtype: torch.dtype = torch.float16) -> Path:
    """Write ``stem.safetensors`` (floating tensors cast to ``dtype``) and ``stem.json``; returns the JSON path.

    The manifest gets ``format``, ``file``, ``sha256``, ``bytes``, ``dtype`` and ``num_tensors`` added.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    t = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
         for k, v in tensors.items()}
    st = d / f"{stem}.safetensors"
    save_file(t, str(st), metadata={"format": FORMAT})
    st.chmod(0o644)
    manifest = {"format": FORMAT, **manifest, "file": st.name, "sha256": sha256_file(st),
                "bytes": st.stat().st_size, "dtype": str(dtype).replace("torch.", ""), "num_tensors": len(t)}
    path = d / f"{stem}.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def read_checkpoint(path: str | Path, field: str = "checkpoint") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a manifest and its tensors (fp32); checks format and sha256. ``path``: ``.json`` or
    ``.safetensors`` (the other file must sit beside it)."""
    from safetensors.torch import load_file

    p = Path(path)
    mpath = p.with_suffix(".json")
    if not mpath.exists():
        raise ConfigError(field, str(path), "a checkpoint manifest (*.json beside its *.safetensors)",
                          "give the path of a *.json written by `python -m dekasim.training.jscc`")
    manifest = json.loads(mpath.read_text())
    if manifest.get("format") != FORMAT:
        raise ConfigError(field, str(path), f"a manifest of format {FORMAT!r}, got {manifest.get('format')!r}")
    st = mpath.parent / manifest["file"]
    if not st.exists() or sha256_file(st) != manifest["sha256"]:
        raise ConfigError(field, str(st), f"the tensor file with sha256 {manifest['sha256']} named by {mpath.name}",
                          "the file is missing or was modified; retrain or restore it")
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(st)).items()}
    return manifest, tensors


def resolve_checkpoint(codec: str, payload_shape: tuple[int, ...], bandwidth_ratio: float,
                       checkpoint: str | Path | None) -> Path | None:
    """The manifest to load for ``checkpoint`` (None: the shipped default; ``"none"``: no checkpoint)."""
    if checkpoint is not None and str(checkpoint).lower() == "none":
        return None
    if checkpoint is None:
        stem = checkpoint_stem(codec, payload_shape, bandwidth_ratio)
        path = CHECKPOINT_DIR / f"{stem}.json"
        if path.exists():
            return path
        n = int(round(bandwidth_ratio * math.prod(int(v) for v in payload_shape)))
        for other in sorted(CHECKPOINT_DIR.glob(f"{stem.rsplit('-bw', 1)[0]}-bw*.json")):  # a rate-adaptive one
            if n in json.loads(other.read_text()).get("arch", {}).get("rates", ()):
                return other
        shape = " ".join(str(int(s)) for s in payload_shape)
        ratio = Fraction(bandwidth_ratio).limit_denominator(10_000)
        base = (f" --base DIR/jscc_base-{stem.split('-', 1)[1]}.json (from a --codec jscc run with --snapshot-at N)"
                if codec in ("cala", "lora_oracle") else "")
        square_image = len(payload_shape) == 3 and int(payload_shape[0]) == 3 and \
            int(payload_shape[1]) == int(payload_shape[2])
        data = "" if square_image else " --data generated"
        train = (f"train one with `python -m dekasim.training.jscc train --codec {codec} --payload-shape {shape} "
                 f"--bandwidth-ratio {ratio}{data}{base} --steps N --out DIR` (photo crops for [3, S, S] images, "
                 f"else the latents of a text-to-image model: --data-model) and set the option checkpoint = "
                 f"\"DIR/{stem}.json\"")
        raise ConfigError(
            "checkpoint", None,
            f"a trained checkpoint for codec '{codec}', payload {tuple(payload_shape)} and bandwidth_ratio "
            f"{ratio}: none is shipped (shipped: {', '.join(shipped_checkpoints()) or 'none'})",
            f"{train}; or checkpoint = \"none\" for an untrained network")
    return Path(checkpoint)


# ----------------------------------------------------------------------------------------------------
# Codecs
# ----------------------------------------------------------------------------------------------------

class JSCCCodec(Codec):
    """Base class of the learned codecs of this module (see the module docstring for options)."""

    kind = "learned"
    payload_kinds = ("image", "latent")
    #: network with ADJSCC attention modules
    attention: bool = False
    #: adapts to the condition (accepts ``condition_error_db``)
    condition_aware: bool = False

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, *, checkpoint: str | None = None,
                 width: int | None = None, payload_kind: str = "auto", init_seed: int = 0,
                 rates: list[float] | None = None, space_to_depth: int | str = "auto",
                 _extra_options: dict[str, Any] | None = None) -> None:
        options: dict[str, Any] = {"checkpoint": None if checkpoint is None else str(checkpoint)}
        if width is not None:
            options["width"] = int(width)
        if rates is not None:  # numbers or fractions ("1/6")
            if not isinstance(rates, (list, tuple)) or not rates:
                raise ConfigError("rates", rates, 'a non-empty list of bandwidth ratios, e.g. ["1/24", "1/12", "1/6"]')
            rates = [parse_ratio("rates", r) for r in rates]
            options["rates"] = rates
        if payload_kind != "auto":
            options["payload_kind"] = payload_kind
        if init_seed != 0:
            options["init_seed"] = int(init_seed)
        if space_to_depth != "auto":
            options["space_to_depth"] = space_to_depth
        options.update(_extra_options or {})
        super().__init__(payload_shape, bandwidth_ratio, **options)
        if len(self.payload_shape) != 3:
            raise ConfigError("payload_shape", self.payload_shape,
                              f"a [C, H, W] payload for the convolutional codec '{self.name}'",
                              "reshape latents to [C, H, W]")
        if payload_kind not in ("auto", "image", "latent"):
            raise ConfigError("payload_kind", payload_kind, "'auto', 'image' or 'latent'")
        self.manifest: dict[str, Any] | None = None
        path = resolve_checkpoint(self.name, self.payload_shape, self.bandwidth_ratio, checkpoint)
        if path is None:
            kind = payload_kind if payload_kind != "auto" else ("image" if self.payload_shape[0] == 3 else "latent")
            w = 64 if width is None else int(width)
            if not 8 <= w <= 512:
                raise ConfigError("width", width, "bottleneck channels within [8, 512]")
            served = self._served_rates(rates)
            arch = Arch(self.payload_shape, max(served) if served else self.n_channel_uses, kind, w, self.attention,
                        served, self._space_to_depth(space_to_depth, kind))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(init_seed))
                self.build(arch)
        else:
            if width is not None or payload_kind != "auto" or init_seed != 0 or rates is not None \
                    or space_to_depth != "auto":
                raise ConfigError("width/payload_kind/init_seed/rates/space_to_depth", options,
                                  "these options only with checkpoint = 'none' (a checkpoint fixes the network)")
            manifest, tensors = self.read(path)
            arch = Arch.from_json(manifest["arch"])
            if arch.payload_shape != self.payload_shape or not arch.serves(self.n_channel_uses):
                raise ConfigError("checkpoint", str(path),
                                  f"a checkpoint for payload {self.payload_shape} with {self.n_channel_uses} channel "
                                  f"uses, got {arch.payload_shape} serving {list(arch.served)}")
            if manifest.get("codec") != self.name:
                raise ConfigError("checkpoint", str(path), f"a checkpoint of codec '{self.name}', "
                                  f"got one of '{manifest.get('codec')}'")
            self.manifest = manifest
            self.build(arch)
            self.load_tensors(tensors)
        self.eval()

    def _space_to_depth(self, value: int | str, kind: str) -> int:
        """The ``space_to_depth`` option: ``"auto"`` is :data:`IMAGE_SPACE_TO_DEPTH` for images whose side it
        divides leaving at least 8 pixels (else 2, else 1), and 1 for latents; an integer must divide H and W."""
        _, h, w = self.payload_shape
        if value == "auto":
            if kind != "image":
                return 1
            return next((f for f in (IMAGE_SPACE_TO_DEPTH, 2) if h % f == 0 and w % f == 0 and min(h, w) // f >= 8), 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or h % value or w % value:
            raise ConfigError("space_to_depth", value, f"'auto' or a positive integer that divides the payload's "
                              f"height and width ({h}, {w})")
        return value

    def _symbols(self, bandwidth_ratio: float) -> int:
        """Channel uses per item at ``bandwidth_ratio`` (the rounding of ``n_channel_uses``)."""
        return max(1, int(round(float(bandwidth_ratio) * self.n_source_samples)))

    def _served_rates(self, rates: list[float] | None) -> tuple[int, ...]:
        """Symbol counts of the ``rates`` option (bandwidth ratios), which must include this codec's."""
        if rates is None:
            return ()
        if not isinstance(rates, (list, tuple)) or not rates or \
                not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in rates):
            raise ConfigError("rates", rates, "a non-empty list of bandwidth ratios, e.g. [1/24, 1/12, 1/6]")
        served = tuple(sorted({self._symbols(r) for r in rates}))
        if self.n_channel_uses not in served:
            raise ConfigError("rates", rates, f"a list that includes this codec's own ratio "
                              f"({self.bandwidth_ratio:g}: {self.n_channel_uses} symbols)")
        return served

    def set_rate(self, bandwidth_ratio: float) -> None:
        """Switch a rate-adaptive codec to another of its rates (``n_channel_uses`` and the condition's
        rate feature follow); raises ConfigError for a rate the network does not serve."""
        if not self.arch.serves(self._symbols(bandwidth_ratio)):
            raise ConfigError("bandwidth_ratio", bandwidth_ratio,
                              f"a rate this network serves: {list(self.arch.served)} symbols")
        self.bandwidth_ratio = float(bandwidth_ratio)

    # --- subclasses extend these ---------------------------------------------------------------
    def build(self, arch: Arch) -> None:
        """Create the modules for ``arch`` (random weights)."""
        self.arch = arch
        self.net = JSCCNet(arch)

    def modules_to_save(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def read(self, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return read_checkpoint(path)

    # --- contract --------------------------------------------------------------------------------
    def eval(self) -> "JSCCCodec":
        for m in self.modules_to_save().values():
            m.eval()
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for prefix, m in self.modules_to_save().items():
            out.update({f"{prefix}.{k}": v for k, v in m.state_dict().items()})
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for prefix, m in self.modules_to_save().items():
            sub = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            m.load_state_dict(sub, strict=True)
        known = tuple(p + "." for p in self.modules_to_save())
        unknown = [k for k in tensors if not k.startswith(known)]
        if unknown:
            raise ValueError(f"codec '{self.name}': unexpected tensors {unknown[:5]}")

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts by part (``base``; adapters and gates in subclasses)."""
        return {"base": num_params(self.net)}

    def _adapt(self, snr_db: torch.Tensor, cond: Condition) -> tuple[dict[str, Adapter] | None, torch.Tensor | None]:
        return None, None

    def _snr_seen(self, cond: Condition | None, batch: int, at_encoder: bool) -> torch.Tensor:
        if cond is None:
            raise ConfigError("cond", None, f"the channel condition (codec '{self.name}' adapts to it)")
        return torch.full((batch,), float(cond.snr_db))

    def _follow(self, device: torch.device) -> None:
        """Move the networks (base, bank, gate) to the device the symbols or the payload are on (a scenario
        with ``device = "cuda"`` hands the codec CUDA tensors); a no-op where they already are."""
        if next(self.net.parameters()).device != device:
            for module in self.modules_to_save().values():
                module.to(device)

    def encode(self, payload: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        self.check_payload(payload)
        x = payload.to(torch.float32)
        self._follow(x.device)
        with torch.no_grad():
            if self.condition_aware:
                adapt, snr = self._adapt(self._snr_seen(cond, x.shape[0], True).to(x.device), cond)  # type: ignore[arg-type]
                return self.net.encode(x, adapt, snr, n_send=self.n_channel_uses)
            return self.net.encode(x, n_send=self.n_channel_uses)

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor, cond_seen: Condition | None) -> Decoded:
        self._follow(y.device)
        with torch.no_grad():
            if self.condition_aware:
                adapt, snr = self._adapt(self._snr_seen(cond_seen, y.shape[0], False).to(y.device), cond_seen)  # type: ignore[arg-type]
                out = self.net.decode(y, no_eff, adapt, snr)
            else:
                out = self.net.decode(y, no_eff)
        return Decoded(payload=out)


class ConditionAwareCodec(JSCCCodec):
    """A JSCC codec that adapts to the (estimated) condition; adds the ``condition_error_db`` option."""

    condition_aware = True

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, *, condition_error_db: float = 0.0,
                 **options: Any) -> None:
        if isinstance(condition_error_db, bool) or not isinstance(condition_error_db, (int, float)) \
                or not 0.0 <= condition_error_db <= 30.0:
            raise ConfigError("condition_error_db", condition_error_db,
                              "the standard deviation of the SNR estimate's error in dB, within [0, 30]")
        self.condition_error_db = float(condition_error_db)
        self._snr_error: torch.Tensor | None = None
        extra = dict(options.pop("_extra_options", None) or {})
        if condition_error_db:
            extra["condition_error_db"] = self.condition_error_db
        super().__init__(payload_shape, bandwidth_ratio, **options, _extra_options=extra)

    def _snr_seen(self, cond: Condition | None, batch: int, at_encoder: bool) -> torch.Tensor:
        snr = super()._snr_seen(cond, batch, at_encoder)
        if self.condition_error_db == 0.0:
            return snr
        if at_encoder:
            self._snr_error = torch.randn(batch) * self.condition_error_db
        elif self._snr_error is None or self._snr_error.shape[0] != batch:
            raise RuntimeError(f"codec '{self.name}' with condition_error_db > 0 decodes with the SNR estimate "
                               "drawn by a matching encode() batch")
        return snr + self._snr_error


@register_codec("jscc")
class SingleConditionJSCC(JSCCCodec):
    """DeepJSCC trained at one condition (Es/N0 10 dB, TDL-C 300 ns) and used everywhere."""


@register_codec("jscc_mixed")
class MixedJSCC(JSCCCodec):
    """DeepJSCC trained over the condition distribution, with no condition input."""


@register_codec("jscc_generic")
class GenericJSCC(JSCCCodec):
    """The edge's generic pre-installed JSCC: rate-adaptive (1/24, 1/12, 1/6 of the 48x8x8 latents), trained
    over the condition distribution on *natural-photo* latents (the world's latent map applied to crops of
    the training photographs), so it knows nothing of any model's generated images; no condition input."""

    payload_kinds = ("latent",)


@register_codec("adjscc")
class ADJSCC(ConditionAwareCodec):
    """DeepJSCC with ADJSCC-style attention modules that see the (estimated) SNR only."""

    attention = True

    def _adapt(self, snr_db: torch.Tensor, cond: Condition) -> tuple[None, torch.Tensor]:
        return None, snr_feature(snr_db)
