"""DeKA-g end to end on tiny models: systems in a scenario, the pack in every row, the cache, the report.

Toy cloud and edge LDMs (random, two DDIM steps), a tiny MAKD pack carrying the shipped generic CALA bank
(``cala_generic``, on the rate-adaptive ``jscc_generic``; the toy world is 32 px, so its latents are the
shipped 48x8x8 family's), two SNRs: seconds, not minutes.
No quality is asserted (the models are random); what is asserted is where every number comes from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dekasim.checksums import sha256_file
from dekasim.cli import main
from dekasim.metrics import interval_from_entry
from dekasim.scenarios import scenario_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")

SYSTEMS = [
    {"label": "DeKA-g", "edge": "aligned", "codec": "preinstalled", "bank": "pack"},
    {"label": "no alignment", "edge": "unaligned", "codec": "preinstalled"},
    {"label": "G-KA only", "edge": "aligned", "codec": "preinstalled"},
    {"label": "T-KA only", "edge": "unaligned", "codec": "preinstalled", "bank": "pack"},
    {"label": "analog", "edge": "aligned", "codec": "analog"},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Saved toy cloud and edge models and a MAKD pack (with the shipped CALA bank) aligning them."""
    from dekasim.codecs.jscc import CHECKPOINT_DIR
    from dekasim.deka.alignment import run_alignment
    from dekasim.generative.ldm import build_ldm
    from dekasim.generative.makd import AlignConfig
    from dekasim.generative.models import load_model

    d = tmp_path_factory.mktemp("deka")
    build_ldm("toy", seed=1, name="cloud-toy").save_pretrained(d / "cloud")
    build_ldm("toy", seed=2, name="edge-toy").save_pretrained(d / "edge")
    cfg = AlignConfig(n_train_images=2, n_val_prompts=2, n_test_prompts=4, n_control_prompts=2, budget_steps=2,
                      batch_size=2, eval_every=1, patience=2, sample_steps=2, seed=3, lora_rank=2)
    run_alignment(load_model(d / "cloud"), load_model(d / "edge"), cfg, d / "align", methods=("makd",), bits=(),
                  cala=CHECKPOINT_DIR / "cala_generic-48x8x8-bw1_6.json")
    return {"dir": d, "cloud": d / "cloud", "edge": d / "edge", "pack": d / "align" / "pack", "cache": d / "cache"}


def _raw(world: dict[str, Path], **payload) -> dict:
    return {"name": "tiny-deka", "seed": 5,
            "payload": {"kind": "deka", "cloud": str(world["cloud"]), "edge": str(world["edge"]),
                        "pack": str(world["pack"]), "n_subject_prompts": 4, "n_control_prompts": 2,
                        "sample_steps": 2, "cache_dir": str(world["cache"]), **payload},
            "sweep": {"snr_db": [0, 40], "delay_spread_ns": [300], "bandwidth_ratio": [1 / 6], "csi": ["perfect"]},
            "systems": SYSTEMS, "downlink": {"snr_db": [30], "mcs": 20},
            "monte_carlo": {"images_per_point": 6, "batch_size": 6}}


def _run(world, out: Path, **payload):
    from dekasim.sim import run_scenario

    return run_scenario(scenario_from_dict(_raw(world, **payload)), out_dir=out, progress=False, plots=False)


