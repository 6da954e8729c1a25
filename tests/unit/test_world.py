"""The procedural captioned-image world and its attribute checker (numpy/scipy only, fast)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dekasim.errors import ConfigError
from dekasim.generative.checker import Checker, checker_accuracy, degrade
from dekasim.generative.world import (ATTRIBUTE_NAMES, SHAPE_AREA, Attributes, World, WorldSpec, coverage,
                                      parse_caption)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def test_docstring_examples_run():
    import doctest

    import dekasim.generative.world as module

    assert doctest.testmod(module).failed == 0


def test_world_is_deterministic_per_seed(world):
    a, b, c = world.sample(64, seed=3), world.sample(64, seed=3), world.sample(64, seed=4)
    assert a.images.shape == (64, 32, 32, 3) and a.images.dtype == np.float32
    assert np.array_equal(a.images, b.images) and a.scenes == b.scenes
    assert a.captions != c.captions and not np.array_equal(a.images, c.images)
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0
    # same caption, same seed -> same pixels, whatever else is in the batch
    first = world.render(a.attributes[:1], seed=9).images[0]
    assert np.array_equal(first, world.render(a.attributes[:1], seed=9).images[0])


def test_default_world_size_and_split(world):
    spec = world.spec
    assert spec.n_combinations == 6 * 6 * 3 * 9 * 4 == 3888
    train, held = set(world.split("train")), set(world.split("heldout"))
    assert train.isdisjoint(held) and len(train) + len(held) == spec.n_combinations
    assert len(held) == round(0.1 * spec.n_combinations)
    # every single value, and every (shape, colour) binding, still occurs in training
    for name in ATTRIBUTE_NAMES:
        assert {getattr(a, name) for a in train} == set(spec.values(name))
    assert {(a.shape, a.colour) for a in train} == {(s, c) for s in spec.shapes for c in spec.colours}
    # sampling the training split never draws a held-out caption, and vice versa
    assert set(world.sample(2000, seed=1).attributes) <= train
    assert set(world.sample(500, seed=2, split="heldout").attributes) <= held
    # the split depends on split_seed only
    assert World(split_seed=0).split("heldout") == world.split("heldout") != World(split_seed=1).split("heldout")


def test_pairs_split_holds_out_whole_shape_colour_bindings():
    w = World(split="pairs", split_seed=5)
    held_pairs = {(a.shape, a.colour) for a in w.split("heldout")}
    assert len(held_pairs) == len(w.spec.shapes)
    assert {s for s, _ in held_pairs} == set(w.spec.shapes)
    assert not held_pairs & {(a.shape, a.colour) for a in w.split("train")}


def test_captions_round_trip(world):
    a = Attributes("star", "blue", "large", "bottom right", "white")
    assert a.caption() == "a large blue star at the bottom right on a white background"
    for attrs in world.split("all")[::97]:
        assert parse_caption(attrs.caption()) == attrs
    with pytest.raises(ConfigError, match="caption"):
        parse_caption("a red circle")


def test_geometry_area_and_centroid_are_exact():
    for shape, area in SHAPE_AREA.items():
        a = coverage([shape], [64.0], [60.0], [40.0], 128, supersample=4)[0]
        assert a.sum() / 40 ** 2 == pytest.approx(area, rel=0.01), shape
        ys, xs = np.mgrid[0:128, 0:128] + 0.5
        assert (a * xs).sum() / a.sum() == pytest.approx(64.0, abs=0.05), shape
        assert (a * ys).sum() / a.sum() == pytest.approx(60.0, abs=0.05), shape


def test_edge_dialect_draws_two_words_differently():
    std, edge = World(), World(dialect="edge")
    a = Attributes("triangle", "purple", "large", "center", "white")
    assert edge.rendered(a) == Attributes("triangle_down", "magenta", "large", "center", "white")
    assert std.rendered(a) == a
    img_std, img_edge = std.render([a], jitter=False).images[0], edge.render([a], jitter=False).images[0]
    # point-up vs point-down: the top half holds less of the up-triangle's mass than its bottom half
    alpha_std = np.abs(img_std - img_std[0, 0]).sum(-1)
    alpha_edge = np.abs(img_edge - img_edge[0, 0]).sum(-1)
    assert alpha_std[:16].sum() < alpha_std[16:].sum() and alpha_edge[:16].sum() > alpha_edge[16:].sum()
    untouched = Attributes("circle", "red", "small", "top", "black")
    assert np.array_equal(std.render([untouched], seed=1).images, edge.render([untouched], seed=1).images)


def test_bad_words_are_config_errors():
    with pytest.raises(ConfigError, match="world.shapes"):
        WorldSpec(shapes=("circle", "hexagon"))
    with pytest.raises(ConfigError, match="world.backgrounds"):
        WorldSpec(backgrounds=("red", "black"))
    with pytest.raises(ConfigError, match="world.dialect"):
        World(dialect="klingon")
    with pytest.raises(ConfigError, match="attributes.shape"):
        World().render([Attributes("triangle_down", "red", "small", "top", "black")])


def test_rendering_is_fast(world):
    world.sample(16, seed=0)
    t = time.perf_counter()
    world.sample(1000, seed=1)
    # ~0.3 s alone on one core; the bound leaves room for a busy shared CPU
    assert time.perf_counter() - t < 10.0


# -- checker ------------------------------------------------------------------------------------


def test_checker_ceiling_on_clean_renders(world):
    acc = checker_accuracy(world, n=400, seed=11)
    # measured: 1.000 on 2000 clean renders, every attribute
    assert acc["fully_correct"] >= 0.99, acc
    assert min(acc[n] for n in ATTRIBUTE_NAMES) >= 0.99, acc


def test_checker_on_heldout_and_edge_dialect():
    assert checker_accuracy(World(), n=200, seed=12, split="heldout")["fully_correct"] >= 0.99
    # the edge's renders read in the rendered vocabulary: magenta, triangle_down
    assert checker_accuracy(World(dialect="edge"), n=200, seed=13)["fully_correct"] >= 0.99


def test_checker_on_noisy_and_blurred_renders(world):
    # measured on 2000 renders: 1.000 (noise 0.05), 1.000 (blur 0.7 px), 0.976 (noise 0.15),
    # 0.91 (noise 0.1 + blur 1 px)
    assert checker_accuracy(world, n=200, seed=14, noise_std=0.05, blur_sigma_px=0.7)["fully_correct"] >= 0.95
    assert checker_accuracy(world, n=200, seed=15, noise_std=0.15)["fully_correct"] >= 0.90


def test_checker_reports_per_attribute_and_no_object(world):
    checker = Checker(world.spec)
    b = world.render([Attributes("cross", "green", "medium", "left", "gray"),
                      Attributes("square", "yellow", "small", "bottom right", "navy")], seed=2)
    wrong = [Attributes("cross", "green", "large", "left", "gray"), b.attributes[1]]
    report = checker.check(b.images, wrong)
    assert report.recovered == b.attributes
    assert list(report.correct["size"]) == [False, True] and list(report.fully_correct) == [False, True]
    blank = np.full((1, 32, 32, 3), 0.5, np.float32)
    r = checker.check(degrade(blank, noise_std=0.02)).recovered[0]
    assert (r.shape, r.background) == ("none", "gray")


def test_checker_accepts_torch_and_uint8(world):
    torch = pytest.importorskip("torch")
    b = world.sample(8, seed=21)
    checker = Checker(world.spec)
    want = [s.rendered for s in b.scenes]
    assert checker.check(b.torch_images(), want).accuracy()["fully_correct"] == 1.0
    assert checker.check(b.uint8(), want).accuracy()["fully_correct"] == 1.0
    with pytest.raises(ConfigError, match="images"):
        checker.check(torch.zeros(2, 3, 16, 16))
