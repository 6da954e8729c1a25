"""``dekasim`` command line: run, validate, plot, list, check-codec, world (train/check/sample), align, edge-users.

Errors a user can fix print one line naming the file, key, value and fix, and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from dekasim.errors import ConfigError, DekasimError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    from dekasim import __version__

    p = argparse.ArgumentParser(prog="dekasim", description="Link-level simulator for generative semantic "
                                "communication: 3GPP TDL channels over OFDM with pluggable codecs.")
    p.add_argument("--version", action="version", version=f"dekasim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run every codec x condition point of a scenario")
    r.add_argument("scenario", help="TOML scenario file, e.g. scenarios/default.toml")
    r.add_argument("--out", help="output directory (default: the scenario's output_dir or runs/<name>)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario key, e.g. --set sweep.snr_db=[0,10] (repeatable)")
    r.add_argument("--executor", choices=("local", "ray"), help="where points run (default: the scenario's "
                   "executor, else local): in this process, or as Ray tasks")
    r.add_argument("--address", help="Ray cluster address (e.g. ray://head:10001 or auto); "
                   "without it --executor ray starts a local Ray")
    r.add_argument("--num-cpus", type=int, help="CPUs of a local Ray instance (default: all)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--no-plots", action="store_true", help="do not draw figures at the end")
    r.add_argument("--threads", type=int, default=None, help="torch threads in this process (default: torch's "
                   "choice; 1 is steadier on a machine whose cores other work also uses)")
    v = sub.add_parser("validate", help="check scenario files without running them (one line per file; exit 2 "
                       "if any is invalid)")
    v.add_argument("scenarios", nargs="+", metavar="scenario", help="TOML scenario files")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key in every file, e.g. --set codecs[0].options.mcs=9 (repeatable)")
    sc = sub.add_parser("schema", help="the JSON Schema of scenario files, for TOML editors (taplo / Even Better "
                        "TOML): completion, hover help and checking while you type")
    sc.add_argument("--out", metavar="FILE", help="write it to FILE (default: print it)")
    pl = sub.add_parser("plot", help="(re)draw figures from one or more run directories (overlaid)")
    pl.add_argument("dirs", nargs="+", help="run directories holding results.jsonl")
    pl.add_argument("--out", help="where to write the figures (default: the first directory)")
    pl.add_argument("--x", choices=("snr_db", "ebno_db"), default="snr_db",
                    help="x axis: Es/N0 per data RE (default) or Eb/N0 (codecs that send bits)")
    ls = sub.add_parser("list", help="show codecs, channel profiles and presets; with CODEC, that codec's options")
    ls.add_argument("codec", nargs="?", help="a registered codec name or 'package.module:Class': its options "
                    "(name, type, default, meaning)")
    cc = sub.add_parser("check-codec", help="run the shared codec conformance check on any codec")
    cc.add_argument("codec", help="a registered name or 'package.module:Class'")
    cc.add_argument("--shape", type=int, nargs="+", metavar="N", help="payload item shape, e.g. 3 32 32 "
                    "(default: 3 32 32 for image codecs, else 4 8 8)")
    cc.add_argument("--bandwidth-ratio", default="1/6", help="channel uses per real sample, e.g. 1/6 or 0.0833")
    cc.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="a codec option (value parsed as TOML), repeatable")
    w = sub.add_parser("world", help="the embedded world's text-to-image models: train, check, sample")
    wsub = w.add_subparsers(dest="world_command", required=True)
    wt = wsub.add_parser("train", help="train (or resume) a cloud/edge LDM; reproduces the shipped models")
    wt.add_argument("--preset", choices=("cloud", "edge", "toy"), required=True)
    wt.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    wt.add_argument("--steps", type=int, default=20000, help="optimiser steps of the whole run (default 20000)")
    wt.add_argument("--seed", type=int, default=None, help="default: 11 for cloud, 12 for edge, 0 for toy")
    wt.add_argument("--batch-size", type=int, default=32)
    wt.add_argument("--threads", type=int, default=1, help="torch threads (1 per run is fastest on shared cores)")
    wt.add_argument("--time-budget-s", type=float, default=None, help="stop this call after this long; resume later")
    wt.add_argument("--checkpoint-every", type=int, default=250)
    wt.add_argument("--float32", action="store_true", help="save the UNet in float32 (default float16)")
    wt.add_argument("--check-n", type=int, default=256, help="held-out prompts checked when the run ends (default 256)")
    wt.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    wc = wsub.add_parser("check", help="attribute-checker quality of a model on held-out prompts")
    wc.add_argument("model", help="'cloud', 'edge', a model directory or a `world train` run directory")
    wc.add_argument("--n", type=int, default=256, help="prompts (default 256)")
    wc.add_argument("--split", choices=("heldout", "train", "all"), default="heldout")
    wc.add_argument("--dialect", help="judge by this rendering convention (default: the model's own)")
    wc.add_argument("--seed", type=int, default=0)
    wc.add_argument("--out", help="write the report here as JSON")
    wc.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    ws = wsub.add_parser("sample", help="generate images for prompts into one PNG grid")
    ws.add_argument("model")
    ws.add_argument("--prompt", action="append", required=True, help="a caption (repeatable)")
    ws.add_argument("--seed", type=int, default=0)
    ws.add_argument("--out", required=True, help="PNG file")
    ws.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    a = sub.add_parser("align", help="MAKD: align the edge model to the cloud model (pack + report)")
    _alignment_args(a, out_help="output directory (packs, report.json/.md, grid.png)")
    a.add_argument("--methods", default="none,metaword,lora,makd", help="comma-separated subset")
    a.add_argument("--bits", default="8,4,2", help="quantisation levels of the MAKD pack ('' for none)")
    a.add_argument("--cala", metavar="PATH", default=None,
                   help="a CALA checkpoint manifest (cala-*.json, its base checkpoint beside it): every pack "
                        "written also carries its bank + gate, and the report gives sizes with and without it")
    r = sub.add_parser("random-models", help="random-weight models in the real layouts (diffusers pipeline folders "
                       "for cloud and edge, DINOv2, CLIP vision) to try the own-models commands with nothing downloaded")
    r.add_argument("--preset", choices=["tiny", "sd15"], default="tiny",
                   help="tiny (seconds; 64 px, 4x8x8 latents) or sd15 (an SD-1.5-sized cloud, a BK-SDM-Tiny-sized "
                        "edge, DINOv2-B, CLIP-L: several GB)")
    r.add_argument("--out", required=True, help="directory: cloud/, edge/, dino/, clip/")
    r.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("build-pack", help="a whole knowledge pack for your models: MAKD -> generic JSCC -> S_EG -> "
                       "CALA -> pack (resumable)")
    _alignment_args(b, out_help="build directory: align/, jscc/, cache/, pack/, build.json")
    b.add_argument("--base", metavar="JSCC.json", default=None, help="the edge's pre-installed JSCC (default: train "
                   "the generic one on natural-photo latents of the edge's VAE)")
    b.add_argument("--photos", metavar="DIR", default=None, help="your photos for the generic JSCC (default: the "
                   "shipped training photos)")
    b.add_argument("--rates", nargs="+", default=["1/24", "1/12", "1/6"], help="bandwidth ratios the generic JSCC "
                   "serves (default 1/24 1/12 1/6)")
    b.add_argument("--base-steps", type=int, default=4000)
    b.add_argument("--base-items", type=int, default=2048, help="photo latents the generic JSCC trains on")
    b.add_argument("--seg-items", type=int, default=1024, help="S_EG: the aligned edge's images the bank trains on")
    b.add_argument("--cala-steps", type=int, default=2000)
    b.add_argument("--batch", type=int, default=32)
    pb = sub.add_parser("pack-bank", help="a pack with another CALA bank: the metaword(s) and G-LoRA(s) of --pack "
                        "(as loaded) with the bank + gate of --cala, written at --bits")
    pb.add_argument("--pack", required=True, help="a knowledge-pack directory (its generation part is kept)")
    pb.add_argument("--cala", required=True, metavar="PATH", help="a CALA checkpoint manifest (cala-*.json, its base "
                    "checkpoint beside it)")
    pb.add_argument("--bits", default="8", help="8, 4, 2 or 'none' (unquantised); LoRA and bank quantised per row")
    pb.add_argument("--out", required=True, help="the new pack's directory (not --pack itself)")
    _edge_users_args(sub)
    return p


def _edge_users_args(sub: Any) -> None:
    """``dekasim edge-users``: a command, not a scenario table, because it is a stateful slot simulation over users
    (one cache, one queue of fetches, users waiting on the same broadcast), not a sweep of independent link points.
    The defaults are those of :class:`dekasim.deka.edge_users.EdgeSettings` (a test keeps them equal; the parser
    imports nothing heavy)."""
    e = sub.add_parser("edge-users", help="an edge serving U users with distinct knowledge packs: pack cache "
                       "(LRU/LFU, bytes), broadcast fetches over the simulated downlink (ARQ), adapter switching "
                       "measured on the edge; results.json, edge_users.md, figures")
    e.add_argument("--out", required=True, help="output directory (a rerun into it reuses its simulated fetches)")
    e.add_argument("--catalogue", metavar="FILE", help="catalogue JSON: subjects, packs, consistencies (default: "
                   "the shipped pack; schema in docs/edge_users.md)")
    e.add_argument("--catalogue-size", type=int, default=16, help="N subjects; beyond the real ones, modelled "
                   "copies cycling their pack bytes and consistencies (default 16)")
    e.add_argument("--users", default="1,2,4,8,16,32,64", help="numbers of users U (default 1,2,4,8,16,32,64)")
    e.add_argument("--cache-bytes", default="1000000,2000000,4000000", help="edge cache sizes [B] (default "
                   "1000000,2000000,4000000: room for 4, 9 and 18 shipped packs)")
    e.add_argument("--policy", default="lru,lfu", help="cache policies: lru, lfu (default both)")
    e.add_argument("--zipf", default="0,1.2", help="Zipf exponents of subject popularity, 0 = uniform (default 0,1.2)")
    e.add_argument("--slots", type=int, default=1000, help="request slots T of 100 ms (see "
                   "--pack-channel-uses-per-slot), one image per user each (default 1000)")
    e.add_argument("--replications", type=int, default=5, help="independent runs per configuration (default 5)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--snr-db", type=float, default=10.0, help="users' mean Es/N0 per data RE [dB] (default 10)")
    e.add_argument("--snr-std-db", type=float, default=4.0, help="its spread [dB] (default 4)")
    e.add_argument("--snr-step-db", type=float, default=5.0, help="users' Es/N0 rounded to this step [dB] (default 5)")
    e.add_argument("--snr-min-db", type=float, default=5.0, help="... and clipped to [min, max] (default 5)")
    e.add_argument("--snr-max-db", type=float, default=15.0, help="(default 15)")
    e.add_argument("--mcs-margin-db", type=float, default=5.0, help="select_mcs at Es/N0 minus this (default 5)")
    e.add_argument("--downlink-outcomes", type=int, default=4, help="simulated outcomes per (pack, MCS, Es/N0) that "
                   "fetches draw from (default 4)")
    e.add_argument("--tdl-profile", default="C", help="downlink channel profile (default C)")
    e.add_argument("--delay-spread-ns", type=float, default=300.0, help="its RMS delay spread [ns] (default 300)")
    e.add_argument("--csi", default="ls", help="perfect, ls or lmmse (default ls)")
    e.add_argument("--image-channel-uses", type=int, default=512,
                   help="channel uses per image (default 512: 48x8x8 latents at 1/6)")
    e.add_argument("--pack-channel-uses-per-slot", type=int, default=1526400,
                   help="pack downlink per slot (default 1526400: a 20 MHz carrier, 100 ms slots)")
    e.add_argument("--serve-order", default="grouped", help="grouped (by adapter within a slot) or arrival "
                   "(default grouped)")
    e.add_argument("--adapter-timing", default="measure", help="'measure' on the shipped edge, 'skip', or an "
                   "earlier results.json to reuse its measured costs")
    e.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    e.add_argument("--no-plots", action="store_true", help="no figures")


def _cmd_edge_users(args: argparse.Namespace) -> int:
    """``dekasim edge-users``: :func:`dekasim.deka.edge_users_report.write_edge_users`, then the figures."""
    import torch

    from dekasim.deka.edge_users_report import edge_configs, edge_settings, parse_list, write_edge_users

    if args.threads < 1:
        raise ConfigError("--threads", args.threads, "a positive number of torch threads", "e.g. --threads 1")
    torch.set_num_threads(args.threads)
    configs = edge_configs(parse_list("--users", args.users, int, "1,2,4,8"),
                           parse_list("--cache-bytes", args.cache_bytes, int, "1000000,4000000"),
                           parse_list("--policy", args.policy, str, "lru,lfu"),
                           parse_list("--zipf", args.zipf, float, "0,0.8,1.2"))
    settings = edge_settings(
        slots=args.slots, replications=args.replications, image_channel_uses=args.image_channel_uses,
        pack_channel_uses_per_slot=args.pack_channel_uses_per_slot, serve_order=args.serve_order,
        catalogue_size=args.catalogue_size, seed=args.seed, snr_db_mean=args.snr_db, snr_db_std=args.snr_std_db,
        snr_db_step=args.snr_step_db, snr_db_min=args.snr_min_db, snr_db_max=args.snr_max_db,
        tdl_profile=args.tdl_profile, delay_spread_ns=args.delay_spread_ns, csi=args.csi,
        mcs_margin_db=args.mcs_margin_db, downlink_outcomes=args.downlink_outcomes)
    logging.getLogger("dekasim").setLevel(logging.INFO)
    paths = write_edge_users(args.out, configs, settings, args.catalogue, args.adapter_timing, command=_command_line(),
                             progress=True)
    print(f"{len(configs)} configuration(s) x {settings.replications} replication(s) -> {paths['results']}, "
          f"{paths['markdown']}; simulated fetches: {paths['outcomes']}")
    if not args.no_plots:
        from dekasim.plots.edge_users import plot_edge_users

        for fig in plot_edge_users(paths["results"], args.out):
            print(f"figure: {fig}")
    return 0


def _alignment_args(a: argparse.ArgumentParser, out_help: str) -> None:
    """The flags ``align`` and ``build-pack`` share: models, subject, prompts, encoders, device, settings."""
    a.add_argument("--cloud", default="cloud", help="'cloud', a model directory (Stable-Diffusion layout) or a run "
                   "directory")
    a.add_argument("--edge", default="edge", help="'edge', a model directory (Stable-Diffusion layout) or a run "
                   "directory")
    a.add_argument("--out", required=True, help=out_help)
    a.add_argument("--subject", action="append", default=None,
                   help="the word to align (default triangle); with --prompts, a word every prompt holds (e.g. sks). "
                        "Given several times (dekasim align): one pack aligning every subject, its G-LoRA per subject "
                        "or joint, chosen on validation; with your models, one --prompts per --subject, in order")
    a.add_argument("--prompts", metavar="FILE", action="append", default=None,
                   help="your subject prompts, one per line, each holding --subject: split deterministically into "
                        "train (the cloud's S_CG), validation and test; without it the embedded world's prompts")
    a.add_argument("--control-prompts", metavar="FILE", default=None, help="prompts without the subject (optional)")
    a.add_argument("--val-prompts", metavar="FILE", default=None, help="fixed validation prompts (default: a share "
                   "of --prompts)")
    a.add_argument("--test-prompts", metavar="FILE", default=None, help="fixed test prompts (default: a share of "
                   "--prompts)")
    a.add_argument("--images-per-prompt", type=int, default=1, help="cloud images per training prompt (default 1)")
    a.add_argument("--image-encoder", action="append", default=[], metavar="NAME=DIR",
                   help="an image encoder from a local folder (DINO, CLIP, any transformers vision model; 'world' is "
                        "the embedded world's feature encoder) scoring <NAME>_cosine (repeatable; with --prompts)")
    a.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    a.add_argument("--dtype", default="float32", help="precision of what only runs: the cloud's sampling and the "
                   "image encoders (float32, float16, bfloat16: half precision on a GPU); the edge trains in float32")
    a.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an AlignConfig field, e.g. budget_steps=600 or lora_rank=4 (repeatable)")


def _cmd_run(args: argparse.Namespace) -> int:
    from dekasim.sim import run_scenario

    command = _command_line()
    if args.threads is not None:
        if args.threads < 1:

            raise ConfigError("--threads", args.threads, "a positive number of torch threads", "e.g. --threads 1")
        import torch

        torch.set_num_threads(args.threads)
    result = run_scenario(args.scenario, out_dir=args.out, overrides=args.overrides, progress=not args.no_progress,
                          plots=not args.no_plots, command=command, executor=args.executor,
                          address=args.address, num_cpus=args.num_cpus)
    new = len(result.rows) - result.skipped
    print(f"{new} point(s) run, {result.skipped} already done -> {result.out_dir}/results.jsonl, results.csv, "
          f"manifest.json")
    if result.generation is not None:
        g = result.generation
        print(f"generation: {g['sampled']} latent(s) sampled, {g['cache_hits']} from the cache; report: "
              f"{result.out_dir}/deka_report.md")
    if result.timing:
        print("wall time [s]: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timing.items()))
    for fig in result.figures:
        print(f"figure: {fig}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    """Each file checked on its own: ``FILE: valid (...)`` on stdout, or its one-line error on stderr."""
    from dekasim.scenarios import load_scenario
    from dekasim.sim import sweep_points, validate_scenario

    def located(path: str, text: str) -> str:
        return text if path in text else f"{path}: {text}"

    status = 0
    for path in args.scenarios:
        with warnings.catch_warnings(record=True) as caught:  # a file's warnings name the file
            warnings.simplefilter("always")
            try:
                scenario = load_scenario(path, args.overrides)
                validate_scenario(scenario)
                error = None
            except DekasimError as err:
                error = err
        for text in dict.fromkeys(str(w.message) for w in caught):
            print(f"dekasim: warning: {located(path, text)}", file=sys.stderr)
        if error is not None:
            print(f"dekasim: error: {located(path, str(error))}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        print(f"{path}: valid ({len(sweep_points(scenario))} points, {len(scenario.codecs)} codecs, "
              f"hash {scenario.hash()})")
    return status


def _cmd_schema(args: argparse.Namespace) -> int:
    from dekasim.scenarios.reference import json_schema_text

    text = json_schema_text()
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError("--out", args.out, "a file path, not a directory", "e.g. --out scenario.schema.json")
    out.write_text(text)
    print(f"schema: {out}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from dekasim.plots import plot_run

    for d in args.dirs:
        if not (Path(d) / "results.jsonl").exists():
            raise ConfigError("dirs", d, "a run directory containing results.jsonl", "run `dekasim run` first")
    out = Path(args.out or args.dirs[0])
    for fig in plot_run([Path(d) for d in args.dirs], out, x=args.x):
        print(f"figure: {fig}")
    return 0


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line (never cut)."""
    import inspect

    paragraph = inspect.cleandoc(doc or "").split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def _wrap(text: str, indent: str, first: str = "") -> str:
    """``first`` + ``text`` wrapped to the terminal (100 columns where there is none), continuation lines
    indented by ``indent``; nothing is cut."""
    import shutil
    import textwrap

    width = max(shutil.get_terminal_size((100, 24)).columns, 60)
    return textwrap.fill(text, width=width, initial_indent=first, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) if text else first.rstrip()


