"""dekasim's JSCC network against a Bourtsoulatze-2019 DeepJSCC, side by side in one run: training-step cost
per sample, and PSNR after equal wall budgets on equal data, rate and channel.

The reference (Bourtsoulatze, Burth Kurka, Gündüz, "Deep joint source-channel coding for wireless image
transmission", IEEE TCCN 2019), written here from the paper's description, for 32x32 RGB images:

- encoder: five 5x5 convolutions with PReLU (16 filters, stride 2; 32, stride 2; 32; 32; c), then power
  normalisation;
- decoder: the mirror, with transposed convolutions (32; 32; 32; 16, stride 2; 3, stride 2) and a sigmoid;
- c = 2 n / 64 channels at 8x8 carry the n complex symbols (16 at 1/6).

dekasim's side is the network of ``jscc_generic`` / ``jscc_mixed`` on the same content as 48x8x8 latents:
the world's exact map, ``pixel_unshuffle(2 x - 1, 4)`` of the same 32x32 crops; and the shipped photo network
(``jscc_mixed`` at 3x32x32, ``space_to_depth = 4``: the same layers on ``pixel_unshuffle((x - 0.5) / 0.25, 4)``,
with a sigmoid output). Both get the same batches of
training-photo crops (``TRAIN_PHOTOS``) at the same rate, through the same link: OFDM, TDL-C at a random
delay spread of 30–3000 ns, LS on comb-1 pilots, Es/N0 uniform in 0–20 dB. Each takes one step in turn; each
stops when its own CPU time reaches the budget, so a busy machine slows both alike. Evaluation uses the
three photographs no training crop comes from (``HELD_OUT_PHOTOS``: astronaut, coffee, rocket; whole
centre squares at 32x32), 48 channel draws each at 30, 300 and 3000 ns, the same draws for both.

    .venv/bin/python benchmarks/deepjscc_reference.py [--budget-s 300] [--batch 32] [--threads 1]

Prints the step cost table and the PSNR table; writes nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn


class Bourtsoulatze2019(nn.Module):
    """The reference DeepJSCC for ``[B, 3, 32, 32]`` images in [0, 1] and ``n`` complex symbols."""

    def __init__(self, n_symbols: int = 512) -> None:
        super().__init__()
        self.n = n_symbols
        c = 2 * n_symbols // 64
        self.enc = nn.Sequential(
            nn.Conv2d(3, 16, 5, 2, 2), nn.PReLU(16), nn.Conv2d(16, 32, 5, 2, 2), nn.PReLU(32),
            nn.Conv2d(32, 32, 5, 1, 2), nn.PReLU(32), nn.Conv2d(32, 32, 5, 1, 2), nn.PReLU(32),
            nn.Conv2d(32, c, 5, 1, 2), nn.PReLU(c))
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(2 * c, 32, 5, 1, 2), nn.PReLU(32), nn.ConvTranspose2d(32, 32, 5, 1, 2), nn.PReLU(32),
            nn.ConvTranspose2d(32, 32, 5, 1, 2), nn.PReLU(32),
            nn.ConvTranspose2d(32, 16, 5, 2, 2, output_padding=1), nn.PReLU(16),
            nn.ConvTranspose2d(16, 3, 5, 2, 2, output_padding=1), nn.Sigmoid())

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        from dekasim.codecs.base import real_to_complex, unit_power

        z = self.enc(images).flatten(1)[:, : 2 * self.n]
        return unit_power(real_to_complex(z, self.n)).to(torch.complex64)

    def decode(self, y: torch.Tensor, no_eff: torch.Tensor) -> torch.Tensor:
        """The same decoder input as dekasim's (LMMSE-shrunk symbols and their log noise variance), so the two
        differ only in the network."""
        from dekasim.codecs.base import complex_to_real

        b = y.shape[0]
        shrunk = complex_to_real((y / (1.0 + no_eff)).to(torch.complex64), 2 * self.n).reshape(b, -1, 8, 8)
        log_no = torch.log10(no_eff.clamp_min(1e-6)).clamp(-6, 4).repeat_interleave(2, dim=1).reshape(b, -1, 8, 8) / 2
        return self.dec(torch.cat([shrunk, log_no], dim=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-s", type=float, default=300.0, help="CPU seconds of training for each network")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    import sionna.phy

    from dekasim.codecs import build_codec
    from dekasim.conditions import Condition
    from dekasim.metrics import psnr_db
    from dekasim.photos import PhotoSource
    from dekasim.training.jscc import HELD_OUT_PHOTOS, CropSampler, lr_factor, make_link
    from dekasim.generative.ldm import PixelUnshuffleLatents

    latent_map = PixelUnshuffleLatents(4)
    ours = build_codec("jscc_generic", (48, 8, 8), 1 / 6, checkpoint="none", init_seed=a.seed).net
    photo = build_codec("jscc_mixed", (3, 32, 32), 1 / 6, checkpoint="none", init_seed=a.seed).net
    ref = Bourtsoulatze2019(512)
    nets = {"dekasim jscc": ours, "dekasim photo jscc": photo, "Bourtsoulatze 2019": ref}
    REF = "Bourtsoulatze 2019"
    params = {k: sum(q.numel() for q in m.parameters()) for k, m in nets.items()}

    def forward(name: str, images: torch.Tensor, cond: Condition, link) -> torch.Tensor:
        if name == "dekasim jscc":
            y, no = link(ours.encode(latent_map.encode(images)), cond)
            return latent_map.decode(ours.decode(y, no.detach()), clamp=False)
        net = nets[name]
        y, no = link(net.encode(images), cond)
        return net.decode(y, no.detach())

    link = make_link("ls", 1)
    sampler = CropSampler(size=32)
    gen = torch.Generator().manual_seed(a.seed)
    rng = random.Random(a.seed)
    sionna.phy.config.seed = a.seed
    opts = {k: torch.optim.Adam(m.parameters(), lr=2e-3) for k, m in nets.items()}
    used = {k: 0.0 for k in nets}
    steps = {k: 0 for k in nets}
    net_only = {k: [] for k in nets}
    expected_steps = {k: 1000 for k in nets}  # for the learning-rate schedule; re-estimated after 20 steps
    while any(used[k] < a.budget_s for k in nets):
        images = sampler.sample(a.batch, gen)
        cond = Condition(snr_db=rng.uniform(0, 20), delay_spread_ns=rng.choice([30.0, 100.0, 300.0, 1000.0, 3000.0]),
                         tdl_profile="C")
        for k, m in nets.items():
            if used[k] >= a.budget_s:
                continue
            c0 = time.process_time()
            for g in opts[k].param_groups:
                g["lr"] = 2e-3 * lr_factor(steps[k], expected_steps[k], 50)
            loss = 10 * torch.log10(F.mse_loss(forward(k, images, cond, link), images) + 1e-10)
            opts[k].zero_grad(set_to_none=True)
            loss.backward()
            opts[k].step()
            used[k] += time.process_time() - c0
            steps[k] += 1
            if steps[k] == 20:
                expected_steps[k] = max(100, int(a.budget_s / (used[k] / 20)))
    # network-only cost per sample (forward + backward, no channel), interleaved
    x = sampler.sample(a.batch, gen)
    for _ in range(7):
        for k, m in nets.items():
            inp = latent_map.encode(x) if k == "dekasim jscc" else x
            c0 = time.process_time()
            z = m.encode(inp)
            m.decode(z, torch.full(z.shape, 0.1)).square().mean().backward()
            net_only[k].append((time.process_time() - c0) / a.batch)
    print(f"# {a.budget_s:g} CPU s of training each, batch {a.batch}, {a.threads} thread(s), 1/6 (512 symbols), "
          "TDL-C 30-3000 ns, LS comb-1, Es/N0 U[0, 20] dB")
    print("| network | parameters | steps in budget | CPU ms per training step | network fwd+bwd ms/sample |")
    print("|---|---:|---:|---:|---:|")
    for k in nets:
        print(f"| {k} | {params[k]} | {steps[k]} | {1e3 * used[k] / steps[k]:.1f} | "
              f"{1e3 * statistics.median(net_only[k]):.3f} |")
    for k in nets:
        if k != REF:
            ratio = statistics.median(net_only[k]) / statistics.median(net_only[REF])
            print(f"network cost per sample, {k} / reference: {ratio:.2f}x; steps in equal budget: "
                  f"{steps[k] / steps[REF]:.2f}x")
    # evaluation on the held-out photographs, the same draws for both
    images = PhotoSource(32, names=HELD_OUT_PHOTOS).images
    ours_names = [k for k in nets if k != REF]
    print("\n| Es/N0 | " + " | ".join(nets) + " | " + " | ".join(f"{k} − reference" for k in ours_names) + " |")
    print("|---:|" + "---:|" * (len(nets) + len(ours_names)))
    for net in nets.values():
        net.eval()
    diffs: dict[str, list[float]] = {k: [] for k in ours_names}
    with torch.no_grad():
        for i, snr in enumerate((0.0, 5.0, 10.0, 15.0, 20.0)):
            vals = {}
            for k in nets:
                acc = []
                for ds_i, ds in enumerate((30.0, 300.0, 3000.0)):
                    sionna.phy.config.seed = 1000 + 10 * i + ds_i
                    x = images.repeat(48, 1, 1, 1)
                    acc.append(psnr_db(x, forward(k, x, Condition(snr_db=snr, delay_spread_ns=ds, tdl_profile="C"),
                                                  link).clamp(0, 1)))
                vals[k] = float(torch.cat(acc).mean())
            for k in ours_names:
                diffs[k].append(vals[k] - vals[REF])
            print(f"| {snr:g} dB | " + " | ".join(f"{vals[k]:.2f}" for k in nets) + " | "
                  + " | ".join(f"{diffs[k][-1]:+.2f}" for k in ours_names) + " |")
    for k in ours_names:
        print(f"mean difference {k} − reference: {statistics.fmean(diffs[k]):+.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
