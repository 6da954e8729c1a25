"""The edge serving many users: popularity law, broadcast merging, received packs, failed fetches, accounting,
seeds, the catalogue, and the command's bad-input line."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dekasim.cli import main
from dekasim.codecs import mcs
from dekasim.deka.downlink import pack_bytes
from dekasim.deka.edge_catalogue import (DEFAULT_CATALOGUE, expand_catalogue, load_catalogue, popularity)
from dekasim.deka.edge_users import (DownlinkOutcomes, EdgeConfig, EdgeSettings, LinkSettings, UserSnrLaw,
                                     draw_requests, draw_users, simulate_edge)
from dekasim.deka.edge_users_report import FLAGS, run_edge_users
from dekasim.errors import ConfigError
from dekasim.generative.pack import CALA_NAME, EMBEDS_NAME, FORMAT_VERSION, KIND, LORA_NAME, MANIFEST_NAME

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


def _pack(d: Path, seed: int = 0, n: int = 1500) -> Path:
    """A small pack directory (random file bytes, a valid manifest with a CALA bank file)."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = {LORA_NAME: n, EMBEDS_NAME: 200, CALA_NAME: 300}
    for name, size in files.items():
        (d / name).write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    (d / MANIFEST_NAME).write_text(json.dumps({"kind": KIND, "format_version": FORMAT_VERSION, "bits": None,
                                               "cala": {}, "files": [{"name": k} for k in files]}))
    return d


def _catalogue(tmp: Path, packs: list[Path], aligned: float = 0.9, unaligned: float = 0.3) -> Path:
    subjects = [{"subject": f"s{i}", "pack": str(p), "consistency_aligned": aligned,
                 "consistency_unaligned": unaligned, "metric": "feature_cosine", "source": "test"}
                for i, p in enumerate(packs)]
    path = tmp / "catalogue.json"
    path.write_text(json.dumps({"subjects": subjects}))
    return path


def _fake(delivered: bool = True, factor: float = 1.5):
    """A stand-in for simulate_downlink: channel uses = factor x the first-round price; delivered or not."""
    calls = []

    def simulate(data, mcs_index, cond, link, *, seed, max_rounds, table):
        calls.append((mcs_index, cond.snr_db, seed))
        first = mcs.downlink_channel_uses(len(data), mcs_index, table)
        h = hashlib.sha256(data).hexdigest()
        return SimpleNamespace(channel_uses=int(first * factor), channel_uses_first_round=first, n_blocks=1,
                               transmissions=1, rounds=2, first_round_bler=0.3,
                               residual_block_errors=0 if delivered else 1,
                               delivered=delivered, sha256_sent=h, sha256_received=h if delivered else "0" * 64,
                               runtime_s=0.0)
    simulate.calls = calls
    return simulate


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge")
    real, _ = load_catalogue(_catalogue(tmp, [_pack(tmp / "p0", 0), _pack(tmp / "p1", 1, 2500)]))
    return tmp, real


def test_zipf_frequencies_match_the_law_within_binomial_tolerance():
    settings = EdgeSettings(slots=4000, seed=3)
    for s in (0.0, 0.8, 1.2):
        req = draw_requests(settings, 5, 16, s, replication=0)
        n = req.size
        p = popularity(16, s)
        counts = np.bincount(req.ravel(), minlength=16)
        z = (counts - n * p) / np.sqrt(n * p * (1 - p))
        assert np.all(np.abs(z) < 4.5), (s, z)
    assert np.allclose(popularity(4, 1.0), np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (25 / 12))
    assert np.allclose(popularity(5, 0.0), 0.2)


def test_users_and_requests_are_common_random_numbers_across_configurations():
    settings = EdgeSettings(slots=50, seed=1)
    assert np.array_equal(draw_users(settings, 8, 2)[:3], draw_users(settings, 3, 2))
    assert np.array_equal(draw_requests(settings, 8, 16, 1.2, 2)[:3], draw_requests(settings, 3, 16, 1.2, 2))
    assert not np.array_equal(draw_requests(settings, 3, 16, 1.2, 2), draw_requests(settings, 3, 16, 1.2, 3))
    snr = draw_users(EdgeSettings(seed=0), 500, 0)
    assert set(np.unique(snr)) <= {5.0, 10.0, 15.0} and 0.35 < np.mean(snr == 10.0) < 0.6


