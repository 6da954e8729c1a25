"""5G MCS tables, code block plans against Sionna's limits, the required-SNR table, link adaptation."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from dekasim.codecs import mcs as M
from dekasim.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """BP decoding of small batches gains nothing from a second thread and loses 3-10x when the
    other core is busy; these tests run on one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("table,index,qm,r,se", [
    # TS 38.214 Table 5.1.3.1-1
    ("qam64", 0, 2, 120, 0.2344), ("qam64", 5, 2, 379, 0.7402), ("qam64", 9, 2, 679, 1.3262),
    ("qam64", 10, 4, 340, 1.3281), ("qam64", 16, 4, 658, 2.5703), ("qam64", 17, 6, 438, 2.5664),
    ("qam64", 23, 6, 719, 4.2129), ("qam64", 28, 6, 948, 5.5547),
    # TS 38.214 Table 5.1.3.1-2
    ("qam256", 1, 2, 193, 0.3770), ("qam256", 5, 4, 378, 1.4766), ("qam256", 11, 6, 466, 2.7305),
    ("qam256", 20, 8, 682.5, 5.3320), ("qam256", 26, 8, 916.5, 7.1602), ("qam256", 27, 8, 948, 7.4063),
])
def test_tables_match_ts_38_214(table, index, qm, r, se):
    m = M.mcs_entry(index, table)
    assert (m.modulation_order, m.rate_x1024) == (qm, r)
    assert round(m.spectral_efficiency, 4) == pytest.approx(se, abs=1e-4)
    assert m.code_rate == r / 1024


def test_table_sizes_and_reserved_indices():
    assert len(M.MCS_TABLE_QAM64) == 29 and len(M.MCS_TABLE_QAM256) == 28
    for table, reserved in (("qam64", 29), ("qam256", 28)):
        with pytest.raises(ConfigError) as e:
            M.mcs_entry(reserved, table)
        assert e.value.field == "mcs"
    with pytest.raises(ConfigError) as e:
        M.check_mcs_table("qam1024")
    assert e.value.field == "mcs_table"


def test_rates_sionna_cannot_encode_are_rejected_naming_the_field_and_range():
    for index in (0, 1, 2):  # R = 120, 157, 193 / 1024 < 1/5: Sionna has no repetition coding
        with pytest.raises(ConfigError) as e:
            M.plan_codeblocks(M.mcs_entry(index), 1024)
        assert e.value.field == "mcs" and e.value.value == index
        assert "[3, 28]" in e.value.expected and "1/5" in e.value.expected
    assert M.supported_mcs_indices(1024, "qam64") == tuple(range(3, 29))
    assert M.supported_mcs_indices(1024, "qam256") == tuple(range(2, 28))
    with pytest.raises(ConfigError):  # 6 symbols cannot hold a code block of k >= 12 with CRCs
        M.plan_codeblocks(M.mcs_entry(3), 6)


@pytest.mark.parametrize("n", [100, 1024, 5000])
def test_code_block_plans_fit_the_symbols_and_sionna(n):
    for table in M.MCS_TABLES:
        for i in M.supported_mcs_indices(n, table):
            p = M.plan_codeblocks(M.mcs_entry(i, table), n)
            qm = p.mcs.modulation_order
            assert p.n % qm == 0 and p.used_symbols <= n < p.used_symbols + p.num_codewords
            assert M.MIN_CODE_RATE <= p.k / p.n <= M.MAX_CODE_RATE and p.k <= M.MAX_K_BG1
            assert p.k == math.floor(p.mcs.code_rate * p.n)
            assert p.info_bits == p.num_codewords * p.k - p.crc_bits > 0
            assert p.crc_bits == (24 if p.num_codewords == 1 else 24 + 24 * p.num_codewords)
            enc = M.ldpc_encoder(p.k, p.n, qm)  # Sionna accepts it ...
            assert (enc.k, enc.n) == (p.k, p.n) and p.n <= enc.n_cb_comp
            assert M.mother_code_length(p.k, p.n) == enc.n_cb_comp  # ... and the plan's check agrees


def test_mother_code_length_matches_sionna_where_rates_are_lowest():
    from sionna.phy.fec.ldpc import LDPC5GEncoder

    for k, n in ((40, 200), (300, 1400), (700, 3400), (3000, 14000), (4000, 10000), (8000, 8800)):
        assert M.mother_code_length(k, n) == LDPC5GEncoder(k, n).n_cb_comp


