"""MAKD on tiny models: prompt split, what each phase may change, packs applied, early stopping, the
whole `dekasim align` path; several subjects: joint MAKD, `dekasim align --subject A --subject B` and its
chosen multi-subject pack, routing, the main job's prompts of every subject (seconds; the models are
random toys, so no quality is asserted here)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from dekasim.errors import ConfigError
from dekasim.generative.ldm import build_ldm
from dekasim.generative.align_config import control_prompts
from dekasim.generative.makd import (AlignConfig, _train_phase, add_g_lora, add_metaword, align_joint, align_method,
                                     alignment_prompts, apply_pack)
from dekasim.generative.pack import MULTI_FORMAT_VERSION, load_pack, model_fingerprint, save_pack
from dekasim.generative.world import World, parse_caption

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_train_images=4, n_val_prompts=2, n_test_prompts=4, n_control_prompts=2, budget_steps=4, batch_size=2,
            eval_every=2, patience=2, sample_steps=2, seed=3)


@pytest.fixture(scope="module")
def toy_pair():
    torch.manual_seed(0)
    return build_ldm("toy", seed=1, name="cloud-toy"), build_ldm("toy", seed=2, name="edge-toy")


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_prompt_split_keeps_test_prompts_out_of_alignment():
    world = World()
    p = alignment_prompts(world, AlignConfig(subject="triangle", n_train_images=40, n_val_prompts=32))
    train = [parse_caption(c) for c in p.train]
    val = [parse_caption(c) for c in p.val]
    test = [parse_caption(c) for c in p.test]
    assert all(a.shape == "triangle" for a in train + val + test)
    assert not {a.background for a in train} & {a.background for a in test}
    assert not {a.position for a in train} & {a.position for a in test}
    train_bg, train_pos = {a.background for a in train}, {a.position for a in train}
    # validation: a new background or a new position, never both, never S_CG's block
    assert all((a.background in train_bg) != (a.position in train_pos) for a in val)
    assert not set(p.train) & set(p.val) and not set(p.test) & set(p.val)
    assert all(parse_caption(c).shape != "triangle" for c in p.control)
    assert len(p.train) == 40 and len(p.val) == 32 and len(p.test) == 128
    assert p == alignment_prompts(world, AlignConfig(subject="triangle", n_train_images=40, n_val_prompts=32))
    with pytest.raises(ConfigError, match="align.subject"):
        alignment_prompts(world, AlignConfig(subject="hexagon"))


def test_metaword_phase_changes_only_the_metaword_row(toy_pair):
    _, edge = toy_pair
    model = copy.deepcopy(edge)
    cfg = AlignConfig(**TINY)
    token_id = add_metaword(model, cfg.metaword, cfg.subject)
    emb = model.text_encoder.get_input_embeddings().weight
    assert torch.equal(emb[token_id], emb[model.tokenizer.convert_tokens_to_ids("triangle")])
    before_te, before_unet = _state(model.text_encoder), _state(model.unet)
    emb.requires_grad_(True)
    latents = torch.randn(4, *model.latent_shape)
    prompts = [f"a small red {cfg.metaword} triangle at the top on a gray background"] * 4
    scores = iter([0.0, 1.0, 2.0, 3.0])
    log = _train_phase(model, "metaword", latents, prompts, 4, 0.05, cfg, lambda: next(scores), token_id, [emb], 1)
    after_te = _state(model.text_encoder)
    changed = [k for k in before_te if not torch.equal(before_te[k], after_te[k])]
    assert len(changed) == 1 and changed[0].endswith("embeddings.token_embedding.weight")
    diff_rows = (before_te[changed[0]] != after_te[changed[0]]).any(dim=1).nonzero().flatten().tolist()
    assert diff_rows == [token_id]
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in before_unet.items())
    assert log.best_step == 4 and log.steps_run == 4


def test_lora_phase_leaves_base_weights_and_text_encoder_unchanged(toy_pair):
    _, edge = toy_pair
    model = copy.deepcopy(edge)
    model.unet.requires_grad_(False)
    base_unet, base_te = _state(model.unet), _state(model.text_encoder)
    params = add_g_lora(model, rank=2, alpha=2, seed=0)
    assert params and all("lora_" in n for n, p in model.unet.named_parameters() if p.requires_grad)
    cfg = AlignConfig(**TINY)
    scores = iter([0.0, 1.0, 2.0, 3.0])
    _train_phase(model, "lora", torch.randn(4, *model.latent_shape),
                 ["a small red triangle at the top on a gray background"] * 4, 4, 0.05, cfg, lambda: next(scores),
                 None, params, 2)
    sd = model.unet.state_dict()
    for k, v in base_unet.items():  # peft renames wrapped layers to <name>.base_layer.weight
        k2 = k if k in sd else k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(v, sd[k2]), k
    assert any(p.abs().sum() > 0 for n, p in model.unet.named_parameters() if "lora_B" in n)
    assert all(torch.equal(v, model.text_encoder.state_dict()[k]) for k, v in base_te.items())


def test_early_stopping_keeps_the_best_state(toy_pair):
    _, edge = toy_pair
    model = copy.deepcopy(edge)
    model.unet.requires_grad_(False)
    params = add_g_lora(model, rank=2, alpha=2, seed=0)
    start = [p.detach().clone() for p in params]
    cfg = AlignConfig(**{**TINY, "patience": 1})
    scores = iter([1.0, 0.5, 0.2, 0.1])  # only worse after the start
    log = _train_phase(model, "lora", torch.randn(4, *model.latent_shape),
                       ["a small red triangle at the top on a gray background"] * 4, 40, 0.05, cfg,
                       lambda: next(scores), None, params, 2)
    assert log.stopped == "early" and log.best_step == 0 and log.steps_run == 2
    assert all(torch.equal(a, b) for a, b in zip(start, params))


def test_pack_applied_from_disk_reproduces_the_aligned_edge(toy_pair, tmp_path):
    cloud, edge = toy_pair
    cfg = AlignConfig(**TINY)
    prompts = alignment_prompts(World(), cfg)
    cloud_imgs = cloud.sample(prompts.train, prompts.seeds["train"], steps=2)
    res = align_method("makd", edge, cloud_imgs, prompts, cfg, lambda aligned: 0.0)
    assert res.pack.metaword == "<triangle*>" and res.pack.lora
    save_pack(res.pack, tmp_path / "pack")
    pack = load_pack(tmp_path / "pack", base_model_hash=model_fingerprint(edge))
    applied = apply_pack(edge, pack)
    a = res.edge.sample(prompts.test, prompts.seeds["test"], steps=2)
    b = applied.sample(prompts.test, prompts.seeds["test"], steps=2)
    assert torch.allclose(a, b, atol=1e-5)
    assert applied.prompts(["a small red triangle at the top on a gray background"]) == [
        "a small red <triangle*> triangle at the top on a gray background"]
    other = build_ldm("toy", seed=9)
    with pytest.raises(ConfigError, match="base_model_hash"):
        apply_pack(other, pack)


def test_align_command_writes_pack_report_and_grid(toy_pair, tmp_path):
    from dekasim.deka.alignment import run_alignment

    cloud, edge = toy_pair
    report = run_alignment(cloud, edge, AlignConfig(**TINY), tmp_path, bits=(8, 2))
    for name in ("report.json", "report.md", "grid.png", "pack/manifest.json", "pack-q8/manifest.json",
                 "pack-q2/manifest.json", "pack-metaword/manifest.json", "pack-lora/manifest.json"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "report.json").read_text())
    assert set(saved["results"]) == {"none", "metaword", "lora", "makd"}
    levels = saved["packs"]["makd_levels"]
    assert levels["2-bit"]["bytes"] < levels["8-bit"]["bytes"] < levels["none"]["bytes"]
    assert "| MAKD |" in (tmp_path / "report.md").read_text()
    assert report["results"]["none"]["pack_params"] == 0


# ----------------------------------------------------------------------------------------------
# Several subjects


def test_control_prompts_name_no_subject_and_stay_in_their_region():
    world = World()
    cfg = AlignConfig(n_val_prompts=16, n_control_prompts=32)
    test, test_seeds = control_prompts(world, cfg, ["triangle", "purple"], "test")
    val, _ = control_prompts(world, cfg, ["triangle", "purple"], "val")
    assert len(test) == 32 and len(val) == 16 and len(set(test_seeds)) == 32
    for c in test + val:
        a = parse_caption(c)
        assert a.shape != "triangle" and a.colour != "purple"
    tri = alignment_prompts(world, replace_subject(cfg, "triangle"))
    test_bg = {parse_caption(c).background for c in tri.test}
    assert {parse_caption(c).background for c in test} <= test_bg  # the test region
    assert not set(val) & set(test)
    with pytest.raises(ConfigError, match="region"):
        control_prompts(world, cfg, ["triangle"], "train")


def replace_subject(cfg: AlignConfig, subject: str) -> AlignConfig:
    from dataclasses import replace

    return replace(cfg, subject=subject, metaword=None)


def test_joint_alignment_moves_only_metaword_rows_then_lora(toy_pair):
    _, edge = toy_pair
    before_te = {k: v.clone() for k, v in edge.text_encoder.state_dict().items()}
    old = edge.text_encoder.get_input_embeddings().weight.detach().clone()
    before_unet = {k: v.clone() for k, v in edge.unet.state_dict().items()}
    world = World()
    cfg = AlignConfig(**TINY)
    train = [p for s in ("triangle", "purple") for p in alignment_prompts(world, replace_subject(cfg, s)).train]
    images = torch.rand(len(train), 3, 32, 32, generator=torch.Generator().manual_seed(0))
    res = align_joint(edge, ["triangle", "purple"], images, train, cfg, lambda a: float(torch.rand(1)))
    pack = res.pack
    assert pack.subjects == ["triangle", "purple"] and pack.lora_mode == "joint"
    assert [p.metaword for p in pack.parts] == ["<triangle*>", "<purple*>"]
    # the edge passed in is untouched (a deep copy is trained)
    assert all(torch.equal(v, before_te[k]) for k, v in edge.text_encoder.state_dict().items())
    assert all(torch.equal(v, before_unet[k]) for k, v in edge.unet.state_dict().items())
    # every old embedding row is unchanged in the trained copy; the two new ones exist
    emb = res.edge.model.text_encoder.get_input_embeddings().weight
    assert torch.equal(emb[: old.shape[0]], old) and emb.shape[0] == old.shape[0] + 2
    assert [p.phase for p in res.phases] == ["metaword", "lora"]
    assert sum(p.steps_run for p in res.phases) <= cfg.budget_steps


def test_align_several_subjects_writes_a_chosen_multi_pack(toy_pair, tmp_path):
    from dekasim.deka.multi_alignment import CANDIDATES, run_multi_alignment

    cloud, edge = toy_pair
    report = run_multi_alignment(cloud, edge, ["triangle", "purple"], AlignConfig(**TINY), tmp_path, bits=(8,))
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["chosen"] in CANDIDATES
    assert saved["val_pooled"][saved["chosen"]] == max(saved["val_pooled"][c] for c in CANDIDATES)
    assert set(saved["results"]) == {"none", "only:triangle", "only:purple", "per_subject", "per_subject_all_on",
                                     "joint"}
    for name in ("report.md", "grid.png", "pack/manifest.json", "pack-q8/manifest.json",
                 "pack-per_subject/manifest.json", "pack-joint/manifest.json"):
        assert (tmp_path / name).exists(), name
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert manifest["format_version"] == MULTI_FORMAT_VERSION
    assert [r["subject"] for r in manifest["subjects"]] == ["triangle", "purple"]
    pack = load_pack(tmp_path / "pack")
    assert pack.lora_mode == ("per_subject" if saved["chosen"] == "per_subject" else "joint")
    assert pack.info["chosen_on_validation"]["design"] == saved["chosen"]
    assert load_pack(tmp_path / "pack-per_subject").lora_mode == "per_subject"
    assert load_pack(tmp_path / "pack-joint").lora_mode == "joint"
    # routing: one subject's adapter leaves the other subject's and the control prompts exactly as unaligned
    res = report["results"]
    for split in ("test:purple", "test:control", "val:control"):
        want = res["none"][split]["per_pair"]["feature_cosine"]
        assert res["only:triangle"][split]["per_pair"]["feature_cosine"] == pytest.approx(want, abs=1e-5)
        assert res["per_subject"]["test:control"]["per_pair"]["feature_cosine"] == pytest.approx(
            res["none"]["test:control"]["per_pair"]["feature_cosine"], abs=1e-5)
    assert "per_pair" in saved["results"]["none"]["test:control"]
    assert "Chosen on validation" in (tmp_path / "report.md").read_text()


def test_cli_refuses_several_subjects_with_prompt_files(tmp_path, capsys):
    from dekasim.cli import main

    f = tmp_path / "p.txt"
    f.write_text("a photo of sks dog\n")
    rc = main(["align", "--subject", "sks", "--subject", "dog", "--prompts", str(f), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--prompts" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    rc = main(["align", "--subject", "triangle", "--subject", "hexagon", "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 2 and "hexagon" in err and "Traceback" not in err


def test_main_job_prompts_cover_every_subject(toy_pair):
    """A scenario on a two-subject world pack draws held-out prompts of both subjects in turn (never one its
    alignment trained or validated on) and control prompts naming neither."""
    from dataclasses import asdict
    from pathlib import Path

    from dekasim.deka.system import held_out_prompts
    from dekasim.generative.pack import KnowledgePack, SubjectPart, model_fingerprint

    _, edge = toy_pair
    d = edge.text_encoder.config.hidden_size
    pack = KnowledgePack(model_fingerprint(edge), parts=[SubjectPart(s, f"<{s}*>", torch.zeros(d))
                                                          for s in ("triangle", "purple")],
                         info={"config": asdict(AlignConfig(subject="triangle"))})
    opts = {"n_subject_prompts": 10, "n_control_prompts": 6, "prompts": None, "control_prompts": None}
    subject, control = held_out_prompts(pack, edge, opts, Path("pack"))
    assert len(subject) == 10 and len(control) == 6
    names = [("triangle" in p.split(), "purple" in p.split()) for p in subject]
    assert all(names[i][0] for i in range(0, 10, 2)) and all(names[i][1] for i in range(1, 10, 2))
    world = World()
    seen = set()
    for s in ("triangle", "purple"):
        p = alignment_prompts(world, replace_subject(AlignConfig(), s))
        seen |= set(p.train) | set(p.val)
    assert not set(subject) & seen
    assert all("triangle" not in c.split() and "purple" not in c.split() for c in control)
