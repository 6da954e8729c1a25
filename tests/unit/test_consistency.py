"""Edge/cloud consistency metrics and the world feature encoder (fast: seconds)."""

import json
import math

import numpy as np
import pytest
import torch

from dekasim.errors import ConfigError
from dekasim.generative.features import (DEFAULT_DIR, WorldFeatureEncoder, load_encoder, save_encoder,
                                         train_feature_encoder)
from dekasim.generative.world import Attributes, World
from dekasim.generative.consistency import consistency
from dekasim.metrics import ConsistencyReport, paired_difference
from dekasim.metrics.consistency import METRICS, local_image_encoder


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped() -> WorldFeatureEncoder:
    return load_encoder()


def _render(attrs, dialect="standard", seed=0):
    return World(dialect=dialect).render(attrs, seed=seed).torch_images()


def test_copy_scores_above_an_unrelated_image_on_every_metric(shipped):
    a = _render([Attributes("circle", "red", "large", "center", "black")] * 2, seed=1)
    b = _render([Attributes("star", "blue", "small", "top left", "white")] * 2, seed=1)
    copy = consistency(a, a, encoder=shipped)
    other = consistency(a, b, encoder=shipped)
    assert isinstance(copy, ConsistencyReport) and copy.n == 2 and copy.metrics == list(METRICS)
    assert np.all(copy.per_pair["attribute_agreement"] == 1.0)
    assert np.all(copy.per_pair["all_attributes_agree"] == 1.0)
    assert copy.per_pair["feature_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert np.all(copy.per_pair["psnr_db"] >= 100.0) and copy.per_pair["ssim"] == pytest.approx(1.0)
    for metric in METRICS:
        assert np.all(other.per_pair[metric] < copy.per_pair[metric] - 1e-3), metric
    assert np.all(other.per_pair["attribute_agreement"] == 0.0)  # every attribute differs
    assert copy["all_attributes_agree"].ci95_interval[1] == 1.0
    # 2 pairs: too few for an interval of a mean, said in a note rather than printed as "± 0"
    assert copy["feature_cosine"].ci95_interval is None and "no interval" in copy["feature_cosine"].note
    json.dumps(other.as_dict(per_pair=True))  # serialisable for the result store


def test_point_down_triangle_disagrees_on_shape_only(shipped):
    attrs = [Attributes("triangle", "red", "large", "center", "black"),
             Attributes("triangle", "green", "medium", "right", "gray")]
    up, down = _render(attrs, seed=3), _render(attrs, dialect="edge", seed=3)  # same jitter, apex flipped
    r = consistency(down, up, encoder=shipped)
    assert [a.shape for a in r.recovered_edge] == ["triangle_down"] * 2
    assert [a.shape for a in r.recovered_cloud] == ["triangle"] * 2
    assert not r.attribute_agree["shape"].any()
    assert all(r.attribute_agree[a].all() for a in ("colour", "size", "position", "background"))
    assert r.per_pair["attribute_agreement"] == pytest.approx([0.8, 0.8])
    assert np.all(r.per_pair["all_attributes_agree"] == 0.0)
    copy = consistency(up, up, encoder=shipped)
    assert np.all(r.per_pair["feature_cosine"] < copy.per_pair["feature_cosine"] - 0.1)


def test_purple_reads_magenta_in_the_edge_dialect(shipped):
    attrs = [Attributes("circle", "purple", "large", "center", "white")]
    r = consistency(_render(attrs, "edge"), _render(attrs), encoder=shipped)
    assert r.recovered_edge[0].colour == "magenta" and r.recovered_cloud[0].colour == "purple"
    assert r.per_pair["attribute_agreement"][0] == pytest.approx(0.8)


def _width(summary):
    lo, hi = summary.ci95_interval
    return hi - lo


def test_ci_widths_shrink_with_n_stay_in_range_and_paired_difference(shipped):
    world, edge_world = World(), World(dialect="edge")
    attrs = world.sample(96, seed=5).attributes
    cloud, edge = world.render(attrs, seed=6).torch_images(), edge_world.render(attrs, seed=7).torch_images()
    small = consistency(edge[:12], cloud[:12], encoder=shipped)
    large = consistency(edge, cloud, encoder=shipped)
    for metric in ("attribute_agreement", "feature_cosine", "psnr_db", "ssim"):
        assert large[metric].n == 96
        assert _width(large[metric]) < _width(small[metric]), metric
    for metric, (a, b) in (("attribute_agreement", (0, 1)), ("all_attributes_agree", (0, 1)),
                           ("feature_cosine", (-1, 1)), ("ssim", (-1, 1))):
        for report in (small, large):
            lo, hi = report[metric].ci95_interval
            assert a <= lo <= report[metric].mean <= hi <= b, metric
            assert report[metric].ci95_halfwidth is None  # bounded: not symmetric
    assert large["psnr_db"].method == "student-t" and large["psnr_db"].ci95_halfwidth == pytest.approx(
        _width(large["psnr_db"]) / 2)
    # same-caption pairs are more consistent than pairs of different captions
    shuffled = consistency(edge, cloud.roll(1, dims=0), encoder=shipped)
    assert large["feature_cosine"].mean > shuffled["feature_cosine"].mean
    assert paired_difference(large, large, "feature_cosine") == (0.0, 0.0)
    mean, half = paired_difference(large, shuffled, "feature_cosine")
    assert mean - half > 0
    with pytest.raises(ConfigError, match="report_b.n"):
        paired_difference(large, small, "ssim")
    with pytest.raises(ConfigError, match="metric"):
        paired_difference(large, large, "clip_cosine")


def test_malformed_batches_are_refused(shipped):
    x = _render([Attributes("circle", "red", "large", "center", "black")] * 2)
    with pytest.raises(ConfigError, match="cloud_images"):
        consistency(x, x[:1], encoder=shipped)
    with pytest.raises(ConfigError, match="edge_images"):
        consistency(x[:, :1], x[:, :1], encoder=shipped)
    with pytest.raises(ConfigError, match="images"):
        shipped.embed(torch.zeros(1, 3, 64, 64))


def test_shipped_encoder_matches_manifest_and_reads_the_world(shipped):
    import hashlib

    manifest = json.loads((DEFAULT_DIR / "manifest.json").read_text())
    weights = DEFAULT_DIR / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == manifest["sha256"]
    assert weights.stat().st_size < 1_000_000
    assert manifest["command"].startswith("python -m dekasim.generative.features train")
    assert {"seed", "steps", "train_wall_s", "heldout_accuracy", "torch_version"} <= set(manifest)
    images, truth = [], []
    for dialect in ("standard", "edge"):
        b = World(dialect=dialect).sample(128, seed=123, split="heldout")
        images.append(b.torch_images())
        truth += [s.rendered for s in b.scenes]
    pred = shipped.predict(torch.cat(images))
    for name in ("shape", "colour", "size", "position", "background"):
        acc = np.mean([getattr(p, name) == getattr(t, name) for p, t in zip(pred, truth)])
        assert acc > 0.9, (name, acc)
    z = shipped.embed(torch.cat(images)[:4])
    assert z.shape == (4, 64) and torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


def test_train_is_deterministic_and_tampering_is_refused(tmp_path):
    enc_a, info = train_feature_encoder(steps=2, batch_size=12, seed=3, eval_n=12, log_every=0)
    enc_b, _ = train_feature_encoder(steps=2, batch_size=12, seed=3, eval_n=12, log_every=0)
    for (k, va), vb in zip(enc_a.state_dict().items(), enc_b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert info["steps"] == 2 and info["seed"] == 3 and set(info["heldout_accuracy"]) >= {"shape", "colour"}
    out = save_encoder(enc_a, tmp_path / "enc", info)
    loaded = load_encoder(out)
    x = _render([Attributes("cross", "yellow", "medium", "bottom", "navy")])
    assert torch.allclose(loaded.embed(x), enc_a.eval().embed(x), atol=1e-6)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="feature_encoder") as exc:
        load_encoder(out)
    assert exc.value.field == "feature_encoder" and "sha256" in str(exc.value) and exc.value.fix
    (out / "manifest.json").unlink()
    with pytest.raises(ConfigError, match="manifest.json") as exc:
        load_encoder(out)
    assert exc.value.field == "feature_encoder"
    with pytest.raises(ConfigError) as exc:
        load_encoder(tmp_path / "nowhere")
    assert exc.value.field == "feature_encoder"


def test_local_image_encoder_on_a_tiny_clip(tmp_path, shipped):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                           image_size=16, patch_size=8)
    CLIPVisionModel(cfg).save_pretrained(tmp_path / "clip")
    enc = local_image_encoder(tmp_path / "clip")
    x = _render([Attributes("circle", "red", "large", "center", "black"),
                 Attributes("star", "blue", "small", "top left", "white"),
                 Attributes("square", "green", "medium", "left", "gray")])
    z = enc(x)
    assert z.shape == (3, 32) and torch.isfinite(z).all()
    assert enc.info["image_size"] == 16 and enc.info["mean"] == pytest.approx([0.485, 0.456, 0.406])
    r = consistency(x, x, encoder=shipped, extra_encoders={"clip": enc})
    assert r.per_pair["clip_cosine"] == pytest.approx(1.0, abs=1e-5)
    # the processor's size and normalisation win over the model's defaults
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": 20}, "crop_size": {"height": 16, "width": 16}, "image_mean": [0.5, 0.5, 0.5],
         "image_std": [0.25, 0.25, 0.25]}))
    enc_proc = local_image_encoder(tmp_path / "clip")
    assert enc_proc.info["image_size"] == 16 and enc_proc.info["std"] == [0.25, 0.25, 0.25]
    assert enc_proc(x).shape == (3, 32) and not torch.allclose(enc_proc(x), z)
    with pytest.raises(ConfigError) as exc:
        local_image_encoder(tmp_path / "missing")
    assert exc.value.field == "image_encoder.path"
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ConfigError):
        local_image_encoder(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError):
        local_image_encoder(tmp_path / "empty")
    assert not math.isnan(r["clip_cosine"].mean)


