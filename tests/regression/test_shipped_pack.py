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
    assert pack.metaword == "<triangle*>" and pack.lora and pack.cala is not None
    base = preinstalled_checkpoint(pack)
    manifest, _ = read_checkpoint(base)
    assert manifest["sha256"] == pack.cala.base["sha256"]
    assert (pack.info.get("config") or {}).get("subject") == "triangle"  # the main job reads its prompt split


def test_the_main_job_uses_the_shipped_pack():
    from dekasim.scenarios import load_scenario

    s = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "default.toml")
    assert s.payload_kind == "deka" and dict(s.payload_options)["pack"] == "default"
    systems = {spec.label: (spec.edge, spec.codec, spec.bank) for spec in s.codecs}
    assert systems["DeKA-g (MAKD + CALA)"] == ("aligned", "preinstalled", "pack")
    assert systems["no alignment"] == ("unaligned", "preinstalled", None)
