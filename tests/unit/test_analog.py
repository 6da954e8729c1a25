"""The uncoded analog reference: linear, low-pass, improves with SNR."""

import torch

from dekasim import Condition
from dekasim.codecs import build_codec
from dekasim.codecs.analog import dct_matrix
from dekasim.metrics import psnr_db
from dekasim.sim.payloads import PhotoSource


def test_dct_is_orthonormal():
    d = dct_matrix(16)
    torch.testing.assert_close(d @ d.T, torch.eye(16, dtype=torch.float64))


def test_full_bandwidth_is_lossless():
    img = PhotoSource(32).images[:2]
    codec = build_codec("analog", (3, 32, 32), 0.5)  # 2 reals per symbol: every coefficient is sent
    x = codec.encode(img, Condition(snr_db=10, tdl_profile="awgn"))
    out = codec.decode(x, torch.zeros(x.shape), None).payload
    torch.testing.assert_close(out, img, atol=1e-5, rtol=0)


def test_psnr_rises_with_snr_and_more_bandwidth_helps():
    img = PhotoSource(32).images
    torch.manual_seed(0)

    def run(ratio, snr_db):
        codec = build_codec("analog", (3, 32, 32), ratio)
        x = codec.encode(img, None)
        no = 10 ** (-snr_db / 10)
        y = x + torch.complex(torch.randn(x.shape), torch.randn(x.shape)) * (no / 2) ** 0.5
        return psnr_db(img, codec.decode(y, torch.full(x.shape, no), None).payload).mean().item()

    assert run(1 / 12, 0) < run(1 / 12, 10) < run(1 / 12, 20)
    assert run(1 / 12, 20) < run(1 / 3, 20)


def test_latents_keep_their_sign_and_images_are_clipped():
    """Latents (here the edge's [48, 8, 8] in [-1, 1]) are not images: full bandwidth gives them back
    exactly, negatives included; a 3-channel image is clipped to [0, 1]."""
    lat = torch.rand(2, 48, 8, 8) * 2 - 1
    codec = build_codec("analog", (48, 8, 8), 0.5)
    x = codec.encode(lat, Condition(snr_db=10, tdl_profile="awgn"))
    torch.testing.assert_close(codec.decode(x, torch.zeros(x.shape), None).payload, lat, atol=1e-5, rtol=0)
    img = build_codec("analog", (3, 8, 8), 0.5)
    x = img.encode(torch.rand(2, 3, 8, 8), None)
    out = img.decode(x * 3, torch.zeros(x.shape), None).payload          # a gain pushes values out of range
    assert out.min() >= 0 and out.max() <= 1
