"""Scenario files: schema, loading, presets."""

from dekasim.scenarios.presets import DELAY_SPREAD_PRESETS_NS
from dekasim.scenarios.schema import CodecSpec, MonteCarlo, Scenario, load_scenario, scenario_from_dict

__all__ = ["CodecSpec", "DELAY_SPREAD_PRESETS_NS", "MonteCarlo", "Scenario", "load_scenario", "scenario_from_dict"]
