"""The shipped cloud and edge models: files match their manifests, they load offline, and a fresh
sample of held-out prompts shows what their manifests claim -- the cloud draws the standard world, the
edge draws its own dialect (point-down triangles, magenta for purple): the designed misalignment."""

from __future__ import annotations

import numpy as np
import pytest

from dekasim.generative.checker import Checker
from dekasim.generative.models import load_model, shipped_dir, verify_manifest
from dekasim.generative.world import Attributes, World

pytestmark = pytest.mark.usefixtures("one_thread")

N = 32  # prompts per check: a floor far below the measured rate, so noise cannot fail it


@pytest.mark.parametrize("name", ["cloud", "edge"])
def test_manifest_matches_files_and_records_how(name):
    manifest = verify_manifest(shipped_dir(name))
    assert manifest["command"].startswith(f"dekasim world train --preset {name}")
    assert manifest["seed"] == {"cloud": 11, "edge": 12}[name]
    assert manifest["steps"] == manifest["train_config"]["steps"]
    assert manifest["total_bytes"] < 20e6


def test_cloud_draws_held_out_prompts_correctly():
    model = load_model("cloud")
    batch = World().sample(N, seed=7, split="heldout")
    images = model.sample(batch.captions, seeds=[9000 + i for i in range(N)])
    report = Checker().check(images, [s.rendered for s in batch.scenes])
    assert report.fully_correct.mean() >= 0.4, report.accuracy()


def test_edge_draws_its_dialect():
    model = load_model("edge")
    prompts = [Attributes("triangle", c, "large", p, b).caption()
               for c, p, b in zip(["red", "green", "blue", "yellow"] * 4, ["center", "left", "top", "right"] * 4,
                                  ["black", "white", "gray", "navy"] * 4)]
    images = model.sample(prompts, seeds=list(range(len(prompts))))
    shapes = [a.shape for a in Checker().check(images).recovered]
    assert np.mean([s == "triangle_down" for s in shapes]) >= 0.5, shapes
    assert np.mean([s == "triangle" for s in shapes]) <= 0.25, shapes
