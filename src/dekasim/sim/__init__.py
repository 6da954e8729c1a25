"""The Monte-Carlo loop, sweeps and the result store."""

from dekasim.sim.runner import RunResult, SweepPoint, point_seed, run_scenario, sweep_points, validate_scenario
from dekasim.sim.store import ResultStore, read_rows

__all__ = ["ResultStore", "RunResult", "SweepPoint", "point_seed", "read_rows", "run_scenario", "sweep_points",
           "validate_scenario"]
