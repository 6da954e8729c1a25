"""The knowledge pack meets the codecs: its CALA bank into a working codec, its bytes into channel uses.

A pack (:mod:`dekasim.generative.pack`) is data; this module is where it touches the transmission
side of DeKA-g:

- :func:`read_cala_checkpoint` / :func:`with_cala` attach a CALA checkpoint's bank + gate
  (``cala-*.json`` of the JSCC trainer) to a pack; the pack records the sha256 and file name of the
  base JSCC checkpoint the bank adapts, but not the base itself (the edge already has it);
- :func:`cala_codec_from_pack` rebuilds a working :class:`~dekasim.codecs.cala.CALACodec` from a pack
  and that base checkpoint, and refuses any other base. Unquantised, the rebuilt codec computes
  bit-identically to the checkpoint's (the checkpoint's float16 values are exact in float32);
- :func:`pack_downlink_cost` prices a saved pack (all files and the manifest as one byte stream, and
  each file alone) in channel uses of the digital chain at a few MCS indices (:data:`DOWNLINK_MCS`, see
  :func:`dekasim.codecs.mcs.downlink_channel_uses`); :mod:`dekasim.deka.downlink` *simulates* it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dekasim.codecs.mcs import DOWNLINK_BLOCK_CHANNEL_USES, downlink_channel_uses
from dekasim.errors import ConfigError
from dekasim.generative.pack import MANIFEST_NAME, CALABankPart, KnowledgePack, read_manifest, pack_size_bytes

#: MCS indices of TS 38.214 Table 5.1.3.1-1 at which :func:`pack_downlink_cost` prices a pack by default:
#: QPSK R = 0.30, 16QAM R = 0.64, 64QAM R = 0.89.
DOWNLINK_MCS = (4, 16, 27)


def pack_downlink_cost(directory: str | Path, mcs_indices: tuple[int, ...] = DOWNLINK_MCS,
                       table: str = "qam64") -> dict[str, Any]:
    """Size [bytes] and downlink cost [channel uses] of the pack in ``directory``.

    The whole pack (its files and ``manifest.json``, :func:`pack_size_bytes`) is priced as one byte
    stream, and each file alone, by :func:`dekasim.codecs.mcs.downlink_channel_uses` (the digital
    chain's CRC + 5G LDPC + QAM in transport blocks of
    :data:`~dekasim.codecs.mcs.DOWNLINK_BLOCK_CHANNEL_USES` symbols; no pilots, no retransmissions).
    The files' costs add up to slightly more than the whole's: each one's last block is partly empty.

    :param mcs_indices: I_MCS of ``table`` to price at.
    :return: ``{"size_bytes", "table", "block_channel_uses", "channel_uses": {"<mcs>": n},
        "files": {name: {"size_bytes", "channel_uses": {"<mcs>": n}}}}`` (MCS keys as strings, as in JSON).
    """
    d = Path(directory)
    manifest = read_manifest(d)
    names = [MANIFEST_NAME, *(f["name"] for f in manifest["files"])]
    sizes = {name: (d / name).stat().st_size for name in names}

    def cost(n_bytes: int) -> dict[str, int]:
        return {str(i): downlink_channel_uses(n_bytes, i, table) for i in mcs_indices}

    total = pack_size_bytes(d)
    return {"size_bytes": total, "table": table, "block_channel_uses": DOWNLINK_BLOCK_CHANNEL_USES,
            "channel_uses": cost(total),
            "files": {name: {"size_bytes": size, "channel_uses": cost(size)} for name, size in sizes.items()}}


def read_cala_checkpoint(path: str | Path) -> CALABankPart:
    """The bank + gate of a CALA checkpoint (``cala-*.json`` beside its ``.safetensors``), float32.

    Read with :func:`dekasim.codecs.jscc.read_checkpoint` (format and sha256 checked). The base JSCC
    checkpoint the manifest names is not read: the part records its file name and sha256.

    :raises ConfigError: (field ``cala``) for a missing or altered checkpoint, or one that is not a CALA one.
    """
    from dekasim.codecs.jscc import read_checkpoint

    manifest, tensors = read_checkpoint(path, field="cala")
    if manifest.get("codec") != "cala" or not isinstance(manifest.get("cala"), dict) \
            or not isinstance(manifest.get("base"), dict):
        raise ConfigError("cala", str(path), "a CALA checkpoint manifest (codec 'cala', with 'cala' and 'base')",
                          "give a cala-*.json written by `python -m dekasim.training.jscc train --codec cala`")
    bank = {k[len("bank."):]: v for k, v in tensors.items() if k.startswith("bank.")}
    if len(bank) != len(tensors):
        raise ConfigError("cala", sorted(k for k in tensors if not k.startswith("bank."))[:3],
                          "only bank.* tensors in a CALA checkpoint")
    settings = manifest["cala"]
    try:
        return CALABankPart(tensors=bank, layers=list(settings["layers"]), num_adapters=settings["num_adapters"],
                            gate_hidden=settings["gate_hidden"], arch=manifest["arch"],
                            bandwidth_ratio=manifest["bandwidth_ratio"],
                            base={k: manifest["base"][k] for k in ("file", "sha256", "codec") if k in manifest["base"]},
                            source={"file": manifest["file"], "sha256": manifest["sha256"]},
                            gate=settings.get("gate", "mlp"), affine=bool(settings.get("affine", False)),
                            rank=settings.get("rank", 1), factor=settings.get("factor", "full"),
                            shared_rank=settings.get("shared_rank", 0))
    except KeyError as exc:
        raise ConfigError("cala", str(path), f"a CALA checkpoint manifest with {exc}") from None


def with_cala(pack: KnowledgePack, cala: str | Path | CALABankPart) -> KnowledgePack:
    """A copy of ``pack`` carrying a CALA bank + gate (``pack`` itself is unchanged).

    :param cala: a CALA checkpoint manifest path (:func:`read_cala_checkpoint`) or a part already read.
    """
    part = cala if isinstance(cala, CALABankPart) else read_cala_checkpoint(cala)
    return replace(pack, cala=part)


def cala_base_checkpoint(cala_checkpoint: str | Path) -> Path:
    """Path of the base JSCC manifest a CALA checkpoint names (it sits in the same directory)."""
    p = Path(cala_checkpoint).with_suffix(".json")
    base = json.loads(p.read_text()).get("base") if p.is_file() else None
    if not isinstance(base, dict) or not base.get("file"):
        raise ConfigError("cala", str(cala_checkpoint), "a CALA checkpoint manifest naming its base checkpoint")
    return p.parent / Path(base["file"]).with_suffix(".json").name


def cala_codec_from_pack(pack: KnowledgePack, base_checkpoint: str | Path, condition_error_db: float = 0.0):
    """A working :class:`~dekasim.codecs.cala.CALACodec`: ``base_checkpoint``'s network + the pack's bank.

    :param base_checkpoint: the base JSCC checkpoint manifest (``jscc_base-*.json``) on the edge; its
        tensor file's sha256 must be the one the pack recorded.
    :param condition_error_db: the codec option of that name (see :mod:`dekasim.codecs.jscc`).
    :return: the codec in eval mode, its base frozen, at the bank's ``bandwidth_ratio`` (a rate-adaptive
        base's other rates with ``codec.set_rate``). Its options read ``checkpoint = "none"`` (the weights
        come from the pack and the base, not from one checkpoint file).
    :raises ConfigError: ``pack.cala`` (no bank), ``pack.cala.base.sha256`` (another base),
        ``pack.cala.arch`` (a base of another architecture), ``pack.cala.tensors`` (tensors that do not fit).
    """
    from dekasim.codecs.cala import CALABank, CALACodec
    from dekasim.codecs.jscc import Arch, read_checkpoint

    part = pack.cala
    if part is None:
        raise ConfigError("pack.cala", None, "a pack carrying a CALA bank", "attach one with with_cala(pack, path)")
    base_manifest, base_tensors = read_checkpoint(base_checkpoint, field="base_checkpoint")
    if base_manifest.get("sha256") != part.base["sha256"]:
        raise ConfigError("pack.cala.base.sha256", base_manifest.get("sha256"),
                          f"{part.base['sha256']}, the sha256 of {part.base['file']}, the base the bank was trained on",
                          f"give the manifest of {part.base['file']}: a bank adapts that exact network only")
    arch = Arch.from_json(part.arch)
    if Arch.from_json(base_manifest["arch"]) != arch:
        raise ConfigError("pack.cala.arch", base_manifest["arch"], f"the architecture of the bank's base {part.arch}")
    n_source = math.prod(arch.payload_shape)
    rates = [n / n_source for n in arch.rates] if arch.rates else None  # a rate-adaptive base serves them all
    codec = CALACodec(arch.payload_shape, part.bandwidth_ratio, checkpoint="none", width=arch.width,
                      payload_kind=arch.payload_kind, num_adapters=part.num_adapters, layers=list(part.layers),
                      gate=part.gate, affine=part.affine or None, rank=None if part.rank == 1 else part.rank,
                      factor=None if part.factor == "full" else part.factor, shared_rank=part.shared_rank or None,
                      rates=rates, space_to_depth=arch.space_to_depth, condition_error_db=condition_error_db)
    if codec.arch != arch:
        raise ConfigError("pack.cala.bandwidth_ratio", part.bandwidth_ratio,
                          f"a ratio giving {arch.n_symbols} channel uses, got {codec.n_channel_uses}")
    if codec.bank.gate[0].out_features != part.gate_hidden:  # built with the default width of the gate
        with torch.random.fork_rng(devices=[]):  # its random init is overwritten: leave the global RNG alone
            codec.bank = CALABank(codec.net, tuple(part.layers), part.num_adapters, part.gate_hidden, part.gate,
                                  part.affine, part.rank, part.factor, part.shared_rank)
    net = {k[len("net."):]: v for k, v in base_tensors.items() if k.startswith("net.")}
    try:
        codec.net.load_state_dict(net, strict=True)
        codec.bank.load_state_dict({k: v.to(torch.float32) for k, v in part.tensors.items()}, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise ConfigError("pack.cala.tensors", f"{len(part.tensors)} tensors",
                          f"tensors that fit the base network ({first})", "attach the bank trained on this base")
    codec.freeze_base()
    return codec.eval()
