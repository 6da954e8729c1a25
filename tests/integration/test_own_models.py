"""DeKA-g on a user's own models: the commands of docs/deka/own-models.md, run as written (plus
flags that shorten training) on tiny random models in the real diffusers / transformers layouts
(``dekasim random-models``), and the refusals of bad input.

Random weights draw noise, so these tests check the path -- layouts, shapes, splits, files, that a plain
diffusers pipeline draws what dekasim's aligned edge draws, rows and report in the user's scores -- not
the alignment's quality (the embedded world shows that).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from dekasim.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]

FAST = ["--set", "budget_steps=4", "--set", "eval_every=2", "--set", "sample_steps=3", "--set", "batch_size=2"]


BUILD = ["--base-steps", "20", "--base-items", "32", "--seg-items", "16", "--cala-steps", "10", "--batch", "8"]
#: The page that shows the commands (the README's section before it moved into the docs).
PAGE = ROOT / "docs" / "deka" / "own-models.md"
#: What each command of the page gets appended: short trainings, a small sweep, no downlink simulation.
SHORTER = {"random-models": [], "align": ["--methods", "none,metaword,lora,makd", "--bits", "8", *FAST],
           "build-pack": [*FAST, *BUILD],
           "run": ["--set", "downlink.simulate=false", "--set", "monte_carlo.images_per_point=4",
                   "--set", "monte_carlo.batch_size=4", "--set", "sweep.snr_db=[0, 20]", "--no-plots"]}


def readme_commands() -> list[list[str]]:
    """The dekasim commands of the page's first ``bash`` block, as argument lists."""
    section = PAGE.read_text()
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("dekasim ")]


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
    """The page's commands run in a fresh directory holding the repository's examples/; returns it."""
    d = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", d / "examples")
    commands = readme_commands()
    assert [c[0] for c in commands] == ["random-models", "align", "build-pack", "run"]
    import os

    cwd = os.getcwd()
    os.chdir(d)
    try:
        for argv in commands:
            assert main(argv + SHORTER[argv[0]]) == 0, argv
    finally:
        os.chdir(cwd)
    return d


@pytest.fixture(scope="module")
def own_models(readme):
    """The page's random models and example prompt files (absolute paths)."""
    ex = readme / "examples" / "own_models"
    return {"cloud": readme / "models" / "cloud", "edge": readme / "models" / "edge", "dino": readme / "models" / "dino",
            "clip": readme / "models" / "clip", "prompts": ex / "prompts.txt", "control": ex / "control.txt"}


@pytest.fixture(scope="module")
def aligned_run(readme):
    return readme / "runs" / "own-align"


@pytest.fixture(scope="module")
def built(readme):
    return readme / "runs" / "own-pack"


def test_align_splits_the_users_prompts_and_scores_with_their_encoders(aligned_run, own_models):
    report = json.loads((aligned_run / "report.json").read_text())
    split = report["split"]
    prompts = [p for p in own_models["prompts"].read_text().splitlines() if p and not p.startswith("#")]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(prompts)
    assert (len(split["val"]), len(split["test"])) == (2, 3) and len(split["control"]) == 4
    assert report["metrics"] == ["dino_cosine", "clip_cosine", "psnr_db", "ssim"]
    assert report["val_metric"] == "dino_cosine" and report["source"]["kind"] == "prompt_files"
    test = report["results"]["makd"]["test"]["metrics"]
    assert test["dino_cosine"]["n"] == 3 and -1.0 <= test["clip_cosine"]["mean"] <= 1.0
    assert report["methods"] == ["none", "metaword", "lora", "makd"] and "vs_none" in report["results"]["lora"]
    assert "attribute_agreement" not in test  # no checker reads a user's images
    manifest = json.loads((aligned_run / "pack" / "manifest.json").read_text())
    rec = manifest["info"]["prompts"]
    assert rec["source"] == "prompt_files" and rec["train"] == split["train"] and rec["val"] == split["val"]
    assert manifest["metaword"] == "<sks*>" and manifest["subject"] == "sks"
    md = (aligned_run / "report.md").read_text()
    assert "dino_cosine" in md and "CLIP-I" in md