def _list_codec(spec: str) -> int:
    """``dekasim list CODEC``: what the codec is and its options, one block per option."""
    from dekasim.codecs.base import codec_options_help, resolve_codec

    try:
        cls = resolve_codec(spec)
    except ConfigError as err:
        raise ConfigError("list CODEC", spec, err.expected, err.fix) from None
    print(_wrap(_summary(cls.__doc__), "    ", f"{spec} [{cls.kind}, payloads: {', '.join(cls.payload_kinds)}]: "))
    options = codec_options_help(cls)
    if not options:
        print("options: none")
        return 0
    print(f"options (a scenario: [[codecs]] options = {{ NAME = VALUE }}; the command line: "
          f"--set codecs[i].options.NAME=VALUE):")
    for o in options:
        print(f"  {o.name}  ({o.type}; default {o.default})" if o.default else f"  {o.name}  ({o.type})")
        print(_wrap(o.meaning, "      ", "      "))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from dekasim.codecs import available_codecs
    from dekasim.conditions import FIXED_TDL_PROFILES, FLAT_PROFILES, SCALABLE_TDL_PROFILES
    from dekasim.scenarios import DELAY_SPREAD_PRESETS_NS

    if args.codec:
        return _list_codec(args.codec)
    print("codecs (`dekasim list CODEC` shows one's options):")
    for name, cls in available_codecs().items():
        print(_wrap(_summary(cls.__doc__), " " * 20, f"  {name:<16}  [{cls.kind}] "))
    print("channel profiles (sweep.tdl_profile):")
    print(f"  scalable TR 38.901 TDL (use delay_spread_ns): {', '.join(SCALABLE_TDL_PROFILES)}")
    print("  fixed TS 38.101-4 TDL (own delay spread): "
          + ", ".join(f"{k} ({v:g} ns)" for k, v in FIXED_TDL_PROFILES.items()))
    print(f"  flat: {', '.join(FLAT_PROFILES)}")
    print("delay spread presets (sweep.delay_spread_ns, TR 38.901 Table 7.7.3-1):")
    for k, v in DELAY_SPREAD_PRESETS_NS.items():
        print(f"  {k:<12} {v:g} ns")
    print("receivers (sweep.csi): perfect, ls, lmmse")
    print('systems ([[systems]] of [payload] kind = "deka"): edge = "aligned" (the pack\'s metaword + G-LoRA) or '
          '"unaligned"; codec = "preinstalled" (the edge\'s pre-installed JSCC; bank = "pack" adds the pack\'s CALA '
          'bank + gate) or any codec above')
    return 0


