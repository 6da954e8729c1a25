"""The one conformance test every registered codec passes (DESIGN.md, codec contract)."""

from __future__ import annotations


import pytest

from dekasim.codecs import available_codecs, build_codec
from dekasim.codecs.conformance import check_codec

IMAGE_SHAPE = (3, 32, 32)
LATENT_SHAPE = (4, 8, 8)
RATIO = 1 / 6
#: codecs whose shipped checkpoints need a payload other than the defaults above
SHIPPED_SHAPES = {"jscc_generic": (48, 8, 8)}
#: codecs that need an option (a BER curve is drawn at one fixed MCS)
REQUIRED_OPTIONS = {"digital_bits": {"mcs": 9}}


CODECS = sorted(available_codecs())


@pytest.mark.parametrize("name", CODECS)
def test_every_registered_codec_passes_the_shared_conformance_check(name):
    """Power, shapes, declared channel uses, batch = single, no NaN at -10 dB, save/load round trip: the
    same check `dekasim check-codec` runs on third-party codecs (dekasim.codecs.conformance)."""
    shape = SHIPPED_SHAPES.get(name, IMAGE_SHAPE if "image" in available_codecs()[name].payload_kinds else LATENT_SHAPE)
    results = check_codec(name, shape, RATIO, REQUIRED_OPTIONS.get(name))
    assert [r.name for r in results] == ["shapes", "channel_uses", "power", "batch_equals_single",
                                         "no_nan_at_-10dB", "save_load"]
    assert [f"{r.name}: {r.detail}" for r in results if not r.passed] == []


def test_the_check_reports_a_broken_codec_by_name():
    """A codec that sends twice the power and decodes items differently in a batch fails exactly those checks."""
    from dekasim.codecs.analog import AnalogCodec

    class Loud(AnalogCodec):
        def encode(self, payload, cond):
            return super().encode(payload, cond) * 2 ** 0.5

        def decode(self, y, no_eff, cond_seen):
            out = super().decode(y, no_eff, cond_seen)
            out.payload[1:] += 0.1 * len(out.payload)  # the batch size leaks into the items
            return out

    import sys
    import types

    from dekasim.codecs.base import _REGISTRY

    mod = types.ModuleType("dekasim_test_broken_codec")
    mod.Loud = Loud
    sys.modules[mod.__name__] = mod
    spec = f"{mod.__name__}:Loud"
    try:
        results = {r.name: r for r in check_codec(spec, IMAGE_SHAPE, RATIO)}
    finally:
        del sys.modules[mod.__name__]
        _REGISTRY.pop(spec, None)
    assert not results["power"].passed and "mean symbol power 2.0" in results["power"].detail
    assert not results["batch_equals_single"].passed
    assert results["shapes"].passed and results["channel_uses"].passed and results["no_nan_at_-10dB"].passed


def test_unknown_codec_and_option_are_config_errors():
    from dekasim.errors import ConfigError

    with pytest.raises(ConfigError, match="codecs"):
        build_codec("no-such-codec", IMAGE_SHAPE, RATIO)
    with pytest.raises(ConfigError, match="analog"):
        build_codec("analog", IMAGE_SHAPE, RATIO, bogus_option=1)
