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
    #: One line per option (a keyword argument of ``__init__`` after ``payload_shape`` and ``bandwidth_ratio``,
    #: i.e. a key of the scenario's ``options``): allowed values, unit, what it does. :func:`codec_options`
    #: joins it with the defaults; ``dekasim list CODEC`` prints that.
    options_help: ClassVar[dict[str, str]] = {}

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


#: Entry-point group through which installed packages register codecs (``name = "pkg.module:Class"``).
ENTRY_POINT_GROUP = "dekasim.codecs"
_ENTRY_POINTS: dict[str, type[Codec]] | None = None


def _entry_point_codecs() -> dict[str, type[Codec]]:
    """Codecs that installed packages register in :data:`ENTRY_POINT_GROUP` (loaded once; a broken one is
    skipped with a warning naming it, so one bad plug-in does not take the others down)."""
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        import importlib.metadata as md
        import warnings

        found: dict[str, type[Codec]] = {}
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            try:
                cls = ep.load()
            except Exception as exc:  # noqa: BLE001 - a third party's import error, reported by name
                warnings.warn(f"codec entry point '{ep.name} = {ep.value}' failed to load: {exc}", stacklevel=2)
                continue
            if isinstance(cls, type) and issubclass(cls, Codec):
                found.setdefault(ep.name, cls)
            else:
                warnings.warn(f"codec entry point '{ep.name} = {ep.value}' is not a Codec subclass", stacklevel=2)
        _ENTRY_POINTS = found
    return _ENTRY_POINTS


def available_codecs() -> dict[str, type[Codec]]:
    """Codecs by name: the built-in ones (importing :mod:`dekasim.codecs` registers them), those of
    installed packages (entry-point group :data:`ENTRY_POINT_GROUP`) and any resolved by
    ``"module:Class"`` so far."""
    import dekasim.codecs  # noqa: F401  (registers built-ins)

    return dict(sorted({**_entry_point_codecs(), **_REGISTRY}.items()))


def resolve_codec(name: str) -> type[Codec]:
    """The codec class a scenario names: a registered or entry-point name, or ``"package.module:Class"``
    (imported here, and registered under that string, so Ray workers resolve it the same way).

    :raises ConfigError: ``codecs`` for an unknown name, a module that cannot be imported, a missing class,
        or a class that is not a :class:`Codec` subclass.
    """
    codecs = available_codecs()
    if name in codecs:
        return codecs[name]
    if not isinstance(name, str) or ":" not in name:
        raise ConfigError("codecs", name, f"a registered codec ({', '.join(codecs)}) or 'package.module:Class'",
                          "run `dekasim list` to see them")
    module_name, _, attr = name.partition(":")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("codecs", name, f"an importable module '{module_name}' ({exc})",
                          "install the package, or put its directory on PYTHONPATH (on Ray workers too)") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        what = "missing" if cls is None else f"a {type(cls).__name__}"
        raise ConfigError("codecs", name, f"a subclass of dekasim.codecs.Codec named '{attr}' in {module_name} "
                          f"(it is {what})", "subclass dekasim.codecs.Codec and implement encode/decode")
    if cls.name == Codec.name or "name" not in vars(cls):
        cls.name = name  # rows, legends and Codec.load name it by its import path
    _REGISTRY.setdefault(name, cls)
    return cls


def codec_options(cls: type[Codec]) -> list[dict[str, Any]]:
    """The options of codec class ``cls``, machine-readable: one ``{"name", "default", "help"}`` per keyword
    argument of its ``__init__`` after ``payload_shape`` and ``bandwidth_ratio``, in signature order
    (``"default"`` absent for a required one; ``"help"`` from :attr:`Codec.options_help`, ``""`` where it
    says nothing). A codec without an ``__init__`` of its own takes no options: ``[]``."""
    import inspect

    if cls.__init__ is Codec.__init__:
        return []
    out = []
    params = list(inspect.signature(cls.__init__).parameters.values())[3:]  # self, payload_shape, bandwidth_ratio
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        entry: dict[str, Any] = {"name": p.name}
        if p.default is not p.empty:
            entry["default"] = p.default
        entry["help"] = cls.options_help.get(p.name, "")
        out.append(entry)
    return out


def build_codec(name: str, payload_shape: tuple[int, ...], bandwidth_ratio: float, **options: Any) -> Codec:
    """Instantiate the codec ``name`` (see :func:`resolve_codec`); unknown names and options get a ConfigError."""
    cls = resolve_codec(name)
    if options and cls.__init__ is Codec.__init__:  # no __init__ of its own: it takes no options
        raise ConfigError(f"codec_options.{name}", options, f"no options: codec '{name}' takes none",
                          "remove them, or give the codec an __init__ with keyword arguments")
    try:
        return cls(payload_shape, bandwidth_ratio, **options)
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