def _cmd_check_codec(args: argparse.Namespace) -> int:
    from fractions import Fraction

    from dekasim.codecs.conformance import check_codec
    from dekasim.scenarios.schema import parse_override

    try:
        ratio = float(Fraction(args.bandwidth_ratio))
    except (ValueError, ZeroDivisionError):
        raise ConfigError("--bandwidth-ratio", args.bandwidth_ratio, "a positive number or fraction, e.g. 1/6") from None
    if ratio <= 0:
        raise ConfigError("--bandwidth-ratio", args.bandwidth_ratio, "a positive number or fraction, e.g. 1/6")
    options = {}
    for text in args.options:
        path, value = parse_override(text)
        options[".".join(path)] = value
    results = check_codec(args.codec, tuple(args.shape) if args.shape else None, ratio, options)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<20} {r.detail}")
    failed = [r.name for r in results if not r.passed]
    print(f"{args.codec}: {len(results) - len(failed)} passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


def _command_line() -> str | None:
    return "dekasim " + " ".join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name in ("dekasim", "__main__.py") \
        else None


def _cmd_world(args: argparse.Namespace) -> int:
    from dekasim.generative.cli_support import world_check, world_sample, world_train

    handler = {"train": world_train, "check": world_check, "sample": world_sample}[args.world_command]
    return handler(args, _command_line())


def _align_overrides(items: list[str]) -> dict[str, Any]:
    from dekasim.generative.align_config import AlignConfig

    fields = {f.name: f for f in dataclasses.fields(AlignConfig)}
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError("--set", item, "KEY=VALUE", "e.g. --set budget_steps=600")
        key, value = item.split("=", 1)
        key = key.strip().removeprefix("align.")
        if key not in fields:
            raise ConfigError("--set", key, f"an alignment setting, one of {sorted(fields)}")
        default = fields[key].default
        try:
            if isinstance(default, bool):
                out[key] = value.lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                out[key] = int(value)
            elif isinstance(default, float) or key in ("lora_alpha",):
                out[key] = float(value)
            else:
                out[key] = value
        except ValueError:
            raise ConfigError(f"align.{key}", value, f"a {type(default).__name__ if default is not None else 'number'}",
                              f"e.g. --set {key}={default}") from None
    return out


def _load_model_arg(spec: str, flag: str):
    """A text-to-image model for a command-line flag; its errors name the flag."""
    from dekasim.generative.models import load_model

    try:
        return load_model(spec)
    except ConfigError as err:
        field = flag if err.field in ("model", "model_dir") else f"{flag} {err.field}"
        raise ConfigError(field, err.value, err.expected, err.fix) from None


def _prompt_file_task(args: argparse.Namespace, config, device: str):
    """The alignment task of ``dekasim align --prompts FILE ...`` (a user's subject, prompts and encoders)."""
    from dekasim.devices import resolve_dtype
    from dekasim.generative.align_task import load_image_encoders, prompt_file_task
    from dekasim.generative.prompts import read_prompt_file

    prompts = read_prompt_file(args.prompts, "--prompts")
    files = {"prompts": args.prompts}
    extra: dict[str, Any] = {}
    for key, flag in (("control", "--control-prompts"), ("val", "--val-prompts"), ("test", "--test-prompts")):
        path = getattr(args, flag[2:].replace("-", "_"))
        if path is not None:
            extra[key] = read_prompt_file(path, flag)
            files[key] = path
    encoders = load_image_encoders(_encoder_spec(args), device=device, dtype=resolve_dtype(args.dtype))
    return prompt_file_task(config, prompts, encoders, images_per_prompt=args.images_per_prompt, files=files, **extra)


def _alignment_task(args: argparse.Namespace, edge, device: str):
    """The alignment task of ``align`` / ``build-pack``: the user's prompt files and encoders, or the world's."""
    from dekasim.generative.align_config import AlignConfig
    from dekasim.generative.align_task import world_task

    subjects = _subjects(args)
    if len(subjects) > 1:
        raise ConfigError("--subject", subjects, "one subject here (several: dekasim align)",
                          "run dekasim align --subject A --subject B, then train the bank on its pack")
    args.subject = subjects[0]
    files = args.prompts or []
    if len(files) > 1:
        raise ConfigError("--prompts", files, "one prompt file for the one --subject",
                          "give --subject once per prompt file, in the same order")
    args.prompts = files[0] if files else None
    config = AlignConfig(subject=args.subject, **_align_overrides(args.overrides))
    if args.prompts is not None:
        return _prompt_file_task(args, config, device)
    if not edge.config.world:
        raise ConfigError("--prompts", None, "a prompt file: the edge model is not one of the embedded world, "
                          "whose prompts are the default", f"write prompts holding '{args.subject}', one per "
                          "line, and give --prompts FILE --image-encoder NAME=DIR")
    for flag in ("control_prompts", "val_prompts", "test_prompts", "image_encoder"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag.replace('_', '-')}", getattr(args, flag), "nothing without --prompts "
                              "(the embedded world's alignment has its own prompts and scores)")
    return world_task(edge, config)


