"""The knowledge pack's simulated downlink (ARQ over the OFDM link) and broadcast vs. unicast."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from dekasim.channels import OFDMLink
from dekasim.channels.grid import GridConfig
from dekasim.codecs import mcs as M
from dekasim.conditions import Condition
from dekasim.deka.downlink import broadcast_sweep, broadcast_vs_unicast, pack_bytes, simulate_downlink
from dekasim.errors import ConfigError
from dekasim.generative.pack import EMBEDS_NAME, FORMAT_VERSION, KIND, LORA_NAME, MANIFEST_NAME, pack_size_bytes

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def link() -> OFDMLink:
    return OFDMLink(GridConfig(), "perfect", 3.5e9)


def test_pack_bytes_is_manifest_then_files_in_order(tmp_path):
    files = {LORA_NAME: os.urandom(300), EMBEDS_NAME: os.urandom(100)}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    manifest = json.dumps({"kind": KIND, "format_version": FORMAT_VERSION, "bits": None,
                           "files": [{"name": n} for n in files]}).encode()
    (tmp_path / MANIFEST_NAME).write_bytes(manifest)
    got = pack_bytes(tmp_path)
    assert got == manifest + files[LORA_NAME] + files[EMBEDS_NAME]
    assert len(got) == pack_size_bytes(tmp_path)


def test_downlink_blocks_match_downlink_channel_uses():
    for n_bytes in (0, 1, 325, 3000, 20_000):
        blocks = M.downlink_blocks(8 * n_bytes, 16)
        assert sum(p.n_channel_uses for p in blocks) == M.downlink_channel_uses(n_bytes, 16)
        assert sum(p.info_bits for p in blocks) >= 8 * n_bytes
        assert all(p.n_channel_uses == M.DOWNLINK_BLOCK_CHANNEL_USES for p in blocks[:-1])


def test_high_snr_delivers_in_one_round(link):
    data = np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    r = simulate_downlink(data, 16, Condition(snr_db=30, delay_spread_ns=30, tdl_profile="C"), link, seed=11)
    assert r.delivered and r.rounds == 1 and r.residual_block_errors == 0 and r.first_round_bler == 0.0
    assert r.channel_uses == r.channel_uses_first_round == M.downlink_channel_uses(3000, 16)
    assert r.transmissions == r.n_blocks == len(M.downlink_blocks(8 * 3000, 16))
    assert r.sha256_received == r.sha256_sent == hashlib.sha256(data).hexdigest()
    json.dumps(r.as_dict())


def test_low_snr_retransmits(link):
    data = np.random.default_rng(4).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    r = simulate_downlink(data, 16, Condition(snr_db=5, delay_spread_ns=300, tdl_profile="C"), link, seed=12,
                          max_rounds=3, batch_blocks=2)
    assert r.first_round_bler > 0 and r.rounds > 1 and r.transmissions > r.n_blocks
    assert r.channel_uses > r.channel_uses_first_round == M.downlink_channel_uses(1000, 16)
    assert r.delivered == (r.residual_block_errors == 0) == (r.sha256_received == r.sha256_sent)


def test_broadcast_vs_unicast():
    one = broadcast_vs_unicast(50_000, [12.0])
    assert one["broadcast_channel_uses"] == one["unicast_channel_uses"] and one["broadcast_gain"] == 1.0
    snrs = [2.0, 8.0, 15.0, 22.0]
    r = broadcast_vs_unicast(50_000, snrs, n_channel_uses_per_image=256)
    worst = M.select_mcs(min(snrs), M.DOWNLINK_BLOCK_CHANNEL_USES).index
    assert r["broadcast_mcs_index"] == worst == min(r["mcs_indices"])
    assert r["broadcast_channel_uses"] == M.downlink_channel_uses(50_000, worst)
    assert r["unicast_channel_uses"] == sum(M.downlink_channel_uses(50_000, i) for i in r["mcs_indices"])
    assert r["broadcast_channel_uses_per_user"] < r["unicast_channel_uses_per_user"] and r["broadcast_gain"] > 1
    assert r["broadcast_images"] == r["broadcast_channel_uses"] / 256
    low = broadcast_vs_unicast(1000, [-20.0, 10.0])
    assert low["n_users_below_lowest_mcs"] == 1 and low["users"][0]["below_lowest_mcs"]
    assert low["broadcast_mcs_index"] == M.supported_mcs_indices(M.DOWNLINK_BLOCK_CHANNEL_USES)[0]
    json.dumps(r)


def test_broadcast_sweep():
    rows = broadcast_sweep(20_000, users=(1, 2, 8), draws=20, seed=1)
    assert [row["n_users"] for row in rows] == [1, 2, 8]
    assert rows[0]["broadcast_per_user_mean"] == rows[0]["unicast_per_user_mean"]
    for row in rows[1:]:
        assert row["broadcast_per_user_mean"] < row["unicast_per_user_mean"]
    assert rows[2]["broadcast_gain_mean"] > rows[1]["broadcast_gain_mean"] > 1
    assert broadcast_sweep(20_000, users=(2,), draws=20, seed=1)[0] == rows[1]  # a row is independent of the others


def test_errors(link):
    cond = Condition(snr_db=20, tdl_profile="awgn")
    for bad in (29, -1, 0, "16"):  # reserved, negative, rate below 1/5 (no repetition), not an int
        with pytest.raises(ConfigError) as e:
            simulate_downlink(b"abc", bad, cond, link, seed=0)
        assert e.value.field == "mcs_index"
    with pytest.raises(ConfigError, match="max_rounds"):
        simulate_downlink(b"abc", 16, cond, link, seed=0, max_rounds=0)
    with pytest.raises(ConfigError, match="user_snrs_db"):
        broadcast_vs_unicast(100, [])
    with pytest.raises(ConfigError, match="n_bytes"):
        broadcast_vs_unicast(0, [10.0])


def test_cached_link_adaptation_equals_select_mcs():
    """The broadcast sweep's threshold cache picks exactly the MCS select_mcs picks, at any Es/N0 and margin."""
    from dekasim.deka.downlink import _select_index

    for margin in (0.0, 2.5):
        for snr in np.arange(-6.0, 32.0, 0.37):
            assert _select_index(float(snr), 1024, "qam64", margin) == M.select_mcs(float(snr), 1024, "qam64", margin).index
