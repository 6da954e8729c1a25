"""GPU checks (marker ``gpu``): skipped where torch sees no CUDA device -- here and in CI.

Run them where a GPU is lent: ``pytest -m gpu tests/gpu``. They check that

* a tiny Stable-Diffusion-layout pipeline (random weights, :func:`~dekasim.generative.random_models.write_sd_pipeline`)
  loaded by :meth:`~dekasim.generative.ldm.TextToImageLDM.from_pretrained` samples the same images on CUDA as
  on the CPU (float32, TF32 off; the initial noise is drawn on the CPU per seed, so only rounding differs);
* the OFDM/TDL link runs on CUDA with the statistics it has on the CPU (random draws differ between
  devices, so statistics are compared, not samples);
* ``benchmarks/sd_scale.py --preset tiny`` runs on CUDA, every stage measured.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible to torch)")]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_tf32():
    """Full float32 matmuls and convolutions on CUDA while a test compares with the CPU."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_tiny_sd_pipeline_samples_the_same_images_on_cuda_as_on_the_cpu(tmp_path, no_tf32):
    from dekasim.generative.ldm import TextToImageLDM
    from dekasim.generative.random_models import write_sd_pipeline

    d = write_sd_pipeline(tmp_path / "tiny", "tiny", seed=3)
    prompts = ["a photo of a sks dog on the beach", "a red car in the snow", "a small house with a tree"]
    seeds = [11, 12, 13]
    cpu = TextToImageLDM.from_pretrained(d)
    gpu = TextToImageLDM.from_pretrained(d).to("cuda")
    assert gpu.device.type == "cuda"
    on_cpu = cpu.sample(prompts, seeds, steps=10, guidance=7.5)
    on_gpu = gpu.sample(prompts, seeds, steps=10, guidance=7.5)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    diff = (on_gpu.cpu() - on_cpu).abs()
    assert diff.max().item() < 1e-2 and diff.mean().item() < 1e-3, (diff.max().item(), diff.mean().item())
    lat_cpu = cpu.sample_latents(prompts, seeds, steps=10, guidance=7.5)
    lat_gpu = gpu.sample_latents(prompts, seeds, steps=10, guidance=7.5).cpu()
    torch.testing.assert_close(lat_gpu, lat_cpu, atol=1e-3, rtol=1e-3)


def _link_stats(device: str, seed: int, items: int = 128) -> dict[str, torch.Tensor]:
    """Per item (independent fading and noise): mean |y - x|^2 / no_eff and the median of 10 log10(no_eff)."""
    import sionna.phy

    from dekasim.channels import GridConfig, OFDMLink
    from dekasim.conditions import Condition

    sionna.phy.config.seed = seed
    link = OFDMLink(GridConfig(pilot_subcarrier_spacing=1), csi="ls", device=device).to(device)
    n = 2731  # 4x64x64 latents at 1/6: three slots
    bits = torch.randint(0, 2, (items, n, 2), generator=torch.Generator().manual_seed(seed))
    x = (torch.complex(1 - 2 * bits[..., 0].float(), 1 - 2 * bits[..., 1].float()) / math.sqrt(2)).to(device)
    cond = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")
    y, no_eff = link(x, cond)
    assert y.device.type == device and no_eff.device.type == device
    assert y.dtype == torch.complex64 and no_eff.dtype == torch.float32 and y.shape == x.shape == no_eff.shape
    assert torch.isfinite(y).all() and (no_eff > 0).all()
    err = (y - x).abs().square()
    return {"normalised_error": (err / no_eff).mean(1).double().cpu(),
            "median_no_eff_db": (10 * torch.log10(no_eff)).median(1).values.double().cpu()}


def test_the_link_runs_on_cuda_with_the_statistics_it_has_on_the_cpu():
    cpu, gpu = _link_stats("cpu", 5), _link_stats("cuda", 6)
    for name in cpu:
        a, b = cpu[name], gpu[name]
        se = math.sqrt(a.var().item() / len(a) + b.var().item() / len(b))
        assert abs(a.mean().item() - b.mean().item()) < 4 * se, (name, a.mean().item(), b.mean().item(), se)
    # the link's promise on either device: no_eff is the variance of y - x (LS error included), within 10 %
    assert abs(gpu["normalised_error"].mean().item() - 1.0) < 0.1


def test_the_sd_scale_benchmark_runs_its_tiny_preset_on_cuda(tmp_path):
    spec = importlib.util.spec_from_file_location("sd_scale", ROOT / "benchmarks" / "sd_scale.py")
    sd_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sd_scale)
    out = tmp_path / "tiny_cuda"
    rc = sd_scale.main(["--preset", "tiny", "--device", "cuda", "--out", str(out), "--calls", "1",
                        "--cheap-calls", "1", "--sampling-steps", "2", "--no-full-sampling"])
    result = json.loads(out.with_name(out.name + ".json").read_text())
    assert result["errors"] == [] and rc == 0
    assert result["device"] == "cuda" and result["machine"]["gpu"]
    assert "max_memory_allocated" in result["memory_kind"]
    stages = {r["stage"] for r in result["rows"]}
    assert {"cloud_steps", "cloud_sampling", "edge_sampling", "makd_metaword", "makd_lora", "jscc_generic_step",
            "cala_step", "link", "dino_score", "clip_score", "vae_encode", "vae_decode"} <= stages
    assert all(r["wall_s_per_image"] > 0 and r["peak_mib"] > 0 for r in result["rows"])
