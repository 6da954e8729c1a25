"""``benchmarks/sd_scale.py`` on its tiny preset (CPU): every stage runs, the files say what was measured and
what was estimated, on which machine and by which command, and ``--render --readme`` puts the table between
a Markdown file's markers. Timings are not asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sd_scale():
    spec = importlib.util.spec_from_file_location("sd_scale_benchmark", ROOT / "benchmarks" / "sd_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_preset_runs_every_stage_and_writes_json_and_markdown(sd_scale, tmp_path):
    out = tmp_path / "tiny"
    rc = sd_scale.main(["--preset", "tiny", "--device", "cpu", "--threads", "1", "--out", str(out), "--calls", "1",
                        "--cheap-calls", "1", "--warmup", "0", "--sampling-steps", "2", "--full-sampling"])
    result = json.loads((tmp_path / "tiny.json").read_text())
    assert rc == 0 and result["errors"] == []
    assert result["command"].startswith("python benchmarks/sd_scale.py --preset tiny")
    assert result["machine"]["cpu"] and result["machine"]["versions"]["torch"] and result["date"]
    assert result["device"] == "cpu" and result["machine"]["gpu"] is None
    rows = {r["stage"]: r for r in result["rows"]}
    assert set(rows) == {"cloud_text", "cloud_steps", "cloud_full", "cloud_sampling", "edge_text", "edge_steps",
                         "edge_full", "edge_sampling", "makd_metaword", "makd_lora", "jscc_generic_step", "cala_step",
                         "link", "dino_score", "clip_score", "vae_encode", "vae_decode"}
    assert rows["cloud_sampling"]["estimated"] and not rows["cloud_steps"]["estimated"]
    for r in rows.values():
        assert r["wall_s_per_image"] > 0 and r["cpu_s_per_image"] >= 0 and r["peak_mib"] > 0
    # the tiny latents at 1/6 of the rate-adaptive codec: 4x8x8 = 256 values -> 43 symbols, one OFDM slot
    assert result["facts"]["latent_shape"] == [4, 8, 8] and result["facts"]["channel_uses_per_image"] == 43
    assert set(result["params"]) >= {"cloud_unet", "edge_unet", "vae", "text_encoder", "dino", "clip_vision",
                                     "g_lora", "jscc_generic", "cala_bank"}
    md = (tmp_path / "tiny.md").read_text()
    assert result["command"] in md and "(estimated)" in md and result["machine"]["cpu"] in md

    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- sd_scale:tiny begin -->\nold\n<!-- sd_scale:tiny end -->\n\nafter\n")
    assert sd_scale.main(["--render", str(tmp_path / "tiny.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and md in text and text.endswith("after\n")


def test_parameter_counts_of_the_sd15_configs_match_the_model_cards(sd_scale):
    """The configs kept in the repository give the public model cards' sizes (built on the meta device)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from dekasim.generative.random_models import PRESETS

    def millions(module):
        return sum(p.numel() for p in module.parameters()) / 1e6

    cards = sd_scale.MODEL_CARDS_M
    with torch.device("meta"):
        sd = PRESETS["sd15"]
        assert millions(UNet2DConditionModel(**sd["unet"])) == pytest.approx(cards["cloud_unet"], abs=0.1)
        assert millions(AutoencoderKL(**sd["vae"])) == pytest.approx(cards["vae"], abs=0.1)
        assert millions(CLIPTextModel(CLIPTextConfig(**sd["text"]))) == pytest.approx(cards["text_encoder"], abs=0.1)
        edge = UNet2DConditionModel(**PRESETS["bk-sdm-tiny"]["unet"])
        assert millions(edge) == pytest.approx(cards["edge_unet"], abs=0.5)
