"""Ray executor: same rows as the local loop, resumable, and a clear message without Ray."""

from __future__ import annotations

import builtins

import pytest

from dekasim.errors import ConfigError
from dekasim.scenarios import scenario_from_dict
from dekasim.sim import read_rows, run_scenario

RAW = {"name": "ray-test", "seed": 5, "payload": {"resolution_px": 32},
       "sweep": {"snr_db": [0, 10, 20], "delay_spread_ns": [30, 300], "tdl_profile": ["C"], "csi": ["ls"]},
       "codecs": [{"codec": "analog"}], "monte_carlo": {"images_per_point": 4, "batch_size": 4}}


def _key(rows):
    return sorted(({k: v for k, v in r.items() if k not in ("runtime_s", "timing_s")} for r in rows),
                  key=lambda r: r["point_id"])


@pytest.mark.slow
def test_local_ray_equals_local_row_for_row_and_resumes(tmp_path):
    pytest.importorskip("ray")
    scenario = scenario_from_dict(RAW)
    local = run_scenario(scenario, out_dir=tmp_path / "local", progress=False, plots=False).rows
    # a Ray run interrupted after 2 points (the driver dies; Ray is shut down), then resumed
    with pytest.raises(_Interrupt):
        run_scenario(scenario, out_dir=tmp_path / "ray", progress=False, plots=False, executor="ray", num_cpus=2,
                     on_row=_stop_after(2))
    assert len(read_rows(tmp_path / "ray")) == 2
    resumed = run_scenario(scenario, out_dir=tmp_path / "ray", progress=False, plots=False, executor="ray",
                           num_cpus=2)
    assert resumed.skipped == 2
    assert _key(resumed.rows) == _key(local)


class _Interrupt(Exception):
    pass


def _stop_after(n):
    seen = []

    def on_row(row):
        seen.append(row)
        if len(seen) >= n:
            raise _Interrupt

    return on_row


def test_missing_ray_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from dekasim.sim.executors import make_executor

    with pytest.raises(ConfigError, match=r"dekasim\[ray\]"):
        make_executor("ray")


def test_local_executor_rejects_an_address():
    from dekasim.sim.executors import make_executor

    with pytest.raises(ConfigError, match="--executor ray"):
        make_executor("local", address="auto")
