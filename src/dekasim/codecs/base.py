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

import inspect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from dekasim.conditions import Condition
from dekasim.errors import ConfigError


@dataclass
class LinkCounts:
    """Raw error counts of decoded batches (digital codecs), with per-unit statistics for honest intervals.

    Bit errors cluster inside an LDPC block and inside a fading slot, so intervals are taken over units
    that are independent in the simulation (:func:`dekasim.metrics.stats.clustered_rate_interval`), not
    over bits: ``unit_stats`` keeps the sufficient statistics of the per-unit bit errors ``x_i`` out of
    ``n_i`` bits (:func:`dekasim.metrics.stats.unit_stats`: ``n_units``, ``sum_x``, ``sum_x2``, ``sum_n``,
    ``sum_n2``, ``sum_xn``, ``n_nonzero``). Build them with :meth:`per_unit`. Counts built from totals only
    (``unit_stats`` None, e.g. by an older third-party codec) still work: their BER interval is the
    conservative bound over ``blocks`` units.

    :param bit_errors, bits: totals [bits].
    :param block_errors, blocks: blocks in error / sent; each block must be independent of the others
        (BLER's Clopper-Pearson interval is over blocks).
    :param unit: name of the independent unit, singular (the digital chain: ``"transport block"``, one
        item over its own OFDM slots).
    :param unit_stats: per-unit sufficient statistics, or None.
    :param exact: the counts are not random (a bound that cannot err): rows give no interval.
    """

    bit_errors: int = 0
    bits: int = 0
    block_errors: int = 0
    blocks: int = 0
    unit: str = "block"
    unit_stats: dict[str, Any] | None = None
    exact: bool = False

    @classmethod
    def per_unit(cls, bit_errors: Any, bits: Any, unit: str = "transport block", exact: bool = False) -> "LinkCounts":
        """Counts of one batch from per-unit arrays; each unit is one block (a block error = a unit with
        any bit error).

        :param bit_errors: ``[B]`` int bit errors per unit (tensor, array or list).
        :param bits: ``[B]`` int bits per unit, or one int for all.
        """
        from dekasim.metrics.stats import unit_stats

        e = np.asarray(bit_errors.cpu() if torch.is_tensor(bit_errors) else bit_errors, dtype=np.int64).reshape(-1)
        n = np.broadcast_to(np.asarray(bits.cpu() if torch.is_tensor(bits) else bits, dtype=np.int64), e.shape)
        return cls(bit_errors=int(e.sum()), bits=int(n.sum()), block_errors=int((e > 0).sum()), blocks=int(e.size),
                   unit=unit, unit_stats=unit_stats(e, n), exact=exact)

    def __iadd__(self, other: "LinkCounts") -> "LinkCounts":
        from dekasim.metrics.stats import merge_stats

        if self.blocks == 0 and self.bits == 0:  # empty: take the other's kind of unit
            self.unit, self.exact = other.unit, other.exact
            self.unit_stats = None if other.unit_stats is None else dict(other.unit_stats)
        elif other.blocks or other.bits:
            if other.unit != self.unit:
                raise ValueError(f"LinkCounts: cannot add counts over '{other.unit}' to counts over '{self.unit}'")
            both = self.unit_stats is not None and other.unit_stats is not None
            self.unit_stats = merge_stats(self.unit_stats, other.unit_stats) if both else None
            self.exact = self.exact and other.exact
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
    #: What each option means, for ``dekasim list CODEC`` (see :func:`codec_options_help`): option name ->
    #: its meaning, or a dict with any of ``"type"``, ``"default"``, ``"meaning"``. Optional: without it the
    #: options come from ``__init__``'s signature and the ``:param NAME:`` lines of the docstrings.
    options_help: ClassVar[dict[str, Any]] = {}

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


def _import_codec_module(module_name: str, search_dirs: Sequence[str | Path]) -> ModuleType:
    """Import ``module_name``; if its top-level package is not installed, look for it in ``search_dirs`` and
    then in the current directory, and append the first directory holding it to ``sys.path`` (appended, so
    it never shadows an installed package)."""
    import importlib
    import sys

    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        if exc.name != top:
            raise
        for d in [*search_dirs, Path.cwd()]:
            d = Path(d).resolve()
            if (d / top).is_dir() or (d / f"{top}.py").is_file():
                if str(d) not in sys.path:
                    sys.path.append(str(d))
                importlib.invalidate_caches()
                return importlib.import_module(module_name)
        raise


