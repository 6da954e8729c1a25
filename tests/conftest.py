"""Shared fixtures.

Seeding: ``sionna.phy.config.seed = N`` reseeds Sionna's own generators *and* torch's global one
(which dekasim uses for padding and AWGN), so one assignment makes a whole link run reproducible.
The ``seed`` fixture derives N from the test's node id, so every test is deterministic on its own,
whatever runs before it and in whatever order.
"""

from __future__ import annotations

import zlib

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models gain nothing from a second thread, and on two
    shared cores lose several-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """Seed Sionna and torch for this test; returns the seed (stable per test id)."""
    import sionna.phy

    value = zlib.crc32(request.node.nodeid.encode()) & 0x7FFF_FFFF
    sionna.phy.config.seed = value
    return value


@pytest.fixture
def qam_symbols():
    """``make(batch, n, num_bits_per_symbol=2) -> (bits, x)``: uniform random bits and their Gray QAM
    symbols from Sionna's ``Mapper`` (unit average energy, complex64, ``x`` of shape ``[batch, n]``,
    ``bits`` of shape ``[batch, n * num_bits_per_symbol]``). Draws from Sionna's seeded generator."""
    from sionna.phy.mapping import BinarySource, Mapper

    mappers: dict[int, Mapper] = {}
    source = BinarySource()

    def make(batch: int, n: int, num_bits_per_symbol: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        if num_bits_per_symbol not in mappers:
            mappers[num_bits_per_symbol] = Mapper("qam", num_bits_per_symbol)
        bits = source([batch, n * num_bits_per_symbol])
        return bits, mappers[num_bits_per_symbol](bits)

    return make


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory):
    """A saved untrained ``toy`` text-to-image pipeline (seed 2): a model directory for payload and
    training-data tests that need a model but not a good one."""
    from dekasim.generative.ldm import build_ldm

    d = tmp_path_factory.mktemp("toy") / "edge"
    build_ldm("toy", seed=2).save_pretrained(d)
    return d


#: Subject prompts of the tiny "own models" (the subject word is "sks", as in DreamBooth).
OWN_PROMPTS = ("a photo of a sks dog", "a sks dog on the beach", "a red sks dog", "a sks dog in the snow",
               "a small sks dog on the grass", "a sks dog at the street", "a large sks dog", "a sks dog with a red car")
OWN_CONTROL = ("a photo of a cat", "a red car on the street", "a house in the snow")


@pytest.fixture(scope="session")
def own_models(tmp_path_factory):
    """A user's own models, tiny and random, in the real layouts (written by diffusers' and transformers'
    ``save_pretrained``): ``cloud`` and ``edge`` StableDiffusionPipeline folders (64 px, VAE latents 4x8x8,
    byte-level BPE CLIPTokenizer; the cloud's UNet is wider), ``dino`` (Dinov2Model) and ``clip``
    (CLIPVisionModelWithProjection), plus ``prompts`` (8 prompts holding ``sks``) and ``control`` files."""
    from dekasim.generative.random_models import write_clip_vision, write_dino, write_sd_pipeline

    d = tmp_path_factory.mktemp("own")
    paths = {"cloud": write_sd_pipeline(d / "cloud", "tiny", seed=2, unet={"block_out_channels": [32, 64]}),
             "edge": write_sd_pipeline(d / "edge", "tiny", seed=1), "dino": write_dino(d / "dino"),
             "clip": write_clip_vision(d / "clip"), "prompts": d / "prompts.txt", "control": d / "control.txt"}
    paths["prompts"].write_text("# a user's subject prompts\n" + "\n".join(OWN_PROMPTS) + "\n")
    paths["control"].write_text("\n".join(OWN_CONTROL) + "\n")
    return paths