def _cmd_align_multi(args: argparse.Namespace) -> int:
    """``dekasim align --subject A --subject B ...`` on the embedded world's models."""
    from dekasim.deka.multi_alignment import run_multi_alignment
    from dekasim.devices import resolve_device, resolve_dtype
    from dekasim.generative.align_config import AlignConfig

    subjects = _subjects(args)
    files = args.prompts or []
    for flag in ("val_prompts", "test_prompts"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag.replace('_', '-')}", getattr(args, flag), "nothing with several --subject "
                              "(each subject's file is split into train, validation and test)",
                              "leave it out, or align the subjects one at a time")
    if files and len(files) != len(subjects):
        raise ConfigError("--prompts", files, f"one prompt file per --subject ({len(subjects)}: {subjects}), in the "
                          "same order", "e.g. --subject sks --prompts dog.txt --subject cat --prompts cat.txt")
    if not files:
        for flag in ("control_prompts", "image_encoder"):
            if getattr(args, flag):
                raise ConfigError(f"--{flag.replace('_', '-')}", getattr(args, flag), "nothing without --prompts "
                                  "(the embedded world's alignment has its own prompts and scores)")
    bits = [int(b) for b in args.bits.split(",") if b.strip()] if args.bits else []
    overrides = _align_overrides(args.overrides)
    config = AlignConfig(subject=subjects[0], **overrides)
    device = resolve_device(args.device)
    cloud, edge = (_load_model_arg(spec, flag) for spec, flag in ((args.cloud, "--cloud"), (args.edge, "--edge")))
    tasks = control = None
    if files:
        tasks, control = _multi_prompt_file_tasks(args, subjects, files, overrides, device)
    elif not edge.config.world:
        raise ConfigError("--prompts", None, "one prompt file per --subject: the edge model is not one of the "
                          "embedded world, whose prompts are the default",
                          "e.g. --subject sks --prompts dog.txt --subject cat --prompts cat.txt --image-encoder NAME=DIR")
    cloud.to(dtype=resolve_dtype(args.dtype))
    logging.getLogger("dekasim").setLevel(logging.INFO)
    run_multi_alignment(cloud, edge, subjects, config, out_dir=args.out, bits=bits, command=_command_line(),
                        cala=getattr(args, "cala", None), progress=True, device=device, tasks=tasks, control=control)
    out = Path(args.out)
    print((out / "report.md").read_text())
    print(f"report -> {out / 'report.json'}, {out / 'report.md'}, {out / 'grid.png'}; packs -> {out}/pack*")
    return 0


