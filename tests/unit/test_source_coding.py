"""Source coding: real codecs, exact header regeneration, rate matching within a bit budget."""

from __future__ import annotations

import numpy as np
import pytest

from dekasim.codecs import source_coding as sc
from dekasim.errors import ConfigError


def photo_crops(count: int = 4, size: int = 64) -> list[np.ndarray]:
    """``[size, size, 3]`` uint8 crops of scikit-image's bundled photographs."""
    from skimage import data

    out = []
    for img, (y, x) in [(data.astronaut(), (100, 150)), (data.coffee(), (200, 200)),
                        (data.chelsea(), (50, 100)), (data.rocket(), (150, 250)),
                        (data.astronaut(), (0, 0)), (data.coffee(), (30, 400))][:count]:
        out.append(np.ascontiguousarray(img[y:y + size, x:x + size, :3]))
    return out


CODECS = sc.available_source_codecs()


def test_pillow_encodes_all_four_codecs():
    assert set(CODECS) == set(sc.SOURCE_CODECS)


@pytest.mark.parametrize("codec", CODECS)
def test_stripped_payload_round_trip_is_exact(codec):
    """What the receiver rebuilds from the stripped payload decodes to the same pixels as the whole file."""
    for img in photo_crops(3):
        for qi in (0, len(sc.quality_grid(codec)) // 3, len(sc.quality_grid(codec)) - 20):
            stripped = sc.encode_payload(img, codec, qi, "stripped")
            full = sc.encode_payload(img, codec, qi, "full")
            assert len(stripped) < len(full)
            a = sc.decode_payload(stripped, codec, qi, img.shape[:2], "stripped")
            b = sc.decode_payload(full, codec, qi, img.shape[:2], "full")
            assert a.shape == img.shape and a.dtype == np.uint8
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("codec", CODECS)
def test_regenerated_file_is_byte_exact(codec):
    img = photo_crops(1)[0]
    qi = len(sc.quality_grid(codec)) // 2
    f = sc._encode_file(img.tobytes(), 64, 64, codec, qi)
    rebuilt = sc._restore(sc._strip(f, codec, qi, 64, 64), codec, qi, 64, 64)
    if codec == "jpeg2000":  # the OpenJPEG comment marker is not sent
        assert b"Created by OpenJPEG" in f and b"Created by OpenJPEG" not in rebuilt
        assert len(f) - len(rebuilt) == 2 + int.from_bytes(f[f.index(b"\xff\x64") + 2:][:2], "big")
    else:
        assert rebuilt == f


def test_a_header_that_cannot_be_regenerated_is_refused():
    img = photo_crops(1)[0]
    f = bytearray(sc._encode_file(img.tobytes(), 64, 64, "jpeg", 50))
    f[30] ^= 0xFF  # corrupt a quantisation table entry: the receiver would not know it
    with pytest.raises(sc._Unstrippable):
        sc._strip(bytes(f), "jpeg", 50, 64, 64)


@pytest.mark.parametrize("codec", CODECS)
def test_rate_matching_fits_and_is_monotone_in_budget(codec):
    img = photo_crops(1)[0]
    last_q, last_len = -1, -1
    for budget in range(0, 1601, 40):
        got = sc.rate_match(img, codec, budget)
        if got is None:
            assert last_q == -1, "a smaller budget fitted but a larger one does not"
            continue
        qi, payload = got
        assert len(payload) <= budget
        assert qi >= last_q and len(payload) >= last_len
        last_q, last_len = qi, len(payload)
        if qi + 1 < len(sc.quality_grid(codec)):  # bisection stops at the edge: the next one does not fit
            assert len(sc.encode_payload(img, codec, qi + 1)) > budget
    assert last_q >= 0, "1600 bytes should fit every codec at 64x64"


def test_rate_matching_returns_none_below_the_smallest_file():
    img = photo_crops(1)[0]
    smallest = len(sc.encode_payload(img, "jpeg", 0))
    assert sc.rate_match(img, "jpeg", smallest - 1) is None
    assert sc.rate_match(img, "jpeg", smallest)[0] == 0


def test_best_picks_the_highest_psnr_within_budget():
    img = photo_crops(2)[1]
    layout = sc.FrameLayout(3000, CODECS)
    best = sc.encode_within_budget(img, layout)
    assert best.sent and best.frame_bits <= 3000
    for codec in CODECS:
        single = sc.encode_within_budget(img, sc.FrameLayout(3000, (codec,)))
        if single.sent:
            # the single-codec frame has 2 bits less side information, which may buy at most one byte
            assert best.psnr_db >= sc.encode_within_budget(
                img, sc.FrameLayout(3000 - layout.codec_bits, (codec,))).psnr_db - 1e-9
    assert best.codec in CODECS
    assert best.psnr_db == pytest.approx(sc.psnr_db(img, best.image))


def test_frame_counts_every_bit_and_round_trips():
    img = photo_crops(1)[0]
    for budget in (700, 2000, 5000):
        layout = sc.FrameLayout(budget, CODECS)
        coded = sc.encode_within_budget(img, layout)
        assert coded.frame_bits == layout.side_bits + 8 * len(coded.payload) <= budget
        assert layout.side_bits == 2 + sc.QUALITY_BITS + ((budget - 9) // 8).bit_length()
        bits = sc.pack_frame(coded, layout)
        assert bits.shape == (budget,) and set(np.unique(bits)) <= {0, 1}
        assert not bits[coded.frame_bits:].any()  # zero padding after the frame
        codec, qi, payload = sc.unpack_frame(bits, layout)
        assert (codec, qi, payload) == (coded.codec, coded.quality_index, coded.payload)
        np.testing.assert_array_equal(sc.decode_payload(payload, codec, qi, (64, 64)), coded.image)


def test_full_headers_send_whole_files():
    img = photo_crops(1)[0]
    layout = sc.FrameLayout(8 * 2000, ("webp",), headers="full")
    assert layout.codec_bits == 0 and layout.quality_bits == 0
    coded = sc.encode_within_budget(img, layout)
    assert coded.payload[:4] == b"RIFF"
    codec, _, payload = sc.unpack_frame(sc.pack_frame(coded, layout), layout)
    assert payload == coded.payload


def test_nothing_fits_gives_the_grey_fallback():
    img = photo_crops(1)[0]
    layout = sc.FrameLayout(100, CODECS)  # 12 bytes: no codec makes a 64x64 image that small
    coded = sc.encode_within_budget(img, layout)
    assert not coded.sent and coded.codec is None
    assert np.all(coded.image == 128)
    assert sc.unpack_frame(sc.pack_frame(coded, layout), layout) is None
    tiny = sc.FrameLayout(5, CODECS)
    assert tiny.max_payload_bytes == 0 and not sc.encode_within_budget(img, tiny).sent


def test_bad_codec_names_are_config_errors():
    with pytest.raises(ConfigError) as e:
        sc.check_source_codec("bpg")
    assert e.value.field == "source_codec" and "webp" in e.value.expected
    with pytest.raises(ConfigError) as e:
        sc.check_headers("none")
    assert e.value.field == "headers"


def test_files_whose_headers_cannot_be_regenerated_are_never_sent(monkeypatch):
    img = photo_crops(1)[0][::-1].copy()  # an image not coded by other tests (nothing cached)

    def refuse(f, codec, qi, h, w):
        raise sc._Unstrippable("test")

    monkeypatch.setattr(sc, "_strip", refuse)
    with pytest.warns(RuntimeWarning, match="skipped"):
        assert sc.rate_match(img, "webp", 5000) is None
    with pytest.raises(sc._Unstrippable), pytest.warns(RuntimeWarning):
        sc.encode_payload(img, "webp", 3)
