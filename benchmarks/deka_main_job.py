"""Wall time of the main job (scenarios/default.toml, DeKA-g) from the shipped artefacts, quiet and under load.

Each mode runs ``dekasim run scenarios/default.toml`` in a fresh process, twice:

- **cold**: a new output directory and an empty sample cache (everything is sampled, every point runs,
  the pack's downlink is simulated, figures are drawn) -- what ``make run`` costs on a fresh clone;
- **warm**: another new output directory on the same cache -- every point runs again, nothing is sampled.

"Under load" runs one busy-looping Python process beside it for the whole time (one of the two cores
taken), which is what a shared CI machine looks like. Printed per run: wall time, CPU time of the run's
process, peak resident memory, and the run's own split (generation, points -- of which codec, channel,
metrics --, report, plots); then the loaded/quiet ratio of the cold wall time. The issue's target is
cold <= 5 minutes on 2 cores.

    .venv/bin/python benchmarks/deka_main_job.py [--modes quiet,load] [--runs cold,warm] [--threads N]
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEKASIM = [sys.executable, "-m", "dekasim"]


def _run(scenario: str, out: Path, cache: Path, threads: int | None) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([*DEKASIM, "run", scenario, "--out", str(out), "--no-progress",
                           "--set", f'payload.cache_dir="{cache}"', *(["--threads", str(threads)] if threads else [])],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"dekasim run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    split = {}
    m = re.search(r"^wall time \[s\]: (.*)$", proc.stdout, re.M)
    if m:
        for part in m.group(1).split(", "):
            k, v = part.rsplit(" ", 1)
            split[k] = float(v)
    g = re.search(r"generation: (\d+) latent\(s\) sampled, (\d+) from the cache", proc.stdout)
    return {"wall_s": wall, "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "peak_rss_mb": after.ru_maxrss / 1024, "split": split,
            "sampled": int(g.group(1)) if g else None, "cache_hits": int(g.group(2)) if g else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="scenarios/default.toml")
    ap.add_argument("--modes", default="quiet,load")
    ap.add_argument("--runs", default="cold,warm", help="cold (empty cache), warm (the cache filled), or both")
    ap.add_argument("--threads", type=int, default=None, help="dekasim run --threads N (default: torch's choice)")
    args = ap.parse_args()
    results = {}
    for mode in args.modes.split(","):
        load = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if mode == "load" else None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                cache = Path(tmp) / "cache"
                results[mode] = {}
                for name in ("cold", "warm"):
                    if name in args.runs.split(",") or (name == "cold" and "warm" in args.runs):
                        results[mode][name] = _run(args.scenario, Path(tmp) / name, cache, args.threads)
        finally:
            if load is not None:
                load.kill()
                load.wait()
    print(f"{args.scenario}, torch threads: {args.threads or 'default'} (peak memory: the largest child so far)")
    print(f"{'mode':<7}{'run':<6}{'wall s':>8}{'CPU s':>8}{'peak MB':>9}{'sampled':>9}{'hits':>6}  split [s]")
    for mode, runs in results.items():
        for name, r in runs.items():
            split = ", ".join(f"{k} {v:.1f}" for k, v in r["split"].items())
            print(f"{mode:<7}{name:<6}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}{r['peak_rss_mb']:>9.0f}"
                  f"{r['sampled']!s:>9}{r['cache_hits']!s:>6}  {split}")
    if {"quiet", "load"} <= set(results):
        ratio = results["load"]["cold"]["wall_s"] / results["quiet"]["cold"]["wall_s"]
        print(f"cold wall time under load / quiet: {ratio:.2f}x")


if __name__ == "__main__":
    main()