def _cmd_pack_bank(args: argparse.Namespace) -> int:
    """``dekasim pack-bank``: :func:`dekasim.deka.pack_codec.with_cala` on a loaded pack, saved at ``--bits``.

    Give the *unquantised* pack (``OUT/pack`` of ``dekasim align``): its G-LoRA quantised here is then the one
    ``dekasim align`` writes at the same bits, byte for byte (a quantised pack loads dequantised, and would be
    quantised twice).
    """
    from dekasim.deka.pack_codec import with_cala
    from dekasim.generative.pack import load_pack, pack_size_bytes, save_pack

    bits = None if args.bits.strip().lower() in ("none", "") else args.bits.strip()
    if bits is not None and bits not in ("8", "4", "2"):
        raise ConfigError("--bits", args.bits, "8, 4, 2 or none")
    src, out = Path(args.pack), Path(args.out)
    if out.resolve() == src.resolve():
        raise ConfigError("--out", args.out, "a directory other than --pack", "write the new pack beside the old one")
    pack = with_cala(load_pack(src), args.cala)
    pack.info = {**pack.info, "bank_from": str(args.cala), "generation_from": str(src)}
    save_pack(pack, out, bits=None if bits is None else int(bits))
    print(f"pack -> {out} ({pack_size_bytes(out)} B; subjects {', '.join(pack.subjects) or 'none'}; bank "
          f"{pack.cala.source.get('file') if pack.cala.source else args.cala})")
    return 0


