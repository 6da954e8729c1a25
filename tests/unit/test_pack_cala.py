"""The knowledge pack's CALA bank + gate, and the downlink cost of a pack.

A tiny base JSCC (width 16, [3, 16, 16] images, 128 symbols) and a CALA bank on it (K = 4, gate width 8,
non-zero adapters) are written as checkpoints without training (save_checkpoint, well under a second);
the shipped ``cala-3x32x32-bw1_6`` checkpoint gives the realistic sizes.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/diffusers are imported
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from dekasim import Condition
from dekasim.codecs import build_codec
from dekasim.codecs.cala import CALABank
from dekasim.codecs.jscc import CHECKPOINT_DIR, checkpoint_stem, read_checkpoint, save_checkpoint
from dekasim.codecs.mcs import downlink_channel_uses, mcs_entry, plan_codeblocks
from dekasim.errors import ConfigError
from dekasim.deka.pack_codec import (cala_base_checkpoint, cala_codec_from_pack, pack_downlink_cost,
                                     read_cala_checkpoint, with_cala)
from dekasim.generative.pack import (CALA_NAME, EMBEDS_NAME, LORA_NAME, MANIFEST_NAME, CALABankPart, KnowledgePack,
                                     load_pack, pack_size_bytes, quantised_cala_name, save_pack)

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE, RATIO = (3, 16, 16), 1 / 6
COND = Condition(snr_db=5.0, delay_spread_ns=1000.0, tdl_profile="C")
SHIPPED_CALA = CHECKPOINT_DIR / "cala-3x32x32-bw1_6.json"
NO_CALA_MANIFEST_KEYS = {"base_model_hash", "bits", "files", "format_version", "info", "kind", "lora_config",
                         "metaword", "metaword_embedding", "n_params", "payload_bytes", "placement", "size_bytes",
                         "subject"}


def _write_base(d: Path, stem: str, init_seed: int) -> Path:
    codec = build_codec("jscc", SHAPE, RATIO, checkpoint="none", width=16, init_seed=init_seed)
    return save_checkpoint(d, stem, {f"net.{k}": v for k, v in codec.net.state_dict().items()},
                           {"codec": "jscc", "arch": codec.arch.to_json(), "bandwidth_ratio": RATIO,
                            "payload_shape": list(SHAPE)})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> dict[str, Path]:
    """``cala``: a CALA checkpoint (K = 4, gate width 8) on ``base``; ``other``: a base of the same
    architecture with other weights, in the same directory."""
    d = tmp_path_factory.mktemp("ckpt")
    base = _write_base(d, checkpoint_stem("jscc_base", SHAPE, RATIO), init_seed=3)
    other = _write_base(d, checkpoint_stem("jscc", SHAPE, RATIO), init_seed=4)
    net = build_codec("jscc", SHAPE, RATIO, checkpoint=str(base)).net
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        bank = CALABank(net, ("enc.res2", "enc.out", "dec.inp"), num_adapters=4, gate_hidden=8)
        with torch.no_grad():
            for p in bank.b.values():  # a trained bank has non-zero b (a fresh one is its base exactly)
                p.normal_(0.0, 0.3)
    bm = json.loads(base.read_text())
    cala = save_checkpoint(d, checkpoint_stem("cala", SHAPE, RATIO),
                           {f"bank.{k}": v for k, v in bank.state_dict().items()},
                           {"codec": "cala", "arch": bm["arch"], "bandwidth_ratio": RATIO, "payload_shape": list(SHAPE),
                            "cala": {"layers": list(bank.layers), "num_adapters": 4, "gate_hidden": 8},
                            "base": {"file": bm["file"], "sha256": bm["sha256"], "codec": "jscc"}})
    return {"cala": cala, "base": base, "other": other}


def _pack(**kw) -> KnowledgePack:
    g = torch.Generator().manual_seed(0)
    lora = {"a.to_q.lora_A.weight": torch.randn(4, 40, generator=g),
            "a.to_q.lora_B.weight": torch.randn(16, 4, generator=g)}
    return KnowledgePack(base_model_hash="h" * 64, metaword="<x*>", metaword_embedding=torch.randn(8, generator=g),
                         subject="x", lora=lora, lora_config={"r": 4, "lora_alpha": 4, "target_modules": ["to_q"]},
                         **kw)


def _payload(shape=SHAPE) -> torch.Tensor:
    return torch.rand(4, *shape, generator=torch.Generator().manual_seed(1))


def _manifest(d: Path) -> dict:
    return json.loads((d / MANIFEST_NAME).read_text())


# ----------------------------------------------------------------------------------------------
# Round trip


def test_unquantised_round_trip_gives_a_bit_identical_codec(tmp_path, ckpt):
    pack = with_cala(_pack(), ckpt["cala"])
    d = save_pack(pack, tmp_path)
    assert sorted(p.name for p in d.iterdir()) == sorted([MANIFEST_NAME, EMBEDS_NAME, LORA_NAME, CALA_NAME])
    back = load_pack(d)
    _, stored = read_checkpoint(ckpt["cala"])
    assert back.cala.tensors.keys() == {k[len("bank."):] for k in stored}
    for k, v in back.cala.tensors.items():
        assert v.dtype == torch.float32 and torch.equal(v, stored[f"bank.{k}"]), k
    assert back.cala.layers == ["enc.res2", "enc.out", "dec.inp"]
    assert (back.cala.num_adapters, back.cala.gate_hidden) == (4, 8)
    assert back.cala.base == pack.cala.base and back.cala.arch == pack.cala.arch
    assert torch.equal(back.metaword_embedding, pack.metaword_embedding) and back.lora.keys() == pack.lora.keys()

    m = _manifest(d)
    assert back.n_params() == pack.n_params() == m["n_params"]
    assert pack.n_params() == _pack().n_params() + sum(v.numel() for v in stored.values())
    assert m["payload_bytes"] == 4 * pack.n_params()  # everything float32

    ref = build_codec("cala", SHAPE, RATIO, checkpoint=str(ckpt["cala"]))
    codec = cala_codec_from_pack(back, ckpt["base"])
    x = _payload()
    y_ref = ref.encode(x, COND)
    assert torch.equal(codec.encode(x, COND), y_ref)
    no = torch.full(y_ref.shape, 0.1)
    assert torch.equal(codec.decode(y_ref, no, COND).payload, ref.decode(y_ref, no, COND).payload)
    base_only = build_codec("jscc", SHAPE, RATIO, checkpoint=str(ckpt["base"]))
    assert not torch.allclose(base_only.encode(x, COND), y_ref, atol=1e-3)  # the bank does change the codec
    assert all(not p.requires_grad for p in codec.net.parameters())


def test_manifest_records_the_base_and_the_source_checkpoint(tmp_path, ckpt):
    d = save_pack(with_cala(_pack(), ckpt["cala"]), tmp_path)
    section = _manifest(d)["cala"]
    cm, bm = json.loads(ckpt["cala"].read_text()), json.loads(ckpt["base"].read_text())
    assert section["base"] == {"file": bm["file"], "sha256": bm["sha256"], "codec": "jscc"}
    assert section["source"] == {"file": cm["file"], "sha256": cm["sha256"]}
    assert section["arch"] == bm["arch"] and section["bandwidth_ratio"] == RATIO
    entry = next(f for f in _manifest(d)["files"] if f["name"] == CALA_NAME)
    assert entry["quantisation"] is None and entry["tensors"]["gate.0.weight"] == {"shape": [8, 10], "dtype": "float32"}
    assert cala_base_checkpoint(ckpt["cala"]) == ckpt["base"]


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_quantised_round_trip(tmp_path, ckpt, bits):
    pack = with_cala(_pack(), ckpt["cala"])
    d = save_pack(pack, tmp_path, bits=bits)
    assert (d / quantised_cala_name(bits)).is_file() and not (d / CALA_NAME).exists()
    entry = next(f for f in _manifest(d)["files"] if f["name"] == quantised_cala_name(bits))
    assert entry["quantisation"]["bits"] == bits
    assert {k: v["stored"] for k, v in entry["tensors"].items()} == {
        **{k: "quantised" for k in pack.cala.tensors if k[:2] in ("a.", "b.")},
        **{k: "float16" for k in pack.cala.tensors if k.startswith("gate.")}}
    back = load_pack(d).cala
    for k, v in pack.cala.tensors.items():
        w = back.tensors[k]
        assert w.dtype == torch.float32 and w.shape == v.shape, k
        if k.startswith("gate."):
            assert torch.equal(w, v.half().float()), k
        else:  # per row (adapter): at most half a quantisation step, plus the fp16 rounding of the row minimum
            step = (v.max(dim=1).values - v.min(dim=1).values) / (2 ** bits - 1)
            assert ((w - v).abs() <= step[:, None] / 2 + 1e-3 * v.abs().max() + 1e-6).all(), k


def test_quantised_codec_is_close_and_closer_with_more_bits(tmp_path, ckpt):
    ref = build_codec("cala", SHAPE, RATIO, checkpoint=str(ckpt["cala"]))
    base_only = build_codec("jscc", SHAPE, RATIO, checkpoint=str(ckpt["base"]))
    x = _payload()
    want = ref.encode(x, COND)
    bank_effect = float((base_only.encode(x, COND) - want).norm())
    err = {}
    for bits in (8, 4, 2):
        back = load_pack(save_pack(with_cala(_pack(), ckpt["cala"]), tmp_path / str(bits), bits=bits))
        err[bits] = float((cala_codec_from_pack(back, ckpt["base"]).encode(x, COND) - want).norm())
    assert err[8] < 0.02 * bank_effect and err[8] < err[4] < err[2], (err, bank_effect)


# ----------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("bits", [None, 4])
def test_tampered_cala_file_is_refused(tmp_path, ckpt, bits):
    d = save_pack(with_cala(_pack(), ckpt["cala"]), tmp_path, bits=bits)
    name = CALA_NAME if bits is None else quantised_cala_name(bits)
    raw = bytearray((d / name).read_bytes())
    raw[-5] ^= 0x01
    (d / name).write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="sha256") as info:
        load_pack(d)
    assert info.value.field == f"pack.sha256[{name}]" and info.value.fix


def test_other_base_is_refused(tmp_path, ckpt):
    back = load_pack(save_pack(with_cala(_pack(), ckpt["cala"]), tmp_path))
    other_sha = json.loads(ckpt["other"].read_text())["sha256"]
    with pytest.raises(ConfigError, match="base the bank was trained on") as info:
        cala_codec_from_pack(back, ckpt["other"])
    assert info.value.field == "pack.cala.base.sha256" and info.value.value == other_sha
    assert back.cala.base["sha256"] in str(info.value)
    with pytest.raises(ConfigError) as info:  # and the shipped 3x32x32 base, of another shape
        cala_codec_from_pack(back, CHECKPOINT_DIR / "jscc_base-3x32x32-bw1_6.json")
    assert info.value.field == "pack.cala.base.sha256"
    with pytest.raises(ConfigError) as info:
        cala_codec_from_pack(_pack(), ckpt["base"])
    assert info.value.field == "pack.cala"


def test_manifest_and_files_must_agree_on_the_bank(tmp_path, ckpt):
    d = save_pack(with_cala(_pack(), ckpt["cala"]), tmp_path)
    m = _manifest(d)
    without_section = {k: v for k, v in m.items() if k != "cala"}
    (d / MANIFEST_NAME).write_text(json.dumps(without_section))
    with pytest.raises(ConfigError) as info:  # a bank file that no cala section describes
        load_pack(d)
    assert info.value.field == "pack.files"
    without_file = {**m, "files": [f for f in m["files"] if f["name"] != CALA_NAME]}
    (d / MANIFEST_NAME).write_text(json.dumps(without_file))
    with pytest.raises(ConfigError) as info:
        load_pack(d)
    assert info.value.field == "pack.cala"
    entry = next(f for f in m["files"] if f["name"] == CALA_NAME)
    entry["tensors"]["gate.2.weight"]["shape"] = [4, 9]
    (d / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(ConfigError) as info:
        load_pack(d)
    assert info.value.field == "pack.tensors[gate.2.weight].shape"


def test_invalid_banks_and_checkpoints_are_refused(ckpt):
    part = read_cala_checkpoint(ckpt["cala"])
    bad = {**part.tensors, "gate.0.weight": torch.zeros(8, 9)}
    with pytest.raises(ConfigError) as info:
        CALABankPart(**{**part.__dict__, "tensors": bad})
    assert info.value.field == "pack.cala.tensors[gate.0.weight].shape"
    with pytest.raises(ConfigError) as info:
        CALABankPart(**{**part.__dict__, "tensors": {k: v for k, v in part.tensors.items() if k != "b.dec_inp"}})
    assert info.value.field == "pack.cala.tensors"
    with pytest.raises(ConfigError) as info:
        CALABankPart(**{**part.__dict__, "base": {"file": "x.safetensors", "sha256": "nope"}})
    assert info.value.field == "pack.cala.base"
    with pytest.raises(ConfigError) as info:  # a base checkpoint is not a CALA one
        with_cala(_pack(), ckpt["base"])
    assert info.value.field == "cala"
    with pytest.raises(ConfigError) as info:
        with_cala(_pack(), ckpt["cala"].parent / "missing.json")
    assert info.value.field == "cala"


# ----------------------------------------------------------------------------------------------
# Packs without a bank, sizes


def test_packs_without_cala_are_unchanged_by_the_feature(tmp_path, ckpt):
    """No cala key, no bank file, the same entries for the other files; adding a bank leaves the
    metaword and LoRA files as they were and adds exactly its own parameters and payload."""
    from safetensors.torch import load_file

    plain = _pack()
    for bits in (None, 4):
        d0 = save_pack(plain, tmp_path / f"no-{bits}", bits=bits)
        d1 = save_pack(with_cala(plain, ckpt["cala"]), tmp_path / f"with-{bits}", bits=bits)
        m0, m1 = _manifest(d0), _manifest(d1)
        assert set(m0) == NO_CALA_MANIFEST_KEYS and set(m1) == NO_CALA_MANIFEST_KEYS | {"cala"}
        assert load_pack(d0).cala is None and plain.cala is None
        bank_name = CALA_NAME if bits is None else quantised_cala_name(bits)
        assert not any("cala" in p.name for p in d0.iterdir())
        others = [f for f in m1["files"] if f["name"] != bank_name]
        # sha256 aside: safetensors writes its header's metadata keys in no fixed order, even for one pack
        strip = [{k: v for k, v in f.items() if k != "sha256"} for f in others]
        assert strip == [{k: v for k, v in f.items() if k != "sha256"} for f in m0["files"]]
        for f in others:
            a, b = load_file(str(d0 / f["name"])), load_file(str(d1 / f["name"]))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f["name"]
        bank_entry = next(f for f in m1["files"] if f["name"] == bank_name)
        bank_payload = sum(t.numel() * t.element_size() for t in load_file(str(d1 / bank_name)).values())
        assert m1["n_params"] - m0["n_params"] == read_cala_checkpoint(ckpt["cala"]).n_params()
        assert m1["payload_bytes"] - m0["payload_bytes"] == bank_payload
        assert m1["size_bytes"] - m0["size_bytes"] == bank_entry["size_bytes"] + (d1 / MANIFEST_NAME).stat().st_size \
            - (d0 / MANIFEST_NAME).stat().st_size


@pytest.mark.skipif(not SHIPPED_CALA.exists(), reason="no shipped CALA checkpoint")
def test_quantised_shipped_bank_is_smaller_and_its_codec_matches(tmp_path):
    pack = with_cala(KnowledgePack(base_model_hash="h" * 64), SHIPPED_CALA)
    files, payload = {}, {}
    for bits in (None, 8, 4, 2):
        d = save_pack(pack, tmp_path / str(bits), bits=bits)
        entry = next(f for f in _manifest(d)["files"] if "cala" in f["name"])
        files[bits], payload[bits] = entry["size_bytes"], _manifest(d)["payload_bytes"]
    sizes = f"files {files}, payload {payload}"
    assert files[None] > files[8] > files[4] > files[2], sizes
    assert payload[None] > payload[8] > payload[4] > payload[2], sizes
    assert payload[None] == 4 * pack.n_params() and payload[8] < 0.3 * payload[None], sizes
    ref = build_codec("cala", (3, 32, 32), 1 / 6, checkpoint=str(SHIPPED_CALA))
    codec = cala_codec_from_pack(load_pack(tmp_path / "None"), cala_base_checkpoint(SHIPPED_CALA))
    x = _payload((3, 32, 32))
    assert torch.equal(codec.encode(x, COND), ref.encode(x, COND))


# ----------------------------------------------------------------------------------------------
# Downlink cost


def test_downlink_channel_uses_by_hand():
    """MCS 9 of Table 5.1.3.1-1: QPSK (Qm = 2), R = 679/1024. A 1024-symbol block has E = 2048 coded bits,
    one code block of k = floor(679/1024 * 2048) = 1358 bits, 1358 - 24 (CRC24A) = 1334 payload bits.
    A block of n symbols carries floor(1.326171875 n) - 24 payload bits while it stays one code block.
    100 bytes = 800 bits: floor(1.326171875 n) >= 824 first at n = 622 (621 gives 823).
    1000 bytes = 8000 bits = 5 full blocks (6670 bits) + 1330 bits: floor(1.326171875 n) >= 1354 first at
    n = 1021 (1354.02), so 5 * 1024 + 1021 = 6141."""
    assert plan_codeblocks(mcs_entry(9), 1024).info_bits == 1334
    assert downlink_channel_uses(100, 9) == 622
    assert downlink_channel_uses(1000, 9) == 6141
    assert downlink_channel_uses(0, 9) == 0
    assert plan_codeblocks(mcs_entry(9), 1021).info_bits >= 1330 > plan_codeblocks(mcs_entry(9), 1020).info_bits
    # more bytes never cost fewer symbols, a higher MCS costs fewer
    costs = [downlink_channel_uses(n, 16) for n in range(0, 3000, 7)]
    assert all(a <= b for a, b in zip(costs, costs[1:]))
    assert downlink_channel_uses(50_000, 4) > downlink_channel_uses(50_000, 16) > downlink_channel_uses(50_000, 27)
    # no cheaper than the spectral efficiency allows, and within CRC and rounding overhead of it
    se = mcs_entry(27).spectral_efficiency
    n = downlink_channel_uses(50_000, 27)
    assert 8 * 50_000 / se < n < 1.02 * 8 * 50_000 / se
    with pytest.raises(ConfigError) as info:  # R = 120/1024 < 1/5: the chain's LDPC cannot do it
        downlink_channel_uses(100, 0)
    assert info.value.field == "mcs"
    with pytest.raises(ConfigError) as info:
        downlink_channel_uses(-1, 9)
    assert info.value.field == "n_bytes"


def test_pack_downlink_cost(tmp_path, ckpt):
    d = save_pack(with_cala(_pack(), ckpt["cala"]), tmp_path, bits=8)
    cost = pack_downlink_cost(d, mcs_indices=(4, 27))
    total = pack_size_bytes(d)
    assert cost["size_bytes"] == total
    assert set(cost["files"]) == {MANIFEST_NAME, *(f["name"] for f in _manifest(d)["files"])}
    assert sum(f["size_bytes"] for f in cost["files"].values()) == total
    assert cost["channel_uses"] == {"4": downlink_channel_uses(total, 4), "27": downlink_channel_uses(total, 27)}
    assert cost["channel_uses"]["4"] > cost["channel_uses"]["27"] > 0
    assert sum(f["channel_uses"]["4"] for f in cost["files"].values()) >= cost["channel_uses"]["4"]
    assert math.isclose(cost["channel_uses"]["4"], 8 * total / mcs_entry(4).spectral_efficiency, rel_tol=0.1)


# ----------------------------------------------------------------------------------------------
# dekasim align --cala


def test_align_parser_takes_cala():
    from dekasim.cli import _parser

    assert _parser().parse_args(["align", "--out", "x"]).cala is None
    assert _parser().parse_args(["align", "--out", "x", "--cala", "c.json"]).cala == "c.json"


def test_align_with_cala_puts_the_bank_in_every_pack(tmp_path, ckpt):
    from dekasim.deka.alignment import run_alignment
    from dekasim.generative.ldm import build_ldm
    from dekasim.generative.makd import AlignConfig

    cloud, edge = build_ldm("toy", seed=1, name="cloud-toy"), build_ldm("toy", seed=2, name="edge-toy")
    cfg = AlignConfig(n_train_images=2, n_val_prompts=2, n_test_prompts=2, n_control_prompts=0, budget_steps=2,
                      batch_size=2, eval_every=1, patience=2, sample_steps=2, seed=3, lora_rank=2)
    with pytest.raises(ConfigError) as info:  # a bad path fails before any training
        run_alignment(cloud, edge, cfg, tmp_path / "bad", methods=("makd",), bits=(8,), cala=tmp_path / "no.json")
    assert info.value.field == "cala" and not (tmp_path / "bad" / "report.json").exists()

    report = run_alignment(cloud, edge, cfg, tmp_path / "out", methods=("makd",), bits=(8,), cala=ckpt["cala"])
    levels = report["packs"]["makd_levels"]
    assert set(levels) == {"none", "8-bit"}
    for lvl, bank_file in (("none", CALA_NAME), ("8-bit", quantised_cala_name(8))):
        v = levels[lvl]
        assert (Path(v["dir"]) / bank_file).is_file() and load_pack(v["dir"]).cala is not None
        assert v["bytes"] == pack_size_bytes(v["dir"]) > v["bytes_without_cala"] + v["cala_file_bytes"]
        assert v["downlink"]["channel_uses"]["4"] > v["downlink_without_cala"]["channel_uses"]["4"]
    assert levels["none"]["cala_codec"]["symbols_rel_error"] == 0.0
    assert 0.0 < levels["8-bit"]["cala_codec"]["symbols_rel_error"] < 0.02
    assert (Path(report["packs"]["makd"]["dir"]) / CALA_NAME).is_file()
    assert report["cala"]["n_params"] == read_cala_checkpoint(ckpt["cala"]).n_params()
    md = (tmp_path / "out" / "report.md").read_text()
    assert "bytes without CALA" in md and str(levels["8-bit"]["bytes_without_cala"]) in md


def test_an_snr_anchored_gate_survives_the_pack(ckpt, tmp_path):
    """The gate's kind is part of the bank: a pack rebuilt without it would mix the adapters wrongly."""
    base = ckpt["base"]
    net = build_codec("jscc", SHAPE, RATIO, checkpoint=str(base)).net
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(6)
        bank = CALABank(net, ("enc.res2", "dec.inp"), num_adapters=3, gate_hidden=8, gate="snr_anchored")
        with torch.no_grad():
            for p in bank.b.values():
                p.normal_(0.0, 0.3)
    bm = json.loads(base.read_text())
    d = tmp_path / "ckpt"
    d.mkdir()
    for suffix in (".json", ".safetensors"):
        (d / base.with_suffix(suffix).name).write_bytes(base.with_suffix(suffix).read_bytes())
    cala = save_checkpoint(d, checkpoint_stem("cala", SHAPE, RATIO),
                           {f"bank.{k}": v for k, v in bank.state_dict().items()},
                           {"codec": "cala", "arch": bm["arch"], "bandwidth_ratio": RATIO, "payload_shape": list(SHAPE),
                            "cala": {"layers": list(bank.layers), "num_adapters": 3, "gate_hidden": 8,
                                     "gate": "snr_anchored"},
                            "base": {"file": bm["file"], "sha256": bm["sha256"], "codec": "jscc"}})
    pack = load_pack(save_pack(with_cala(_pack(), cala), tmp_path / "pack"))
    assert pack.cala is not None and pack.cala.gate == "snr_anchored"
    rebuilt = cala_codec_from_pack(pack, d / base.name)
    direct = build_codec("cala", SHAPE, RATIO, checkpoint=str(cala))
    assert rebuilt.bank.gate_kind == direct.bank.gate_kind == "snr_anchored"
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(1))
    for snr in (0.0, 20.0):
        assert torch.equal(rebuilt.encode(x, COND.replace(snr_db=snr)), direct.encode(x, COND.replace(snr_db=snr)))


