"""The codec contract and its registry.

A codec maps a payload batch to complex channel symbols and back::

    x = codec.encode(payload, cond)              # [batch, n] complex64, E|x|^2 = 1, n = codec.n_channel_uses
    decoded = codec.decode(y, no_eff, cond_seen) # Decoded(payload=[batch, *payload_shape], counts=...)

``cond`` is what the transmitter knows of the channel, ``cond_seen`` what the receiver believes; both
are :class:`~dekasim.conditions.Condition` objects (equal unless a scenario models imperfect
knowledge). ``encode`` and ``decode`` are paired like a link: a digital codec keeps the bits it sent
in its last ``encode`` as the genie reference for counting bit and block errors in the next ``decode``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from dekasim.conditions import Condition
from dekasim.errors import ConfigError


@dataclass
class LinkCounts:
    """Raw error counts of one decoded batch (digital codecs)."""

    bit_errors: int = 0
    bits: int = 0
    block_errors: int = 0
    blocks: int = 0

    def __iadd__(self, other: "LinkCounts") -> "LinkCounts":
        self.bit_errors += other.bit_errors
        self.bits += other.bits
        self.block_errors += other.block_errors
        self.blocks += other.blocks
        return self


@dataclass
class Decoded:
    """What a codec's decoder returns.

    :param payload: ``[batch, *payload_shape]`` reconstruction, same dtype/range as the input payload.
    :param counts: bit/block error counts for codecs that send bits; None for analog codecs.
    :param info: per-batch facts worth a result column (e.g. ``{"mcs_index": 9, "source_codec": ["webp", …]}``).
    """

    payload: torch.Tensor
    counts: LinkCounts | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Codec:
    """Base class of every codec.

    :param payload_shape: shape of one payload item, e.g. ``(3, 64, 64)`` for an RGB image in [0, 1].
    :param bandwidth_ratio: complex channel uses per real payload sample; the codec sends exactly
        ``n_channel_uses = round(bandwidth_ratio * prod(payload_shape))`` symbols per item.
    :param options: codec-specific settings (from the scenario's ``[codecs.options.NAME]`` table).
    """

    name: ClassVar[str] = "base"
    #: "analog" (symbols carry the source directly), "digital" (bits, with BER/BLER), "learned".
    kind: ClassVar[str] = "analog"
    #: payload kinds the codec accepts: "image" ([3, H, W] in [0, 1]) and/or "latent" (any float tensor).
    payload_kinds: ClassVar[tuple[str, ...]] = ("image", "latent")

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, **options: Any) -> None:
        self.payload_shape = tuple(int(s) for s in payload_shape)
        self.bandwidth_ratio = float(bandwidth_ratio)
        self.options = dict(options)
        if self.n_channel_uses < 1:
            raise ConfigError("bandwidth_ratio", bandwidth_ratio,
                              f"a ratio leaving at least one channel use for a payload of {self.payload_shape}")

    @property
    def n_source_samples(self) -> int:
        return math.prod(self.payload_shape)

    @property
    def n_channel_uses(self) -> int:
        """Complex symbols sent per payload item."""
        return max(int(round(self.bandwidth_ratio * self.n_source_samples)), 0)

    def encode(self, payload: torch.Tensor, cond: Condition) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor, cond_seen: Condition) -> Decoded:
        raise NotImplementedError

    def check_payload(self, payload: torch.Tensor) -> None:
        """Reject a payload batch whose item shape is not ``payload_shape``."""
        if not torch.is_tensor(payload) or tuple(payload.shape[1:]) != self.payload_shape:
            got = tuple(payload.shape) if torch.is_tensor(payload) else type(payload).__name__
            raise ConfigError("payload", got, f"a tensor [batch, {', '.join(map(str, self.payload_shape))}]",
                              f"codec '{self.name}' was built for items of shape {self.payload_shape}")

    # Persistence: config as JSON (+ tensors as safetensors for codecs with weights).
    def config(self) -> dict[str, Any]:
        return {"name": self.name, "payload_shape": list(self.payload_shape),
                "bandwidth_ratio": self.bandwidth_ratio, "options": self.options}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Tensors to persist (learned weights); empty for codecs without state."""
        return {}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise ValueError(f"codec '{self.name}' has no tensors to load, got {sorted(tensors)}")

    def save(self, directory: str | Path) -> None:
        """Write ``codec.json`` (+ ``codec.safetensors``) into ``directory``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "codec.json").write_text(json.dumps(self.config(), indent=2, sort_keys=True))
        t = self.tensors()
        if t:
            save_file({k: v.detach().contiguous().cpu() for k, v in t.items()}, str(d / "codec.safetensors"))

    @staticmethod
    def load(directory: str | Path) -> "Codec":
        """Rebuild a codec saved by :meth:`save` (only JSON and safetensors are read)."""
        from safetensors.torch import load_file

        d = Path(directory)
        cfg = json.loads((d / "codec.json").read_text())
        codec = build_codec(cfg["name"], tuple(cfg["payload_shape"]), cfg["bandwidth_ratio"], **cfg["options"])
        f = d / "codec.safetensors"
        if f.exists():
            codec.load_tensors(load_file(str(f)))
        return codec


_REGISTRY: dict[str, type[Codec]] = {}


def register_codec(name: str) -> Callable[[type[Codec]], type[Codec]]:
    """Class decorator: make a codec available under ``name`` in scenarios and the CLI."""

    def deco(cls: type[Codec]) -> type[Codec]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"codec name '{name}' registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_codecs() -> dict[str, type[Codec]]:
    """Registered codecs by name (importing :mod:`dekasim.codecs` registers the built-in ones)."""
    import dekasim.codecs  # noqa: F401  (registers built-ins)

    return dict(sorted(_REGISTRY.items()))


def build_codec(name: str, payload_shape: tuple[int, ...], bandwidth_ratio: float, **options: Any) -> Codec:
    """Instantiate the registered codec ``name``; unknown names and options get a ConfigError."""
    codecs = available_codecs()
    if name not in codecs:
        raise ConfigError("codecs", name, f"a registered codec: {', '.join(codecs)}",
                          "run `dekasim list` to see them")
    try:
        return codecs[name](payload_shape, bandwidth_ratio, **options)
    except TypeError as exc:  # unknown keyword in options
        raise ConfigError(f"codec_options.{name}", options, f"options accepted by codec '{name}' ({exc})") from None


def unit_power(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each row of ``x`` ([batch, n] complex) to mean |x|^2 = 1."""
    p = x.abs().pow(2).mean(dim=1, keepdim=True)
    return x / torch.sqrt(p + eps)


def real_to_complex(v: torch.Tensor, n: int) -> torch.Tensor:
    """Pack ``[batch, m]`` real values (m <= 2n, zero-padded) into ``[batch, n]`` complex symbols."""
    b, m = v.shape
    if m > 2 * n:
        raise ValueError(f"{m} reals do not fit {n} complex symbols")
    v = torch.nn.functional.pad(v, (0, 2 * n - m))
    return torch.complex(v[:, 0::2].contiguous(), v[:, 1::2].contiguous())


def complex_to_real(x: torch.Tensor, m: int) -> torch.Tensor:
    """Inverse of :func:`real_to_complex`: ``[batch, n]`` complex -> first ``m`` reals."""
    v = torch.stack([x.real, x.imag], dim=-1).reshape(x.shape[0], -1)
    return v[:, :m]