def _multi_prompt_file_tasks(args: argparse.Namespace, subjects: list[str], files: list[str],
                             overrides: dict[str, Any], device: str):
    """Each subject's alignment task from its prompt file (the same image encoders), and the control prompts
    (``--control-prompts``) split into validation and test halves."""
    from dekasim.deka.multi_alignment import split_control
    from dekasim.devices import resolve_dtype
    from dekasim.generative.align_config import AlignConfig
    from dekasim.generative.align_task import load_image_encoders, prompt_file_task
    from dekasim.generative.prompts import read_prompt_file

    encoders = load_image_encoders(_encoder_spec(args), device=device, dtype=resolve_dtype(args.dtype))
    tasks = {}
    for subject, path in zip(subjects, files):
        config = AlignConfig(subject=subject, **overrides)
        tasks[subject] = prompt_file_task(config, read_prompt_file(path, "--prompts"), encoders,
                                          images_per_prompt=args.images_per_prompt, files={"prompts": path})
    control = None
    if args.control_prompts:
        control = split_control(read_prompt_file(args.control_prompts, "--control-prompts"), subjects,
                                tasks[subjects[0]].config.seed)
    return tasks, control


def _encoder_spec(args: argparse.Namespace) -> dict[str, str]:
    """``--image-encoder NAME=DIR`` flags as ``{name: dir}``."""
    spec: dict[str, str] = {}
    for item in args.image_encoder:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError("--image-encoder", item, "NAME=DIR", "e.g. --image-encoder dino=models/dinov2-small")
        spec[name.strip()] = path.strip()
    return spec


