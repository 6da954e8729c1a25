"""Knowledge pack: save/load, quantisation, verification, prompt rewriting, fingerprint, LoRA on a UNet.

Runs offline on the toy LDM (one build per module, ~2 s) with one thread.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/diffusers are imported
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import copy
import json
import types
from pathlib import Path

import pytest
import torch

from dekasim.errors import ConfigError
from dekasim.generative.pack import (EMBEDS_NAME, LORA_NAME, MANIFEST_NAME, KnowledgePack, dequantise_tensor,
                                     load_lora_into_unet, load_pack, lora_config_dict, lora_state_dict,
                                     model_fingerprint, pack_codes, pack_size_bytes, quantise_tensor,
                                     quantised_lora_name, save_pack, unpack_codes)

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(one_thread):
    from dekasim.generative.ldm import build_ldm

    return build_ldm("toy", seed=0)


@pytest.fixture(scope="module")
def adapted_unet(toy):
    """A copy of the toy UNet with a G-LoRA whose B matrices are non-zero (peft's gaussian init leaves
    them at zero, which would make the adapter a no-op)."""
    from peft import LoraConfig

    unet = copy.deepcopy(toy.unet)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=4, target_modules=TARGETS, init_lora_weights="gaussian"),
                     adapter_name="g_lora")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return unet


@pytest.fixture(scope="module")
def toy_pack(toy, adapted_unet) -> KnowledgePack:
    d = toy.text_encoder.config.hidden_size
    return KnowledgePack(base_model_hash=model_fingerprint(toy), metaword="<triangle*>",
                         metaword_embedding=torch.randn(d, generator=torch.Generator().manual_seed(2)),
                         subject="triangle", lora=lora_state_dict(adapted_unet, "g_lora"),
                         lora_config=lora_config_dict(adapted_unet, "g_lora"),
                         info={"method": "makd", "steps": 3})


def _unet_out(unet, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size, generator=g)
    states = torch.randn(2, 5, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([10, 500]), encoder_hidden_states=states).sample


def _gauss_pack(shape=(16, 40), dtype=torch.float32) -> KnowledgePack:
    g = torch.Generator().manual_seed(0)
    lora = {"a.to_q.lora_A.weight": torch.randn(4, shape[1], generator=g).to(dtype),
            "a.to_q.lora_B.weight": torch.randn(shape[0], 4, generator=g).to(dtype)}
    return KnowledgePack(base_model_hash="h" * 64, metaword="<x*>", metaword_embedding=torch.randn(8, generator=g),
                         subject="x", lora=lora, lora_config={"r": 4, "lora_alpha": 4, "target_modules": ["to_q"]})


# ----------------------------------------------------------------------------------------------
# Round trip and sizes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_round_trip_unquantised_is_exact(tmp_path, toy_pack, dtype):
    pack = copy.copy(toy_pack)
    pack.lora = {k: v.to(dtype) for k, v in toy_pack.lora.items()}
    back = load_pack(save_pack(pack, tmp_path), base_model_hash=pack.base_model_hash)
    for name in ("base_model_hash", "metaword", "subject", "placement", "lora_config", "info"):
        assert getattr(back, name) == getattr(pack, name), name
    assert back.metaword_embedding.dtype == torch.float32
    assert torch.equal(back.metaword_embedding, pack.metaword_embedding)
    assert back.lora.keys() == pack.lora.keys()
    for k, v in pack.lora.items():
        assert back.lora[k].dtype == dtype and torch.equal(back.lora[k], v), k
    assert back.n_params() == pack.n_params()


def test_layout_and_manifest(tmp_path, toy_pack):
    from safetensors.torch import load_file

    d = save_pack(toy_pack, tmp_path)
    assert sorted(p.name for p in d.iterdir()) == sorted([MANIFEST_NAME, EMBEDS_NAME, LORA_NAME])
    emb = load_file(str(d / EMBEDS_NAME))  # diffusers' textual-inversion layout: one tensor keyed by the token
    assert list(emb) == ["<triangle*>"] and emb["<triangle*>"].shape == toy_pack.metaword_embedding.shape
    m = json.loads((d / MANIFEST_NAME).read_text())
    assert m["kind"] == "dekasim-knowledge-pack" and m["format_version"] == 1 and m["bits"] is None
    assert m["size_bytes"] == pack_size_bytes(d) == sum(p.stat().st_size for p in d.iterdir())
    assert m["n_params"] == toy_pack.n_params() and m["payload_bytes"] == 4 * toy_pack.n_params()
    assert {f["name"] for f in m["files"]} == {EMBEDS_NAME, LORA_NAME}
    assert all(len(f["sha256"]) == 64 and f["size_bytes"] == (d / f["name"]).stat().st_size for f in m["files"])
    lora_entry = next(f for f in m["files"] if f["name"] == LORA_NAME)
    # a pipeline LoRA file (StableDiffusionPipeline.save_lora_weights' layout): the UNet's keys under "unet."
    assert lora_entry["tensors"].keys() == {f"unet.{k}" for k in toy_pack.lora} and lora_entry["quantisation"] is None
    assert load_file(str(d / LORA_NAME)).keys() == lora_entry["tensors"].keys()
    key = next(iter(toy_pack.lora))
    assert lora_entry["tensors"][f"unet.{key}"] == {"shape": list(toy_pack.lora[key].shape), "dtype": "float32"}
    assert load_pack(d).lora.keys() == toy_pack.lora.keys()  # in memory: the UNet's own keys


def _sizes(pack: KnowledgePack, root: Path) -> tuple[dict, dict]:
    """(files incl. manifest, tensor payload) in bytes at bits none/8/4/2."""
    files, payload = {}, {}
    for bits in (None, 8, 4, 2):
        d = save_pack(pack, root / f"b{bits}", bits=bits)
        files[bits] = pack_size_bytes(d)
        payload[bits] = json.loads((d / MANIFEST_NAME).read_text())["payload_bytes"]
    return files, payload


def _report(sizes: dict) -> str:
    return ", ".join(f"{'none' if b is None else b}: {s} B" for b, s in sizes.items())


def test_size_decreases_with_bits(tmp_path, toy, toy_pack):
    """Files and payload shrink with bits for an r=8 G-LoRA on the toy UNet. At r=2 (toy_pack) the tensor
    data shrinks too, but the files do not: three ~90-character safetensors keys per quantised tensor
    outweigh 23 KB of float32 data (sizes in the assertion messages)."""
    from peft import LoraConfig

    unet = copy.deepcopy(toy.unet)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=TARGETS, init_lora_weights="gaussian"), "g_lora")
    r8 = KnowledgePack(base_model_hash=toy_pack.base_model_hash, metaword=toy_pack.metaword,
                       metaword_embedding=toy_pack.metaword_embedding, subject="triangle",
                       lora=lora_state_dict(unet, "g_lora"), lora_config=lora_config_dict(unet, "g_lora"))
    files8, payload8 = _sizes(r8, tmp_path / "r8")
    files2, payload2 = _sizes(toy_pack, tmp_path / "r2")
    report = f"r=8 files {_report(files8)}; payload {_report(payload8)} | r=2 files {_report(files2)}; " \
             f"payload {_report(payload2)}"
    assert files8[None] > files8[8] > files8[4] > files8[2], report
    assert payload8[None] > payload8[8] > payload8[4] > payload8[2], report
    assert payload2[None] > payload2[8] > payload2[4] > payload2[2], report


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_quantised_round_trip(tmp_path, toy_pack, bits):
    d = save_pack(toy_pack, tmp_path, bits=bits)
    assert (d / quantised_lora_name(bits)).is_file() and not (d / LORA_NAME).exists()
    m = json.loads((d / MANIFEST_NAME).read_text())
    assert m["bits"] == bits and "not quantised" in m["metaword_embedding"]
    q = next(f for f in m["files"] if f["name"] == quantised_lora_name(bits))["quantisation"]
    assert q["bits"] == bits and q["scheme"] == "per_row_asymmetric_uniform"
    back = load_pack(d)
    assert torch.equal(back.metaword_embedding, toy_pack.metaword_embedding)  # stays float32
    assert back.lora.keys() == toy_pack.lora.keys()
    for k, v in toy_pack.lora.items():
        w = back.lora[k]
        assert w.dtype == torch.float32 and w.shape == v.shape
        step = (v.max(dim=1).values - v.min(dim=1).values) / (2 ** bits - 1)
        assert ((w - v).abs() <= step[:, None] / 2 + 1e-3 * v.abs().max() + 1e-6).all(), k


def test_resave_replaces_earlier_files(tmp_path, toy_pack):
    save_pack(toy_pack, tmp_path, bits=4)
    save_pack(toy_pack, tmp_path)
    assert not (tmp_path / quantised_lora_name(4)).exists()
    assert load_pack(tmp_path).lora.keys() == toy_pack.lora.keys()


def test_metaword_only_pack(tmp_path):
    pack = KnowledgePack(base_model_hash="abc", metaword="<m*>", metaword_embedding=torch.ones(4), subject="m")
    back = load_pack(save_pack(pack, tmp_path, bits=2))
    assert back.lora is None and torch.equal(back.metaword_embedding, torch.ones(4)) and back.n_params() == 4


# ----------------------------------------------------------------------------------------------
# Quantisation


def test_quantisation_error_decreases_with_bits():
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    err = {b: float((dequantise_tensor(quantise_tensor(x, b)) - x).norm() / x.norm()) for b in (8, 4, 2)}
    assert err[8] < err[4] < err[2], err
    assert err[8] < 0.01, f"8-bit relative Frobenius error {err[8]:.4f}"


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("n", [1, 7, 64, 129])
def test_code_packing_round_trips(bits, n):
    codes = torch.randint(0, 2 ** bits, (n,), generator=torch.Generator().manual_seed(n), dtype=torch.int64)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-n * bits // 8)
    assert torch.equal(unpack_codes(packed, bits, n), codes.to(torch.uint8))


def test_quantise_edge_cases():
    zero_rows = torch.zeros(3, 5)  # a LoRA B at peft's init
    assert torch.equal(dequantise_tensor(quantise_tensor(zero_rows, 2)), zero_rows)
    const = torch.full((2, 4), 0.75)
    assert torch.equal(dequantise_tensor(quantise_tensor(const, 4)), const)
    v = torch.linspace(-1, 1, 9)  # 1-D: one row
    assert dequantise_tensor(quantise_tensor(v, 8)).shape == v.shape
    with pytest.raises(ConfigError, match="bits"):
        quantise_tensor(v, 3)


# ----------------------------------------------------------------------------------------------
# Verification on load


def _manifest(d: Path) -> dict:
    return json.loads((d / MANIFEST_NAME).read_text())


def test_tampered_byte_is_refused(tmp_path):
    d = save_pack(_gauss_pack(), tmp_path)
    raw = bytearray((d / LORA_NAME).read_bytes())
    raw[-3] ^= 0x01
    (d / LORA_NAME).write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="sha256") as info:
        load_pack(d)
    assert info.value.field == f"pack.sha256[{LORA_NAME}]" and info.value.fix


@pytest.mark.parametrize("bits", [None, 4])
def test_manifest_with_wrong_shape_is_refused(tmp_path, bits):
    d = save_pack(_gauss_pack(), tmp_path, bits=bits)
    m = _manifest(d)
    name = ("unet." if bits is None else "") + "a.to_q.lora_B.weight"  # the unquantised file's keys: unet.*
    entry = next(f for f in m["files"] if f["name"] != EMBEDS_NAME)["tensors"][name]
    entry["shape"] = [entry["shape"][0] + 1, entry["shape"][1]]
    (d / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="shape") as info:
        load_pack(d)
    assert info.value.field == f"pack.tensors[{name}].shape"


def test_other_base_model_is_refused(tmp_path):
    d = save_pack(_gauss_pack(), tmp_path)
    with pytest.raises(ConfigError, match="align again") as info:
        load_pack(d, base_model_hash="0" * 64)
    assert info.value.field == "pack.base_model_hash" and info.value.value == "h" * 64
    assert load_pack(d, base_model_hash="h" * 64).base_model_hash == "h" * 64


def test_missing_manifest_file_kind_and_version_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="manifest"):
        load_pack(tmp_path / "nowhere")
    d = save_pack(_gauss_pack(), tmp_path / "p")
    m = _manifest(d)
    for key, value, field in [("kind", "something-else", "pack.kind"), ("format_version", 99, "pack.format_version")]:
        (d / MANIFEST_NAME).write_text(json.dumps({**m, key: value}))
        with pytest.raises(ConfigError) as info:
            load_pack(d)
        assert info.value.field == field
    (d / MANIFEST_NAME).write_text(json.dumps(m))
    (d / EMBEDS_NAME).unlink()
    with pytest.raises(ConfigError) as info:
        load_pack(d)
    assert info.value.field == f"pack.files[{EMBEDS_NAME}]"


def test_invalid_pack_fields_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="placement"):
        KnowledgePack(base_model_hash="h", placement="suffix")
    with pytest.raises(ConfigError, match="metaword"):
        KnowledgePack(base_model_hash="h", metaword="<a*>")
    with pytest.raises(ConfigError, match="bits"):
        save_pack(_gauss_pack(), tmp_path, bits=3)


# ----------------------------------------------------------------------------------------------
# Prompt rewriting


@pytest.mark.parametrize("placement, subject, prompt, expected", [
    ("before_subject", "triangle", "a red triangle at the top", "a red <triangle*> triangle at the top"),
    ("before_subject", "triangle", "a triangle and a triangle", "a <triangle*> triangle and a triangle"),
    ("before_subject", "triangle", "two red triangles", "two red triangles"),
    ("before_subject", "triangle", "a subtriangle and a triangle", "a subtriangle and a <triangle*> triangle"),
    ("before_subject", "triangle", "a blue circle", "a blue circle"),
    ("before_subject", "triangle", "A red Triangle", "A red <triangle*> Triangle"),
    ("before_subject", "triangle", "a red <triangle*> triangle", "a red <triangle*> triangle"),
    ("before_subject", "triangle", "", ""),
    ("prefix", "triangle", "a red triangle", "<triangle*> a red triangle"),
    ("prefix", "triangle", "a blue circle", "a blue circle"),
    ("prefix", None, "a blue circle", "<triangle*> a blue circle"),
])
def test_rewrite(placement, subject, prompt, expected):
    pack = KnowledgePack(base_model_hash="h", metaword="<triangle*>", metaword_embedding=torch.zeros(4),
                         subject=subject, placement=placement)
    assert pack.rewrite(prompt) == expected


def test_rewrite_without_metaword_is_identity():
    assert KnowledgePack(base_model_hash="h", subject="triangle").rewrite("a triangle") == "a triangle"


# ----------------------------------------------------------------------------------------------
# Fingerprint and LoRA on the toy UNet


def test_fingerprint_stable_and_sensitive(toy):
    h = model_fingerprint(toy)
    assert len(h) == 64 and h == model_fingerprint(toy)
    unet = copy.deepcopy(toy.unet)
    with torch.no_grad():
        next(unet.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(types.SimpleNamespace(unet=unet, text_encoder=toy.text_encoder)) != h


def test_fingerprint_ignores_lora_adapter(toy, adapted_unet):
    assert any(".base_layer." in k for k in adapted_unet.state_dict())
    assert model_fingerprint(types.SimpleNamespace(unet=adapted_unet, text_encoder=toy.text_encoder)) == \
        model_fingerprint(toy)


def test_lora_keys_match_diffusers_save_lora_adapter(tmp_path, adapted_unet):
    from safetensors.torch import load_file

    adapted_unet.save_lora_adapter(tmp_path, adapter_name="g_lora", weight_name=LORA_NAME)
    written = load_file(str(tmp_path / LORA_NAME))
    ours = lora_state_dict(adapted_unet, "g_lora")
    assert written.keys() == ours.keys()
    assert all(torch.equal(written[k], ours[k]) for k in ours)
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"
    assert key in ours and ours[key].shape[0] == 2
    assert lora_config_dict(adapted_unet, "g_lora") == {"r": 2, "lora_alpha": 4, "target_modules": sorted(TARGETS)}


def test_pack_lora_applies_to_fresh_unet(tmp_path, toy, adapted_unet, toy_pack):
    d = save_pack(toy_pack, tmp_path)
    pack = load_pack(d, base_model_hash=model_fingerprint(toy))
    want = _unet_out(adapted_unet)
    assert not torch.allclose(want, _unet_out(toy.unet), atol=1e-4)  # the adapter does something

    fresh = copy.deepcopy(toy.unet)
    load_lora_into_unet(fresh, pack.lora, pack.lora_config, adapter_name="g_lora")
    torch.testing.assert_close(_unet_out(fresh), want, rtol=0, atol=1e-6)

    # the pack directory is a diffusers pipeline LoRA directory too (config in the safetensors header)
    fresh2 = copy.deepcopy(toy.unet)
    fresh2.load_lora_adapter(str(d), weight_name=LORA_NAME, adapter_name="g_lora", prefix="unet")
    torch.testing.assert_close(_unet_out(fresh2), want, rtol=0, atol=1e-6)


def test_quantised_pack_lora_is_close(tmp_path, toy, adapted_unet, toy_pack):
    want = _unet_out(adapted_unet)
    base_gap = float((want - _unet_out(toy.unet)).norm())
    gaps = {}
    for bits in (8, 2):
        fresh = copy.deepcopy(toy.unet)
        load_lora_into_unet(fresh, load_pack(save_pack(toy_pack, tmp_path / str(bits), bits=bits)).lora,
                            toy_pack.lora_config)
        gaps[bits] = float((_unet_out(fresh) - want).norm())
    assert gaps[8] < 0.02 * base_gap and gaps[8] < gaps[2], (gaps, base_gap)


def test_load_lora_rejects_foreign_keys_and_shapes(toy, toy_pack):
    with pytest.raises(ConfigError, match="pack.lora"):
        load_lora_into_unet(copy.deepcopy(toy.unet), {"no_such_block.to_q.lora_A.weight": torch.zeros(2, 8),
                                                      "no_such_block.to_q.lora_B.weight": torch.zeros(8, 2)}, None)
    key = next(k for k in toy_pack.lora if k.endswith("lora_A.weight"))
    bad = {**toy_pack.lora, key: torch.zeros(2, toy_pack.lora[key].shape[1] + 1)}
    with pytest.raises(ConfigError, match="pack.lora"):
        load_lora_into_unet(copy.deepcopy(toy.unet), bad, toy_pack.lora_config)
