"""dekasim's BER/BLER waterfall of the 5G chain against Sionna's own ``sim_ber`` on the same chain, over AWGN.

The two sides, per MCS and Eb/N0 point, each with the same number of blocks of ``--block-bits`` random
information bits:

* **dekasim**: ``run_scenario`` on a ``[payload] kind = "bits"`` scenario with ``sweep.ebno_db``, codec
  ``digital_bits`` at that MCS, ``tdl_profile = "awgn"``: dekasim's bit source, its chain
  (:class:`~dekasim.codecs.ldpc_chain.LDPCQAMChain`), its link's AWGN path, its Eb/N0 -> Es/N0 conversion and
  its counting, rows as ``results.jsonl`` holds them.
* **Sionna**: ``sionna.phy.utils.sim_ber`` (``early_stop=False``, fixed blocks) on the chain rebuilt from
  Sionna's blocks only (:mod:`dekasim.codecs.sionna_reference`: BinarySource, CRC24A, LDPC5GEncoder with
  the same (k, n), TB5GScrambler, Mapper, AWGN at ``ebnodb2no``, APP Demapper, LDPC5GDecoder).

For each point the table gives both BLERs with exact 95 % Clopper-Pearson intervals over blocks, both BERs,
and z-scores of the differences: BLER pooled two-proportion; BER with the variance of a mean over blocks
(bit errors cluster in a block), from each side's bit errors per block. Under agreement the z-scores scatter as a
standard normal: about 95 % within +-2. Wall and CPU time per block of each side are given.

    .venv/bin/python benchmarks/ber_vs_sim_ber.py                      # 3 MCS x 5 points x 800 blocks, ~3 min
    .venv/bin/python benchmarks/ber_vs_sim_ber.py --blocks 200 --out /tmp/b   # a quick look

Writes ``ber_vs_sim_ber.png`` / ``.pdf`` (BLER and BER vs Eb/N0, semilogy) and ``ber_vs_sim_ber.md`` (the table,
the command, versions) into ``--out`` (default ``plots/``, the files the docs quote) and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import math
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

#: MCS -> Eb/N0 points [dB] across its waterfall at 256-bit blocks (BLER ~0.5 down to ~0.005)
DEFAULT_POINTS = {5: (1.0, 1.25, 1.5, 1.75, 2.0), 13: (3.25, 3.5, 3.75, 4.0, 4.25), 19: (6.0, 6.25, 6.5, 6.75, 7.0)}


def _dekasim(mcs: int, ebnos: tuple[float, ...], block_bits: int, blocks: int, seed: int) -> tuple[list[dict], float, float]:
    from dekasim.scenarios import scenario_from_dict
    from dekasim.sim import run_scenario

    raw = {"name": f"ber-vs-sim-ber-mcs{mcs}", "seed": seed, "payload": {"kind": "bits", "block_bits": block_bits},
           "sweep": {"ebno_db": list(ebnos), "tdl_profile": "awgn", "csi": "perfect"},
           "codecs": [{"codec": "digital_bits", "label": "dekasim", "options": {"mcs": mcs}}],
           "monte_carlo": {"images_per_point": blocks, "max_images_per_point": blocks, "batch_size": 100}}
    w0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp, _per_block_bit_errors() as seen:
        rows = run_scenario(scenario_from_dict(raw), out_dir=tmp, progress=False, plots=False).rows
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    by = {r["ebno_db"]: r for r in rows}
    for r in rows:
        r["block_bit_errors_var"] = float(torch.cat(seen[r["snr_db"]]).var())
    return [by[e] for e in ebnos], wall, cpu


@contextlib.contextmanager
def _per_block_bit_errors():
    """Records the bit errors of every block ``digital_bits`` decodes, by the point's Es/N0 (rows keep only
    sums; the BER's variance needs the spread over blocks). Decoding itself is unchanged."""
    from dekasim.codecs.digital_bits import DigitalBitsCodec

    original = DigitalBitsCodec.decode
    seen: dict[float, list[torch.Tensor]] = {}

    def recording(self, y, no_eff, cond_seen):
        out = original(self, y, no_eff, cond_seen)
        sent = self._tx["bits"]
        errors = (out.payload.reshape(sent.shape).cpu() != sent).sum(1).to(torch.float64)
        seen.setdefault(cond_seen.snr_db, []).append(errors)
        return out

    DigitalBitsCodec.decode = recording
    try:
        yield seen
    finally:
        DigitalBitsCodec.decode = original


