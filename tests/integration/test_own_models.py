"""DeKA-g on a user's own models: tiny random models in the real diffusers / transformers layouts
(``own_models`` in conftest) through the commands of the README's "DeKA-g on your own models".

Random weights draw noise, so these tests check the path -- layouts, shapes, splits, files, that a plain
diffusers pipeline draws what dekasim's aligned edge draws, rows and report in the user's scores -- not
the alignment's quality (the embedded world shows that).
"""

from __future__ import annotations

import json

import pytest
import torch

from dekasim.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--set", "budget_steps=4", "--set", "eval_every=2", "--set", "sample_steps=3", "--set", "batch_size=2"]


def _align(own, out, *extra):
    return main(["align", "--cloud", str(own["cloud"]), "--edge", str(own["edge"]), "--subject", "sks",
                 "--prompts", str(own["prompts"]), "--image-encoder", f"dino={own['dino']}",
                 "--image-encoder", f"clip={own['clip']}", "--out", str(out), "--methods", "none,makd",
                 "--bits", "8", *FAST, *extra])


@pytest.fixture(scope="module")
def aligned_run(own_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("align") / "run"
    assert _align(own_models, out, "--control-prompts", str(own_models["control"])) == 0
    return out


def test_align_splits_the_users_prompts_and_scores_with_their_encoders(aligned_run, own_models):
    report = json.loads((aligned_run / "report.json").read_text())
    split = report["split"]
    prompts = [p for p in own_models["prompts"].read_text().splitlines() if p and not p.startswith("#")]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(prompts)
    assert (len(split["val"]), len(split["test"])) == (2, 2) and len(split["control"]) == 3
    assert report["metrics"] == ["dino_cosine", "clip_cosine", "psnr_db", "ssim"]
    assert report["val_metric"] == "dino_cosine" and report["source"]["kind"] == "prompt_files"
    test = report["results"]["makd"]["test"]["metrics"]
    assert test["dino_cosine"]["n"] == 2 and -1.0 <= test["clip_cosine"]["mean"] <= 1.0
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
