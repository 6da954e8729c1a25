"""CALA: condition-aware low-rank adaptation of a frozen DeepJSCC, and its per-condition LoRA oracle.

**CALA** (``"cala"``). On chosen convolutions of the encoder and the decoder (default
:data:`CALA_DEFAULT_LAYERS`, the eight convolutions every network of the family has) sits a bank of ``K``
rank-1 adapters ``b_i a_i^T`` (``a_i`` over the ``in * k * k`` inputs of the kernel, ``b_i`` over its
outputs). A small gating network (``10 -> 32 -> K``, GELU, softmax) maps the condition features of
:func:`~dekasim.codecs.jscc.condition_features` (SNR in dB, log delay spread, log bandwidth ratio,
speed, TDL profile) to soft weights ``g(c)`` that sum to one, shared by all adapted layers; each layer
computes with ``W + sum_i g_i(c) b_i a_i^T``. The base JSCC is frozen while the bank and the gate train;
its weights are never written. Any network of the family without attention can be the base. Both shipped
``cala`` banks adapt a ``jscc_base`` with K = 2 rank-1 adapters on all eight convolutions and an
``"snr_anchored"`` gate (4.2 % of the base's parameters; chosen on validation images of the 48x8x8 family,
docs/deka/link.md; the 3x32x32 photo network has the same layers since it enters as 48x8x8). The photo base is the
single-condition ``jscc`` run after 4800 of its 7200 steps, bank 2400 steps, so that base plus bank cost the
same 7200 steps as every baseline; the latent base is ``jscc`` at 10 dB trained 6000 steps on its own
schedule, bank 2000 steps; its oracle uses the same layers. ``benchmarks/jscc_cala.py`` compares them. The
condition the gate sees is the transmitter's knowledge: exact, or an SNR estimate with a configurable error
(``condition_error_db``; the decoder adapts to the same estimate, see :mod:`dekasim.codecs.jscc`).

**Per-condition LoRA oracle** (``"lora_oracle"``). The same frozen base with one rank-``r`` LoRA on the
same layers per condition bucket (SNR centres 0/5/10/15/20 dB x delay spreads 30/100/300/1000/3000 ns;
a condition uses the bucket of the nearest SNR and the nearest delay spread on a log scale). Each
LoRA is warm-started from one LoRA trained on the whole condition distribution (a third of the steps),
then fine-tuned on its bucket only: a per-condition reference, not a compact one (25 LoRAs).

Options (beside those of :mod:`dekasim.codecs.jscc`): ``condition_error_db``; with
``checkpoint = "none"`` also ``layers`` (list of layer names, default :data:`CALA_DEFAULT_LAYERS` for CALA,
:data:`DEFAULT_LAYERS` for the oracle) and ``num_adapters`` (CALA, default 2) or ``rank`` (oracle, default
4), and for CALA ``gate`` (``"snr_anchored"``, default, or ``"mlp"``: see :class:`CALABank`; a manifest
without the key means ``"mlp"``) and ``affine`` (each adapter also scales and shifts every output channel of
its layers, ``out * (1 + sum_i g_i s_i) + sum_i g_i t_i``; default false), ``rank`` (the rank of each adapter,
default 1), ``factor`` (``"full"``, default; ``"cp"``: each component a channel vector times a spatial
kernel; ``"scale"``: components that rescale the base's filters; ``"kron"``: Kronecker-product components)
and ``shared_rank`` (ungated components per layer, default 0; see :class:`CALABank`).
A checkpoint of these codecs stores only the bank (+ gate) and names its base checkpoint (file and
sha256), which is loaded with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dekasim.codecs.base import register_codec
from dekasim.codecs.jscc import (NUM_CONDITION_FEATURES, Adapter, Arch, ConditionAwareCodec, FilterScaling,
                                 JSCCNet, KroneckerUpdate, condition_features, kron_factors, num_params,
                                 read_checkpoint)
from dekasim.conditions import Condition
from dekasim.errors import ConfigError

#: Layers that carry the LoRA oracle's adapters by default (around the channel at the bottleneck: two in the
#: encoder, which alone has no other view of the condition, and the decoder's input layer).
DEFAULT_LAYERS = ("enc.res2", "enc.out", "dec.inp")
#: Layers of a new CALA bank by default: the eight convolutions every network of the family has (all of an
#: 8x8 network's), the layout of every shipped bank, chosen on validation images (docs/deka/tka.md).
CALA_DEFAULT_LAYERS = ("enc.stem", "enc.res1", "enc.res2", "enc.out", "dec.inp", "dec.res1", "dec.res2", "dec.out")
#: Condition buckets of the LoRA oracle.
ORACLE_SNR_CENTRES_DB = (0.0, 5.0, 10.0, 15.0, 20.0)
ORACLE_DELAY_SPREADS_NS = (30.0, 100.0, 300.0, 1000.0, 3000.0)
#: Gate kinds of :class:`CALABank`.
GATES = ("mlp", "snr_anchored")
#: How :class:`CALABank` parameterises each component's input vector.
FACTORS = ("full", "cp", "scale", "kron")
#: SNR range [dB] over which an ``"snr_anchored"`` gate spreads its adapters' centres.
ANCHOR_RANGE_DB = (0.0, 20.0)


def _key(layer: str) -> str:
    return layer.replace(".", "_")


class CALABank(nn.Module):
    """A bank of ``num_adapters`` low-rank adapters per layer and the gate that mixes them.

    :param net: the base network (only its layer shapes are read; it is not stored here).
    :param layers: names of the adapted convolutions (see :meth:`JSCCNet.layer_names`).
    :param num_adapters: ``K``.
    :param gate_hidden: width of the gate's hidden layer.
    :param rank: ``r``, the rank of each adapter: ``r`` components ``b_ij a_ij^T`` share the gate weight
        ``g_i`` (tensors ``a.*`` ``[K r, fan_in]``, ``b.*`` ``[K r, out]``, adapter ``i``'s rows ``i r ...
        i r + r - 1``).
    :param factor: ``"full"``: each ``a_ij`` is a free vector over the ``in * k * k`` kernel inputs;
        ``"cp"``: it is the outer product of a vector over the input channels (``a.*`` ``[K r, in]``) and a
        spatial kernel (``spatial.*`` ``[K r, k * k]``), a CP-factorised convolution update that costs
        ``in + k*k + out`` instead of ``in*k*k + out`` numbers per component; ``"scale"``: the components
        rescale the base filters, ``W ⊙ (1 + sum g b a^T)`` with ``a`` over the input channels
        (:class:`~dekasim.codecs.jscc.FilterScaling`: ``in + out`` numbers per component; the update
        re-weights the base's own filters); ``"kron"``: each component is a Kronecker product ``kron(a, b)``
        of two small factors of the kernel matrix (:class:`~dekasim.codecs.jscc.KroneckerUpdate`: 384 numbers
        on a 64->64 layer, an update of rank up to 64).
    :param shared_rank: ``s`` more components per layer that no gate weighs (weight 1 at every condition):
        rows ``K r ... K r + s - 1`` of ``a.*``, ``b.*`` (and ``spatial.*``). They hold what the alignment
        needs at every condition, so the gated adapters need not each learn it.
    :param gate: ``"mlp"``: logits = MLP(features); ``"snr_anchored"``: adapter ``i`` is also anchored
        at an SNR, logits = MLP(features) - ((snr_db - c_i) / w)^2 / 2 with the ``K`` centres ``c_i``
        evenly spread over :data:`ANCHOR_RANGE_DB` and ``w`` their spacing, so that adapters start out
        responsible for different SNRs instead of all receiving the same gradient (the MLP still
        learns, e.g. the delay spread's part). The anchors are fixed, not parameters.
    """

    def __init__(self, net: JSCCNet, layers: tuple[str, ...] = DEFAULT_LAYERS, num_adapters: int = 8,
                 gate_hidden: int = 32, gate: str = "mlp", affine: bool = False, rank: int = 1,
                 factor: str = "full", shared_rank: int = 0) -> None:
        super().__init__()
        if gate not in GATES:
            raise ConfigError("gate", gate, f"one of {list(GATES)}")
        if factor not in FACTORS:
            raise ConfigError("factor", factor, f"one of {list(FACTORS)}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 64:
            raise ConfigError("rank", rank, "an integer within [1, 64] (the rank of each adapter)")
        if not isinstance(affine, bool):
            raise ConfigError("affine", affine, "true or false (per-channel scale and shift in the bank)")
        if isinstance(shared_rank, bool) or not isinstance(shared_rank, int) or not 0 <= shared_rank <= 64:
            raise ConfigError("shared_rank", shared_rank, "an integer within [0, 64] (ungated components per layer)")
        self.shared_rank = int(shared_rank)
        self.affine = affine
        self.rank, self.factor = int(rank), factor
        self.layers = tuple(layers)
        self.num_adapters = int(num_adapters)
        self.gate_kind = gate
        lo, hi = ANCHOR_RANGE_DB
        k = self.num_adapters
        self.register_buffer("anchor_db", torch.linspace(lo, hi, k) if k > 1 else torch.tensor([(lo + hi) / 2]),
                             persistent=False)
        self.anchor_width_db = (hi - lo) / (k - 1) if k > 1 else hi - lo
        self.a = nn.ParameterDict()
        self.b = nn.ParameterDict()
        self.spatial = nn.ParameterDict()
        m = self.num_adapters * self.rank + self.shared_rank
        for name in self.layers:
            conv = net.layer(name)
            if factor == "kron":  # kron(a, b) with b = 0: the update starts at zero
                (o1, o2), (i1, i2) = kron_factors(conv.out_channels), kron_factors(conv.fan_in)
                self.a[_key(name)] = nn.Parameter(torch.randn(m, o1 * i1) / math.sqrt(i1))
                self.b[_key(name)] = nn.Parameter(torch.zeros(m, o2 * i2))
                continue
            if factor == "scale":  # b = 0: the filters start unscaled
                self.a[_key(name)] = nn.Parameter(torch.randn(m, conv.in_channels))
            elif factor == "cp":  # a_c (x) k_s has the variance 1 / fan_in of the full init
                taps = conv.kernel_size[0] * conv.kernel_size[1]
                self.a[_key(name)] = nn.Parameter(torch.randn(m, conv.in_channels) / math.sqrt(conv.in_channels))
                self.spatial[_key(name)] = nn.Parameter(torch.randn(m, taps) / math.sqrt(taps))
            else:
                self.a[_key(name)] = nn.Parameter(torch.randn(m, conv.fan_in) / math.sqrt(conv.fan_in))
            self.b[_key(name)] = nn.Parameter(torch.zeros(m, conv.out_channels))
        self.scale = nn.ParameterDict()
        self.shift = nn.ParameterDict()
        if self.affine:  # per adapter, a scale and a shift of each output channel (start at identity)
            for name in self.layers:
                out = net.layer(name).out_channels
                self.scale[_key(name)] = nn.Parameter(torch.zeros(self.num_adapters, out))
                self.shift[_key(name)] = nn.Parameter(torch.zeros(self.num_adapters, out))
        self.gate = nn.Sequential(nn.Linear(NUM_CONDITION_FEATURES, gate_hidden), nn.GELU(),
                                  nn.Linear(gate_hidden, self.num_adapters))

    def gate_weights(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` condition features -> ``[B, K]`` soft weights (each row sums to one)."""
        logits = self.gate(features)
        if self.gate_kind == "snr_anchored":
            snr_db = 10.0 * (features[:, :1] + 1.0)          # inverse of jscc.snr_feature
            logits = logits - 0.5 * ((snr_db - self.anchor_db) / self.anchor_width_db) ** 2
        return torch.softmax(logits, dim=-1)

    def _a(self, name: str) -> torch.Tensor:
        """``[K r, fan_in]`` input vectors of layer ``name``'s components."""
        a = self.a[_key(name)]
        if self.factor == "cp":
            a = (a[:, :, None] * self.spatial[_key(name)][:, None, :]).reshape(a.shape[0], -1)
        return a

    def adapters(self, g: torch.Tensor) -> dict[str, Adapter]:
        """``g`` ``[B, K]`` gate weights -> the adapter of each layer (:data:`~dekasim.codecs.jscc.Adapter`)."""
        gr = g.repeat_interleave(self.rank, dim=1) if self.rank > 1 else g
        if self.shared_rank:
            gr = torch.cat([gr, gr.new_ones(gr.shape[0], self.shared_rank)], dim=1)
        kind = {"scale": FilterScaling, "kron": KroneckerUpdate}.get(self.factor, tuple)
        if self.affine:  # the scales and shifts follow the K gate weights
            return {name: kind((self._a(name), self.b[_key(name)], gr, self.scale[_key(name)], self.shift[_key(name)],
                                g)) for name in self.layers}
        return {name: kind((self._a(name), self.b[_key(name)], gr)) for name in self.layers}

    def settings(self) -> dict[str, Any]:
        """The ``cala`` section of a checkpoint manifest. ``affine``, ``rank`` and ``factor`` appear only where
        they differ from their defaults, so banks without them keep the manifests they had before."""
        out: dict[str, Any] = {"layers": list(self.layers), "num_adapters": self.num_adapters,
                               "gate_hidden": self.gate[0].out_features, "gate": self.gate_kind}
        if self.affine:
            out["affine"] = True
        if self.rank != 1:
            out["rank"] = self.rank
        if self.factor != "full":
            out["factor"] = self.factor
        if self.shared_rank:
            out["shared_rank"] = self.shared_rank
        return out

    def num_adapter_params(self) -> int:
        return sum(p.numel() for d in (self.a, self.b, self.spatial, self.scale, self.shift) for p in d.values())

    def num_gate_params(self) -> int:
        return num_params(self.gate)


class LoRAOracleBank(nn.Module):
    """One rank-``rank`` LoRA per condition bucket on ``layers`` (see the module docstring)."""

    def __init__(self, net: JSCCNet, layers: tuple[str, ...] = DEFAULT_LAYERS, rank: int = 4,
                 snr_centres_db: tuple[float, ...] = ORACLE_SNR_CENTRES_DB,
                 delay_spreads_ns: tuple[float, ...] = ORACLE_DELAY_SPREADS_NS) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.rank = int(rank)
        self.snr_centres_db = tuple(float(s) for s in snr_centres_db)
        self.delay_spreads_ns = tuple(float(d) for d in delay_spreads_ns)
        self.a = nn.ParameterDict()
        self.b = nn.ParameterDict()
        for k in range(self.num_buckets):
            for name in self.layers:
                conv = net.layer(name)
                self.a[f"{_key(name)}__{k}"] = nn.Parameter(torch.randn(self.rank, conv.fan_in) / math.sqrt(conv.fan_in))
                self.b[f"{_key(name)}__{k}"] = nn.Parameter(torch.zeros(self.rank, conv.out_channels))

    @property
    def num_buckets(self) -> int:
        return len(self.snr_centres_db) * len(self.delay_spreads_ns)

    def bucket_of(self, snr_db: float, delay_spread_ns: float) -> int:
        i = min(range(len(self.snr_centres_db)), key=lambda j: abs(self.snr_centres_db[j] - snr_db))
        ld = math.log10(max(delay_spread_ns, 1.0))
        k = min(range(len(self.delay_spreads_ns)), key=lambda j: abs(math.log10(self.delay_spreads_ns[j]) - ld))
        return i * len(self.delay_spreads_ns) + k

    def bucket_params(self, bucket: int) -> list[nn.Parameter]:
        return [p for n in self.layers for p in (self.a[f"{_key(n)}__{bucket}"], self.b[f"{_key(n)}__{bucket}"])]

    def adapters(self, buckets: list[int]) -> dict[str, Adapter]:
        present = sorted(set(buckets))
        g = torch.zeros(len(buckets), len(present) * self.rank, device=self.a[f"{_key(self.layers[0])}__0"].device)
        for row, k in enumerate(buckets):
            i = present.index(k)
            g[row, i * self.rank:(i + 1) * self.rank] = 1.0
        return {name: (torch.cat([self.a[f"{_key(name)}__{k}"] for k in present]),
                       torch.cat([self.b[f"{_key(name)}__{k}"] for k in present]), g) for name in self.layers}


class _AdaptedCodec(ConditionAwareCodec):
    """Shared options and loading of a frozen base + a bank (the checkpoint names its base).

    Subclasses name their bank's size option (``size_option``: ``num_adapters`` or ``rank``) and its
    default, passed here as ``_size``; it and ``layers`` are only accepted with ``checkpoint = "none"``.
    """

    bank_key = ""
    size_option, size_default = "", 0
    default_layers: tuple[str, ...] = DEFAULT_LAYERS

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, *, _size: int | None = None,
                 layers: list[str] | None = None, **options: Any) -> None:
        size = self._size_option = _size
        self._layers_option = None if layers is None else [str(n) for n in layers]
        extra: dict[str, Any] = dict(options.pop("_extra_options", None) or {})
        if size is not None:
            extra[self.size_option] = size
        if layers is not None:
            extra["layers"] = self._layers_option
        super().__init__(payload_shape, bandwidth_ratio, **options, _extra_options=extra)

    def read(self, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        manifest, tensors = read_checkpoint(path)
        base = manifest.get("base")
        if not base:
            raise ConfigError("checkpoint", str(path), f"a '{self.name}' manifest naming its base checkpoint")
        base_manifest, base_tensors = read_checkpoint(Path(path).parent / Path(base["file"]).with_suffix(".json"))
        if base_manifest["sha256"] != base["sha256"]:
            raise ConfigError("checkpoint", str(path), f"a base checkpoint with sha256 {base['sha256']}",
                              f"{base['file']} changed after the adapters were trained on it; retrain them")
        if base_manifest["arch"] != manifest["arch"]:
            raise ConfigError("checkpoint", str(path), "a base checkpoint with the same architecture")
        return manifest, {**base_tensors, **tensors}

    def _bank_settings(self) -> int:
        """The bank's size (``size_option``) from the checkpoint, or from the option (default ``size_default``)."""
        option, value, default = self.size_option, self._size_option, self.size_default
        if self.manifest is not None:
            if value is not None:
                raise ConfigError(option, value, f"'{option}' only with checkpoint = 'none' (a checkpoint fixes it)")
            return int(self.manifest[self.bank_key][option])
        v = default if value is None else value
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 64:
            raise ConfigError(option, value, "an integer within [1, 64]")
        return v

    def _layers(self, value: list[str] | None) -> tuple[str, ...]:
        if self.manifest is not None:
            if value is not None:
                raise ConfigError("layers", value, "'layers' only with checkpoint = 'none' (a checkpoint fixes them)")
            return tuple(self.manifest[self.bank_key]["layers"])
        if value is None:
            return self.default_layers
        names = self.net.layer_names()
        bad = [n for n in value if n not in names]
        if bad or not value or len(set(value)) != len(value):
            raise ConfigError("layers", value, f"distinct names among {names}")
        return tuple(value)

    def freeze_base(self) -> None:
        for p in self.net.parameters():
            p.requires_grad_(False)

    def modules_to_save(self) -> dict[str, nn.Module]:
        return {"net": self.net, "bank": self.bank}


@register_codec("cala")
class CALACodec(_AdaptedCodec):
    """Frozen base JSCC + a bank of low-rank adapters mixed by a condition gate.

    Options beside those of :mod:`dekasim.codecs.jscc`; all but ``condition_error_db`` only with
    ``checkpoint = "none"`` (a checkpoint fixes the bank):

    :param num_adapters: ``K``, the adapters in the bank (default 2).
    :param layers: names of the adapted convolutions (default: the eight every network of the family has).
    :param gate: ``"snr_anchored"`` (default: adapter ``i`` also anchored at an SNR) or ``"mlp"``.
    :param affine: each adapter also scales and shifts every output channel of its layers (default false).
    :param rank: the rank of each adapter (default 1).
    :param factor: ``"full"`` (default), ``"cp"`` (a channel vector times a spatial kernel), ``"scale"``
        (rescales the base's filters) or ``"kron"`` (Kronecker-product components).
    :param shared_rank: ungated components per layer, active at every condition (default 0).
    """

    bank_key = "cala"
    size_option, size_default = "num_adapters", 2
    default_layers = CALA_DEFAULT_LAYERS

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, *, num_adapters: int | None = None,
                 layers: list[str] | None = None, gate: str | None = None, affine: bool | None = None,
                 rank: int | None = None, factor: str | None = None, shared_rank: int | None = None,
                 **options: Any) -> None:
        #: bank options given (None: the checkpoint's, or the default); CALABank checks their values
        self._bank_options = {"gate": gate, "affine": affine, "rank": rank, "factor": factor,
                              "shared_rank": shared_rank}
        given = {k: v for k, v in self._bank_options.items() if v is not None}
        if given:
            options["_extra_options"] = {**(options.get("_extra_options") or {}), **given}
        super().__init__(payload_shape, bandwidth_ratio, _size=num_adapters, layers=layers, **options)

    def build(self, arch: Arch) -> None:
        super().build(arch)
        k = self._bank_settings()
        layers = self._layers(self._layers_option)
        # what a manifest without the key means (written before the option existed), and a new bank's default
        defaults = {"gate": "mlp", "affine": False, "rank": 1, "factor": "full", "shared_rank": 0}
        if self.manifest is not None:
            for name, value in self._bank_options.items():
                if value is not None:
                    raise ConfigError(name, value, f"'{name}' only with checkpoint = 'none' (a checkpoint fixes it)")
            settings = {name: self.manifest["cala"].get(name, default) for name, default in defaults.items()}
            hidden = int(self.manifest["cala"]["gate_hidden"])
        else:
            settings = {name: default if self._bank_options[name] is None else self._bank_options[name]
                        for name, default in {**defaults, "gate": "snr_anchored"}.items()}
            hidden = 32
        self.bank = CALABank(self.net, layers, k, hidden, settings["gate"], settings["affine"], settings["rank"],
                             settings["factor"], settings["shared_rank"])
        self.freeze_base()

    def gate_weights(self, cond: Condition, snr_db: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, K]`` gate weights for ``cond`` (``snr_db`` ``[B]`` overrides its SNR per item)."""
        snr = torch.tensor([float(cond.snr_db)], device=self.bank.anchor_db.device) if snr_db is None else snr_db
        return self.bank.gate_weights(condition_features(snr, cond, self.bandwidth_ratio))

    def _adapt(self, snr_db: torch.Tensor, cond: Condition) -> tuple[dict[str, Adapter], None]:
        return self.bank.adapters(self.gate_weights(cond, snr_db)), None

    def num_parameters(self) -> dict[str, int]:
        return {"base": num_params(self.net), "adapters": self.bank.num_adapter_params(),
                "gate": self.bank.num_gate_params()}


@register_codec("lora_oracle")
class LoRAOracleCodec(_AdaptedCodec):
    """Frozen base JSCC + one LoRA per condition bucket (an oracle, not compact).

    Options beside those of :mod:`dekasim.codecs.jscc`; these two only with ``checkpoint = "none"``:

    :param rank: the rank of each bucket's LoRA (default 4).
    :param layers: names of the adapted convolutions (default ``["enc.res2", "enc.out", "dec.inp"]``).
    """

    bank_key = "lora_oracle"
    size_option, size_default = "rank", 4

    def __init__(self, payload_shape: tuple[int, ...], bandwidth_ratio: float, *, rank: int | None = None,
                 layers: list[str] | None = None, **options: Any) -> None:
        super().__init__(payload_shape, bandwidth_ratio, _size=rank, layers=layers, **options)

    def build(self, arch: Arch) -> None:
        super().build(arch)
        r = self._bank_settings()
        layers = self._layers(self._layers_option)
        if self.manifest:
            m = self.manifest["lora_oracle"]
            self.bank = LoRAOracleBank(self.net, layers, r, tuple(m["snr_centres_db"]), tuple(m["delay_spreads_ns"]))
        else:
            self.bank = LoRAOracleBank(self.net, layers, r)
        self.freeze_base()

    def _adapt(self, snr_db: torch.Tensor, cond: Condition) -> tuple[dict[str, Adapter], None]:
        buckets = [self.bank.bucket_of(float(s), float(cond.delay_spread_ns)) for s in snr_db]
        return self.bank.adapters(buckets), None

    def num_parameters(self) -> dict[str, int]:
        return {"base": num_params(self.net), "adapters": num_params(self.bank), "gate": 0}
