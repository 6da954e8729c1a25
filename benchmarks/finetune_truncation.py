"""How low-rank is a full fine-tune's weight change? Writes the base plus the fine-tune's update of each
convolution truncated to rank r (SVD of the ``[out, in * k * k]`` update; biases and buffers taken whole), one
checkpoint per rank, for ``benchmarks/tka_generic.py --extra truncR=DIR/truncR/...json`` to score beside the
bank and the fine-tune itself (docs/deka/tka.md, "Why the bank stops near three quarters of the fine-tune").

    .venv/bin/python benchmarks/finetune_truncation.py --base BASE.json --finetune FT.json --ranks 4 8 16 --out DIR

Prints, per rank and layer, the share of the update's energy (squared Frobenius norm) the truncation keeps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="manifest of the network before fine-tuning")
    p.add_argument("--finetune", required=True, help="manifest of the fully fine-tuned network")
    p.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)

    from dekasim.codecs.jscc import read_checkpoint, save_checkpoint

    base_manifest, base = read_checkpoint(a.base)
    ft_manifest, ft = read_checkpoint(a.finetune)
    if base_manifest["arch"] != ft_manifest["arch"]:
        raise SystemExit("finetune_truncation: error: the two checkpoints have different architectures")
    stem = Path(a.base).stem
    for r in a.ranks:
        out, kept = {}, []
        for name, w in base.items():
            delta = ft[name] - w
            if name.endswith(".weight") and delta.ndim == 4:
                m = delta.reshape(delta.shape[0], -1)
                u, s, vh = torch.linalg.svd(m, full_matrices=False)
                kept.append(f"{name[4:-7]} {float((s[:r] ** 2).sum() / (s ** 2).sum()):.2f}")
                delta = ((u[:, :r] * s[:r]) @ vh[:r]).reshape(delta.shape)
            out[name] = w + delta
        manifest = {k: ft_manifest[k] for k in ("codec", "arch", "bandwidth_ratio", "payload_shape", "n_channel_uses")}
        manifest["training"] = {"command": f"benchmarks/finetune_truncation.py --ranks {r} (from {a.finetune})",
                                "seed": 0}
        path = save_checkpoint(Path(a.out) / f"trunc{r}", stem, out, manifest)
        print(f"rank {r}: {path}; energy kept per layer: " + ", ".join(kept))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