def _sionna(mcs: int, ebnos: tuple[float, ...], block_bits: int, blocks: int, seed: int) -> tuple[list[dict], float, float]:
    import sionna.phy
    from sionna.phy.utils import sim_ber

    from dekasim.codecs.sionna_reference import sionna_reference

    sionna.phy.config.seed = seed
    mc_fun, _ = sionna_reference(mcs, block_bits)
    per_block: list[torch.Tensor] = []

    def recording(batch_size, ebno_db):
        b, b_hat = mc_fun(batch_size, ebno_db)
        per_block.append((b != b_hat).sum(-1).to(torch.float64))
        return b, b_hat

    w0, c0 = time.perf_counter(), time.process_time()
    ber, bler = sim_ber(recording, torch.tensor(ebnos, dtype=torch.float64), batch_size=100,
                        max_mc_iter=blocks // 100, early_stop=False, verbose=False)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    errors = torch.cat(per_block).reshape(len(ebnos), -1)
    out = [{"ber": float(ber[i]), "bler": float(bler[i]), "blocks": blocks, "bits": blocks * block_bits,
            "block_errors": int(round(float(bler[i]) * blocks)), "block_bit_errors_var": float(errors[i].var())}
           for i in range(len(ebnos))]
    return out, wall, cpu


def _z_bler(a: dict, b: dict) -> float:
    n1, n2 = a["blocks"], b["blocks"]
    p = (a["block_errors"] + b["block_errors"]) / (n1 + n2)
    if p in (0.0, 1.0):
        return 0.0
    return (a["bler"] - b["bler"]) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))


def _z_ber(a: dict, b: dict, block_bits: int) -> float:
    """BER difference over its standard error with blocks as the independent units (each side's own spread of
    bit errors per block: errors cluster in a block)."""
    se = math.sqrt(a["block_bit_errors_var"] / a["blocks"] + b["block_bit_errors_var"] / b["blocks"]) / block_bits
    return 0.0 if se == 0 else (a["ber"] - b["ber"]) / se


def _fmt_rate(v: float) -> str:
    return "0" if v == 0 else f"{v:.2e}"


