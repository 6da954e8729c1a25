"""Cost of the time-domain OFDM link per slot against the frequency-domain link, and its growth with the
channel length.

Both sides are ``OFDMLink(GridConfig(pilot_subcarrier_spacing=1), csi)`` sending ``slots x 912`` QPSK
symbols over TDL-C at 3.5 GHz, Es/N0 = 20 dB; they differ only in ``domain`` ("frequency": Sionna's
``OFDMChannel``; "time": OFDM modulation with the CP at 2x the grid's sample rate (2.28 Msample/s), the
discrete-time TDL (an FFT convolution when static, Sionna's ``ApplyTimeChannel`` when moving), the FFT
window, and the ISI + ICI estimate). For each delay spread (hence discrete-time channel length L =
l_max - l_min + 1 taps at 2.28 Msample/s) and speed, the two run interleaved (ABBA) in one process; two warm-up calls per
side are excluded (they build the per-condition blocks); each cell is the median of repeats, each
repeat loops calls until it lasts 0.15 s. Wall and CPU time (``time.process_time``) per slot are
printed, with the ratio time/frequency per cell.

    .venv/bin/python benchmarks/time_domain_link.py [--slots 64] [--repeats 7] [--threads 1] [--csi ls]

Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
import warnings

import torch

torch.set_num_threads(1)

from dekasim import Condition  # noqa: E402
from dekasim.channels import GridConfig, OFDMLink  # noqa: E402
from dekasim.channels.profiles import PhysicsWarning  # noqa: E402

TARGET_S = 0.15
CASES = [(30, 0.0), (300, 0.0), (1000, 0.0), (3000, 0.0), (300, 30.0), (3000, 30.0), (300, 120.0)]


def _measure(link: OFDMLink, x: torch.Tensor, cond: Condition) -> tuple[float, float]:
    """(wall, cpu) seconds per call, looping until TARGET_S has passed."""
    calls, w0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        with torch.no_grad():
            link(x, cond)
        calls += 1
        if time.perf_counter() - w0 >= TARGET_S:
            break
    return (time.perf_counter() - w0) / calls, (time.process_time() - c0) / calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csi", default="ls", choices=["perfect", "ls", "lmmse"])
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore", PhysicsWarning)
    grid = GridConfig(pilot_subcarrier_spacing=1)
    links = {d: OFDMLink(grid, csi=a.csi, domain=d) for d in ("frequency", "time")}
    bits = torch.randint(0, 2, (a.slots, grid.num_data_symbols, 2)).float()
    x = torch.complex(1 - 2 * bits[..., 0], 1 - 2 * bits[..., 1]) / math.sqrt(2)
    print(f"# time-domain vs frequency-domain OFDMLink, csi={a.csi}, {a.slots} slots/call, {a.threads} thread(s), "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, python {sys.version.split()[0]}")
    print("| delay spread | speed | taps L | frequency ms/slot (cpu) | time ms/slot (cpu) | ratio wall | ratio cpu |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for ds, speed in CASES:
        cond = Condition(snr_db=20.0, delay_spread_ns=ds, tdl_profile="C", speed_mps=speed)
        for link in links.values():
            for _ in range(2):
                with torch.no_grad():
                    link(x, cond)
        res: dict[str, list[tuple[float, float]]] = {"frequency": [], "time": []}
        for r in range(a.repeats):
            order = ("frequency", "time") if r % 2 == 0 else ("time", "frequency")
            for d in order:
                res[d].append(_measure(links[d], x, cond))
        med = {d: (statistics.median(v[0] for v in res[d]) / a.slots * 1e3,
                   statistics.median(v[1] for v in res[d]) / a.slots * 1e3) for d in res}
        taps = links["time"].blocks_for(cond).channel.l_tot
        print(f"| {ds:g} ns | {speed:g} m/s | {taps} | {med['frequency'][0]:.3f} "
              f"({med['frequency'][1]:.3f}) | {med['time'][0]:.3f} ({med['time'][1]:.3f}) | "
              f"{med['time'][0] / med['frequency'][0]:.2f} | {med['time'][1] / med['frequency'][1]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
