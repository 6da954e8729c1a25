"""The one conformance check every codec passes (DESIGN.md, codec contract), for built-in and third-party
codecs alike: ``dekasim check-codec SPEC`` and the test suite run the same :func:`check_codec`.

Checks, each on the codec built from ``spec`` at ``payload_shape`` and ``bandwidth_ratio``:

- ``shapes``: ``encode`` gives ``[B, n]`` complex64; ``decode`` gives the payload's shape back;
- ``channel_uses``: ``n`` is the declared ``round(bandwidth_ratio * prod(payload_shape))`` (for a codec that
  takes only bits, whose MCS and block length set ``n``: the ``n`` it sends);
- ``power``: the symbols' mean power is 1 within 0.08 over 32 items (64-QAM's scatter around 1 over
  32 x 43 symbols has a standard deviation of 0.017);
- ``batch_equals_single``: three items decoded in one batch equal each decoded alone (noiseless);
- ``no_nan_at_-10dB``: decoding after AWGN at Es/N0 = -10 dB gives finite values;
- ``save_load``: :meth:`~dekasim.codecs.Codec.save` then :meth:`~dekasim.codecs.Codec.load` rebuilds the
  same config and the same output.

The payload is a smooth random image (a blurred random field, which compresses like a photo) for
codecs that take images, random bits for codecs that take only bits, else Gaussian latents.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import torch

from dekasim.codecs.base import Codec, build_codec, resolve_codec
from dekasim.conditions import Condition

#: A clean channel condition for the checks (the symbols are passed through by hand).
CONDITION = Condition(snr_db=10.0, tdl_profile="awgn")


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, whether it passed, and what was seen."""

    name: str
    passed: bool
    detail: str


def default_shape(spec: str) -> tuple[int, ...]:
    """``(3, 32, 32)`` for a codec that takes images, ``(1024,)`` for one that takes only bits, else ``(4, 8, 8)``
    latents."""
    kinds = resolve_codec(spec).payload_kinds
    return (3, 32, 32) if "image" in kinds else (1024,) if kinds == ("bits",) else (4, 8, 8)


def sample_payload(codec: Codec, batch: int, seed: int = 0) -> torch.Tensor:
    """``[batch, *payload_shape]``: smooth images in [0, 1] for image codecs, random bits in {0, 1} for codecs
    that take only bits, else standard normal latents."""
    g = torch.Generator().manual_seed(seed)
    shape = codec.payload_shape
    if codec.payload_kinds == ("bits",):
        return torch.randint(0, 2, (batch, *shape), generator=g).to(torch.float32)
    if "image" in codec.payload_kinds and len(shape) == 3 and shape[0] == 3:
        raw = torch.rand(batch, 3, max(shape[1] // 4, 1), max(shape[2] // 4, 1), generator=g)
        return torch.nn.functional.interpolate(raw, size=shape[1:], mode="bilinear", align_corners=False)
    return torch.randn(batch, *shape, generator=g)


def _noiseless(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.clone(), torch.full(x.shape, 1e-6)


def _awgn(x: torch.Tensor, snr_db: float, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    no = 10 ** (-snr_db / 10)
    n = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)) * math.sqrt(no / 2)
    return x + n.to(x.dtype), torch.full(x.shape, no)


def _run(name: str, fn: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, fn())
    except AssertionError as exc:
        return CheckResult(name, False, str(exc) or "assertion failed")
    except Exception as exc:  # noqa: BLE001 - a third-party codec's failure is a finding, not a crash
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")


def check_codec(spec: str, payload_shape: tuple[int, ...] | None = None, bandwidth_ratio: float = 1 / 6,
                options: dict[str, Any] | None = None) -> list[CheckResult]:
    """Run every check on the codec ``spec`` (a registered name or ``"package.module:Class"``).

    :raises ConfigError: when the codec cannot be built at all (unknown name, bad options).
    """
    shape = tuple(payload_shape) if payload_shape is not None else default_shape(spec)
    opts = dict(options or {})
    codec = build_codec(spec, shape, bandwidth_ratio, **opts)
    n = codec.n_channel_uses

    def shapes() -> str:
        payload = sample_payload(codec, 4)
        x = codec.encode(payload, CONDITION)
        assert torch.is_tensor(x) and x.dtype == torch.complex64, f"encode gave {getattr(x, 'dtype', type(x))}, " \
                                                                   "expected complex64"
        assert tuple(x.shape) == (4, n), f"encode gave {tuple(x.shape)}, expected (4, {n})"
        out = codec.decode(*_noiseless(x), CONDITION)
        assert tuple(out.payload.shape) == tuple(payload.shape), \
            f"decode gave {tuple(out.payload.shape)}, expected {tuple(payload.shape)}"
        return f"[4, {n}] complex64 -> {tuple(payload.shape)}"

    def channel_uses() -> str:
        if codec.payload_kinds == ("bits",):  # a bit codec's MCS and block length set n, not the ratio
            got = codec.encode(sample_payload(codec, 2), CONDITION).shape[1]
            assert got == n, f"declares {n} channel uses, sends {got}"
            return f"{n} symbols per item (set by the codec's MCS and block length; the bandwidth ratio is not used)"
        want = round(bandwidth_ratio * math.prod(shape))
        assert n == want, f"declares {n} channel uses, expected round({bandwidth_ratio:g} x {math.prod(shape)}) = {want}"
        return f"{n} symbols per item"

    def power() -> str:
        x = codec.encode(sample_payload(codec, 32), CONDITION)
        p = x.abs().pow(2).mean().item()
        assert abs(p - 1.0) <= 0.08, f"mean symbol power {p:.3f}, expected 1 (unit average energy)"
        return f"mean |x|^2 = {p:.3f}"

    def batch_equals_single() -> str:
        payload = sample_payload(codec, 3)
        batched = codec.decode(*_noiseless(codec.encode(payload, CONDITION)), CONDITION).payload
        worst = 0.0
        for i in range(3):
            single = codec.decode(*_noiseless(codec.encode(payload[i:i + 1], CONDITION)), CONDITION).payload
            worst = max(worst, (single[0] - batched[i]).abs().max().item())
        assert worst <= 1e-5 + 1e-5 * batched.abs().max().item(), f"item decoded alone differs by {worst:.2e}"
        return f"largest difference {worst:.1e}"

    def no_nan() -> str:
        cond = Condition(snr_db=-10.0, tdl_profile="awgn")
        out = codec.decode(*_awgn(codec.encode(sample_payload(codec, 4), cond), -10.0), cond)
        assert torch.isfinite(out.payload).all(), "non-finite values in the decoded payload"
        return "finite"

    def save_load() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            codec.save(tmp)
            again = Codec.load(tmp)
        assert type(again) is type(codec), f"loaded a {type(again).__name__}"
        assert again.config() == codec.config(), "the loaded codec's config differs"
        payload = sample_payload(codec, 2)
        a = codec.decode(*_noiseless(codec.encode(payload, CONDITION)), CONDITION).payload
        b = again.decode(*_noiseless(again.encode(payload, CONDITION)), CONDITION).payload
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), "the loaded codec decodes differently"
        return "same config, same output"

    return [_run("shapes", shapes), _run("channel_uses", channel_uses), _run("power", power),
            _run("batch_equals_single", batch_equals_single), _run("no_nan_at_-10dB", no_nan),
            _run("save_load", save_load)]
