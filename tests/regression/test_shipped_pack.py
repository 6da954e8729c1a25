"""The shipped default knowledge pack: its files are the ones SHIPPED.json pins, it applies to the shipped
edge model, its CALA bank adapts the shipped pre-installed JSCC, and it is the pack `make run` uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dekasim.checksums import sha256_file
from dekasim.deka.system import DEFAULT_PACK_DIR, preinstalled_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shipped_pack_matches_its_provenance():
    shipped = json.loads((DEFAULT_PACK_DIR / "SHIPPED.json").read_text())
    assert shipped["command"].startswith("dekasim align ") and isinstance(shipped["seed"], int)
    for name, entry in shipped["files"].items():
        path = DEFAULT_PACK_DIR / name
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["size_bytes"], name
    from dekasim.generative.pack import pack_size_bytes

    assert pack_size_bytes(DEFAULT_PACK_DIR) == shipped["size_bytes"] < 400_000  # "a few hundred KB"


def test_shipped_pack_fits_the_shipped_edge_and_its_preinstalled_jscc():
    from dekasim.codecs.jscc import read_checkpoint
    from dekasim.generative.models import load_model
    from dekasim.generative.pack import load_pack, model_fingerprint

    pack = load_pack(DEFAULT_PACK_DIR, base_model_hash=model_fingerprint(load_model("edge")))
    assert pack.subjects == ["triangle", "purple"] and pack.lora_mode == "joint" and pack.cala is not None
    assert [p.metaword for p in pack.parts] == ["<triangle*>", "<purple*>"]
    assert pack.info["chosen_on_validation"]["design"] == "joint"
    base = preinstalled_checkpoint(pack)
    manifest, _ = read_checkpoint(base)
    assert manifest["sha256"] == pack.cala.base["sha256"]
    assert isinstance(pack.info.get("config"), dict)  # the main job reads its prompt split from it


@pytest.mark.parametrize("subject", ["triangle", "purple"])
def test_the_per_subject_packs_fit_the_shipped_edge(subject):
    """pack-triangle (the previous default) and pack-purple: one subject each, the generic bank, 8-bit."""
    from dekasim.generative.models import load_model
    from dekasim.generative.pack import load_pack, model_fingerprint, pack_size_bytes

    d = DEFAULT_PACK_DIR.parent / f"pack-{subject}"
    shipped = json.loads((d / "SHIPPED.json").read_text())
    for name, entry in shipped["files"].items():
        assert sha256_file(d / name) == entry["sha256"], name
    assert pack_size_bytes(d) == shipped["size_bytes"]
    pack = load_pack(d, base_model_hash=model_fingerprint(load_model("edge")))
    assert pack.subjects == [subject] and pack.metaword == f"<{subject}*>" and pack.lora
    assert pack.cala.source["file"] == "cala_generic-48x8x8-bw1_6.safetensors"


def test_the_main_job_uses_the_shipped_pack():
    from dekasim.scenarios import load_scenario

    s = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "default.toml")
    assert s.payload_kind == "deka" and dict(s.payload_options)["pack"] == "default"
    systems = {spec.label: (spec.edge, spec.codec, spec.bank) for spec in s.codecs}
    assert systems["DeKA-g (MAKD + CALA)"] == ("aligned", "preinstalled", "pack")
    assert systems["no alignment"] == ("unaligned", "preinstalled", None)


def test_the_shipped_bank_is_the_generic_t_ka_bank_and_refuses_other_bases():
    """The pack carries cala_s18 (S = 18 shared CP components + K = 2 gated rank-1 adapters, affine, on the
    generic, rate-adaptive jscc_generic; within 10 % of its parameters) in 8 bits: the codec it rebuilds
    sends within 1 % of the checkpoint's symbols at each of the three rates, and the bank is refused on the
    edge-trained jscc_base (a bank adapts the exact network it was trained on)."""
    import torch

    from dekasim.codecs import build_codec
    from dekasim.codecs.jscc import CHECKPOINT_DIR
    from dekasim.conditions import Condition
    from dekasim.deka.pack_codec import cala_codec_from_pack
    from dekasim.errors import ConfigError
    from dekasim.generative.pack import load_pack

    pack = load_pack(DEFAULT_PACK_DIR)
    part = pack.cala
    assert part.source["file"] == "cala_s18-48x8x8-bw1_6.safetensors" and part.affine
    assert (part.num_adapters, part.rank, part.factor, part.shared_rank) == (2, 1, "cp", 18)
    assert part.n_params() <= 0.10 * 230848  # within 10 % of the base's parameters
    assert part.base["file"] == "jscc_generic-48x8x8-bw1_6.safetensors" and part.base["codec"] == "jscc_generic"
    base = preinstalled_checkpoint(pack)
    codec = cala_codec_from_pack(pack, base)
    ref = build_codec("cala", (48, 8, 8), 1 / 6, checkpoint=str(CHECKPOINT_DIR / "cala_s18-48x8x8-bw1_6.json"))
    x = torch.rand(8, 48, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for ratio, n in ((1 / 24, 128), (1 / 12, 256), (1 / 6, 512)):
        codec.set_rate(ratio)
        ref.set_rate(ratio)
        for snr in (0.0, 20.0):
            cond = Condition(snr_db=snr, delay_spread_ns=300.0, tdl_profile="C")
            want, got = ref.encode(x, cond), codec.encode(x, cond)
            assert got.shape == (8, n)
            assert float((got - want).norm() / want.norm()) < 0.01
    with pytest.raises(ConfigError) as info:
        cala_codec_from_pack(pack, CHECKPOINT_DIR / "jscc_base-48x8x8-bw1_6.json")
    assert info.value.field == "pack.cala.base.sha256"