def test_large_items_are_segmented():
    p = M.plan_codeblocks(M.mcs_entry(27, "qam256"), 4096)  # 32768 coded bits at R = 0.93
    assert p.num_codewords == 4 and p.k <= 8448


def test_shipped_required_snr_table_has_provenance_and_physics():
    data = M.load_required_snr()
    assert data["seed"] and "python -m dekasim.codecs.mcs" in data["command"]
    assert data["target_bler"] == 0.1 and data["ldpc_iterations"] == 20
    assert "1024" in data["entries"]
    for n, rows in data["entries"].items():
        n = int(n)
        by_qm: dict[int, list[tuple[float, float]]] = {}
        for key, row in rows.items():
            qm, r = key.split(":")
            plan = M.plan_codeblocks(M.MCS(0, "qam64", int(qm), float(r)), n)
            shannon_db = 10 * math.log10(2 ** (plan.info_bits / n) - 1)
            assert row["required_snr_db"] > shannon_db  # no code beats capacity
            assert row["required_snr_db"] < shannon_db + 6.0  # LDPC+QAM is within a few dB
            by_qm.setdefault(int(qm), []).append((float(r), row["required_snr_db"]))
            # the recorded points bracket the threshold
            snrs = [pt[0] for pt in row["points"]]
            assert min(snrs) <= row["required_snr_db"] <= max(snrs)
        for pts in by_qm.values():
            req = [s for _, s in sorted(pts)]
            assert all(a < b for a, b in zip(req, req[1:])), "higher rate must need more SNR"
    for table in M.MCS_TABLES:
        for i in M.supported_mcs_indices(1024, table):
            assert M.mcs_entry(i, table).key in data["entries"]["1024"]


def test_adaptive_selection_is_monotone_and_honours_the_margin():
    chosen = [M.select_mcs(s, 1024).index for s in torch.arange(-10.0, 30.0, 0.25).tolist()]
    assert chosen == sorted(chosen)
    assert chosen[0] == 3 and chosen[-1] == 28
    for s in (0.0, 7.3, 15.0):
        assert M.select_mcs(s, 1024, margin_db=3.0) == M.select_mcs(s - 3.0, 1024)
        m = M.select_mcs(s, 1024)
        assert M.required_snr_db(m, 1024) <= s  # at these SNRs some MCS qualifies
        for j in range(m.index + 1, 29):  # every higher MCS needs more than s
            assert M.required_snr_db(M.mcs_entry(j), 1024) > s
    hi256 = [M.select_mcs(s, 1024, table="qam256").modulation_order for s in (5.0, 30.0)]
    assert hi256 == sorted(hi256) and hi256[-1] == 8


def test_required_snr_interpolates_between_block_lengths_and_warns_outside():
    m = M.mcs_entry(9)
    ns = sorted(int(n) for n in M.load_required_snr()["entries"])
    lo, hi = ns[0], ns[-1]
    mid = int(round(math.sqrt(lo * hi)))
    a, b = M.required_snr_db(m, lo), M.required_snr_db(m, hi)
    assert min(a, b) - 1e-9 <= M.required_snr_db(m, mid) <= max(a, b) + 1e-9
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert M.required_snr_db(m, 10 * hi + 7) == b
    assert any("python -m dekasim.codecs.mcs" in str(x.message) for x in w)


def test_ldpc_waterfall_around_the_threshold():
    """At a fixed MCS, BLER 3 dB below the tabulated threshold is near 1, 3 dB above it near 0."""
    m = M.mcs_entry(9)
    req = M.required_snr_db(m, 256)
    from dekasim.codecs.mcs_table import simulate_bler

    low = simulate_bler(m, 256, req - 3.0, 40, seed=1)
    high = simulate_bler(m, 256, req + 3.0, 40, seed=2)
    assert low >= 36 and high == 0


def test_cli_regenerates_a_table(tmp_path):
    from dekasim.codecs.mcs_table import main

    out = tmp_path / "t.json"
    assert main(["--n-channel-uses", "96", "--pairs", "2:526", "--blocks", "40", "--seed", "5",
                   "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["seed"] == 5 and "--pairs 2:526" in data["command"]
    row = data["entries"]["96"]["2:526"]
    assert -5 < row["required_snr_db"] < 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert M.required_snr_db(M.mcs_entry(7), 96, table_path=str(out)) == row["required_snr_db"]
