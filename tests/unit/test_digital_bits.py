"""The bits payload and its codec (issue 20, item 3): exact block lengths, the code rate the MCS asks for,
counting over information bits only, and the scenario rules of ``[payload] kind = "bits"``."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from dekasim.codecs.digital_bits import DigitalBitsCodec
from dekasim.codecs.mcs import mcs_entry, plan_transport_block
from dekasim.conditions import Condition
from dekasim.errors import ConfigError
from dekasim.scenarios import scenario_from_dict
from dekasim.sim.payloads import BitsSource

AWGN = Condition(snr_db=10.0, tdl_profile="awgn")


@pytest.mark.parametrize("index", [3, 5, 9, 11, 13, 17, 19, 24, 27])
@pytest.mark.parametrize("block_bits", [40, 256, 1000, 3000])
def test_a_transport_block_carries_exactly_block_bits_at_the_mcs_rate_rounded_down_to_whole_symbols(index, block_bits):
    mcs = mcs_entry(index)
    plan = plan_transport_block(mcs, block_bits)
    qm, r = mcs.modulation_order, mcs.code_rate
    assert plan.info_bits == block_bits and plan.num_codewords * plan.k == block_bits + plan.crc_bits
    assert plan.used_symbols == plan.n_channel_uses and plan.n % qm == 0  # no padding symbols
    assert plan.k / plan.n <= r < plan.k / (plan.n - qm)  # E = Qm ceil(k / (R Qm))


def test_long_blocks_are_segmented_and_a_size_that_does_not_split_names_the_nearest_that_do():
    plan = plan_transport_block(mcs_entry(3), 4000)  # R = 0.245 -> base graph 2, k <= 3840: two code blocks
    assert (plan.num_codewords, plan.k, plan.info_bits) == (2, 2036, 4000)
    with pytest.raises(ConfigError, match=r"block_bits = 8000: expected a block length that splits into 3 equal "
                                          r"LDPC code blocks.*Fix: use 7998 or 8001") as err:
        plan_transport_block(mcs_entry(3), 8000)
    assert err.value.fix == "use 7998 or 8001"
    for ok in (7998, 8001):
        assert plan_transport_block(mcs_entry(3), ok).info_bits == ok
    with pytest.raises(ConfigError, match=r"mcs = 1: expected .*code rate >= 1/5.*Fix: pick an index >= 3"):
        plan_transport_block(mcs_entry(1), 256)


def test_noiseless_blocks_come_back_exactly_and_counts_are_over_information_bits():
    codec = DigitalBitsCodec((256,), 1.0, mcs=13)
    bits = BitsSource(256, seed=1).items(0, 6)
    x = codec.encode(bits, AWGN)
    assert x.shape == (6, 147) and x.dtype == torch.complex64  # 16-QAM, 280 / 588 coded bits
    out = codec.decode(x, torch.full(x.shape, 1e-4), AWGN)
    assert torch.equal(out.payload, bits)
    assert (out.counts.bit_errors, out.counts.bits, out.counts.block_errors, out.counts.blocks) == (0, 6 * 256, 0, 6)
    assert out.info["block_bits"] == 256 and out.info["mcs_index"] == 13 and out.info["codeword_n"] == 588


def test_an_error_in_the_crc_alone_is_no_information_bit_error(monkeypatch):
    codec = DigitalBitsCodec((64,), 1.0, mcs=9)
    bits = BitsSource(64, seed=2).items(0, 3)
    x = codec.encode(bits, AWGN)
    chain = codec._chain()
    clean = chain.decode(x, torch.full(x.shape, 1e-4))
    corrupt = clean.clone()
    corrupt[0, 0, 64] = 1 - corrupt[0, 0, 64]   # the first CRC24A bit of block 0
    corrupt[1, 0, 5] = 1 - corrupt[1, 0, 5]     # information bit 5 of block 1
    monkeypatch.setattr(type(chain), "decode", lambda self, y, no: corrupt)
    counts = codec.decode(x, torch.full(x.shape, 1e-4), AWGN).counts
    assert (counts.bit_errors, counts.block_errors, counts.bits, counts.blocks) == (1, 1, 3 * 64, 3)


def test_low_snr_gives_errors_and_the_codec_refuses_what_is_not_bits():
    codec = DigitalBitsCodec((256,), 1.0, mcs=9)
    bits = BitsSource(256, seed=3).items(0, 20)
    x = codec.encode(bits, AWGN)
    no = 10 ** (2 / 10)  # Es/N0 = -2 dB: far below MCS 9's waterfall
    g = torch.Generator().manual_seed(0)
    y = x + math.sqrt(no / 2) * torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g))
    counts = codec.decode(y, torch.full(x.shape, no), AWGN).counts
    assert counts.block_errors == 20 and 0.05 < counts.bit_errors / counts.bits < 0.5
    with pytest.raises(ConfigError, match="bits in"):
        codec.encode(torch.rand(2, 256), AWGN)
    with pytest.raises(ConfigError, match=r"mcs = None: expected an MCS index.*one fixed MCS.*mcs = \[4, 9, 16\]"):
        DigitalBitsCodec((256,), 1.0)
    with pytest.raises(ConfigError, match="mcs = 'adaptive'"):
        DigitalBitsCodec((256,), 1.0, mcs="adaptive")


def test_a_block_is_the_same_whatever_batch_it_is_sent_in_and_bits_are_fair():
    src = BitsSource(512, seed=7)
    assert torch.equal(src.items(3, 4)[1:], src.items(4, 3))
    assert not torch.equal(src.items(0, 1), src.items(1, 1))
    many = src.items(0, 200)
    assert abs(many.mean().item() - 0.5) < 4 * 0.5 / math.sqrt(many.numel())  # 4 sigma of a fair coin


BITS = {"name": "bits", "seed": 1, "payload": {"kind": "bits", "block_bits": 256},
        "sweep": {"ebno_db": [0, 2], "tdl_profile": "awgn"},
        "codecs": [{"codec": "digital_bits", "label": "5G", "options": {"mcs": [4, 9, 16]}}]}


def _with(**changes):
    raw = copy.deepcopy(BITS)
    for key, value in changes.items():
        table, _, name = key.partition("__")
        if name:
            raw[table][name] = value
        else:
            raw[table] = value
    return raw


def test_an_mcs_list_is_one_curve_per_mcs():
    s = scenario_from_dict(BITS)
    assert [(c.label, c.options) for c in s.codecs] == [("5G, MCS 4", {"mcs": 4}), ("5G, MCS 9", {"mcs": 9}),
                                                        ("5G, MCS 16", {"mcs": 16})]
    assert s.payload_options == (("block_bits", 256),) and s.ebno_db == (0.0, 2.0) and s.snr_db == ()


@pytest.mark.parametrize("changes, match", [
    ({"codecs": [{"codec": "analog"}]}, r"codecs\[0\].codec = 'analog': expected a codec that carries bits"),
    ({"payload": {"kind": "photos"}, "sweep__snr_db": [0], "sweep__ebno_db": None},
     r"codecs\[0\].codec = 'digital_bits': expected a codec for \[payload\] kind = 'photos'.*Fix: set \[payload\] "
     r"kind = \"bits\""),
    ({"sweep__bandwidth_ratio": "1/6"}, r"sweep.bandwidth_ratio = '1/6': expected no bandwidth ratio with \[payload\] "
                                        r"kind = \"bits\""),
    ({"payload__resolution_px": 32}, r"payload.resolution_px = 32: expected no such key for kind = \"bits\""),
    ({"payload__block_bits": 0}, r"payload.block_bits = 0: expected information bits per block"),
    ({"codecs": [{"codec": "digital_bits", "options": {"mcs": []}}]}, r"codecs\[0\].options.mcs = \[\]"),
    ({"codecs": [{"codec": "digital_bits", "options": {"mcs": [4, 4]}}]}, r"codecs\[0\].options.mcs = \[4, 4\]"),
])
def test_bits_scenario_rules_are_one_clear_error(changes, match):
    raw = _with(**changes)
    raw["sweep"] = {k: v for k, v in raw["sweep"].items() if v is not None}
    with pytest.raises(ConfigError, match=match):
        scenario_from_dict(raw)


def test_block_bits_belongs_to_bits_payloads_and_a_codec_error_names_its_option():
    from dekasim.sim import validate_scenario

    raw = {"name": "p", "seed": 1, "payload": {"kind": "photos", "block_bits": 64}, "sweep": {"snr_db": [0]},
           "codecs": [{"codec": "analog"}]}
    with pytest.raises(ConfigError, match=r"payload.block_bits = 64: expected no such key for kind = 'photos'"):
        scenario_from_dict(raw)
    bad = scenario_from_dict(_with(payload={"kind": "bits", "block_bits": 8000},
                                   codecs=[{"codec": "digital_bits", "options": {"mcs": 3}}]))
    with pytest.raises(ConfigError, match=r"payload.block_bits = 8000: .*Fix: use 7998 or 8001"):
        validate_scenario(bad)
    reserved = scenario_from_dict(_with(codecs=[{"codec": "digital_bits", "label": "x", "options": {"mcs": 30}}]))
    with pytest.raises(ConfigError, match=r"codecs\[x\].options.mcs = 30"):
        validate_scenario(reserved)
