# %% [markdown]
# # A sweep on Ray
#
# Sweep points are independent, so dekasim can send each one to [Ray](https://docs.ray.io) as a task. This
# tutorial runs one scenario twice, in this process and on a local Ray with two CPUs, and checks that the
# rows are the same: every point's seed derives from the scenario seed and the point's identity only, so
# where a point runs changes nothing. On a cluster the same call takes an address
# ([Sweeps on Ray and GPUs](../scale-out.md)). Ray is the optional extra `dekasim[ray]`; `make test` and
# `make docs` install it.

# %%
import shutil
import time
from pathlib import Path

import ray
import torch

from dekasim.scenarios import scenario_from_dict
from dekasim.sim import run_scenario

torch.set_num_threads(1)
out = Path("runs/tutorials/ray_sweep")
shutil.rmtree(out, ignore_errors=True)

scenario = scenario_from_dict({
    "name": "ray-sweep", "seed": 11,
    "payload": {"kind": "photos", "resolution_px": 32},
    "sweep": {"snr_db": {"start": 0, "stop": 20, "step": 5}, "delay_spread_ns": [30, 300], "tdl_profile": "C",
              "csi": ["ls", "lmmse"], "bandwidth_ratio": "1/6"},
    "codecs": [{"codec": "analog"}, {"codec": "jscc", "label": "DeepJSCC"}],
    "monte_carlo": {"images_per_point": 8, "batch_size": 8},
})
print(len(scenario.points()), "conditions x", len(scenario.codecs), "codecs")

# %% [markdown]
# ## In this process

# %%
t0 = time.perf_counter()
local = run_scenario(scenario, out_dir=out / "local", progress=False, plots=False)
print(f"local: {len(local.rows)} rows in {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## On a local Ray with two CPUs
#
# `executor="ray"` with no address starts a local Ray (`num_cpus` caps it); each point is one task with one
# CPU and one torch thread, and the driver appends rows as tasks finish, in any order. From the shell:
# `dekasim run FILE --executor ray --num-cpus 2`. Starting Ray takes a few seconds, so it pays off on sweeps
# whose points take longer than these.

# %%
t0 = time.perf_counter()
on_ray = run_scenario(scenario, out_dir=out / "ray", progress=False, plots=False, executor="ray", num_cpus=2)
print(f"ray: {len(on_ray.rows)} rows in {time.perf_counter() - t0:.1f} s (Ray start-up included)")
ray.shutdown()

# %% [markdown]
# ## The same rows
#
# Rows arrive in another order and their run times differ; everything the simulation computed is equal.

# %%
def numbers(rows):
    keep = ("point_id", "codec", "snr_db", "delay_spread_ns", "csi", "psnr_db", "psnr_db_ci95", "ssim")
    return sorted(tuple(r[k] for k in keep) for r in rows)

same = numbers(local.rows) == numbers(on_ray.rows)
print("identical rows:", same)
assert same
for row in sorted(on_ray.rows, key=lambda r: (r["codec"], r["csi"], r["delay_spread_ns"], r["snr_db"]))[:6]:
    print(f"{row['codec']:<9} {row['csi']:<6} {row['delay_spread_ns']:5.0f} ns {row['snr_db']:4.0f} dB  "
          f"PSNR {row['psnr_db']:5.2f} dB")