@pytest.fixture(scope="module")
def first(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    return _run(world, out)


def test_every_system_at_every_point_with_its_knowledge_and_pack_hash(world, first):
    rows = first.rows
    assert len(rows) == len(SYSTEMS) * 2
    assert {r["codec"] for r in rows} == {s["label"] for s in SYSTEMS}
    sha = sha256_file(world["pack"] / "manifest.json")
    by = {(r["codec"], r["snr_db"]): r for r in rows}
    for snr in (0, 40):
        facts = {label: by[(label, snr)]["system"] for label in ("DeKA-g", "no alignment", "G-KA only", "T-KA only")}
        assert facts["DeKA-g"] == {"edge": "aligned", "metaword": True, "g_lora": True, "cala": True,
                                   "pack_sha256": sha, "codec_checkpoint": "jscc_generic-48x8x8-bw1_6.safetensors"}
        assert facts["no alignment"]["pack_sha256"] is None
        assert not any(facts["no alignment"][k] for k in ("metaword", "g_lora", "cala"))
        assert facts["G-KA only"]["g_lora"] and not facts["G-KA only"]["cala"]
        assert facts["T-KA only"]["cala"] and not facts["T-KA only"]["metaword"]
        assert facts["T-KA only"]["pack_sha256"] == sha
        # paired: every system of a point sees the same channel and noise draws
        assert len({by[(s["label"], snr)]["seed"] for s in SYSTEMS}) == 1
    for r in rows:
        assert 0.0 <= r["attribute_agreement"] <= 1.0 and 0.0 <= r["all_attributes_agree"] <= 1.0
        assert -1.0 <= r["feature_cosine"] <= 1.0
        assert r["n_subject_images"] == 4 and r["consistency_control"] is not None
        assert set(r["timing_s"]) == {"codec", "channel", "metrics"}
        # intervals over the 4 subject prompts, inside each metric's range, recomputable from the row
        for metric, (a, b) in (("attribute_agreement", (0, 1)), ("all_attributes_agree", (0, 1)),
                               ("feature_cosine", (-1, 1))):
            entry = r["intervals"][metric]
            assert entry["unit"] == "prompt" and entry["n_units"] == 4
            lo, hi = r[f"{metric}_ci95"]
            assert a <= lo <= r[metric] <= hi <= b
            assert [interval_from_entry(entry).lo, interval_from_entry(entry).hi] == [lo, hi]
        # 2 control prompts: too few for the interval of a mean, said in a note
        ctrl = r["consistency_control"]
        assert ctrl["feature_cosine_ci95"] is None and "no interval" in ctrl["intervals"]["feature_cosine"]["note"]


def test_deka_rows_come_from_the_aligned_edge_and_the_packs_bank(world, first):
    from dekasim.codecs.cala import CALACodec
    from dekasim.generative.makd import apply_pack
    from dekasim.generative.models import load_model
    from dekasim.generative.pack import load_pack
    from dekasim.sim.runner import deka_payload

    scenario = scenario_from_dict(_raw(world))
    deka = deka_payload(scenario)
    pack = load_pack(world["pack"])
    aligned = apply_pack(load_model(world["edge"]), pack)
    with torch.no_grad():
        want = aligned.sample_latents(deka.prompts, deka.seeds, steps=2, guidance=1.5)
    assert torch.allclose(deka.latents["aligned"], want, atol=1e-5)
    assert not torch.allclose(deka.latents["unaligned"], want, atol=1e-3)  # the pack changed what the edge draws
    spec = next(s for s in scenario.codecs if s.label == "DeKA-g")
    codec = deka.build_codec(spec, (48, 8, 8), 1 / 6)
    assert isinstance(codec, CALACodec)
    for name, t in pack.cala.tensors.items():
        assert torch.equal(codec.bank.state_dict()[name].float(), t.float()), name
    # the bank changes the symbols the pre-installed JSCC sends (same latents, same condition)
    plain = deka.build_codec(next(s for s in scenario.codecs if s.label == "G-KA only"), (48, 8, 8), 1 / 6)
    from dekasim.conditions import Condition

    cond = Condition(snr_db=10.0, delay_spread_ns=300.0, bandwidth_ratio=1 / 6)
    x = deka.latents["aligned"][:2]
    assert not torch.allclose(codec.encode(x, cond), plain.encode(x, cond), atol=1e-4)


def test_systems_run_at_every_rate_the_preinstalled_jscc_serves(world, tmp_path):
    """The generic pre-installed JSCC serves 1/24, 1/12 and 1/6: a sweep over them sends 128 / 256 / 512
    symbols per image, with and without the bank; a rate it does not serve is one clean error."""
    from dekasim.errors import ConfigError
    from dekasim.sim import run_scenario
    from dekasim.sim.runner import deka_payload

    raw = _raw(world)
    raw.update(systems=SYSTEMS[:2], sweep={**raw["sweep"], "snr_db": [10], "bandwidth_ratio": [1 / 24, 1 / 12]},
               downlink={"simulate": False})
    res = run_scenario(scenario_from_dict(raw), out_dir=tmp_path, progress=False, plots=False)
    assert len(res.rows) == 4
    for row in res.rows:
        assert row["channel_uses"] == round(row["bandwidth_ratio"] * 48 * 64)
        assert row["system"]["codec_checkpoint"] == "jscc_generic-48x8x8-bw1_6.safetensors"
    scenario = scenario_from_dict(raw)
    deka = deka_payload(scenario)
    for spec in scenario.codecs:
        with pytest.raises(ConfigError, match="1/24, 1/12, 1/6") as info:
            deka.build_codec(spec, (48, 8, 8), 1 / 7)
        assert info.value.field == "sweep.bandwidth_ratio"


def test_end_to_end_metrics_equal_the_no_channel_consistency_on_a_clean_link(world, tmp_path):
    """Uncoded latents at one channel use per value, 60 dB, perfect CSI: the user gets the edge's image, so
    the user's consistency with the cloud is the edge's own (the report's no-channel figure), per edge."""
    from dekasim.sim import run_scenario

    raw = _raw(world)
    raw.update(systems=[{"label": "analog aligned", "edge": "aligned", "codec": "analog"},
                        {"label": "analog unaligned", "edge": "unaligned", "codec": "analog"}],
               sweep={**raw["sweep"], "snr_db": [60], "bandwidth_ratio": [1.0]}, downlink={"simulate": False})
    res = run_scenario(scenario_from_dict(raw), out_dir=tmp_path, progress=False, plots=False)
    for row in res.rows:
        ref = res.report["no_channel_consistency"][row["system"]["edge"]]["subject"]
        assert row["psnr_db"] > 45
        # random toy images sit on the checker's decision edges: a 45 dB perturbation may flip one of the
        # 4 x 5 attributes (0.05); the feature cosine is continuous
        assert abs(row["attribute_agreement"] - ref["attribute_agreement"]["mean"]) <= 0.05 + 1e-9
        assert row["feature_cosine"] == pytest.approx(ref["feature_cosine"]["mean"], abs=0.01)
    assert res.report["downlink"] == []


def test_report_has_the_simulated_downlink_and_broadcast(world, first):
    out = first.out_dir
    report = json.loads((out / "deka_report.json").read_text())
    from dekasim.deka.downlink import pack_bytes

    data = pack_bytes(world["pack"])
    (dl,) = report["downlink"]
    assert dl["delivered"] and dl["sha256_received"] == dl["sha256_sent"] and dl["n_bytes"] == len(data)
    assert dl["channel_uses"] >= dl["channel_uses_first_round"] > 0 and dl["mcs_index"] == 20
    rows = report["broadcast"]["rows"]
    assert [r["n_users"] for r in rows] == [1, 2, 4, 8, 16, 32, 64]
    assert rows[0]["broadcast_gain_mean"] == 1.0 and rows[-1]["broadcast_gain_mean"] > rows[1]["broadcast_gain_mean"]
    assert report["generation"]["sampled"] > 0 or report["generation"]["cache_hits"] > 0
    md = (out / "deka_report.md").read_text()
    assert "## The pack over the downlink" in md
    no_channel = [ln for ln in md.splitlines() if ln.startswith("| aligned | subject |")][0]
    assert "±" not in no_channel and no_channel.count("[") == 3  # bounded intervals, [lo, hi]


def test_rerun_samples_nothing_and_a_new_directory_reads_the_cache(world, first, tmp_path, capsys):
    from dekasim.sim import runner

    runner._CONTEXTS.clear()  # a new process: nothing in memory, everything on disk
    again = _run(world, first.out_dir)
    assert again.skipped == len(first.rows) and again.generation["sampled"] == 0
    assert again.generation["cache_hits"] == 3 * 6  # unaligned edge, aligned edge, cloud: 6 prompts each
    runner._CONTEXTS.clear()
    other = _run(world, tmp_path / "elsewhere")
    assert other.generation["sampled"] == 0
    assert {(r["codec"], r["snr_db"], r["psnr_db"]) for r in other.rows} == \
        {(r["codec"], r["snr_db"], r["psnr_db"]) for r in first.rows}


def test_systems_need_a_deka_payload_and_known_fields(world, tmp_path):
    from dekasim.errors import ConfigError

    raw = _raw(world)
    bad = {**raw, "systems": [{"label": "x", "edge": "cloud", "codec": "preinstalled"}]}
    with pytest.raises(ConfigError, match="systems\\[0\\].edge"):
        scenario_from_dict(bad)
    bad = {**raw, "systems": [{"label": "x", "codec": "analog", "bank": "pack"}]}
    with pytest.raises(ConfigError, match="systems\\[0\\].bank"):
        scenario_from_dict(bad)
    bad = {**raw, "payload": {"kind": "photos"}}
    with pytest.raises(ConfigError, match="systems"):
        scenario_from_dict(bad)
    toml = tmp_path / "s.toml"
    toml.write_text(f'name = "x"\n[payload]\nkind = "deka"\npack = "{tmp_path}/nowhere"\n[sweep]\nsnr_db = [0]\n'
                    '[[systems]]\ncodec = "preinstalled"\n')
    assert main(["validate", str(toml)]) == 2


@pytest.mark.slow
def test_ray_workers_give_the_local_rows_from_the_shared_cache(world, first, tmp_path):
    """Ray workers build their own payload from the cache the driver filled: the same rows as locally."""
    pytest.importorskip("ray")
    from dekasim.sim import run_scenario

    raw = _raw(world)
    raw["downlink"] = {"simulate": False}
    res = run_scenario(scenario_from_dict(raw), out_dir=tmp_path, progress=False, plots=False, executor="ray",
                       num_cpus=2)
    assert res.generation["sampled"] == 0

    def key(rows):
        return sorted((r["point_id"], r["psnr_db"], r["attribute_agreement"], r["feature_cosine"]) for r in rows)

    assert key(res.rows) == key(first.rows)


def test_local_image_encoders_add_their_cosine_to_every_row(world, tmp_path):
    """payload.image_encoders (DINO/CLIP from a local directory; here a tiny random CLIP) adds
    <name>_cosine next to the world's metrics, in the rows and in the no-channel reference."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from dekasim.errors import ConfigError
    from dekasim.sim import run_scenario

    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                                     image_size=16, patch_size=8)).save_pretrained(tmp_path / "clip")
    raw = _raw(world, image_encoders={"clip": str(tmp_path / "clip")})
    raw.update(systems=[{"label": "analog", "edge": "aligned", "codec": "analog"}],
               sweep={**raw["sweep"], "snr_db": [60], "bandwidth_ratio": [1.0]}, downlink={"simulate": False})
    res = run_scenario(scenario_from_dict(raw), out_dir=tmp_path / "out", progress=False, plots=False)
    (row,) = res.rows
    ref = res.report["no_channel_consistency"]["aligned"]["subject"]["clip_cosine"]["mean"]
    assert row["clip_cosine"] == pytest.approx(ref, abs=1e-3) and row["clip_cosine_ci95"] is not None
    assert "clip_cosine" in row["consistency_control"]
    with pytest.raises(ConfigError, match="image_encoders.dino"):
        scenario_from_dict(_raw(world, image_encoders={"dino": str(tmp_path / "no-such-model")}))


def test_report_prices_images_at_each_rate_of_the_sweep(world, tmp_path):
    """At 1/12 an image costs the pre-installed JSCC 256 symbols (the rows' channel_uses), at 1/6 512: the
    report prices the pack's downlink at each, one pay-off row per (Es/N0, rate)."""
    import math

    from dekasim.sim import run_scenario

    raw = _raw(world)
    raw.update(systems=SYSTEMS[:1], sweep={**raw["sweep"], "snr_db": [10], "bandwidth_ratio": [1 / 12, 1 / 6]})
    res = run_scenario(scenario_from_dict(raw), out_dir=tmp_path, progress=False, plots=False)
    report = json.loads((tmp_path / "deka_report.json").read_text())
    prices = {p["rate"]: p["channel_uses"] for p in report["image_channel_uses"]}
    assert prices == {"1/12": 256, "1/6": 512}
    by_ratio = {p["bandwidth_ratio"]: p["channel_uses"] for p in report["image_channel_uses"]}
    assert sorted(r["channel_uses"] for r in res.rows) == [256, 512]
    for row in res.rows:
        assert by_ratio[row["bandwidth_ratio"]] == row["channel_uses"]
    (dl,) = report["downlink"]
    payoff = {(r["snr_db"], r["rate"]): r for r in report["payoff"]["by_snr_and_rate"]}
    assert set(payoff) == {(30.0, "1/12"), (30.0, "1/6")}
    for rate, n in prices.items():
        r = payoff[(30.0, rate)]
        assert r["image_channel_uses"] == n and r["pack_channel_uses"] == dl["channel_uses"]
        assert r["images_for_100pct"] == math.ceil(dl["channel_uses"] / n)
        assert r["images_for_1pct"] == math.ceil(dl["channel_uses"] / n * 100)
        assert dl["images_equivalent"][rate] == pytest.approx(dl["channel_uses"] / n)
    # an image at 1/12 costs half as much: the pack pays off after about twice as many images
    assert payoff[(30.0, "1/12")]["images_for_1pct"] >= 2 * payoff[(30.0, "1/6")]["images_for_1pct"] - 1
    md = (tmp_path / "deka_report.md").read_text()
    assert "256 channel uses at 1/12, 512 channel uses at 1/6" in md and "| 30 | 1/12 | 256 |" in md
    # a report of the old layout (one price for every rate) is not served to a rerun: it is written again
    from dekasim.deka.report import read_deka_report

    old = {k: v for k, v in report.items() if k != "report_version"}
    (tmp_path / "deka_report.json").write_text(json.dumps(old))
    assert read_deka_report(tmp_path, report["scenario_hash"]) is None
    assert read_deka_report(tmp_path.parent, report["scenario_hash"]) is None


def _toml(world, path: Path, ratios: str, cache: Path) -> Path:
    path.write_text(f'''name = "tiny-deka-cli"
seed = 5
[payload]
kind = "deka"
cloud = "{world['cloud']}"
edge = "{world['edge']}"
pack = "{world['pack']}"
n_subject_prompts = 4
n_control_prompts = 2
sample_steps = 2
cache_dir = "{cache}"
[sweep]
snr_db = [10]
delay_spread_ns = [300]
bandwidth_ratio = {ratios}
csi = ["perfect"]
[[systems]]
label = "DeKA-g"
edge = "aligned"
codec = "preinstalled"
bank = "pack"
[downlink]
simulate = false
[monte_carlo]
images_per_point = 6
batch_size = 6
''')
    return path


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_validate_refuses_a_rate_the_preinstalled_jscc_does_not_serve_before_sampling(world, tmp_path, capsys):
    """validate runs run's checks: 0.5 (not served) is refused by both, in the same line, before any sampling
    or writing; 0.0833333 (256 symbols of 3072, as every codec rounds it) is accepted by both."""
    from dekasim.scenarios import load_scenario
    from dekasim.sim.runner import check_scenario

    cache = tmp_path / "cache"
    toml = _toml(world, tmp_path / "s.toml", "[0.5]", cache)
    capsys.readouterr()
    assert main(["validate", str(toml)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "sweep.bandwidth_ratio = 0.5" in line and "1/24, 1/12, 1/6" in line and str(toml) in line
    out = tmp_path / "out"
    assert main(["run", str(toml), "--out", str(out), "--no-progress", "--no-plots"]) == 2
    assert _one_line(capsys.readouterr().err) == line
    assert not cache.exists() and not out.exists()  # nothing sampled, nothing written
    approx = _toml(world, tmp_path / "approx.toml", "[0.0833333]", cache)
    assert main(["validate", str(approx)]) == 0
    checked = check_scenario(load_scenario(approx))
    (codec,) = checked.codecs.values()
    assert codec.n_channel_uses == 256 and not cache.exists()


def test_validate_checks_the_packs_bank_options_and_registered_codecs(world, tmp_path):
    """Options of the pack's bank and of any codec beside it are refused by validate under their full key."""
    from dekasim.errors import ConfigError
    from dekasim.sim import validate_scenario

    raw = _raw(world, cache_dir=str(tmp_path / "cache"))
    raw["systems"] = [{"label": "DeKA-g", "edge": "aligned", "codec": "preinstalled", "bank": "pack",
                       "options": {"no_such_option": 1}}]
    with pytest.raises(ConfigError) as info:
        validate_scenario(scenario_from_dict(raw))
    assert info.value.field.startswith("systems[DeKA-g].options")
    raw["systems"] = [{"label": "dig", "edge": "aligned", "codec": "digital", "options": {"mcs": 2}}]
    with pytest.raises(ConfigError) as info:
        validate_scenario(scenario_from_dict(raw))
    assert info.value.field == "systems[dig].options.mcs"
    raw["systems"] = SYSTEMS[:1]
    raw["downlink"] = {"snr_db": [10], "mcs": 1}  # code rate below 1/5: the chain cannot send it
    with pytest.raises(ConfigError) as info:
        validate_scenario(scenario_from_dict(raw))
    assert info.value.field == "downlink.mcs"
    assert not (tmp_path / "cache").exists()


def test_a_refused_run_leaves_out_as_found_and_the_corrected_command_succeeds(world, tmp_path, capsys):
    """The issue's repro: a ratio the pre-installed JSCC does not serve is refused (exit 2, one line); the
    corrected command then runs into the same --out instead of being refused as 'a different scenario'."""
    from dekasim.sim import read_rows

    toml = _toml(world, tmp_path / "s.toml", "[0.08333333333333333]", tmp_path / "cache")
    out = tmp_path / "out"
    argv = ["run", str(toml), "--out", str(out), "--no-progress", "--no-plots"]
    capsys.readouterr()
    assert main([*argv, "--set", "sweep.bandwidth_ratio=[0.5]"]) == 2
    assert "sweep.bandwidth_ratio = 0.5" in _one_line(capsys.readouterr().err)
    assert not out.exists()
    assert main(argv) == 0
    (row,) = read_rows(out)
    assert row["channel_uses"] == 256
    report = json.loads((out / "deka_report.json").read_text())
    assert report["image_channel_uses"] == [{"bandwidth_ratio": 1 / 12, "rate": "1/12", "channel_uses": 256}]
