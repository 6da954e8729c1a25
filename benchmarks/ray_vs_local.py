"""Wall time of one sweep run locally (in-process) and on a local Ray with 2 workers, side by side.

Prints both wall times, their ratio, and the per-task overhead of Ray estimated as
(ray_wall - local_wall / workers) / tasks. Rows of both runs are checked to be identical.

    .venv/bin/python benchmarks/ray_vs_local.py [--points-per-axis 4] [--images 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--snr-points", type=int, default=6)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)  # same per-task compute as a Ray worker (one CPU each)

    from dekasim.scenarios import scenario_from_dict
    from dekasim.sim import run_scenario, sweep_points

    raw = {"name": "bench-ray", "seed": 1, "payload": {"resolution_px": 64},
           "sweep": {"snr_db": [float(i * 4) for i in range(args.snr_points)], "delay_spread_ns": [30, 300],
                     "tdl_profile": ["C"], "csi": ["ls"]},
           "codecs": [{"codec": "analog"}],
           "monte_carlo": {"images_per_point": args.images, "batch_size": 8}}
    scenario = scenario_from_dict(raw)
    tasks = len(sweep_points(scenario))
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        warm = scenario_from_dict({**raw, "name": "warm-up", "monte_carlo": {"images_per_point": 1, "batch_size": 1}})
        run_scenario(warm, out_dir=os.path.join(tmp, "warm-local"), progress=False, plots=False)
        t0, c0 = time.perf_counter(), time.process_time()
        local = run_scenario(scenario, out_dir=os.path.join(tmp, "local"), progress=False, plots=False)
        local_wall, local_cpu = time.perf_counter() - t0, time.process_time() - c0

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        # the warm-up sweep imports dekasim/Sionna in the workers and builds their payload and codecs
        run_scenario(warm, out_dir=os.path.join(tmp, "warm-ray"), progress=False, plots=False, executor="ray")
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray_run = run_scenario(scenario, out_dir=os.path.join(tmp, "ray"), progress=False, plots=False,
                               executor="ray")
        ray_wall = time.perf_counter() - t0
        ray.shutdown()
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k != "runtime_s"} for r in rows),  # noqa: E731
                                key=lambda r: r["point_id"])
    same = strip(local.rows) == strip(ray_run.rows)
    print(f"sweep: {tasks} points x {args.images} images, analog codec, TDL-C, LS CSI")
    print(f"{'executor':<10}{'wall [s]':>10}{'driver CPU [s]':>16}")
    print(f"{'local':<10}{local_wall:>10.2f}{local_cpu:>16.2f}")
    print(f"{'ray x' + str(args.workers):<10}{ray_wall:>10.2f}{'(workers)':>16}")
    print(f"ratio local/ray wall = {local_wall / ray_wall:.2f} (ideal {args.workers:.0f}), warm workers; "
          f"one-time Ray start-up + worker set-up: {startup:.1f} s")
    print(f"per-task overhead ~ {(ray_wall - local_wall / args.workers) / tasks * 1e3:.0f} ms")
    print(f"rows identical: {same}")


if __name__ == "__main__":
    main()