def resolve_codec(name: str, search_dirs: Sequence[str | Path] = ()) -> type[Codec]:
    """The codec class a scenario names: a registered or entry-point name, or ``"package.module:Class"``
    (imported here, and registered under that string, so Ray workers resolve it the same way).

    A ``"package.module:Class"`` whose package is not installed is found in ``search_dirs`` (the scenario
    file's directory, when a scenario names it) or in the current directory: that directory is appended to
    the import path, as ``python -m`` would put the current one first.

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
    try:
        module = _import_codec_module(module_name, search_dirs)
    except ImportError as exc:
        raise ConfigError("codecs", name, f"an importable module '{module_name}' ({exc})",
                          "run from the directory that holds its package (or keep the package beside the "
                          "scenario file), install it, or put its directory on PYTHONPATH (on Ray workers "
                          "too)") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        what = "missing" if cls is None else f"a {type(cls).__name__}"
        raise ConfigError("codecs", name, f"a subclass of dekasim.codecs.Codec named '{attr}' in {module_name} "
                          f"(it is {what})", "subclass dekasim.codecs.Codec and implement encode/decode")
    if cls.name == Codec.name or "name" not in vars(cls):
        cls.name = name  # rows, legends and Codec.load name it by its import path
    _REGISTRY.setdefault(name, cls)
    return cls


#: Parameters of a codec's ``__init__`` that are not options (every codec takes them).
_NOT_OPTIONS = ("self", "payload_shape", "bandwidth_ratio")


def codec_option_parameters(cls: type[Codec]) -> tuple[dict[str, inspect.Parameter], bool]:
    """The options codec class ``cls`` takes, from its ``__init__`` signature, in order: the keyword
    parameters of its ``__init__`` and, where that passes ``**options`` on, of the ``__init__`` of each base
    class in turn. Names starting with ``_`` are private, not options.

    :return: (name -> :class:`inspect.Parameter`, whether any other name is accepted too: a chain of
        ``**options`` that reaches :class:`Codec` itself, which stores options it does not know).
    """
    params: dict[str, inspect.Parameter] = {}
    passed_on = False  # an __init__ of the codec passes **options on
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        if klass is Codec:  # reached through **options: Codec stores any; with no __init__ of its own: none
            return params, passed_on
        try:
            signature = inspect.signature(vars(klass)["__init__"])
        except (TypeError, ValueError):  # pragma: no cover - a C-level __init__
            return params, True
        var_keyword = False
        for p in signature.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_keyword = True
            elif p.kind is not p.VAR_POSITIONAL and p.name not in _NOT_OPTIONS and not p.name.startswith("_"):
                params.setdefault(p.name, p)
        if not var_keyword:
            return params, False
        passed_on = True
    return params, True


@dataclass(frozen=True)
class OptionHelp:
    """One option of a codec as ``dekasim list CODEC`` shows it (all texts, for people)."""

    name: str
    type: str
    default: str
    meaning: str


def _plain(text: str) -> str:
    """reST markup of a docstring as plain text: ``:class:`~a.B``` -> ``B``, double back-quotes dropped."""
    import re

    text = re.sub(r":\w+:`~([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r":\w+:`([^`]+)`", r"\1", text)
    return " ".join(text.replace("``", "").split())


def _param_docs(doc: str | None) -> dict[str, str]:
    """``:param NAME: text`` (and ``:param A, B: text``) entries of a docstring, continuation lines joined."""
    import re

    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"(\s*):param\s+([^:]+):\s*(.*)$", lines[i])
        i += 1
        if m is None:
            continue
        indent, text = len(m.group(1)), [m.group(3)]
        while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith(":") \
                and len(lines[i]) - len(lines[i].lstrip()) > indent:
            text.append(lines[i].strip())
            i += 1
        for name in m.group(2).split(","):
            if name.split():
                out.setdefault(name.split()[-1], " ".join(text))
    return out


def _bullet_docs(doc: str | None) -> dict[str, str]:
    """``- ``NAME`` ...: text`` bullets of a module docstring (how :mod:`dekasim.codecs.jscc` lists options)."""
    import re

    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"- ``(\w+)``(.*)$", lines[i].strip())
        i += 1
        if m is None:
            continue
        text = [m.group(2).lstrip(" :")]
        while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
            text.append(lines[i].strip())
            i += 1
        out.setdefault(m.group(1), " ".join(text))
    return out


def codec_options_help(cls: type[Codec]) -> list[OptionHelp]:
    """The options of codec class ``cls`` with their type, default and meaning, for any codec (plug-ins too).

    Names, types and defaults come from the ``__init__`` signatures (:func:`codec_option_parameters`);
    the meaning, in this order, from the class attribute ``options_help`` (of the class or a base class),
    from ``:param NAME:`` lines in the docstrings of the class, its bases and their ``__init__``, or from
    ``- ``NAME``: ...`` bullets of their module docstrings. ``options_help`` may also add options that the
    signature does not show (a codec that takes ``**options``) and override the type and the default.
    """
    import sys

    declared: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        declared.update(getattr(klass, "__dict__", {}).get("options_help", {}) or {})
    params, _ = codec_option_parameters(cls)
    docs: dict[str, str] = {}
    for klass in cls.__mro__:
        if klass is object:
            continue
        module = sys.modules.get(klass.__module__)
        for source in (_param_docs(klass.__doc__), _param_docs(getattr(vars(klass).get("__init__"), "__doc__", None)),
                       _bullet_docs(getattr(module, "__doc__", None))):
            for name, text in source.items():
                m = __import__("re").match(r"as for :class:`~?([\w.]+)`", text)
                if m and module is not None:  # "as for :class:`Other`": Other's own words
                    other = getattr(module, m.group(1).rsplit(".", 1)[-1], None)
                    text = _param_docs(getattr(other, "__doc__", None)).get(name, text)
                docs.setdefault(name, text)
    out = []
    for name in [*params, *(n for n in declared if n not in params)]:
        p = params.get(name)
        entry = declared.get(name)
        entry = {"meaning": entry} if isinstance(entry, str) else dict(entry or {})
        if p is not None and p.annotation is not inspect.Parameter.empty:
            typ = p.annotation if isinstance(p.annotation, str) \
                else getattr(p.annotation, "__name__", str(p.annotation))
        elif p is not None and p.default not in (inspect.Parameter.empty, None):
            typ = type(p.default).__name__
        else:
            typ = "any"
        default = "required" if p is not None and p.default is inspect.Parameter.empty else \
            (repr(p.default) if p is not None else "")
        meaning = entry.get("meaning", entry.get("help", docs.get(name, "")))
        out.append(OptionHelp(name, str(entry.get("type", typ)), str(entry.get("default", default)),
                              _plain(str(meaning)) or "(not documented by the codec)"))
    return out


def build_codec(name: str, payload_shape: tuple[int, ...], bandwidth_ratio: float, **options: Any) -> Codec:
    """Instantiate the codec ``name`` (see :func:`resolve_codec`).

    :raises ConfigError: an unknown name (field ``codecs``), or an option the codec does not take (field
        ``options.<key>``, with the options it does take).
    """
    cls = resolve_codec(name)
    known, open_ended = codec_option_parameters(cls)
    if options and not known and not open_ended:  # no __init__ of its own: it takes no options
        key = sorted(options)[0]
        raise ConfigError(f"options.{key}", options[key], f"no options: codec '{name}' takes none",
                          "remove them, or give the codec an __init__ with keyword arguments")
    unknown = [k for k in options if k not in known] if not open_ended else []
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(known), n=1)
        raise ConfigError(f"options.{unknown[0]}", options[unknown[0]],
                          f"an option of codec '{name}': one of {list(known)}",
                          (f"did you mean '{close[0]}'? " if close else "") + f"`dekasim list {name}` explains each")
    try:
        return cls(payload_shape, bandwidth_ratio, **options)
    except TypeError as exc:  # an option that a plug-in's own __init__ refuses
        import re

        m = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        key = m.group(1) if m else None
        raise ConfigError(f"options.{key}" if key else "options", options.get(key, options) if key else options,
                          f"options accepted by codec '{name}' ({exc})") from None


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