def test_a_plain_diffusers_pipeline_takes_the_pack_and_draws_what_dekasim_draws(own_models, tmp_path):
    """The pack in diffusers' own layouts: StableDiffusionPipeline.load_textual_inversion + load_lora_weights
    on the edge folder, DDIM with trailing spacing, give dekasim's aligned edge's images for the same seeds."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from dekasim.generative.align_config import AlignConfig
    from dekasim.generative.aligned import apply_pack
    from dekasim.generative.ldm import TextToImageLDM
    from dekasim.generative.makd import align_method
    from dekasim.generative.pack import load_pack, save_pack
    from dekasim.generative.prompts import split_prompts

    edge = TextToImageLDM.from_pretrained(own_models["edge"])
    cloud = TextToImageLDM.from_pretrained(own_models["cloud"])
    prompts = split_prompts([p for p in own_models["prompts"].read_text().splitlines() if "sks" in p], "sks")
    config = AlignConfig(subject="sks", budget_steps=6, eval_every=2, patience=10, batch_size=2, sample_steps=3,
                         lr_metaword=0.05, lr_lora=0.01)
    s_cg = cloud.sample(prompts.train, prompts.seeds["train"], steps=3)
    steps = iter(range(100))  # every validation score beats the last: both phases keep their final state
    res = align_method("makd", edge, s_cg, prompts, config, lambda aligned: float(next(steps)))
    assert all(p.best_step == p.steps_run == 3 for p in res.phases)
    assert any(v.abs().max() > 0 for k, v in res.pack.lora.items() if "lora_B" in k)  # the LoRA moved
    d = save_pack(res.pack, tmp_path / "pack")
    ours_edge = apply_pack(edge, load_pack(d))
    test = ["a sks dog on the snow", "a photo of a sks dog at night"]
    ours = ours_edge.sample(test, [11, 12], steps=4, guidance=3.0)
    plain = edge.sample(test, [11, 12], steps=4, guidance=3.0)

    pipe = StableDiffusionPipeline.from_pretrained(own_models["edge"], safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing", clip_sample=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(str(d))
    pipe.load_lora_weights(str(d))
    theirs = torch.cat([pipe(ours_edge.prompts([p])[0], num_inference_steps=4, guidance_scale=3.0, output_type="pt",
                             generator=torch.Generator().manual_seed(s)).images for p, s in zip(test, [11, 12])])
    assert ours_edge.prompts(test)[0] == "a <sks*> sks dog on the snow"
    assert (ours - plain).abs().max() > 0.05            # the pack changes the images ...
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)  # ... and diffusers draws the same ones


def test_diffusers_takes_a_multi_subject_pack_file_by_file(own_models, tmp_path):
    """A pack of two subjects with per-subject G-LoRAs: diffusers loads each subject's metaword and LoRA by
    file name, and with the adapters of the subject a prompt names active it draws dekasim's routed images."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from peft import LoraConfig

    from dekasim.generative.aligned import apply_pack
    from dekasim.generative.ldm import TextToImageLDM
    from dekasim.generative.lora import lora_config_dict, lora_state_dict
    from dekasim.generative.pack import (KnowledgePack, SubjectPart, embeds_name, load_pack, model_fingerprint,
                                         save_pack, subject_lora_name)

    edge = TextToImageLDM.from_pretrained(own_models["edge"])
    gen = torch.Generator().manual_seed(5)
    parts = []
    for subject in ("sks", "cat"):
        unet = edge.unet
        unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]),
                         adapter_name="tmp")
        with torch.no_grad():
            for name, p in unet.named_parameters():
                if "lora_B" in name and ".tmp." in name:
                    p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        lora, cfg = lora_state_dict(unet, "tmp"), lora_config_dict(unet, "tmp")
        unet.delete_adapters("tmp")
        width = edge.text_encoder.get_input_embeddings().weight.shape[1]
        parts.append(SubjectPart(subject, f"<{subject}*>", torch.randn(width, generator=gen), lora, cfg))
    d = save_pack(KnowledgePack(model_fingerprint(edge), parts=parts), tmp_path / "pack")
    ours_edge = apply_pack(edge, load_pack(d))
    test, seeds = ["a sks dog on the snow", "a photo of a cat at night"], [11, 12]
    ours = ours_edge.sample(test, seeds, steps=3, guidance=3.0)

    pipe = StableDiffusionPipeline.from_pretrained(own_models["edge"], safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing", clip_sample=False)
    pipe.set_progress_bar_config(disable=True)
    for subject in ("sks", "cat"):
        pipe.load_textual_inversion(str(d), weight_name=embeds_name(subject))
        pipe.load_lora_weights(str(d), weight_name=subject_lora_name(subject, None), adapter_name=subject)
    theirs = []
    for prompt, seed, subject in zip(test, seeds, ("sks", "cat")):
        pipe.set_adapters([subject])
        theirs.append(pipe(ours_edge.prompts([prompt])[0], num_inference_steps=3, guidance_scale=3.0,
                           output_type="pt", generator=torch.Generator().manual_seed(seed)).images)
    assert ours_edge.prompts(test) == ["a <sks*> sks dog on the snow", "a photo of a <cat*> cat at night"]
    torch.testing.assert_close(torch.cat(theirs), ours, rtol=0, atol=1e-4)


BAD = {
    "no unet": ("--edge", lambda own, tmp: ["--edge", str(tmp)]),
    "subject missing": ("--prompts", lambda own, tmp: ["--prompts", str(_write(tmp / "p.txt", "a sks dog\na red dog\n"
                                                                            "a sks cat\n"))]),
    "too few prompts": ("--prompts", lambda own, tmp: ["--prompts", str(_write(tmp / "p.txt", "a sks dog\na sks cat\n"))]),
    "encoder not a model folder": ("--image-encoder clip", lambda own, tmp: ["--image-encoder", f"clip={own['edge']}"]),
    "encoder a text model": ("--image-encoder clip", lambda own, tmp: ["--image-encoder",
                                                                        f"clip={own['edge'] / 'text_encoder'}"]),
    "vae of other latent channels": ("--edge vae.latent_channels", lambda own, tmp: ["--edge", str(_vae_mismatch(own,
                                                                                                             tmp))]),
}


def _write(path, text):
    path.write_text(text)
    return path


def _vae_mismatch(own, tmp):
    """The edge folder with a VAE of 8 latent channels beside its 4-channel UNet."""
    import shutil

    from diffusers import AutoencoderKL

    d = tmp / "edge8"
    shutil.copytree(own["edge"], d)
    cfg = json.loads((d / "vae" / "config.json").read_text())
    AutoencoderKL(**{k: v for k, v in cfg.items() if not k.startswith("_")} | {"latent_channels": 8}).save_pretrained(
        d / "vae")
    return d


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_naming_the_field_and_writes_nothing(case, own_models, tmp_path, capsys):
    field, args = BAD[case]
    extra = args(own_models, tmp_path)
    out = tmp_path / "out"
    base = {"--edge": str(own_models["edge"]), "--prompts": str(own_models["prompts"])}
    for flag in ("--edge", "--prompts"):
        if flag in extra:
            base.pop(flag)
    argv = ["align", "--cloud", str(own_models["cloud"]), "--subject", "sks", "--image-encoder",
            f"dino={own_models['dino']}", "--out", str(out), *FAST]
    for flag, value in base.items():
        argv += [flag, value]
    capsys.readouterr()
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dekasim: error: {field} = "), err
    assert not out.exists()



def _build(own, out):
    return main(["build-pack", "--cloud", str(own["cloud"]), "--edge", str(own["edge"]), "--subject", "sks",
                 "--prompts", str(own["prompts"]), "--control-prompts", str(own["control"]),
                 "--image-encoder", f"dino={own['dino']}", "--out", str(out), *FAST, *BUILD])


def test_build_pack_makes_every_stage_with_its_manifest_and_resumes(built, own_models, capsys):
    record = json.loads((built / "build.json").read_text())
    assert list(record["stages"]) == ["align", "base", "s_eg", "cala", "pack"]
    assert record["latent_shape"] == [4, 8, 8]
    base = json.loads(next((built / "jscc").glob("jscc_generic-4x8x8-*.json")).read_text())
    assert base["codec"] == "jscc_generic" and base["payload_shape"] == [4, 8, 8]
    assert base["latent_model"]["latent_shape"] == [4, 8, 8] and base["training"]["loss_space"] == "latent"
    assert base["n_channel_uses"] == 43  # 1/6 of 256 latent values, rounded: served with 1/24 and 1/12 (11, 21)
    bank = json.loads(next((built / "jscc").glob("cala_generic-4x8x8-*.json")).read_text())
    assert bank["base"]["sha256"] == base["sha256"]
    manifest = json.loads((built / "pack" / "manifest.json").read_text())
    assert manifest["cala"]["base"]["sha256"] == base["sha256"] and manifest["metaword"] == "<sks*>"
    assert manifest["info"]["prompts"]["source"] == "prompt_files"
    stamp = (built / "pack" / "manifest.json").stat().st_mtime_ns
    capsys.readouterr()
    assert _build(own_models, built) == 0  # a rerun: every stage done, nothing retrained
    assert (built / "pack" / "manifest.json").stat().st_mtime_ns == stamp
    again = json.loads((built / "build.json").read_text())
    assert {k: v["product"] for k, v in again["stages"].items()} == {k: v["product"] for k, v in record["stages"].items()}
    assert main(["build-pack", "--cloud", str(own_models["cloud"]), "--edge", str(own_models["edge"]), "--subject",
                 "sks", "--prompts", str(own_models["prompts"]), "--image-encoder", f"dino={own_models['dino']}",
                 "--out", str(built), *FAST, *BUILD[:-2], "--batch", "4"]) == 2  # other settings: refused
    assert "--out" in capsys.readouterr().err


def _scenario(tmp, own, pack, **payload):
    opts = {"kind": "deka", "cloud": str(own["cloud"]), "edge": str(own["edge"]), "pack": str(pack),
            "prompts": str(own["prompts"]), "control_prompts": str(own["control"]), "sample_steps": 3,
            "cache_dir": str(tmp / "cache")} | payload
    lines = ["name = \"own\"", "seed = 1", "[payload]"] + [f"{k} = {json.dumps(v)}" for k, v in opts.items()]
    lines += ["image_encoders = { dino = %s, clip = %s }" % (json.dumps(str(own["dino"])), json.dumps(str(own["clip"]))),
              "[downlink]", "simulate = false", "[ofdm]", "pilot_subcarrier_spacing = 1",
              "[sweep]", "snr_db = [0, 20]", "delay_spread_ns = [300]", "tdl_profile = [\"C\"]",
              "bandwidth_ratio = [0.16666666666666666]", "csi = [\"ls\"]",
              "[monte_carlo]", "images_per_point = 4", "batch_size = 4"]
    for label, edge, codec, bank in (("DeKA-g (MAKD + CALA)", "aligned", "preinstalled", "pack"),
                                     ("no alignment", "unaligned", "preinstalled", None),
                                     ("digital (best image codec)", "aligned", "digital", None)):
        lines += ["[[systems]]", f"label = {json.dumps(label)}", f"edge = \"{edge}\"", f"codec = \"{codec}\""]
        lines += [f"bank = \"{bank}\""] if bank else []
    path = tmp / "own.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_readme_scenario_gives_rows_and_report_in_the_users_scores(readme):
    out = readme / "runs" / "own"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    systems = {r["codec"] for r in rows}
    assert len(rows) == 14 and len(systems) == 7 and "DeKA-g (MAKD + CALA)" in systems
    for r in rows:
        assert r["channel_uses"] == 43  # equal channel uses per image, the image codecs' included
        assert -1 <= r["dino_cosine"] <= 1 and -1 <= r["clip_cosine"] <= 1 and r.get("attribute_agreement") is None
        assert r["n_subject_images"] == 3  # the file's 3 test prompts: those the pack never trained on
    report = json.loads((out / "deka_report.json").read_text())
    assert {c["metric"] for c in report["claims"]} >= {"dino_cosine", "clip_cosine", "psnr_db"}
    assert set(report["no_channel_consistency"]["aligned"]["subject"]) == {"dino_cosine", "clip_cosine"}
    assert "dino cosine" in (out / "deka_report.md").read_text()


@pytest.mark.parametrize("case", ["pack for another edge", "base of another latent shape", "unknown dtype"])
def test_a_scenario_refuses_a_pack_or_base_that_does_not_fit_in_one_line(case, built, own_models, tmp_path, capsys):
    from dekasim.codecs.jscc import CHECKPOINT_DIR

    payload = {"pack for another edge": {"edge": str(own_models["cloud"])},
               "base of another latent shape": {"base": str(CHECKPOINT_DIR / "jscc_generic-48x8x8-bw1_6.json")},
               "unknown dtype": {"dtype": "float64"}}[case]
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["run", str(_scenario(tmp_path, own_models, built / "pack", **payload)), "--out", str(out),
                 "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    field = {"pack for another edge": "payload.pack", "base of another latent shape": "payload.base",
             "unknown dtype": "payload.dtype"}[case]
    assert len(err) == 1 and f"{field} = " in err[0], err
    assert not out.exists()  # refused before anything was written


def test_the_scenarios_figures_show_each_encoders_score(readme, tmp_path):
    from dekasim.plots import plot_run

    paths = {p.name for p in plot_run([readme / "runs" / "own"], tmp_path)}
    assert {"dino_cosine_vs_snr.png", "clip_cosine_vs_snr.png", "psnr_vs_snr.png"} <= paths
    assert "consistency_vs_snr.png" not in paths  # no attribute checker for a user's models


def test_half_precision_samples_and_scores_close_to_float32(own_models):
    """payload.dtype / --dtype: sampling and image encoders in half precision (bfloat16 runs on a CPU too)
    give latents, images and embeddings close to float32's; embeddings come back float32."""
    from dekasim.generative.ldm import TextToImageLDM
    from dekasim.metrics.consistency import local_image_encoder

    model = TextToImageLDM.from_pretrained(own_models["edge"])
    want = model.sample(["a sks dog on the beach", "a red car"], [5, 6], steps=4, guidance=2.0)
    model.to(dtype=torch.bfloat16)
    got = model.sample(["a sks dog on the beach", "a red car"], [5, 6], steps=4, guidance=2.0)
    assert got.dtype == torch.float32 and (got - want).abs().mean() < 0.05
    enc32, enc16 = (local_image_encoder(own_models["dino"], dtype=d) for d in (torch.float32, torch.bfloat16))
    z32, z16 = enc32(want), enc16(want)
    assert z16.dtype == torch.float32 and torch.nn.functional.cosine_similarity(z32, z16).min() > 0.99


def test_several_subjects_of_your_own_prompt_files(own_models, tmp_path, capsys):
    """``dekasim align --subject sks --prompts dog.txt --subject cat --prompts cat.txt`` on the user's diffusers
    folders: a two-subject pack scored by the user's encoders, chosen on validation, control prompts split in
    two; a scenario then holds out every prompt either subject trained or validated on. Bad pairings: one line."""
    from dekasim.deka.system import held_out_prompts
    from dekasim.generative.ldm import TextToImageLDM
    from dekasim.generative.pack import load_pack

    cats = tmp_path / "cat.txt"
    cats.write_text("\n".join(f"a photo of a cat {w}" for w in ("on the grass", "at night", "in the snow", "on a sofa",
                                                                  "by the sea", "in a box", "on a car", "asleep")) + "\n")
    control = tmp_path / "control.txt"
    control.write_text("a red car on the street\na house in the snow\na tree by the sea\na bowl of fruit\n")
    common = ["--cloud", str(own_models["cloud"]), "--edge", str(own_models["edge"]),
              "--image-encoder", f"dino={own_models['dino']}", "--bits", "8", *FAST]
    out = tmp_path / "two"
    assert main(["align", "--subject", "sks", "--prompts", str(own_models["prompts"]), "--subject", "cat",
                 "--prompts", str(cats), "--control-prompts", str(control), "--out", str(out), *common]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert report["subjects"] == ["sks", "cat"] and "dino_cosine" in report["metrics"]
    assert report["prompts"]["val:control"] == 2 and report["prompts"]["test:control"] == 2
    pack = load_pack(out / "pack")
    assert pack.subjects == ["sks", "cat"] and pack.info["prompts"]["source"] == "prompt_files"
    seen = {p for r in pack.info["prompts"]["subjects"].values() for p in r["train"] + r["val"]}
    edge = TextToImageLDM.from_pretrained(own_models["edge"])
    both = tmp_path / "both.txt"
    both.write_text(own_models["prompts"].read_text() + cats.read_text())
    subject, _ = held_out_prompts(pack, edge, {"n_subject_prompts": 100, "n_control_prompts": 0,
                                               "prompts": str(both), "control_prompts": None}, out / "pack")
    assert subject and not set(subject) & seen
    assert any("cat" in p for p in subject) and any("sks" in p for p in subject)
    for argv, flag in ((["--subject", "sks", "--prompts", str(own_models["prompts"]), "--subject", "cat"], "--prompts"),
                       (["--subject", "sks", "--prompts", str(own_models["prompts"]), "--subject", "cat", "--prompts",
                         str(cats), "--control-prompts", str(own_models["prompts"])], "--control-prompts")):
        rc = main(["align", *argv, "--out", str(tmp_path / "bad"), *common])
        err = capsys.readouterr().err
        assert rc == 2 and flag in err and "Traceback" not in err, err
        assert not (tmp_path / "bad" / "report.json").exists()