def test_cli_eval_reads_the_shipped_encoder(caplog):
    import logging

    from dekasim.generative.features import main

    with caplog.at_level(logging.INFO, logger="dekasim.generative.features"):
        assert main(["eval", "--n", "40", "--seed", "2"]) == 0
    assert "held-out accuracy" in caplog.text
    assert main(["eval", "--dir", "/nonexistent/encoder"]) == 2


def test_reference_scorer_gives_the_pairs_scores_of_consistency(shipped):
    """The sweep's scorer (cloud side computed once, references picked by index) equals consistency()
    pair for pair, both dialects mixed, references reused and out of order."""
    from dekasim.generative.consistency import ReferenceScorer

    world = World()
    cloud = world.sample(12, seed=3).torch_images()
    user = World(dialect="edge").sample(12, seed=4).torch_images()
    index = [5, 0, 11, 5, 3, 3, 7, 1, 2, 9, 10, 4]
    scores = ReferenceScorer(cloud, encoder=shipped).score(user, index)
    want = consistency(user, cloud[index], encoder=shipped)
    for m in ReferenceScorer.METRICS:
        assert scores[m] == pytest.approx(want.per_pair[m], abs=1e-6), m
    assert 0 < scores["attribute_agreement"].mean() < 1  # unrelated pairs: a real mix of agreements