def _figure(results: dict, out: Path) -> list[Path]:
    from matplotlib.figure import Figure

    from dekasim.plots import save_figure

    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for (metric, label), ax in zip((("bler", "BLER"), ("ber", "BER")), axes):
        for i, (mcs, res) in enumerate(results.items()):
            xs = res["ebno"]
            for side, style, marker in (("dekasim", "-", "o"), ("sionna", "--", "x")):
                pts = [(x, r[metric]) for x, r in zip(xs, res[side]) if r[metric] > 0]
                ax.semilogy([p[0] for p in pts], [p[1] for p in pts], linestyle=style, marker=marker,
                            color=colors[i % len(colors)], markerfacecolor="none",
                            label=f"MCS {mcs} ({res['what']}), {'dekasim run' if side == 'dekasim' else 'Sionna sim_ber'}")
        ax.set_xlabel("Eb/N0 [dB]")
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.6)
        ax.grid(True, which="minor", alpha=0.2)
    axes[0].set_title("AWGN, 5G LDPC + QAM, blocks of %d bits" % next(iter(results.values()))["block_bits"],
                      fontsize="medium")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small",
               frameon=False)
    return save_figure(fig, out, "ber_vs_sim_ber")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mcs", type=int, nargs="+", default=sorted(DEFAULT_POINTS))
    p.add_argument("--block-bits", type=int, default=256, help="information bits per block (the scenario's)")
    p.add_argument("--blocks", type=int, default=800, help="blocks per point and side (a multiple of 100)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=2033)
    p.add_argument("--out", default="plots", help="where to write the figure and the table (default plots/)")
    a = p.parse_args(argv)
    if a.blocks % 100:
        p.error("--blocks must be a multiple of 100")
    torch.set_num_threads(a.threads)
    import warnings

    warnings.simplefilter("ignore")  # the run's own warnings (none expected over AWGN) would clutter the table
    from dekasim.codecs.mcs import mcs_entry, plan_transport_block

    results: dict[int, dict] = {}
    lines = []
    header = ("| MCS | Eb/N0 [dB] | BLER dekasim [95 % CI] | BLER sim_ber [95 % CI] | z | BER dekasim | BER sim_ber | z |\n"
              "|---|---|---|---|---|---|---|---|")
    zs: list[float] = []
    timing = {"dekasim": [0.0, 0.0], "sionna": [0.0, 0.0]}
    from dekasim.metrics import binomial_ci95

    for mcs in a.mcs:
        ebnos = DEFAULT_POINTS.get(mcs) or p.error(f"no default Eb/N0 points for MCS {mcs}: {sorted(DEFAULT_POINTS)}")
        plan = plan_transport_block(mcs_entry(mcs), a.block_bits)
        what = f"{2 ** plan.mcs.modulation_order}-QAM" if plan.mcs.modulation_order > 2 else "QPSK"
        what += f", R={plan.mcs.rate_x1024:g}/1024"
        ours, w1, c1 = _dekasim(mcs, ebnos, a.block_bits, a.blocks, a.seed)
        theirs, w2, c2 = _sionna(mcs, ebnos, a.block_bits, a.blocks, a.seed + mcs)
        timing["dekasim"][0] += w1
        timing["dekasim"][1] += c1
        timing["sionna"][0] += w2
        timing["sionna"][1] += c2
        results[mcs] = {"ebno": ebnos, "dekasim": ours, "sionna": theirs, "what": what, "block_bits": a.block_bits}
        for e, r, s in zip(ebnos, ours, theirs):
            zb, zr = _z_bler(r, s), _z_ber(r, s, a.block_bits)
            zs += [zb, zr]
            ci_r = binomial_ci95(r["block_errors"], r["blocks"])
            ci_s = binomial_ci95(s["block_errors"], s["blocks"])
            lines.append(f"| {mcs} ({what}) | {e:g} | {_fmt_rate(r['bler'])} [{_fmt_rate(ci_r[0])}, {_fmt_rate(ci_r[1])}] "
                         f"| {_fmt_rate(s['bler'])} [{_fmt_rate(ci_s[0])}, {_fmt_rate(ci_s[1])}] | {zb:+.2f} "
                         f"| {_fmt_rate(r['ber'])} | {_fmt_rate(s['ber'])} | {zr:+.2f} |")
        print(f"MCS {mcs} done: dekasim {w1:.1f} s, sim_ber {w2:.1f} s", file=sys.stderr)
    n_blocks = a.blocks * sum(len(DEFAULT_POINTS[m]) for m in a.mcs)
    within = sum(abs(z) <= 2 for z in zs)
    summary = (f"{len(zs)} z-scores (BLER and BER at {len(zs) // 2} points): largest |z| = {max(abs(z) for z in zs):.2f}, "
               f"{within} of {len(zs)} within +-2 (about 95 % expected if the two agree).")
    cost = (f"Cost per block ({n_blocks} blocks per side, {a.threads} thread): dekasim "
            f"{1e3 * timing['dekasim'][0] / n_blocks:.2f} ms wall / {1e3 * timing['dekasim'][1] / n_blocks:.2f} ms CPU, "
            f"sim_ber {1e3 * timing['sionna'][0] / n_blocks:.2f} ms wall / {1e3 * timing['sionna'][1] / n_blocks:.2f} ms CPU.")
    import importlib.metadata as md

    command = "python benchmarks/ber_vs_sim_ber.py " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    table = "\n".join([header, *lines])
    text = (f"# dekasim against Sionna's sim_ber on the same 5G chain (AWGN)\n\n"
            f"Made by `{command.strip()}` on {_dt.date.today().isoformat()} (sionna-no-rt {md.version('sionna-no-rt')}, "
            f"torch {torch.__version__}, Python {platform.python_version()}); {a.blocks} blocks of {a.block_bits} "
            f"information bits per point and side; BLER intervals: Clopper-Pearson over blocks; z: BLER pooled "
            f"two-proportion, BER over blocks (cluster-robust).\n\n"
            f"<!-- table -->\n{table}\n<!-- /table -->\n\n{summary}\n\n{cost}\n")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ber_vs_sim_ber.md").write_text(text)
    paths = _figure(results, out)
    print(text)
    print("wrote", out / "ber_vs_sim_ber.md", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
