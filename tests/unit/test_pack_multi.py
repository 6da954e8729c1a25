"""Knowledge packs with several subjects: format, round trip, subset, routing of per-subject G-LoRAs.

Runs offline on the toy LDM with one thread (a few seconds).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import copy
import json

import pytest
import torch

from dekasim.errors import ConfigError
from dekasim.generative.aligned import apply_pack, subject_adapter_name
from dekasim.generative.pack import (FORMAT_VERSION, LORA_NAME, MANIFEST_NAME, MULTI_FORMAT_VERSION, KnowledgePack,
                                     SubjectPart, embeds_name, load_pack, lora_config_dict, lora_state_dict,
                                     model_fingerprint, save_pack, subject_lora_name)

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(one_thread):
    from dekasim.generative.ldm import build_ldm

    return build_ldm("toy", seed=0)


def _lora(toy, seed: int) -> tuple[dict, dict]:
    """A G-LoRA for ``toy`` whose B matrices are non-zero (so it changes the UNet's output)."""
    from peft import LoraConfig

    unet = copy.deepcopy(toy.unet)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=TARGETS, init_lora_weights="gaussian"),
                     adapter_name="g_lora")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return lora_state_dict(unet, "g_lora"), lora_config_dict(unet, "g_lora")


def _emb(toy, seed: int) -> torch.Tensor:
    return torch.randn(toy.text_encoder.config.hidden_size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def parts(toy) -> list[SubjectPart]:
    out = []
    for i, subject in enumerate(("triangle", "purple")):
        lora, cfg = _lora(toy, 10 + i)
        out.append(SubjectPart(subject, f"<{subject}*>", _emb(toy, 20 + i), lora, cfg))
    return out


@pytest.fixture(scope="module")
def per_subject(toy, parts) -> KnowledgePack:
    return KnowledgePack(base_model_hash=model_fingerprint(toy), parts=parts, info={"method": "makd"})


@pytest.fixture(scope="module")
def joint(toy, parts) -> KnowledgePack:
    lora, cfg = _lora(toy, 30)
    bare = [SubjectPart(p.subject, p.metaword, p.metaword_embedding) for p in parts]
    return KnowledgePack(base_model_hash=model_fingerprint(toy), parts=bare, lora=lora, lora_config=cfg)


def test_fields(per_subject, joint):
    assert per_subject.subjects == joint.subjects == ["triangle", "purple"]
    assert per_subject.lora_mode == "per_subject" and joint.lora_mode == "joint"
    assert per_subject.rewrite("a small purple triangle at the top") == \
        "a small <purple*> purple <triangle*> triangle at the top"
    assert per_subject.rewrite("a small red circle") == "a small red circle"
    assert per_subject.subjects_in("a big PURPLE square") == ["purple"]
    one = per_subject.select(["purple"])
    assert one.subjects == ["purple"] and one.rewrite("a purple triangle") == "a <purple*> purple triangle"
    assert one.generation_fingerprint() != per_subject.generation_fingerprint()
    with pytest.raises(ConfigError, match="pack.subjects"):
        per_subject.select(["circle"])


def test_invalid_multi_packs_are_refused(toy, parts, joint):
    h = model_fingerprint(toy)
    with pytest.raises(ConfigError, match="pack.lora"):  # joint and per-subject at once
        KnowledgePack(base_model_hash=h, parts=parts, lora=joint.lora, lora_config=joint.lora_config)
    with pytest.raises(ConfigError, match="pack.parts"):
        KnowledgePack(base_model_hash=h, parts=[parts[0], parts[0]])
    with pytest.raises(ConfigError, match="pack.parts"):
        KnowledgePack(base_model_hash=h, metaword="<x*>", metaword_embedding=_emb(toy, 1), subject="x", parts=parts)


@pytest.mark.parametrize("bits", [None, 8])
def test_round_trip_and_layout(tmp_path, per_subject, joint, bits):
    for pack, name in ((per_subject, "per"), (joint, "joint")):
        d = save_pack(pack, tmp_path / name, bits=bits)
        manifest = json.loads((d / MANIFEST_NAME).read_text())
        assert manifest["format_version"] == MULTI_FORMAT_VERSION
        assert [r["subject"] for r in manifest["subjects"]] == ["triangle", "purple"]
        assert manifest["lora_mode"] == pack.lora_mode
        names = {f["name"] for f in manifest["files"]}
        assert {embeds_name("triangle"), embeds_name("purple")} <= names
        if pack is per_subject:
            assert {subject_lora_name("triangle", bits), subject_lora_name("purple", bits)} <= names
        back = load_pack(d, base_model_hash=pack.base_model_hash)
        assert back.subjects == pack.subjects and back.lora_mode == pack.lora_mode
        assert back.n_params() == pack.n_params()
        for a, b in zip(back.parts, pack.parts):
            assert a.metaword == b.metaword and torch.equal(a.metaword_embedding, b.metaword_embedding)
            for k, v in (b.lora or {}).items():
                tol = 0 if bits is None else 0.02 * float(v.abs().max())
                torch.testing.assert_close(a.lora[k], v.float(), rtol=0, atol=tol)
        if bits is None:
            assert back.generation_fingerprint() == pack.generation_fingerprint()


def test_single_subject_pack_keeps_version_1(tmp_path, toy, parts):
    p = parts[0]
    pack = KnowledgePack(base_model_hash=model_fingerprint(toy), metaword=p.metaword, metaword_embedding=p.metaword_embedding,
                         subject=p.subject, lora=p.lora, lora_config=p.lora_config)
    d = save_pack(pack, tmp_path)
    manifest = json.loads((d / MANIFEST_NAME).read_text())
    assert manifest["format_version"] == FORMAT_VERSION and "subjects" not in manifest
    assert (d / LORA_NAME).is_file() and not list(d.glob("*-*.safetensors"))


def test_resave_as_single_removes_subject_files(tmp_path, toy, per_subject, parts):
    save_pack(per_subject, tmp_path)
    p = parts[0]
    save_pack(KnowledgePack(base_model_hash=model_fingerprint(toy), metaword=p.metaword,
                            metaword_embedding=p.metaword_embedding, subject=p.subject), tmp_path)
    assert not list(tmp_path.glob("*-*.safetensors"))
    assert load_pack(tmp_path).subjects == ["triangle"]


def test_missing_subject_file_is_refused(tmp_path, per_subject):
    d = save_pack(per_subject, tmp_path)
    (d / subject_lora_name("purple", None)).unlink()
    with pytest.raises(ConfigError, match="purple"):
        load_pack(d)


def _sample(edge, prompts, seeds):
    return edge.sample(prompts, seeds, steps=2, guidance=1.0)


def test_per_subject_adapters_are_routed(toy, per_subject):
    """Routing: a prompt naming one subject is drawn exactly as by that subject's own pack; a prompt naming
    none exactly as by the base edge; with every adapter on, the control prompt changes (interference)."""
    from dekasim.generative.models import model_world

    captions = [a.caption() for a in model_world(toy).split("all")]
    tri = next(c for c in captions if "triangle" in c and "purple" not in c)
    ctrl = next(c for c in captions if "triangle" not in c and "purple" not in c)
    routed = apply_pack(toy, per_subject)
    unet = routed.model.unet
    assert {subject_adapter_name("triangle"), subject_adapter_name("purple")} <= set(unet.peft_config)
    got = _sample(routed, [tri, ctrl], [5, 6])
    alone = _sample(apply_pack(toy, per_subject.select(["triangle"])), [tri], [5])
    base = _sample(toy, [ctrl], [6])
    torch.testing.assert_close(got[0:1], alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(got[1:2], base, rtol=0, atol=1e-5)
    all_on = _sample(apply_pack(toy, per_subject, routing=False), [ctrl], [6])
    assert (all_on - base).abs().max() > 1e-3
    # batch order does not matter: the same prompts the other way round give the same images
    swapped = _sample(routed, [ctrl, tri], [6, 5])
    torch.testing.assert_close(swapped.flip(0), got, rtol=0, atol=1e-5)


def test_pack_bank_swaps_the_bank_and_keeps_the_generation_part(tmp_path, joint, capsys):
    """``dekasim pack-bank``: the new pack's metaword files are byte for byte, its G-LoRA and bank files tensor
    for tensor, those of the same pack saved with the bank by save_pack (safetensors writes a header of several
    metadata keys in no fixed order, so those files are compared by content); bad input is one line, exit 2."""
    from safetensors.torch import load_file

    from dekasim.cli import main
    from dekasim.codecs.jscc import CHECKPOINT_DIR
    from dekasim.deka.pack_codec import with_cala
    from dekasim.generative.pack import quantised_lora_name

    ckpt = CHECKPOINT_DIR / "cala_generic-48x8x8-bw1_6.json"
    src = save_pack(joint, tmp_path / "src")
    assert main(["pack-bank", "--pack", str(src), "--cala", str(ckpt), "--bits", "8", "--out", str(tmp_path / "new")]) == 0
    ref = save_pack(with_cala(joint, str(ckpt)), tmp_path / "ref", bits=8)
    for name in (embeds_name("triangle"), embeds_name("purple")):
        assert (tmp_path / "new" / name).read_bytes() == (ref / name).read_bytes(), name
    for name in (quantised_lora_name(8), "cala_bank.q8.safetensors"):
        got, want = load_file(str(tmp_path / "new" / name)), load_file(str(ref / name))
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), name
    back = load_pack(tmp_path / "new")
    assert back.cala is not None and back.cala.source["file"] == "cala_generic-48x8x8-bw1_6.safetensors"
    assert back.subjects == ["triangle", "purple"]
    capsys.readouterr()
    for argv, key in ((["--cala", str(tmp_path / "nothing.json")], "cala"), (["--bits", "3"], "--bits")):
        base = {"--pack": str(src), "--cala": str(ckpt), "--bits": "8", "--out": str(tmp_path / "bad")}
        base.update(dict(zip(argv[::2], argv[1::2])))
        rc = main(["pack-bank", *[x for kv in base.items() for x in kv]])
        err = capsys.readouterr().err
        assert rc == 2 and key in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad" / MANIFEST_NAME).exists()
