"""BER/BLER curves as first-class work (issue 20, item 3): a random-bits payload through the 5G chain at a
fixed MCS, swept over Eb/N0, agrees with Sionna's own ``sim_ber`` on the same chain within Monte-Carlo error.

The reference (:mod:`dekasim.codecs.sionna_reference`) is built from Sionna's blocks only (BinarySource,
CRCEncoder, LDPC5GEncoder/Decoder, TB5GScrambler, Mapper/Demapper, AWGN, ebnodb2no) and counted by
``sim_ber``; dekasim's side is a whole ``run_scenario`` (bits source, codec, OFDM link's AWGN path, counting,
Eb/N0 -> Es/N0 conversion). Both are checked for agreement at the same Eb/N0, and for *disagreement* 0.5 dB
apart, so a convention error of half a dB (e.g. Eb counted per coded bit, or the CRC counted as information)
fails the test.
"""

from __future__ import annotations

import math

import pytest
import torch

from dekasim.scenarios import scenario_from_dict
from dekasim.sim import run_scenario

pytestmark = pytest.mark.usefixtures("one_thread")

BLOCK_BITS = 256
#: MCS -> (two Eb/N0 points [dB] 0.5 dB apart on its waterfall, blocks per point and implementation)
CASES = {9: ((2.5, 3.0), 800),     # QPSK, R = 679/1024: BLER ~0.2 and ~0.03
         13: ((3.5, 4.0), 600)}    # 16-QAM, R = 490/1024: BLER ~0.3 and ~0.08
Z_LIMIT = 4.0  # two-sided; a false alarm per comparison of 6e-5


def _scenario(mcs: int, ebnos: tuple[float, ...], blocks: int) -> dict:
    return {"name": f"bits-vs-sim-ber-{mcs}", "seed": 5, "payload": {"kind": "bits", "block_bits": BLOCK_BITS},
            "sweep": {"ebno_db": list(ebnos), "tdl_profile": "awgn", "csi": "perfect"},
            "codecs": [{"codec": "digital_bits", "label": "5G", "options": {"mcs": mcs}}],
            "monte_carlo": {"images_per_point": blocks, "batch_size": 200}}