def _generic_base(d: Path, shape: tuple[int, ...], **options) -> tuple[Any, Path]:
    """An untrained ``jscc_generic`` (width 16) and its checkpoint manifest in ``d``."""
    codec = build_codec("jscc_generic", shape, 1 / 6, checkpoint="none", width=16, **options)
    path = save_checkpoint(d, checkpoint_stem("jscc_generic", shape, 1 / 6),
                           {f"net.{k}": v for k, v in codec.net.state_dict().items()},
                           {"codec": "jscc_generic", "arch": codec.arch.to_json(), "bandwidth_ratio": 1 / 6,
                            "payload_shape": list(shape)})
    return codec, path


def _bank_checkpoint(d: Path, shape: tuple[int, ...], bank: CALABank, base: Path) -> Path:
    """A ``cala`` checkpoint of ``bank`` on the base checkpoint ``base``, its manifest section from the bank."""
    bm = json.loads(base.read_text())
    return save_checkpoint(d, checkpoint_stem("cala_generic", shape, 1 / 6),
                           {f"bank.{k}": v for k, v in bank.state_dict().items()},
                           {"codec": "cala", "arch": bm["arch"], "bandwidth_ratio": 1 / 6, "payload_shape": list(shape),
                            "cala": bank.settings(),
                            "base": {"file": bm["file"], "sha256": bm["sha256"], "codec": "jscc_generic"}})


