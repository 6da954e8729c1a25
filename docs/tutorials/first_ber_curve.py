# %% [markdown]
# # Your first BER/BLER curve
#
# The waterfall of a coded link: bit and block error rates of the 5G NR chain (CRC, LDPC, QAM) against
# Eb/N0, one curve per MCS. You will write a scenario with a `bits` payload and an `ebno_db` sweep, run
# it, read the rows, and draw the curves. `scenarios/ber_waterfall.toml` is the full-size version of what
# this page runs on a small sweep.
#
# Everything runs from the repository root, on one torch thread (steadier on a shared machine).

# %%
import shutil
import tomllib
from pathlib import Path

import torch
from IPython.display import Image

from dekasim.scenarios import scenario_from_dict
from dekasim.sim import run_scenario

torch.set_num_threads(1)
out = Path("runs/tutorials/first_ber_curve")
shutil.rmtree(out, ignore_errors=True)  # start afresh: a rerun into the same directory skips finished points

# %% [markdown]
# ## The scenario
#
# `[payload] kind = "bits"` sends blocks of random information bits (here 256 per block, one transport
# block each). The codec `digital_bits` carries each block through the chain at a fixed MCS; a list of
# MCSs gives one curve each. `sweep.ebno_db` is Eb/N0 per *information* bit: dekasim converts it, per
# codec, to the Es/N0 per data resource element the link runs at (see
# [Concepts](../concepts.md#snr-esn0-per-data-resource-element-and-ebn0)). Over AWGN there is no OFDM grid
# overhead. `target_block_errors` keeps a point sending until it has seen enough block errors, up to a cap.

# %%
scenario_toml = """
name = "first-ber-curve"
seed = 1

[payload]
kind = "bits"
block_bits = 256

[sweep]
tdl_profile = "awgn"
csi = "perfect"
ebno_db = { start = 0, stop = 5, step = 0.5 }

[[codecs]]
codec = "digital_bits"
label = "5G LDPC + QAM"
options = { mcs = [5, 13] }     # QPSK R=379/1024 and 16-QAM R=490/1024

[monte_carlo]
images_per_point = 100          # blocks per point, at least
target_block_errors = 20        # then on until 20 block errors ...
max_images_per_point = 200      # ... or 200 blocks
batch_size = 100
"""
scenario = scenario_from_dict(tomllib.loads(scenario_toml))
print(f"{len(scenario.points())} conditions x {len(scenario.codecs)} codec entries:",
      [c.label for c in scenario.codecs])

# %% [markdown]
# ## Run it
#
# Every point writes one row to `results.jsonl` as soon as it is done; the figures are drawn at the end.

# %%
result = run_scenario(scenario, out_dir=out, progress=False)
print(len(result.rows), "rows ->", out / "results.jsonl")

# %% [markdown]
# ## Read the rows
#
# Each row holds the condition, the raw counts (bit errors, bits, block errors, blocks) and the rates with
# their 95 % intervals. The BER interval is over *blocks*, not bits: bit errors cluster inside a failed
# LDPC block, so bits are not independent units (see [Results](../results.md#confidence-intervals)).

# %%
for row in sorted(result.rows, key=lambda r: (len(r["codec"]), r["codec"], r["ebno_db"])):
    lo, hi = row["bler_ci95"]
    print(f"{row['codec']:<24} Eb/N0 {row['ebno_db']:4.1f} dB  Es/N0 {row['snr_db']:5.2f} dB  "
          f"blocks {row['blocks']:3d}  block errors {row['block_errors']:3d}  "
          f"BLER {row['bler']:.3f} [{lo:.3f}, {hi:.3f}]  BER {row['ber']:.2e}")

# %% [markdown]
# ## The curves
#
# `dekasim run` drew the figures over Eb/N0 for this sweep (`dekasim plot DIR --x ebno_db` redraws them
# from any run). A point with no block error shows the upper bound of its interval as an open triangle.

# %%
Image(filename=str(out / "bler_vs_ebno.png"), width=700)

# %%
Image(filename=str(out / "ber_vs_ebno.png"), width=700)

# %% [markdown]
# ## Next
#
# - Over fading: add `[[sweep.groups]]` with `tdl_profile = "rayleigh"` and a wider Eb/N0 range, as
#   `scenarios/ber_waterfall.toml` does; the BLER then falls as 1/SNR (one fading draw per block).
# - The same chain beside Sionna's own `sim_ber`: [BER/BLER waterfalls](../results/ber-waterfall.md).