def _sim_ber(mcs: int, ebnos: tuple[float, ...], blocks: int) -> list[dict]:
    """Sionna's sim_ber on the reference chain, plus the per-block bit errors it saw (for the variance)."""
    import sionna.phy
    from sionna.phy.utils import sim_ber

    from dekasim.codecs.sionna_reference import sionna_reference

    sionna.phy.config.seed = 1234 + mcs
    mc_fun, _ = sionna_reference(mcs, BLOCK_BITS)
    per_block: list[torch.Tensor] = []

    def recording(batch_size, ebno_db):
        b, b_hat = mc_fun(batch_size, ebno_db)
        per_block.append((b != b_hat).sum(-1).to(torch.float64))
        return b, b_hat

    ber, bler = sim_ber(recording, torch.tensor(ebnos, dtype=torch.float64), batch_size=200,
                        max_mc_iter=blocks // 200, early_stop=False, verbose=False)
    errors = torch.cat(per_block).reshape(len(ebnos), -1)
    return [{"ber": float(ber[i]), "bler": float(bler[i]), "blocks": blocks,
             "block_bit_errors_var": float(errors[i].var())} for i in range(len(ebnos))]


def _z_bler(a: dict, b: dict) -> float:
    p = (a["bler"] * a["blocks"] + b["bler"] * b["blocks"]) / (a["blocks"] + b["blocks"])
    sd = math.sqrt(max(p * (1 - p), 1e-12) * (1 / a["blocks"] + 1 / b["blocks"]))
    return (a["bler"] - b["bler"]) / sd


def _record_block_bit_errors(monkeypatch) -> dict[float, list[torch.Tensor]]:
    """Bit errors of every block digital_bits decodes, by the point's Es/N0 (rows keep sums only)."""
    from dekasim.codecs.digital_bits import DigitalBitsCodec

    original, seen = DigitalBitsCodec.decode, {}

    def recording(self, y, no_eff, cond_seen):
        out = original(self, y, no_eff, cond_seen)
        sent = self._tx["bits"]
        seen.setdefault(cond_seen.snr_db, []).append((out.payload.reshape(sent.shape).cpu() != sent).sum(1).double())
        return out

    monkeypatch.setattr(DigitalBitsCodec, "decode", recording)
    return seen


@pytest.mark.parametrize("mcs", sorted(CASES))
def test_ber_and_bler_agree_with_sionna_sim_ber_on_the_same_chain(tmp_path, monkeypatch, mcs):
    ebnos, blocks = CASES[mcs]
    seen = _record_block_bit_errors(monkeypatch)
    rows = run_scenario(scenario_from_dict(_scenario(mcs, ebnos, blocks)), out_dir=tmp_path, progress=False,
                        plots=False).rows
    ours = {r["ebno_db"]: r for r in rows}
    assert sorted(ours) == list(ebnos)
    theirs = dict(zip(ebnos, _sim_ber(mcs, ebnos, blocks)))
    for e in ebnos:
        a, b = ours[e], theirs[e]
        assert a["blocks"] == blocks and a["bits"] == blocks * BLOCK_BITS and a["status"] == "done"
        assert 0.01 < a["bler"] < 0.9, f"MCS {mcs} at {e} dB is off its waterfall (BLER {a['bler']})"
        z = _z_bler(a, b)
        assert abs(z) < Z_LIMIT, f"MCS {mcs}, Eb/N0 {e} dB: BLER dekasim {a['bler']:.4f}, sim_ber {b['bler']:.4f}"
        # BER: errors cluster in blocks; the variance of a mean over independent blocks, each side's own
        per_block = torch.cat(seen[a["snr_db"]])
        assert per_block.numel() == blocks and int(per_block.sum()) == a["bit_errors"]
        sd = math.sqrt(float(per_block.var()) / blocks + b["block_bit_errors_var"] / blocks) / BLOCK_BITS
        assert abs(a["ber"] - b["ber"]) < Z_LIMIT * sd, \
            f"MCS {mcs}, Eb/N0 {e} dB: BER dekasim {a['ber']:.5f}, sim_ber {b['ber']:.5f} (sd {sd:.5f})"
    # the comparison resolves half a dB: dekasim at one Eb/N0 is told apart from sim_ber at the other
    lo, hi = ebnos
    assert abs(_z_bler(ours[hi], theirs[lo])) > Z_LIMIT and abs(_z_bler(ours[lo], theirs[hi])) > Z_LIMIT


def test_eb_n0_converts_through_the_grid_overhead_and_rows_carry_it(tmp_path):
    """Over AWGN Es/N0 = Eb/N0 + 10 log10(K / n); over a fading channel the pilots' and the CP's energy count
    too (the overhead factor of the grid, as dekasim.channels.snr.ebno_db); rows carry the swept Eb/N0."""
    from dekasim.channels.snr import overhead_factor
    from dekasim.sim import sweep_points

    raw = _scenario(9, (1.0, 4.0), 8)
    raw["sweep"].update(tdl_profile=["awgn", "rayleigh"])
    scenario = scenario_from_dict(raw)
    points = sweep_points(scenario)
    assert len(points) == 4 and {p.ebno_db for p in points} == {1.0, 4.0}
    n = 212  # MCS 9 (QPSK, R = 679/1024) carries 256 + 24 bits in 424 coded bits
    for p in points:
        overhead = 1.0 if p.cond.tdl_profile == "awgn" else overhead_factor(scenario.grid)
        assert p.cond.snr_db == pytest.approx(p.ebno_db - 10 * math.log10(overhead * n / BLOCK_BITS), abs=1e-12)
    assert overhead_factor(scenario.grid) > 1.2  # the grid's pilots and CP cost > 0.8 dB: the two conversions differ
    rows = run_scenario(scenario, out_dir=tmp_path, progress=False, plots=False).rows
    for row in rows:
        assert row["ebno_db"] in (1.0, 4.0) and row["channel_uses"] == n and row["bandwidth_ratio"] is None
        assert row["psnr_db"] is None and row["info"]["mcs_index"] == 9 and row["info"]["block_bits"] == BLOCK_BITS
    # a point id is stable: the same scenario again skips every point
    again = run_scenario(scenario, out_dir=tmp_path, progress=False, plots=False)
    assert again.skipped == 4
