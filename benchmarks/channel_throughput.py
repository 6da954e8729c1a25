"""Channel throughput: dekasim's ``OFDMLink`` against the same link written directly in Sionna.

Both sides run the same work per call: map ``slots x 912`` unit-power symbols on the default resource
grid (``GridConfig().build()``: 14 x 76, 15 kHz, comb-2 pilots on symbols 2 and 11), apply a static
TDL-C 300 ns channel at 3.5 GHz with ``OFDMChannel``, add noise at Es/N0 = 10 dB, estimate the channel
with ``LSChannelEstimator(interpolation_type="lin")`` and equalise with ``LMMSEEqualizer``. dekasim
adds its own bookkeeping (input checks, per-condition block cache, slot reshaping, the direct
``no_eff``). Runs are interleaved in the same process (ABBA order), warm-up calls are excluded, and
each cell is the median of repeats. Wall time and CPU time (``time.process_time``, all threads) are
both reported: on a shared machine wall time can swing several-fold while CPU time stays put.

    .venv/bin/python benchmarks/channel_throughput.py [--repeats 9] [--slots 1 8 64 256] [--threads 2]

Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

# A script, not the library: pin the thread count the numbers refer to (``--threads`` changes it).
torch.set_num_threads(2)

import sionna  # noqa: E402
import sionna.phy  # noqa: E402
from sionna.phy.channel import OFDMChannel  # noqa: E402
from sionna.phy.channel.tr38901 import TDL  # noqa: E402
from sionna.phy.mimo import StreamManagement  # noqa: E402
from sionna.phy.ofdm import LMMSEEqualizer, LSChannelEstimator, ResourceGridMapper  # noqa: E402

from dekasim import Condition  # noqa: E402
from dekasim.channels import GridConfig, OFDMLink  # noqa: E402

SNR_DB = 10.0
DELAY_SPREAD_NS = 300.0
CARRIER_HZ = 3.5e9
TARGET_S = 0.15            # each timed measurement loops calls until it lasts at least this long


class BareSionnaLink:
    """The link as a Sionna user would write it, with nothing of dekasim but the grid description."""

    def __init__(self) -> None:
        self.rg = GridConfig().build()
        self.mapper = ResourceGridMapper(self.rg)
        tdl = TDL("C", delay_spread=DELAY_SPREAD_NS * 1e-9, carrier_frequency=CARRIER_HZ,
                  min_speed=0.0, max_speed=0.0)
        self.channel = OFDMChannel(tdl, self.rg)
        self.estimator = LSChannelEstimator(self.rg, interpolation_type="lin")
        self.equalizer = LMMSEEqualizer(self.rg, StreamManagement(np.array([[1]]), 1))
        self.no = torch.tensor(10 ** (-SNR_DB / 10), dtype=torch.float32)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.channel(self.mapper(x), self.no)
        h_hat, err_var = self.estimator(y, self.no)
        return self.equalizer(y, h_hat, err_var, self.no)


def timed(fn, calls: int) -> tuple[float, float]:
    """(wall, cpu) seconds per call over ``calls`` back-to-back calls."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - w0) / calls, (time.process_time() - c0) / calls


def bench(slots: int, repeats: int, link: OFDMLink, bare: BareSionnaLink, cond: Condition) -> dict:
    per_slot = link.symbols_per_slot
    bits = torch.randint(0, 2, (slots, per_slot, 2)).float()
    x = (torch.complex(1 - 2 * bits[..., 0], 1 - 2 * bits[..., 1]) / np.sqrt(2)).to(torch.complex64)
    x_bare = x.reshape(slots, 1, 1, per_slot)
    run = {"dekasim": lambda: link(x, cond), "bare": lambda: bare(x_bare)}
    for fn in run.values():     # warm-up: block construction, allocator, first-call paths
        fn()
        fn()
    probe = min(timed(fn, 1)[0] for fn in run.values())
    calls = max(1, int(np.ceil(TARGET_S / max(probe, 1e-6))))
    walls: dict[str, list[float]] = {k: [] for k in run}
    cpus: dict[str, list[float]] = {k: [] for k in run}
    for r in range(repeats):
        order = ("dekasim", "bare") if r % 2 == 0 else ("bare", "dekasim")   # ABBA
        for name in order:
            w, c = timed(run[name], calls)
            walls[name].append(w)
            cpus[name].append(c)
    out = {"slots": slots, "calls": calls}
    for name in run:
        out[name] = {"wall": statistics.median(walls[name]), "cpu": statistics.median(cpus[name])}
    symbols = slots * per_slot
    out["sym_s"] = {name: symbols / out[name]["wall"] for name in run}
    out["ratio"] = out["bare"]["wall"] / out["dekasim"]["wall"]          # = dekasim sym/s / bare sym/s
    out["cpu_ratio"] = out["bare"]["cpu"] / out["dekasim"]["cpu"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch intra-op threads (default 2; use 1 when another process holds a core)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    sionna.phy.config.seed = 1
    link = OFDMLink(GridConfig(), csi="ls", carrier_frequency_hz=CARRIER_HZ)
    bare = BareSionnaLink()
    cond = Condition(snr_db=SNR_DB, delay_spread_ns=DELAY_SPREAD_NS, tdl_profile="C")

    print(f"channel throughput: LS + LMMSE equaliser, TDL-C {DELAY_SPREAD_NS:g} ns, Es/N0 {SNR_DB:g} dB, "
          f"default grid ({link.symbols_per_slot} data REs/slot)")
    print(f"python {platform.python_version()}, torch {torch.__version__}, sionna {sionna.__version__}, "
          f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}")
    print(f"median of {args.repeats} interleaved repeats; each repeat >= {TARGET_S:g} s of calls")
    busy = os.getloadavg()[0]
    if args.threads > 1 and busy >= (os.cpu_count() or 1) - 0.5:
        print(f"note: load average {busy:.1f} on {os.cpu_count()} CPUs. With {args.threads} threads a busy core "
              "makes every parallel region wait for the scheduler (10-30x slower, wall and CPU alike); the "
              "ratio still compares like with like, but for absolute numbers rerun with --threads 1.")
    print()
    header = (f"{'slots':>6} {'calls':>5} | {'dekasim sym/s':>14} {'bare sym/s':>12} {'ratio':>6} | "
              f"{'dekasim ms wall/cpu':>20} {'bare ms wall/cpu':>18} | {'cpu ratio':>9}")
    print(header)
    print("-" * len(header))
    t0 = time.perf_counter()
    worst = float("inf")
    for slots in args.slots:
        r = bench(slots, args.repeats, link, bare, cond)
        d, b = r["dekasim"], r["bare"]
        worst = min(worst, r["ratio"])
        print(f"{slots:>6} {r['calls']:>5} | {r['sym_s']['dekasim']:>14,.0f} {r['sym_s']['bare']:>12,.0f} "
              f"{r['ratio']:>6.3f} | {d['wall'] * 1e3:>9.2f} /{d['cpu'] * 1e3:>8.2f} "
              f"{b['wall'] * 1e3:>8.2f} /{b['cpu'] * 1e3:>8.2f} | {r['cpu_ratio']:>9.3f}", flush=True)
    print(f"\nratio = dekasim / bare throughput (wall; target >= 0.9), cpu ratio the same in CPU time; "
          f"worst {worst:.3f}; load avg now {os.getloadavg()[0]:.2f}; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
