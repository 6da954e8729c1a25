"""Wall time of scenarios/default.toml and where it goes.

Runs the default scenario into a temporary directory under cProfile and prints: total wall and CPU
time, time per codec (summed ``runtime_s`` of its rows), and the functions with the largest
cumulative time (LDPC decoding, channel, source coding, metrics ...).

    .venv/bin/python benchmarks/default_scenario_profile.py [--top 25] [--scenario scenarios/default.toml]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from collections import defaultdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", default="scenarios/default.toml")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    import torch

    from dekasim.sim import run_scenario

    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        prof = cProfile.Profile()
        t0, c0 = time.perf_counter(), time.process_time()
        prof.enable()
        result = run_scenario(args.scenario, out_dir=tmp, progress=False, plots=True)
        prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_codec: dict[str, float] = defaultdict(float)
    for row in result.rows:
        per_codec[row["codec"]] += row["runtime_s"]
    print(f"{args.scenario}: {len(result.rows)} points, wall {wall:.1f} s, process CPU {cpu:.1f} s "
          f"(CPU/wall {cpu / wall:.2f})")
    print(f"{'codec':<28}{'seconds':>10}{'share':>8}")
    total = sum(per_codec.values())
    for codec, sec in sorted(per_codec.items(), key=lambda kv: -kv[1]):
        print(f"{codec:<28}{sec:>10.1f}{100 * sec / total:>7.0f}%")
    print(f"set-up, figures and bookkeeping outside the points: {wall - total:.1f} s")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
