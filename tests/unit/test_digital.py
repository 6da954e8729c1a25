"""The digital codecs end to end: symbols, genie counts, cliffs, the capacity bound, latents."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dekasim.channels import OFDMLink
from dekasim.codecs import Codec, available_codecs, build_codec
from dekasim.codecs import mcs as M
from dekasim.codecs import source_coding as sc
from dekasim.codecs.digital import DigitalImageCodec, DigitalLatentCodec, IdealCodec
from dekasim.codecs.ldpc_chain import LDPCQAMChain
from dekasim.conditions import Condition
from dekasim.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """BP decoding of small batches gains nothing from a second thread and loses 3-10x when the
    other core is busy; these tests run on one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

SHAPE = (3, 64, 64)
RATIO = 1 / 12  # 1024 channel uses per 64x64 RGB image


def photos(count: int = 4) -> torch.Tensor:
    """``[count, 3, 64, 64]`` float crops of scikit-image's bundled photographs, in [0, 1]."""
    from skimage import data

    crops = []
    spots = [(data.astronaut(), (100, 150)), (data.coffee(), (200, 200)), (data.chelsea(), (50, 100)),
             (data.rocket(), (150, 250))]
    for i in range(count):
        img, (y, x) = spots[i % len(spots)]
        y, x = y + 8 * (i // len(spots)), x + 8 * (i // len(spots))
        crops.append(img[y:y + 64, x:x + 64, :3])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


def awgn(x: torch.Tensor, snr_db: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    no = 10 ** (-snr_db / 10)
    noise = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g))
    return x + noise * math.sqrt(no / 2), torch.full(x.shape, no)


AWGN = Condition(snr_db=10.0, tdl_profile="awgn")


def test_codecs_are_registered_with_their_kind():
    codecs = available_codecs()
    assert codecs["digital"] is DigitalImageCodec and DigitalImageCodec.kind == "digital"
    assert codecs["ideal"] is IdealCodec and IdealCodec.kind == "bound"
    assert codecs["digital_latent"] is DigitalLatentCodec and DigitalLatentCodec.kind == "digital"


@pytest.mark.parametrize("name,shape,options", [
    ("digital", SHAPE, {"mcs": 9}), ("digital", SHAPE, {}), ("ideal", SHAPE, {}),
    ("digital_latent", (4, 16, 16), {"mcs": 14}),
])
def test_symbols_are_declared_count_and_unit_power(name, shape, options):
    codec = build_codec(name, shape, RATIO if name != "digital_latent" else 1 / 4, **options)
    payload = photos(4) if shape == SHAPE else torch.randn(4, *shape)
    x = codec.encode(payload, AWGN)
    assert x.dtype == torch.complex64 and x.shape == (4, codec.n_channel_uses)
    assert x.abs().pow(2).mean().item() == pytest.approx(1.0, abs=0.03)
    assert torch.isfinite(x.real).all() and torch.isfinite(x.imag).all()


def test_noiseless_channel_reproduces_the_source_decoded_image_without_errors():
    codec = build_codec("digital", SHAPE, RATIO, mcs=14)
    imgs = photos(4)
    x = codec.encode(imgs, AWGN)
    d = codec.decode(x, torch.full(x.shape, 1e-9), AWGN)
    plan = M.plan_codeblocks(M.mcs_entry(14), 1024)
    assert d.counts.bit_errors == 0 and d.counts.block_errors == 0 and d.counts.blocks == 4
    assert d.counts.bits == 4 * plan.num_codewords * plan.k
    layout = sc.FrameLayout(plan.info_bits, sc.available_source_codecs())
    u8 = np.rint(imgs.permute(0, 2, 3, 1).numpy().astype(np.float64) * 255).astype(np.uint8)
    for i in range(4):
        ref = sc.encode_within_budget(u8[i], layout, reference=imgs[i].permute(1, 2, 0).double().numpy())
        assert ref.sent and d.info["source_codec"][i] == ref.codec
        expect = torch.from_numpy(np.array(ref.image)).permute(2, 0, 1).float() / 255.0
        assert torch.equal(d.payload[i], expect)
        assert d.info["source_bytes"][i] == len(ref.payload)
        assert d.info["frame_bits"][i] <= plan.info_bits
    assert d.info["mcs_index"] == 14 and d.info["modulation_order"] == 4
    assert d.info["code_rate"] == 553 / 1024 and d.info["ldpc_iterations"] == 20
    assert all(d.info["image_received"]) and not any(d.info["block_error"])
    assert d.payload.shape == imgs.shape and d.payload.dtype == imgs.dtype