def test_two_users_missing_the_same_pack_in_one_slot_share_one_broadcast(small):
    _, real = small
    settings = EdgeSettings(slots=4, pack_channel_uses_per_slot=10**9)
    sim = _fake()
    out = DownlinkOutcomes(settings.link, 0, simulate=sim)
    r = simulate_edge(EdgeConfig(2, 10**6, "lru", 0.0), settings, real, out, snr_db=np.array([5.0, 15.0]),
                      requests=np.zeros((2, 4), dtype=int))
    e, u = r["edge"], r["users"]
    worst = settings.link.mcs_index(5.0)
    assert e["fetches_started"] == 1 and e["group_size_sum"] == 2 and e["fetch_mcs"] == {str(worst): 1}
    assert sim.calls[0][:2] == (worst, 5.0)           # the worst user's MCS and Es/N0
    cu = e["fetch_channel_uses"]
    assert u["broadcast_channel_uses"] == [cu / 2, cu / 2] and u["bank_channel_uses"] == [0, 0]
    assert u["aligned_requests"] == [3, 3] and u["delay_slots_sum"] == [1, 1]  # served aligned from slot 1
    assert u["consistency"] == pytest.approx([(0.3 + 3 * 0.9) / 4] * 2)


def test_a_user_joining_in_flight_gets_the_bank_by_unicast_at_its_own_mcs(small):
    _, real = small
    settings = EdgeSettings(slots=8, pack_channel_uses_per_slot=max(1, mcs.downlink_channel_uses(
        real[0].pack.size_bytes, settings_mcs := LinkSettings().mcs_index(10.0)) // 2))
    out = DownlinkOutcomes(settings.link, 0, simulate=_fake(factor=1.0))
    req = np.array([[0] * 8, [1, 0, 0, 0, 0, 0, 0, 0]])   # user 1 asks for subject 0 from slot 1: in flight
    r = simulate_edge(EdgeConfig(2, 10**6, "lru", 0.0), settings, real, out, snr_db=np.array([10.0, 10.0]),
                      requests=req)
    u = r["users"]
    assert u["broadcasts_heard"][0] >= 1 and u["bank_unicasts"][1] == 1
    assert u["bank_channel_uses"][1] == mcs.downlink_channel_uses(real[0].pack.bank_bytes, settings_mcs)
    assert u["delayed_requests"][1] >= 1


def test_every_user_receives_the_packs_bytes_intact(small):
    """A real simulate_downlink (perfect CSI, 30 dB) of a real pack's bytes: what each user's decoder holds
    has the sha256 of pack_bytes(dir)."""
    _, real = small
    settings = EdgeSettings(slots=3, snr=UserSnrLaw(30.0, 0.0, 1.0, 30.0, 30.0), pack_channel_uses_per_slot=10**9,
                            link=LinkSettings(csi="perfect", mcs_margin_db=0.0, outcomes_per_key=1, tdl_profile="C",
                                              delay_spread_ns=30.0))
    out = DownlinkOutcomes(settings.link, 0)
    r = simulate_edge(EdgeConfig(3, 10**6, "lru", 0.0), settings, real, out, requests=np.zeros((3, 3), dtype=int))
    want = hashlib.sha256(pack_bytes(real[0].pack.directory)).hexdigest()
    assert all(d == {real[0].pack_key: want} for d in r["received"])
    assert r["users"]["broadcasts_heard"] == [1, 1, 1] and r["edge"]["fetches_delivered"] == 1
    (o,) = next(iter(out.entries.values()))["outcomes"]
    assert o["delivered"] and o["sha256_received"] == o["sha256_sent"] == want


def test_an_undelivered_fetch_leaves_users_unaligned_and_is_retried(small):
    _, real = small
    settings = EdgeSettings(slots=10, pack_channel_uses_per_slot=10**9)
    out = DownlinkOutcomes(settings.link, 0, simulate=_fake(delivered=False))
    r = simulate_edge(EdgeConfig(2, 10**6, "lru", 0.0), settings, real, out, snr_db=np.array([10.0, 10.0]),
                      requests=np.zeros((2, 10), dtype=int))
    u, e = r["users"], r["edge"]
    assert u["aligned_requests"] == [0, 0] and u["consistency"] == pytest.approx([0.3, 0.3])
    assert e["fetches_delivered"] == 0 and e["fetches_failed"] == 9 and e["fetches_started"] == 10
    assert u["censored_requests"] == [10, 10] and u["delayed_requests"] == [0, 0]
    assert r["received"] == [{}, {}] and e["adapter_loads"] == 0


@pytest.mark.parametrize("policy, cache", [("lru", 5000), ("lfu", 5000), ("lru", 0), ("lfu", 10**6)])
def test_total_channel_uses_are_the_sum_over_users(small, policy, cache):
    _, real = small
    subjects = expand_catalogue(real, 6)
    settings = EdgeSettings(slots=60, pack_channel_uses_per_slot=20_000, seed=5)
    out = DownlinkOutcomes(settings.link, 0, simulate=_fake())
    r = simulate_edge(EdgeConfig(7, cache, policy, 0.8), settings, subjects, out, replication=1)
    u, e = r["users"], r["edge"]
    per_user = [c * settings.slots for c in u["channel_uses_per_image"]]
    assert math.isclose(math.fsum(per_user), e["total_channel_uses"], rel_tol=1e-12)
    assert e["total_channel_uses"] == e["image_channel_uses"] + e["fetch_channel_uses"] + e["bank_channel_uses"]
    assert math.isclose(math.fsum(u["broadcast_channel_uses"]), e["fetch_channel_uses"], rel_tol=1e-12)
    assert sum(u["bank_channel_uses"]) == e["bank_channel_uses"]
    assert e["fetches_started"] >= e["fetches_delivered"] > 0


def test_adding_a_configuration_changes_no_other(small):
    _, real = small
    subjects = expand_catalogue(real, 4)
    settings = EdgeSettings(slots=40, replications=3, pack_channel_uses_per_slot=30_000)
    a = EdgeConfig(3, 5000, "lru", 1.2)
    b = EdgeConfig(5, 5000, "lfu", 0.0)
    one = run_edge_users([a], settings, subjects, DownlinkOutcomes(settings.link, 0, simulate=_fake()))
    two = run_edge_users([b, a], settings, subjects, DownlinkOutcomes(settings.link, 0, simulate=_fake()))
    assert one["configurations"][0]["replications"] == two["configurations"][1]["replications"]
    assert one["configurations"][0]["summary"] == two["configurations"][1]["summary"]
    assert all(r["received_sha256_ok"] for r in one["configurations"][0]["replications"])


def test_catalogue_expansion_and_its_errors(small, tmp_path):
    tmp, real = small
    subjects = expand_catalogue(real, 5)
    assert [s.subject for s in subjects] == ["s0", "s1", "s0~1", "s1~1", "s0~2"]
    assert len({s.pack_key for s in subjects}) == 5 and subjects[2].pack == real[0].pack
    assert subjects[2].copy_of == "s0" and subjects[0].copy_of is None
    shared, _ = load_catalogue(_catalogue(tmp_path, [tmp / "p0", tmp / "p0"]))
    assert shared[0].pack_key == shared[1].pack_key          # one pack, one cache entry
    with pytest.raises(ConfigError) as e:
        load_catalogue(_catalogue(tmp_path, [tmp / "p0", tmp_path / "missing"]))
    assert e.value.field == "catalogue.subjects[1].pack"
    with pytest.raises(ConfigError) as e:
        load_catalogue(_catalogue(tmp_path, [tmp / "p0"], aligned=1.5))
    assert e.value.field == "catalogue.subjects[0].consistency_aligned"


def test_the_default_catalogue_quotes_its_sources():
    """The two real subjects quote their packs' records: the aligned consistency of each SHIPPED.json, the
    unaligned edge's on the same prompts (for triangle the figure plots/generic_vs_world.json also holds)."""
    real, _ = load_catalogue()
    tri, pur = real
    assert (tri.subject, pur.subject) == ("triangle", "purple")
    world = json.loads((ROOT / "plots" / "generic_vs_world.json").read_text())
    assert tri.consistency_unaligned == pytest.approx(
        world["paths"]["world path"]["methods"]["none"]["test_feature_cosine"]["mean"], abs=1e-4)
    for s in real:
        d = DEFAULT_CATALOGUE.parent / f"pack-{s.subject}"
        shipped = json.loads((d / "SHIPPED.json").read_text())
        assert s.consistency_aligned == shipped["test_consistency"]["feature_cosine"]["mean"]
        assert s.pack.size_bytes == shipped["size_bytes"] and s.pack.bank_bytes == os.path.getsize(
            d / "cala_bank.q8.safetensors")
    assert pur.consistency_unaligned == json.loads((DEFAULT_CATALOGUE.parent / "pack-purple" / "SHIPPED.json")
                                                   .read_text())["unaligned_test_consistency"]["feature_cosine"]["mean"]


@pytest.mark.parametrize("argv, flag", [(["--policy", "lru,fifo"], "--policy"),
                                        (["--cache-bytes", "-1"], "--cache-bytes"),
                                        (["--zipf", "-0.5"], "--zipf"), (["--users", "0"], "--users"),
                                        (["--slots", "0"], "--slots"), (["--catalogue-size", "0"], "--catalogue-size")])
def test_bad_input_is_one_line_naming_the_key_and_exit_2(tmp_path, capsys, argv, flag):
    assert main(["edge-users", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dekasim: error: {flag} = ") and "Fix:" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_catalogue_with_a_missing_pack_is_one_line_and_exit_2(tmp_path, capsys):
    cat = _catalogue(tmp_path, [tmp_path / "nowhere"])
    assert main(["edge-users", "--out", str(tmp_path / "o"), "--catalogue", str(cat)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "catalogue.subjects[0].pack = " in line and "nowhere" in line and "Fix:" in line


def test_the_command_writes_results_table_and_figures(small, tmp_path, capsys):
    tmp, _ = small
    cat = _catalogue(tmp_path, [tmp / "p0"])
    out = tmp_path / "run"
    args = ["edge-users", "--out", str(out), "--catalogue", str(cat), "--catalogue-size", "3", "--users", "1,4",
            "--cache-bytes", "4000", "--policy", "lru,lfu", "--zipf", "0,1.2", "--slots", "30", "--replications", "3",
            "--snr-db", "30", "--snr-std-db", "0", "--snr-min-db", "30", "--snr-max-db", "30", "--mcs-margin-db", "0",
            "--downlink-outcomes", "1", "--csi", "perfect", "--delay-spread-ns", "30", "--adapter-timing", "skip",
            "--pack-channel-uses-per-slot", "2000"]
    assert main(args) == 0
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["configurations"]) == 8 and doc["catalogue"]["modelled_copies"] == 2
    row = doc["configurations"][0]
    assert set(row["summary"]) >= {"channel_uses_per_image", "consistency", "delay_slots", "switches_per_image"}
    assert row["summary"]["consistency"]["interval"]["unit"] == "replication"
    assert len(row["replications"]) == 3 and len(row["replications"][0]["users"]["snr_db"]) == row["users"]
    md = (out / "edge_users.md").read_text()
    assert "| U | cache | policy |" in md and "modelled copies" in md
    for stem in ("edge_users_channel_uses", "edge_users_consistency", "edge_users_payoff"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
    assert main(args) == 0                       # a rerun reuses the simulated fetches
    assert json.loads((out / "results.json").read_text())["downlink"]["simulated_s"] == 0


def test_adapter_costs_are_measured_on_the_shipped_edge():
    from dekasim.deka.edge_adapters import measure_adapter_costs

    c = measure_adapter_costs([DEFAULT_CATALOGUE.parent / "pack-triangle", DEFAULT_CATALOGUE.parent / "pack-purple"],
                              repeats=2, sample_repeats=1)
    for k in ("set_adapter_ms", "set_adapters_ms", "disable_adapters_ms", "enable_adapter_ms", "fuse_ms", "unfuse_ms",
              "load_pack_ms", "load_adapter_ms", "delete_adapter_ms"):
        assert c[k]["n"] == 2 and 0 < c[k]["min_ms"] <= c[k]["median_ms"] <= c[k]["max_ms"], k
    assert set(c["sample_ms"]) == {"none", "unmerged", "merged"} and c["cpu"]
    # merging changes nothing; the pack does change the latents
    assert c["merged_max_abs_diff"] < 1e-3 < c["adapter_vs_none_max_abs_diff"]


def test_the_command_line_defaults_are_the_librarys():
    from dekasim.cli import _parser

    args = _parser().parse_args(["edge-users", "--out", "x"])
    assert args.adapter_timing == "measure"
    d = EdgeSettings()
    want = {"slots": d.slots, "replications": d.replications, "image_channel_uses": d.image_channel_uses,
            "pack_channel_uses_per_slot": d.pack_channel_uses_per_slot, "serve_order": d.serve_order,
            "catalogue_size": d.catalogue_size, "seed": d.seed, "snr_db": d.snr.mean_db, "snr_std_db": d.snr.std_db,
            "snr_step_db": d.snr.step_db, "snr_min_db": d.snr.min_db, "snr_max_db": d.snr.max_db,
            "tdl_profile": d.link.tdl_profile, "delay_spread_ns": d.link.delay_spread_ns, "csi": d.link.csi,
            "mcs_margin_db": d.link.mcs_margin_db, "downlink_outcomes": d.link.outcomes_per_key}
    assert {k: getattr(args, k) for k in want} == want
    assert {f"--{k.replace('_', '-')}" for k in want} == set(FLAGS.values())  # every flag checked