def test_an_affine_bank_on_a_rate_adaptive_base_survives_the_pack(tmp_path):
    """The generic T-KA bank's layout: per-channel scales and shifts beside the rank-1 adapters, on a base
    that serves three rates. Unquantised, the rebuilt codec is bit-identical to the checkpoint's at every
    rate; at 8 bits close; the scales and shifts are quantised like the adapters; and the gate's weights
    change with the rate (its condition features carry it)."""
    shape, rates = (12, 4, 4), [1 / 24, 1 / 12, 1 / 6]
    d = tmp_path / "ckpt"
    base_codec, base = _generic_base(d, shape, rates=rates, init_seed=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        bank = CALABank(base_codec.net, ("enc.stem", "dec.out"), num_adapters=2, gate_hidden=8,
                        gate="snr_anchored", affine=True)
        with torch.no_grad():
            for group in (bank.b, bank.scale, bank.shift):
                for p in group.values():
                    p.normal_(0.0, 0.3)
    cala = _bank_checkpoint(d, shape, bank, base)
    direct = build_codec("cala", shape, 1 / 6, checkpoint=str(cala))
    x = _payload(shape)
    for bits in (None, 8):
        dd = save_pack(with_cala(_pack(), cala), tmp_path / f"pack{bits}", bits=bits)
        manifest = _manifest(dd)
        assert manifest["cala"]["affine"] is True
        pack = load_pack(dd)
        assert pack.cala.affine and {"scale.enc_stem", "shift.dec_out"} <= set(pack.cala.tensors)
        rebuilt = cala_codec_from_pack(pack, base)
        assert rebuilt.bank.affine and rebuilt.arch.rates == (8, 16, 32)  # of 192 real values
        if bits is not None:
            entry = next(f for f in manifest["files"] if f["name"] == quantised_cala_name(bits))
            assert entry["tensors"]["scale.enc_stem"]["stored"] == "quantised"
            assert entry["tensors"]["gate.0.weight"]["stored"] == "float16"
        for ratio in rates:
            rebuilt.set_rate(ratio)
            direct.set_rate(ratio)
            want = direct.encode(x, COND)
            got = rebuilt.encode(x, COND)
            assert got.shape == (4, round(ratio * math.prod(shape)))
            err = float((got - want).norm() / want.norm())
            assert (err == 0.0) if bits is None else (0.0 < err < 0.01), (bits, ratio, err)
    direct.set_rate(1 / 24)
    low = direct.gate_weights(COND)
    direct.set_rate(1 / 6)
    assert not torch.allclose(low, direct.gate_weights(COND), atol=1e-4)
    # a plain bank's manifest has no affine key: packs made before the option are unchanged
    plain = save_pack(with_cala(_pack(), SHIPPED_CALA), tmp_path / "plain")
    assert "affine" not in _manifest(plain)["cala"]
    # and a bank is refused on the plain base of another family
    with pytest.raises(ConfigError) as info:
        cala_codec_from_pack(load_pack(tmp_path / "packNone"), CHECKPOINT_DIR / "jscc_base-48x8x8-bw1_6.json")
    assert info.value.field == "pack.cala.base.sha256"


@pytest.mark.parametrize("factor", ["cp", "kron"])
def test_a_factored_bank_with_shared_components_survives_the_pack(tmp_path, factor):
    """Rank, factor (CP or Kronecker) and ungated (shared) components travel in the pack's manifest: the
    rebuilt codec is bit-identical to the checkpoint's, unquantised, at a low and a high SNR."""
    shape = (12, 4, 4)
    d = tmp_path / "ckpt"
    base_codec, base = _generic_base(d, shape, init_seed=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        bank = CALABank(base_codec.net, ("enc.res1", "dec.inp"), num_adapters=2, gate_hidden=8,
                        gate="snr_anchored", rank=2, factor=factor, shared_rank=3)
        with torch.no_grad():
            for p in bank.b.values():
                p.normal_(0.0, 0.3)
    cala = _bank_checkpoint(d, shape, bank, base)
    direct = build_codec("cala", shape, 1 / 6, checkpoint=str(cala))
    dd = save_pack(with_cala(_pack(), cala), tmp_path / "pack")
    assert {k: _manifest(dd)["cala"][k] for k in ("rank", "factor", "shared_rank")} == \
        {"rank": 2, "factor": factor, "shared_rank": 3}
    rebuilt = cala_codec_from_pack(load_pack(dd), base)
    assert rebuilt.bank.shared_rank == 3 and rebuilt.bank.a["enc_res1"].shape[0] == 2 * 2 + 3
    x = _payload(shape)
    for snr in (0.0, 20.0):
        assert torch.equal(rebuilt.encode(x, COND.replace(snr_db=snr)), direct.encode(x, COND.replace(snr_db=snr)))


def test_the_generation_fingerprint_ignores_the_bank_and_follows_metaword_and_lora(tmp_path, ckpt):
    """What keys the caches of generated latents (S_EG, a scenario's aligned-edge payload): packs that differ
    only in their CALA bank (or info) generate the same images, so they share it; the metaword, its
    embedding, the placement and every LoRA value change it, and so does quantising the LoRA (the applied
    tensors change)."""
    import dataclasses

    plain = _pack()
    want = plain.generation_fingerprint()
    with_bank = with_cala(plain, ckpt["cala"])
    assert with_bank.cala is not None and with_bank.generation_fingerprint() == want
    assert dataclasses.replace(plain, info={"note": "other"}).generation_fingerprint() == want
    assert load_pack(save_pack(with_bank, tmp_path / "p")).generation_fingerprint() == want
    lora = {k: v.clone() for k, v in plain.lora.items()}
    lora["a.to_q.lora_B.weight"][3, 1] += 1e-3
    changed = [dataclasses.replace(plain, lora=lora), dataclasses.replace(plain, metaword="<y*>"),
               dataclasses.replace(plain, metaword_embedding=plain.metaword_embedding + 1e-4),
               dataclasses.replace(plain, placement="prefix"),
               load_pack(save_pack(plain, tmp_path / "q8", bits=8))]
    prints = [p.generation_fingerprint() for p in changed]
    assert want not in prints and len(set(prints)) == len(prints)
