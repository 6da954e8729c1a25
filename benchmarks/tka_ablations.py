"""The ablations the DeKA-g paper suggests, for the T-KA bank on the generic JSCC: PSNR against the bank's
size, against the bits its tensors are quantised to, and under an error in the SNR the codec believes.

Payload and channel as in ``benchmarks/tka_generic.py`` (the aligned edge's images for held-out prompts,
TDL-C, LS on comb-1 pilots, paired draws), at the rate ``--ratio`` (default 1/6), Es/N0 0 and 20 dB (low
and high SNR) x delay spreads 30, 300, 3000 ns.

- **size**: each ``--sizes LABEL=CKPT`` (CALA checkpoints on the same base, e.g. K = 1, 2, 4, 8), and
  the base alone.
- **bits**: the ``--cala`` bank with every tensor quantised to 8, 4 or 2 bits by the knowledge pack's
  quantiser (per-row scale and offset) and dequantised, against the fp16 bank.
- **condition error**: the ``--cala`` bank told an SNR off by a random error of 3 or 6 dB standard deviation
  (``condition_error_db``; encoder and decoder share the estimate), or by a fixed -6 / +6 dB.

    .venv/bin/python benchmarks/tka_ablations.py --base B.json --cala C.json [--sizes K1=... K4=...] \\
        [--ratio 1/6] [--prompts 64] [--repeats 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
from fractions import Fraction
from pathlib import Path

import torch

SHIPPED_PACK = Path(__file__).resolve().parents[1] / "src" / "dekasim" / "deka" / "data" / "pack"
SNRS = (0.0, 20.0)
SPREADS = (30.0, 300.0, 3000.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True)
    p.add_argument("--cala", required=True)
    p.add_argument("--sizes", nargs="*", default=[])
    p.add_argument("--ratio", type=Fraction, default=Fraction(1, 6))
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from dekasim.codecs import build_codec
    from dekasim.deka.generated import GeneratedSource
    from dekasim.generative.quantise import dequantise_tensor, quantise_tensor, stored_bytes
    from dekasim.training.jscc import evaluate, grid_conditions, make_link

    ratio = float(a.ratio)
    source = GeneratedSource("edge", pack=str(SHIPPED_PACK), prompts="heldout", n_prompts=a.prompts, seed=a.seed,
                             representation="latent")
    latents, to_image = source.latents, (lambda v: source.to_image(v, "latent"))
    conds = grid_conditions(SNRS, SPREADS, bandwidth_ratio=ratio)
    link = make_link("ls", 1)

    def run(codec, conditions=conds) -> dict[float, float]:
        psnr = evaluate(codec, latents, conditions, link, a.repeats, a.seed, to_image=to_image)
        return {snr: statistics.fmean(v for c, v in zip(conds, psnr) if c.snr_db == snr) for snr in SNRS}

    def row(label: str, vals: dict[float, float], ref: dict[float, float] | None = None, extra: str = "") -> None:
        cells = " | ".join(f"{vals[s]:.2f}" + (f" ({vals[s] - ref[s]:+.2f})" if ref else "") for s in SNRS)
        print(f"| {label} | {extra} | {cells} |")

    print(f"# T-KA ablations at 1/{round(1 / ratio)}: {len(latents)} held-out aligned-edge images x {a.repeats} draws, "
          f"TDL-C {list(SPREADS)} ns; PSNR [dB] (difference to the reference in brackets)")
    base = build_codec("jscc_generic", (48, 8, 8), ratio, checkpoint=a.base)
    base_psnr = run(base)
    print("\n## bank size (reference: the base alone)\n")
    print("| bank | adapter + gate parameters | " + " | ".join(f"{s:g} dB" for s in SNRS) + " |")
    print("|---|---:|" + "---:|" * len(SNRS))
    row("base alone", base_psnr, extra="0")
    for spec in [f"shipped={a.cala}", *a.sizes]:
        label, _, ckpt = spec.partition("=")
        codec = build_codec("cala", (48, 8, 8), ratio, checkpoint=ckpt)
        n = codec.num_parameters()
        k = codec.bank.num_adapters
        row(f"{label} (K = {k}{', affine' if codec.bank.affine else ''})", run(codec), base_psnr,
            f"{n['adapters'] + n['gate']} ({100 * (n['adapters'] + n['gate']) / n['base']:.1f} %)")

    print("\n## bits of the bank (reference: the fp16 bank)\n")
    print("| bank tensors | bytes | " + " | ".join(f"{s:g} dB" for s in SNRS) + " |")
    print("|---|---:|" + "---:|" * len(SNRS))
    cala = build_codec("cala", (48, 8, 8), ratio, checkpoint=a.cala)
    ref = run(cala)
    state = {k: v.clone() for k, v in cala.bank.state_dict().items()}
    row("fp16 (shipped)", ref, extra=str(sum(v.numel() * 2 for v in state.values())))
    for bits in (8, 4, 2):
        parts = {k: quantise_tensor(v.float(), bits) for k, v in state.items()}
        size = sum(stored_bytes(q) for q in parts.values())
        cala.bank.load_state_dict({k: dequantise_tensor(q).reshape(state[k].shape) for k, q in parts.items()})
        row(f"{bits}-bit", run(cala), ref, str(size))
    cala.bank.load_state_dict(state)

    print("\n## an error in the SNR the codec believes (reference: the exact SNR)\n")
    print("| SNR the gate sees | | " + " | ".join(f"{s:g} dB" for s in SNRS) + " |")
    print("|---|---|" + "---:|" * len(SNRS))
    row("exact", ref)
    for sd in (3.0, 6.0):
        noisy = build_codec("cala", (48, 8, 8), ratio, checkpoint=a.cala, condition_error_db=sd)
        row(f"random error, {sd:g} dB std", run(noisy), ref)
    for offset in (-6.0, 6.0):
        shifted = build_codec("cala", (48, 8, 8), ratio, checkpoint=a.cala)
        true_snr = shifted._snr_seen
        shifted._snr_seen = lambda cond, batch, at_encoder, f=true_snr, o=offset: f(cond, batch, at_encoder) + o
        row(f"offset {offset:+g} dB", run(shifted), ref)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