def _cmd_build_pack(args: argparse.Namespace) -> int:
    """``dekasim build-pack``: :func:`dekasim.training.build_pack.build_pack`; prints where each product is."""
    from dekasim.devices import resolve_device
    from dekasim.training.build_pack import BuildSettings, build_pack

    device = resolve_device(args.device)
    from dekasim.generative.models import check_model_spec

    edge = _load_model_arg(args.edge, "--edge")  # checked before anything is written (the cloud loads in stage 1)
    try:
        check_model_spec(args.cloud)
    except ConfigError as err:
        raise ConfigError("--cloud", err.value, err.expected, err.fix) from None
    task = _alignment_task(args, edge, device)
    del edge
    settings = BuildSettings(base=args.base, rates=tuple(args.rates), base_steps=args.base_steps,
                             base_items=args.base_items, photos=args.photos, seg_items=args.seg_items,
                             cala_steps=args.cala_steps, batch=args.batch, seed=task.config.seed, device=device,
                             dtype=args.dtype)
    logging.getLogger("dekasim").setLevel(logging.INFO)
    record = build_pack(args.cloud, args.edge, lambda: task, args.out, settings, command=_command_line(),
                        progress=True)
    out = Path(args.out)
    for name, stage in record["stages"].items():
        print(f"{name}: {', '.join(str(out / f) for f in stage['product'].get('files', []))} ({stage['wall_s']:.0f} s)")
    print(f"pack -> {out / 'pack'} (a DeKA-g scenario takes pack = \"{out / 'pack'}\"); progress -> {out / 'build.json'}")
    return 0


