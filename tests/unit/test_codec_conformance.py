"""The one conformance test every registered codec passes (DESIGN.md, codec contract)."""

from __future__ import annotations

import math

import pytest
import torch

from dekasim import Condition
from dekasim.codecs import Codec, available_codecs, build_codec

IMAGE_SHAPE = (3, 32, 32)
LATENT_SHAPE = (4, 8, 8)
RATIO = 1 / 6


def _payload(codec: Codec, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if "image" in codec.payload_kinds:
        # smooth images (a blurred random field) compress like photos, unlike white noise
        raw = torch.rand(batch, 3, 8, 8, generator=g)
        return torch.nn.functional.interpolate(raw, size=IMAGE_SHAPE[1:], mode="bilinear", align_corners=False)
    return torch.randn(batch, *LATENT_SHAPE, generator=g)


def _make(name: str) -> Codec:
    cls = available_codecs()[name]
    shape = IMAGE_SHAPE if "image" in cls.payload_kinds else LATENT_SHAPE
    return build_codec(name, shape, RATIO)


def _noiseless(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.clone(), torch.full(x.shape, 1e-6)


def _awgn(x: torch.Tensor, snr_db: float, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    no = 10 ** (-snr_db / 10)
    n = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)) * math.sqrt(no / 2)
    return x + n, torch.full(x.shape, no)


CODECS = sorted(available_codecs())
COND = Condition(snr_db=10.0, tdl_profile="awgn")


@pytest.mark.parametrize("name", CODECS)
def test_shapes_power_and_declared_channel_uses(name):
    codec = _make(name)
    payload = _payload(codec, 32)
    x = codec.encode(payload, COND)
    assert x.dtype == torch.complex64
    assert tuple(x.shape) == (32, codec.n_channel_uses)
    assert codec.n_channel_uses == round(RATIO * math.prod(codec.payload_shape))
    # E|x|^2 = 1 in expectation; a digital codec's QAM symbols scatter around it: for 64-QAM
    # var(|x|^2) = 0.38, so over 32 x 43 symbols the sample power has a standard deviation of 0.017
    power = x.abs().pow(2).mean().item()
    assert power == pytest.approx(1.0, abs=0.08)
    out = codec.decode(*_noiseless(x), COND)
    assert tuple(out.payload.shape) == tuple(payload.shape)


@pytest.mark.parametrize("name", CODECS)
def test_batch_equals_single(name):
    codec = _make(name)
    payload = _payload(codec, 3)
    batched = codec.decode(*_noiseless(codec.encode(payload, COND)), COND).payload
    for i in range(3):
        single = codec.decode(*_noiseless(codec.encode(payload[i:i + 1], COND)), COND).payload
        torch.testing.assert_close(single[0], batched[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CODECS)
def test_no_nan_at_minus_10_db(name):
    codec = _make(name)
    cond = Condition(snr_db=-10.0, tdl_profile="awgn")
    payload = _payload(codec, 4)
    out = codec.decode(*_awgn(codec.encode(payload, cond), -10.0), cond)
    assert torch.isfinite(out.payload).all()


@pytest.mark.parametrize("name", CODECS)
def test_save_load_round_trip(name, tmp_path):
    codec = _make(name)
    codec.save(tmp_path)
    again = Codec.load(tmp_path)
    assert type(again) is type(codec)
    assert again.config() == codec.config()
    payload = _payload(codec, 2)
    a = codec.decode(*_noiseless(codec.encode(payload, COND)), COND).payload
    b = again.decode(*_noiseless(again.encode(payload, COND)), COND).payload
    torch.testing.assert_close(a, b)


def test_unknown_codec_and_option_are_config_errors():
    from dekasim.errors import ConfigError

    with pytest.raises(ConfigError, match="codecs"):
        build_codec("no-such-codec", IMAGE_SHAPE, RATIO)
    with pytest.raises(ConfigError, match="analog"):
        build_codec("analog", IMAGE_SHAPE, RATIO, bogus_option=1)
