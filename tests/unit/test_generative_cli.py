"""`dekasim world …` and `dekasim align` through main(argv): real saved pipelines loaded from local
directories, manifests checked, user errors as one line with exit status 2."""

from __future__ import annotations

import json

import pytest

from dekasim.cli import main
from dekasim.generative.ldm import build_ldm

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("toys")
    build_ldm("toy", seed=1, name="cloud-toy").save_pretrained(root / "cloud")
    build_ldm("toy", seed=2, name="edge-toy").save_pretrained(root / "edge")
    return root


def test_align_loads_saved_pipelines_from_local_paths(toy_dirs, tmp_path, capsys):
    out = tmp_path / "align"
    code = main(["align", "--cloud", str(toy_dirs / "cloud"), "--edge", str(toy_dirs / "edge"), "--out", str(out),
                 "--bits", "4", "--set", "budget_steps=2", "--set", "eval_every=1", "--set", "n_train_images=2",
                 "--set", "n_val_prompts=2", "--set", "n_test_prompts=3", "--set", "n_control_prompts=0",
                 "--set", "sample_steps=2", "--set", "batch_size=2", "--set", "lora_rank=2"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["lora_rank"] == 2 and report["prompts"]["test"] == 3
    assert (out / "pack-q4" / "manifest.json").exists() and (out / "grid.png").exists()
    assert "MAKD" in capsys.readouterr().out


@pytest.mark.parametrize("argv, field", [
    (["world", "check", "/no/such/model"], "model"),
    (["align", "--cloud", "/no/such/model", "--out", "x"], "model"),
    (["align", "--out", "x", "--set", "budget_steps=many"], "align.budget_steps"),
    (["align", "--out", "x", "--set", "colour=red"], "--set"),
    (["align", "--out", "x", "--subject", "hexagon", "--cloud", "{cloud}", "--edge", "{edge}"], "align.subject"),
])
def test_user_errors_are_one_line(argv, field, toy_dirs, tmp_path, capsys):
    argv = [a.format(cloud=toy_dirs / "cloud", edge=toy_dirs / "edge") for a in argv]
    argv = [str(tmp_path / "out") if a == "x" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dekasim: error:") and field in err


def test_world_train_writes_a_verified_manifest_and_check_refuses_a_tampered_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["world", "train", "--preset", "toy", "--out", str(run), "--steps", "2", "--check-n", "4",
                 "--checkpoint-every", "1"]) == 0
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["steps"] == 2 and manifest["quality_heldout"]["n"] == 4
    assert "unet/diffusion_pytorch_model.safetensors" in manifest["files"]
    capsys.readouterr()
    assert main(["world", "check", str(run / "model"), "--n", "4"]) == 0
    assert "fully correct" in capsys.readouterr().out
    weights = run / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["world", "check", str(run / "model"), "--n", "4"]) == 2
    assert "sha256" in capsys.readouterr().err