def _cmd_random_models(args: argparse.Namespace) -> int:
    """``dekasim random-models``: :mod:`dekasim.generative.random_models` into ``--out``."""
    from dekasim.generative.random_models import write_clip_vision, write_dino, write_sd_pipeline

    out = Path(args.out)
    cloud_unet = {"block_out_channels": [32, 64]} if args.preset == "tiny" else None
    paths = [write_sd_pipeline(out / "cloud", args.preset, seed=args.seed + 2, unet=cloud_unet),
             write_sd_pipeline(out / "edge", "tiny" if args.preset == "tiny" else "bk-sdm-tiny", seed=args.seed + 1),
             write_dino(out / "dino", args.preset, seed=args.seed + 3),
             write_clip_vision(out / "clip", args.preset, seed=args.seed + 4)]
    print("random weights (they draw noise: for trying the commands, not for results) -> "
          + ", ".join(str(p) for p in paths))
    return 0


def _subjects(args: argparse.Namespace) -> list[str]:
    """The ``--subject`` words given (default ``triangle``), each once, in order."""
    return list(dict.fromkeys(args.subject or ["triangle"]))


def _cmd_align(args: argparse.Namespace) -> int:
    """``dekasim align``: :func:`dekasim.deka.alignment.run_alignment` on the models of ``args``, or with several
    ``--subject`` :func:`dekasim.deka.multi_alignment.run_multi_alignment`; prints the report."""
    from dekasim.deka.alignment import run_alignment
    from dekasim.devices import resolve_device, resolve_dtype

    if len(_subjects(args)) > 1:
        return _cmd_align_multi(args)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bits = [int(b) for b in args.bits.split(",") if b.strip()] if args.bits else []
    device = resolve_device(args.device)
    cloud, edge = (_load_model_arg(spec, flag) for spec, flag in ((args.cloud, "--cloud"), (args.edge, "--edge")))
    cloud.to(dtype=resolve_dtype(args.dtype))  # the cloud only samples
    task = _alignment_task(args, edge, device)
    logging.getLogger("dekasim").setLevel(logging.INFO)
    report = run_alignment(cloud, edge, out_dir=args.out, methods=methods, bits=bits, command=_command_line(),
                           cala=getattr(args, "cala", None), progress=True, task=task, device=device)
    out = Path(args.out)
    print((out / "report.md").read_text())
    print(f"report -> {out / 'report.json'}, {out / 'report.md'}, {out / 'grid.png'}; packs -> {out}/pack*; "
          f"{report['wall_s']:.0f} s")
    return 0


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """One line per warning: ``dekasim: warning: MESSAGE`` for dekasim's own (a category defined in dekasim,
    e.g. ``PhysicsWarning``, or one issued from its code); others also name their category and origin.
    Never the raw source line."""
    import dekasim

    package = Path(dekasim.__file__).resolve().parent
    try:
        own = category.__module__.startswith("dekasim") or Path(filename).resolve().is_relative_to(package)
    except (OSError, ValueError):
        own = False
    if own:
        return f"dekasim: warning: {message}\n"
    return f"dekasim: warning: {category.__name__}: {message} ({filename}:{lineno})\n"


def _show_warnings_once() -> None:
    """This command shows each distinct warning (category and text) once, as one line (:func:`_format_warning`).

    Python's own ``"once"`` filter cannot do it: its registry is per module and is reset whenever any
    library adds a filter, so a warning met at validation and again at the first point showed twice."""
    shown: set[tuple[type[Warning], str]] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        key = (category, str(message))
        if key in shown:
            return
        shown.add(key)
        stream = file if file is not None else sys.stderr
        try:
            stream.write(_format_warning(message, category, filename, lineno))
        except (OSError, ValueError):  # stderr closed or gone: a warning must not end the run
            pass

    warnings.simplefilter("default")
    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="dekasim: %(levelname)s: %(message)s")
    handlers = {"run": _cmd_run, "validate": _cmd_validate, "schema": _cmd_schema, "plot": _cmd_plot, "list": _cmd_list,
                "world": _cmd_world, "align": _cmd_align, "build-pack": _cmd_build_pack, "pack-bank": _cmd_pack_bank,
                "random-models": _cmd_random_models,
                "check-codec": _cmd_check_codec, "edge-users": _cmd_edge_users}
    try:
        with warnings.catch_warnings():  # the command's way of showing warnings, undone when it returns
            _show_warnings_once()
            return handlers[args.command](args)
    except DekasimError as err:
        print(f"dekasim: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dekasim: interrupted; finished points are saved, rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (dekasim list | head): stop quietly, as Unix tools do
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush of stdout does not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
