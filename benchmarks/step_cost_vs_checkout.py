"""Training-step cost of this checkout against another checkout of dekasim, side by side.

Each side runs in its own process (``sys.path`` puts that checkout's ``src`` first), alternately,
``--rounds`` times; each process times, on one torch thread (CPU time, median of 15 after 2 warm-ups):

* **channel fwd+bwd**: 32 items x 512 unit-power symbols through ``OFDMLink`` (comb-1 pilots, LS,
  TDL-C 300 ns, 10 dB), then the backward pass of ``sum |y|^2`` to the symbols;
* **tiny-net step**: one Adam step of an untrained ``jscc_mixed`` on ``[4, 8, 8]`` latents (a network
  so small that the channel dominates) through the same link.

Prints both sides' medians per round and the ratio other/this. Use it to check what a change to the
link or the trainer costs or saves::

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/step_cost_vs_checkout.py /tmp/before [--rounds 3]
    git worktree remove /tmp/before
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import sys, time, statistics, warnings, math, json
sys.path.insert(0, sys.argv[1])
import torch
warnings.simplefilter("ignore")
torch.set_num_threads(1)
from dekasim import Condition
from dekasim.codecs import build_codec
from dekasim.training.jscc import make_link, forward_through_link
import dekasim.channels.link as link_module
assert link_module.__file__.startswith(sys.argv[1]), link_module.__file__
link = make_link("ls", 1)
cond = Condition(snr_db=10.0, delay_spread_ns=300.0, tdl_profile="C")
torch.manual_seed(0)
z0 = torch.complex(torch.randn(32, 512), torch.randn(32, 512)) / math.sqrt(2)
codec = build_codec("jscc_mixed", (4, 8, 8), 1 / 6, checkpoint="none")
x = torch.randn(32, 4, 8, 8)
opt = torch.optim.Adam(codec.net.parameters(), 1e-4)
def channel():
    z = z0.clone().requires_grad_(True)
    y, _ = link(z, cond)
    y.abs().square().sum().backward()
def step():
    loss = torch.nn.functional.mse_loss(forward_through_link(codec, x, cond, link), x)
    opt.zero_grad(); loss.backward(); opt.step()
out = {}
for name, f in (("channel fwd+bwd", channel), ("tiny-net step", step)):
    f(); f()
    ts = []
    for _ in range(15):
        t = time.process_time(); f(); ts.append(time.process_time() - t)
    out[name] = 1e3 * statistics.median(ts)
print(json.dumps(out))
'''


def measure(src: Path) -> dict[str, float]:
    res = subprocess.run([sys.executable, "-c", CHILD, str(src)], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("other", help="root of the other checkout (e.g. a git worktree)")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    this_src = Path(__file__).resolve().parents[1] / "src"
    other_src = Path(a.other).resolve() / "src"
    for r in range(a.rounds):
        other, this = measure(other_src), measure(this_src)
        print(f"round {r + 1}: " + "  |  ".join(f"{k}: other {other[k]:.1f} ms, this {this[k]:.1f} ms, "
                                                f"other/this {other[k] / this[k]:.2f}" for k in this))


if __name__ == "__main__":
    main()
