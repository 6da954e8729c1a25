"""Per-row asymmetric uniform quantisation of a pack's tensors to 8, 4 or 2 bits, and the bit packing of
the codes (the scheme of :mod:`dekasim.generative.pack`'s module docstring)."""

from __future__ import annotations

import math
from typing import Mapping

import torch

from dekasim.errors import ConfigError

BITS = (8, 4, 2)
QUANT_SCHEME = "per_row_asymmetric_uniform"


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes in ``[0, 2**bits)`` into bytes.

    :param codes: any shape, integer dtype; flattened in row-major order.
    :param bits: 8, 4 or 2 (1, 2 or 4 codes per byte; the first code in the lowest bits).
    :return: ``[ceil(n / (8 // bits))]`` uint8 (the last byte zero-padded).
    """
    _check_bits(bits)
    per_byte = 8 // bits
    flat = codes.reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"codes outside [0, {(1 << bits) - 1}] for {bits} bits")
    pad = (-flat.numel()) % per_byte
    flat = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.int64) * bits
    return (flat << shifts).sum(dim=1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: ``[n]`` uint8 codes from the packed bytes."""
    _check_bits(bits)
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int64) * bits
    codes = (packed.reshape(-1, 1).to(torch.int64) >> shifts) & ((1 << bits) - 1)
    return codes.reshape(-1)[:n].to(torch.uint8)


def _check_bits(bits: int) -> None:
    if bits not in BITS:
        raise ConfigError("bits", bits, f"one of {list(BITS)} (or None for no quantisation)")


def _rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``[rows, cols]``: rows = the first dimension (a 0-D/1-D tensor is one row)."""
    return x.reshape(1, -1) if x.ndim < 2 else x.reshape(x.shape[0], -1)


def quantise_tensor(x: torch.Tensor, bits: int) -> dict[str, torch.Tensor]:
    """Per-row asymmetric uniform quantisation.

    ``x[i, ...] ~= codes * scale[i] + zero[i]``, ``codes`` in ``[0, 2**bits - 1]``; ``zero[i]`` is the row
    minimum and ``scale[i] = (max - min) / (2**bits - 1)``, both rounded to float16 *before* the codes are
    chosen, so the decoder's fp16 values are the ones the codes were fitted to. Error per element is at
    most ``scale[i] / 2`` (plus the fp16 rounding of ``zero[i]``).

    :param x: floating tensor, any shape; rows = the first dimension.
    :param bits: 8, 4 or 2.
    :return: ``codes`` ``[ceil(numel * bits / 8)]`` uint8 (packed, :func:`pack_codes`), ``scale`` and
        ``zero`` ``[rows]`` float16, ``shape`` ``[ndim]`` int64 and ``bits`` ``[]`` int64 (these last two go
        into the manifest, not the tensor file).
    """
    _check_bits(bits)
    levels = (1 << bits) - 1
    m = _rows(x.detach().to(device="cpu", dtype=torch.float32))
    if not torch.isfinite(m).all() or m.abs().max() > torch.finfo(torch.float16).max:
        raise ConfigError("quantise", "values beyond float16 range or not finite", "finite values with |x| <= 65504",
                          "quantise a finite tensor, or save the pack unquantised (bits=None)")
    lo = m.min(dim=1).values if m.shape[1] else m.new_zeros(m.shape[0])
    hi = m.max(dim=1).values if m.shape[1] else m.new_zeros(m.shape[0])
    zero = lo.to(torch.float16)
    tiny = torch.tensor(2.0 ** -24, dtype=torch.float16)  # smallest positive fp16: never divide by 0
    scale = torch.maximum(((hi - zero.float()) / levels).to(torch.float16), tiny)
    codes = torch.round((m - zero.float()[:, None]) / scale.float()[:, None]).clamp(0, levels)
    return {"codes": pack_codes(codes, bits), "scale": scale, "zero": zero,
            "shape": torch.tensor(list(x.shape), dtype=torch.int64), "bits": torch.tensor(bits, dtype=torch.int64)}


def dequantise_tensor(parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """float32 tensor of the original shape from :func:`quantise_tensor`'s ``parts``."""
    bits = int(parts["bits"])
    shape = [int(s) for s in parts["shape"].tolist()]
    n = math.prod(shape)
    rows = shape[0] if len(shape) >= 2 else 1
    codes = unpack_codes(parts["codes"], bits, n).reshape(rows, -1).float()
    x = codes * parts["scale"].float()[:, None] + parts["zero"].float()[:, None]
    return x.reshape(shape)


def stored_bytes(parts: Mapping[str, torch.Tensor]) -> int:
    """Bytes a quantised tensor occupies in a tensor file: its codes, scales and zeros (its ``shape`` and
    ``bits`` go into the manifest)."""
    return sum(parts[k].numel() * parts[k].element_size() for k in ("codes", "scale", "zero"))


def _n_packed_bytes(shape: list[int], bits: int) -> int:
    return -(-math.prod(shape) // (8 // bits))