def test_very_low_snr_fails_every_block_and_shows_the_fallback():
    codec = build_codec("digital", SHAPE, RATIO)  # adaptive: the lowest MCS at -10 dB
    imgs = photos(4)
    cond = Condition(snr_db=-10.0, tdl_profile="awgn")
    x = codec.encode(imgs, cond)
    y, no = awgn(x, -10.0)
    d = codec.decode(y, no, cond)
    assert d.info["mcs_index"] == M.supported_mcs_indices(1024)[0]
    assert d.counts.block_errors == d.counts.blocks == 4
    assert d.counts.bit_errors > 0.1 * d.counts.bits
    # per transport block (one image each): the units of the BER interval
    st = d.counts.unit_stats
    assert d.counts.unit == "transport block" and st["n_units"] == 4 and st["n_nonzero"] == 4
    assert st["sum_x"] == d.counts.bit_errors and st["sum_n"] == d.counts.bits
    assert st["sum_n2"] == 4 * (st["sum_n"] // 4) ** 2
    assert st["sum_x"] ** 2 / 4 <= st["sum_x2"] <= st["sum_x"] * st["sum_n"] // 4
    assert torch.all(d.payload == 0.5)
    assert not any(d.info["image_received"])


def test_through_the_ofdm_link_at_high_snr_with_adaptive_mcs():
    codec = build_codec("digital", SHAPE, RATIO)
    link = OFDMLink(csi="perfect")
    cond = Condition(snr_db=25.0, tdl_profile="awgn")
    torch.manual_seed(0)
    imgs = photos(4)
    x = codec.encode(imgs, cond)
    y, no_eff = link(x, cond)
    d = codec.decode(y, no_eff, cond)
    assert d.info["mcs_index"] == 28
    assert d.counts.block_errors == 0
    psnr = [sc.psnr_db(imgs[i].numpy(), d.payload[i].numpy()) for i in range(4)]
    assert min(psnr) > 30.0


def test_adaptive_mcs_and_quality_rise_with_snr():
    codec = build_codec("digital", SHAPE, RATIO)
    imgs = photos(2)
    mcs, budget = [], []
    for snr in (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0):
        codec.encode(imgs, Condition(snr_db=snr, tdl_profile="awgn"))
        mcs.append(codec._tx["chain"].plan.mcs.index)
        budget.append(codec._tx["chain"].plan.info_bits)
    assert mcs == sorted(mcs) and budget == sorted(budget) and mcs[0] < mcs[-1]
    margin = build_codec("digital", SHAPE, RATIO, mcs_margin_db=5.0)
    margin.encode(imgs, Condition(snr_db=15.0, tdl_profile="awgn"))
    assert margin._tx["chain"].plan.mcs.index == mcs[3]  # 15 dB with 5 dB margin = 10 dB


def test_single_item_batches_match_the_batch():
    codec = build_codec("digital", SHAPE, RATIO, mcs=9)
    imgs = photos(3)
    x = codec.encode(imgs, AWGN)
    x1 = codec.encode(imgs[1:2], AWGN)
    assert torch.equal(x[1:2], x1)


def test_decode_needs_a_paired_encode():
    codec = build_codec("digital", SHAPE, RATIO, mcs=9)
    with pytest.raises(RuntimeError):
        codec.decode(torch.zeros(2, 1024, dtype=torch.complex64), torch.ones(2, 1024), AWGN)


@pytest.mark.parametrize("options,field", [
    ({"source_codec": "bpg"}, "source_codec"), ({"mcs": 0}, "mcs"), ({"mcs": 29}, "mcs"),
    ({"mcs": "fast"}, "mcs"), ({"mcs_margin_db": float("nan")}, "mcs_margin_db"),
    ({"mcs_table": "qam1024"}, "mcs_table"), ({"headers": "some"}, "headers"),
    ({"ldpc_iterations": 0}, "ldpc_iterations"),
])
def test_bad_options_are_config_errors_naming_the_field(options, field):
    with pytest.raises(ConfigError) as e:
        build_codec("digital", SHAPE, RATIO, **options)
    assert e.value.field == field


def test_non_image_payloads_are_refused():
    with pytest.raises(ConfigError) as e:
        build_codec("digital", (4, 16, 16), RATIO)
    assert e.value.field == "payload_shape"


def test_save_and_load_round_trip(tmp_path):
    codec = build_codec("digital", SHAPE, RATIO, source_codec="webp", mcs=12, mcs_margin_db=1.5)
    codec.save(tmp_path)
    again = Codec.load(tmp_path)
    assert isinstance(again, DigitalImageCodec) and again.options == codec.options
    assert again.fixed_mcs == codec.fixed_mcs and again.codecs == ("webp",)


def test_single_source_codec_is_used_for_every_image():
    codec = build_codec("digital", SHAPE, RATIO, source_codec="jpeg2000", mcs=12)
    x = codec.encode(photos(2), AWGN)
    d = codec.decode(x, torch.full(x.shape, 1e-9), AWGN)
    assert d.info["source_codec"] == ["jpeg2000", "jpeg2000"]


# ----------------------------------------------------------------------------------------- ideal

def test_ideal_budget_is_awgn_capacity_and_beats_digital():
    imgs = photos(4)
    cond = Condition(snr_db=10.0, tdl_profile="awgn")
    ideal, digital = build_codec("ideal", SHAPE, RATIO), build_codec("digital", SHAPE, RATIO)
    x = ideal.encode(imgs, cond)
    assert x.abs().pow(2).mean().item() == pytest.approx(1.0, abs=1e-5)
    y, no = awgn(x, 10.0)
    d = ideal.decode(y, no, cond)
    cap = math.floor(1024 * math.log2(1 + 10.0))
    assert all(abs(b - cap) <= 1 for b in d.info["capacity_bits"])
    assert all(f <= b for f, b in zip(d.info["frame_bits"], d.info["capacity_bits"]))
    assert d.counts.bit_errors == 0 and d.counts.block_errors == 0
    xd = digital.encode(imgs, cond)
    dd = digital.decode(xd, torch.full(xd.shape, 1e-9), cond)
    for i in range(4):
        assert sc.psnr_db(imgs[i].numpy(), d.payload[i].numpy()) >= \
            sc.psnr_db(imgs[i].numpy(), dd.payload[i].numpy()) - 0.05


def test_ideal_uses_the_realised_per_symbol_snr_on_fading():
    imgs = photos(2)
    cond = Condition(snr_db=10.0, tdl_profile="rayleigh")
    ideal = build_codec("ideal", SHAPE, RATIO)
    x = ideal.encode(imgs, cond)
    gain = torch.tensor([[0.05], [3.0]])  # a deep fade and a good realisation
    no_eff = 0.1 / gain.expand(2, 1024)
    d = ideal.decode(x, no_eff, cond)
    expect = [math.floor(1024 * math.log2(1 + 10 * float(gv))) for gv in gain[:, 0]]
    assert all(abs(a - b) <= 1 for a, b in zip(d.info["capacity_bits"], expect))
    assert d.info["capacity_bits"][0] < d.info["capacity_bits"][1]


def test_ideal_below_the_smallest_file_shows_the_fallback():
    ideal = build_codec("ideal", SHAPE, RATIO)
    x = ideal.encode(photos(1), AWGN)
    d = ideal.decode(x, torch.full(x.shape, 1e6), AWGN)  # -60 dB: ~1 bit
    assert d.info["image_sent"] == [False] and torch.all(d.payload == 0.5)


# ---------------------------------------------------------------------------------------- latent

def test_latent_noiseless_round_trip_within_half_a_step():
    torch.manual_seed(0)
    lat = torch.randn(3, 4, 8, 8) * 2
    codec = build_codec("digital_latent", (4, 8, 8), 4.0, bits_per_sample=6, mcs=20)
    x = codec.encode(lat, AWGN)
    d = codec.decode(x, torch.full(x.shape, 1e-9), AWGN)
    assert d.counts.block_errors == 0 and d.counts.bit_errors == 0
    step = (lat.reshape(3, -1).amax(1) - lat.reshape(3, -1).amin(1)) / 63
    err = (d.payload - lat).reshape(3, -1).abs().amax(1)
    assert torch.all(err <= step / 2 + 1e-5)
    assert d.info["bits_per_sample"] == [6, 6, 6] and d.payload.dtype == lat.dtype


def test_latent_adaptive_bits_grow_with_the_mcs_and_count_side_info():
    torch.manual_seed(1)
    lat = torch.randn(2, 4, 8, 8)
    bits = []
    for mcs in (5, 14, 24):  # 1024 symbols carry 734, 2188, 4608 bits
        codec = build_codec("digital_latent", (4, 8, 8), 4.0, mcs=mcs, entropy_coder="lzma")
        x = codec.encode(lat, AWGN)
        d = codec.decode(x, torch.full(x.shape, 1e-9), AWGN)
        budget = d.info["info_bits_per_item"]
        assert all(0 < f <= budget for f in d.info["frame_bits"])
        assert all(f >= 4 + 64 + 8 * s for f, s in zip(d.info["frame_bits"], d.info["source_bytes"]))
        bits.append(d.info["bits_per_sample"][0])
        rmse = (d.payload - lat).pow(2).mean().sqrt().item()
        assert rmse < 6.0 / 2 ** bits[-1]
    assert bits == sorted(bits) and bits[0] < bits[-1]


def test_latent_failures_give_zeros():
    lat = torch.randn(2, 4, 16, 16) + 5
    codec = build_codec("digital_latent", (4, 16, 16), 1 / 4, bits_per_sample=16, mcs=3, entropy_coder="none")
    x = codec.encode(lat, AWGN)  # 16 bits x 1024 samples cannot fit 101 bits
    d = codec.decode(x, torch.full(x.shape, 1e-9), AWGN)
    assert d.info["item_sent"] == [False, False] and torch.all(d.payload == 0)
    codec = build_codec("digital_latent", (4, 16, 16), 1 / 4, mcs=9)
    x = codec.encode(lat, Condition(snr_db=-10, tdl_profile="awgn"))
    y, no = awgn(x, -10.0)
    d = codec.decode(y, no, AWGN)
    assert d.counts.block_errors == 2 and torch.all(d.payload == 0)


def test_latent_options_are_validated():
    with pytest.raises(ConfigError) as e:
        build_codec("digital_latent", (8,), 1.0, bits_per_sample=17)
    assert e.value.field == "bits_per_sample"
    with pytest.raises(ConfigError) as e:
        build_codec("digital_latent", (8,), 1.0, entropy_coder="brotli")
    assert e.value.field == "entropy_coder"


def test_chain_is_exact_without_noise_for_every_modulation():
    for idx, table in ((4, "qam64"), (12, "qam64"), (20, "qam64"), (24, "qam256")):
        plan = M.plan_codeblocks(M.mcs_entry(idx, table), 300)
        chain = LDPCQAMChain(plan)
        bits = torch.randint(0, 2, (3, plan.info_bits)).float()
        x, u = chain.encode(bits)
        assert x.shape == (3, 300)
        u_hat = chain.decode(x, torch.full(x.shape, 1e-9))
        assert torch.equal(u_hat, u) and torch.equal(chain.payload_bits(u_hat), bits)


# --------------------------------------------------------------------------------------------------
# The default link adaptation (issue 20): mcs = "best"; the old AWGN-threshold choice stays reachable
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,shape", [("digital", SHAPE), ("digital_latent", (48, 8, 8))])
def test_default_mcs_is_best_and_adaptive_stays_reachable(name, shape):
    cond = Condition(snr_db=20.0, delay_spread_ns=100.0, tdl_profile="A", speed_mps=30.0, bandwidth_ratio=RATIO)
    default = build_codec(name, shape, RATIO)
    best = build_codec(name, shape, RATIO, mcs="best")
    old = build_codec(name, shape, RATIO, mcs="adaptive")
    assert default.best_mcs and default.fixed_mcs is None
    assert default.variants(cond) == best.variants(cond) and len(default.variants(cond)) >= 2
    assert old.variants(cond) == [] and not old.best_mcs  # the pre-issue-20 default: AWGN thresholds only
    # outside the simulator (no calibration draws) the default sends what "adaptive" sends
    assert default.choose_mcs(cond) == old.choose_mcs(cond) == M.select_mcs(20.0, default.n_channel_uses)


@pytest.mark.parametrize("cls", [DigitalImageCodec, DigitalLatentCodec, IdealCodec])
def test_options_help_describes_every_option_and_nothing_else(cls):
    """``options_help`` (what ``dekasim list CODEC`` prints, through :func:`codec_options_help`) names exactly
    the keyword options of the codec, so the two cannot drift, and the defaults come from the signature."""
    from dekasim.codecs.base import codec_option_parameters, codec_options_help

    params, _ = codec_option_parameters(cls)
    assert set(params) == set(cls.options_help)
    opts = {o.name: o for o in codec_options_help(cls)}
    assert set(opts) == set(cls.options_help)
    assert all(o.meaning and "not documented" not in o.meaning for o in opts.values())
    if cls is IdealCodec:
        assert {k: o.default for k, o in opts.items()} == {"source_codec": "'best'", "headers": "'stripped'"}
    else:
        assert opts["mcs"].default == "'best'" and '"adaptive"' in opts["mcs"].meaning
        assert opts["ldpc_iterations"].default == "20" and opts["mcs_margin_db"].default == "0.0"
        assert opts["mcs_candidates"].default == "None" and "4" in opts["mcs_candidates"].meaning


def test_the_docs_document_every_digital_option():
    """The docs' option table of the digital codecs (docs/digital.md) has one row per option of ``options_help``."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "digital.md").read_text()
    section = page[page.index("## Options of the digital codecs"):]
    section = section[: section.index("\n## ")]
    for cls in (DigitalImageCodec, DigitalLatentCodec, IdealCodec):
        for key in cls.options_help:
            assert f"| `{key}` |" in section, key


def test_default_digital_adapts_over_fading_where_awgn_thresholds_fail():
    """TDL-A 100 ns at 30 m/s, LMMSE, 20 dB (the issue's case): the AWGN thresholds send MCS 28 and lose
    every block; the default calibrates per point and keeps images. The default and mcs = "best" are the
    same codec: on the same draws they give the same row."""
    from dekasim.scenarios import scenario_from_dict
    from dekasim.sim.runner import check_scenario, run_point, sweep_points

    raw = {"name": "digital-default", "seed": 3, "payload": {"resolution_px": 32},
           "channel": {"speed_mps": 30.0},
           "sweep": {"snr_db": [20], "delay_spread_ns": [100], "tdl_profile": ["A"], "csi": ["lmmse"],
                     "bandwidth_ratio": [1 / 6]},
           "codecs": [{"codec": "digital", "label": "digital", "options": {"source_codec": "jpeg"}}],
           "monte_carlo": {"images_per_point": 8, "batch_size": 8, "calibration_images": 4}}
    scenario = scenario_from_dict(raw)
    checked = check_scenario(scenario)
    (point,) = sweep_points(scenario)
    link = OFDMLink(scenario.grid, "lmmse", scenario.carrier_frequency_hz)
    shape = checked.shapes["image"]
    rows = {}
    for policy, extra in (("default", {}), ("best", {"mcs": "best"}), ("adaptive", {"mcs": "adaptive"})):
        options = {"source_codec": "jpeg", **extra}
        codec = build_codec("digital", shape, 1 / 6, **options)
        rows[policy] = run_point(point, scenario, checked.source, link, codec, seed=99,
                                 variant=lambda o, options=options: build_codec("digital", shape, 1 / 6,
                                                                                **{**options, **o}))
    assert rows["adaptive"]["bler"] == 1.0 and "variant_calibration_psnr_db" not in rows["adaptive"]["info"]
    assert rows["default"]["info"]["variant_calibration_psnr_db"] == rows["best"]["info"]["variant_calibration_psnr_db"]
    for key in ("psnr_db", "bler", "block_errors", "bit_errors", "ssim"):
        assert rows["default"][key] == rows["best"][key], key
    assert rows["default"]["info"]["mcs_index"] < rows["adaptive"]["info"]["mcs_index"]
    assert rows["default"]["bler"] < 1.0 and rows["default"]["psnr_db"] > rows["adaptive"]["psnr_db"] + 3.0


def test_best_searches_down_the_ladder_until_the_psnr_has_passed_its_peak():
    """``more_variants``: after the four first candidates (AWGN choice, 3 and 6 below, the lowest) the search
    goes on down in steps of 3 while the ladder's PSNR still rises or stays flat (every block lost), and
    stops two candidates past the peak; ``mcs_candidates = 4`` keeps the four of before issue 20."""
    cond = Condition(snr_db=20.0, delay_spread_ns=300.0, bandwidth_ratio=RATIO)
    codec = build_codec("digital", SHAPE, RATIO)
    lowest = M.supported_mcs_indices(codec.n_channel_uses)[0]
    top = M.select_mcs(20.0, codec.n_channel_uses).index
    first = [o["mcs"] for o in codec.variants(cond)]
    assert first == [top, top - 3, top - 6, lowest]

    def search(score):
        tried = [(o, score(o["mcs"])) for o in codec.variants(cond)]
        while more := codec.more_variants(cond, tried):
            tried += [(o, score(o["mcs"])) for o in more]
        return [o["mcs"] for o, _ in tried]

    # a peak at top - 9: two candidates below it are tried, then the search stops
    peak = top - 9
    assert search(lambda i: 30.0 - abs(i - peak)) == first + [top - 9, top - 12, top - 15]
    # falling from the top: nothing beyond the first four
    assert search(lambda i: float(i)) == first
    # every ladder candidate loses every block (equal scores): the search walks the whole ladder
    ladder = list(range(top, lowest - 1, -3))
    assert search(lambda i: 16.0 if i == lowest else 10.0) == first + [i for i in ladder if i not in first]
    capped = build_codec("digital", SHAPE, RATIO, mcs_candidates=4)
    assert capped.more_variants(cond, [(o, float(-o["mcs"])) for o in capped.variants(cond)]) == []
    two = build_codec("digital", SHAPE, RATIO, mcs_candidates=2)
    assert [o["mcs"] for o in two.variants(cond)] == [top, lowest]
    assert build_codec("digital", SHAPE, RATIO, mcs="adaptive").more_variants(cond, []) == []
    with pytest.raises(ConfigError, match="mcs_candidates"):
        build_codec("digital", SHAPE, RATIO, mcs_candidates=1)
