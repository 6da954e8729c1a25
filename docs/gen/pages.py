"""Reference pages generated from the code when the site is built, so they cannot drift from it.

A page writes ``<!-- generated: NAME -->`` where :data:`GENERATORS` ``[NAME]()`` goes:

- ``scenario-reference``: every key of the scenario file (:mod:`dekasim.scenarios.reference`);
- ``codec-options``: every built-in codec's options (``dekasim list CODEC``'s source);
- ``cli-reference``: every command and flag of ``dekasim`` (its argparse parser);
- ``provenance``: how every shipped model, pack and checkpoint was made (their manifests).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "dekasim"
DIRECTIVE = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.M)


def _cell(text: object) -> str:
    return str(text).replace("|", "&#124;").replace("\n", " ")


# --- scenario keys and codec options ---------------------------------------------------------------
def scenario_reference() -> str:
    from dekasim.scenarios.reference import markdown_reference

    return markdown_reference()


def codec_options() -> str:
    from dekasim.codecs import available_codecs
    from dekasim.codecs.base import codec_options_help

    lines = ["<!-- generated from each codec's options_help and __init__ signature (dekasim list CODEC) -->", ""]
    for name, cls in available_codecs().items():
        if ":" in name:
            continue
        summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        lines += [f"### `{name}`", "", _rst(summary), ""]
        helps = codec_options_help(cls)
        if not helps:
            lines += ["No options.", ""]
            continue
        lines += ["| option | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{h.name}` | {_cell(h.type)} | `{_cell(h.default)}` | {_cell(_rst(h.meaning))} |" for h in helps]
        lines.append("")
    return "\n".join(lines)


def _rst(text: str) -> str:
    text = re.sub(r":\w+:`~?([\w.]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return text.replace("``", "`")


# --- the command line ---------------------------------------------------------------------------
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                out[name] = (sub, helps.get(name) or "")
    return out


def _flag_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if a.option_strings:
            name = ", ".join(f"`{s}`" for s in a.option_strings)
            if a.nargs != 0:
                metavar = a.metavar or (("{" + ",".join(map(str, a.choices)) + "}") if a.choices else a.dest.upper())
                name += f" `{metavar}`" + (" …" if a.nargs in ("+", "*") else "")
        else:
            name = f"`{a.metavar or a.dest}`" + (" …" if a.nargs in ("+", "*") else "")
        default = "" if a.default in (None, argparse.SUPPRESS, False) or a.nargs == 0 and a.default is False \
            else f"`{a.default}`" if not isinstance(a.default, list) else ("`" + " ".join(map(str, a.default)) + "`"
                                                                           if a.default else "")
        required = "required" if a.required or not a.option_strings else ""
        choices = f" Values: {', '.join(f'`{c}`' for c in a.choices)}." if a.choices else ""
        repeat = " Repeatable." if isinstance(a, argparse._AppendAction) and "repeatable" not in (a.help or "") else ""
        rows.append(f"| {name} | {required} | {default} | {_cell((a.help or '').strip())}{choices}{repeat} |")
    return rows


def cli_reference() -> str:
    from dekasim.cli import _parser

    os.environ["COLUMNS"] = "100"  # argparse wraps usage lines to the terminal: the same page everywhere
    parser = _parser()
    lines = ["<!-- generated from dekasim.cli._parser(): edit the parser, not this page -->", "",
             "```text", parser.format_usage().strip(), "```", "", parser.description or "", "",
             "| flag | | default | meaning |", "|---|---|---|---|", *_flag_rows(parser), ""]

    def command(prefix: str, parser: argparse.ArgumentParser, level: int) -> None:
        for name, (sub, help_text) in _subparsers(parser).items():
            full = f"{prefix} {name}"
            lines.extend([f"{'#' * level} `{full}`", "", _cell(help_text), "", "```text",
                          sub.format_usage().strip(), "```", ""])
            rows = _flag_rows(sub)
            if rows:
                lines.extend(["| argument | | default | meaning |", "|---|---|---|---|", *rows, ""])
            command(full, sub, level + 1)

    command("dekasim", parser, 2)
    return "\n".join(lines)


def cli_flags() -> dict[str, set[str]]:
    """Every command path -> its option strings (what the reference must show)."""
    from dekasim.cli import _parser

    out: dict[str, set[str]] = {}

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        out[prefix] = {s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")}
        for name, (sub, _) in _subparsers(parser).items():
            walk(f"{prefix} {name}", sub)

    walk("dekasim", _parser())
    return out


# --- provenance of shipped files ------------------------------------------------------------------
def shipped_manifests() -> list[Path]:
    """Every file that records how something shipped was made: model and pack manifests, checkpoint manifests,
    the pack's SHIPPED.json, the MCS table."""
    found = set(PACKAGE.glob("**/manifest*.json")) | set(PACKAGE.glob("codecs/checkpoints/*.json")) \
        | set(PACKAGE.glob("**/SHIPPED.json")) | set(PACKAGE.glob("codecs/data/*.json"))
    return sorted(p for p in found if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _size(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def world_models() -> str:
    """The world's cloud and edge models as their manifests describe them."""
    lines = ["Trained by `dekasim world train`; scored on held-out captions by the world's attribute checker "
             "(`dekasim world check`). Times are those of the training run, on the machine the manifest names.",
             "", "| model | steps | seed | CPU time | files | held-out prompts fully correct (95 % CI) "
             "| shape / colour / size | s/image |", "|---|---|---|---|---|---|---|---|"]
    commands = []
    for path in sorted(PACKAGE.glob("generative/data/models/*/manifest.json")):
        m = json.loads(path.read_text())
        q = m["quality_heldout"]
        lo, hi = q["fully_correct_ci95"]
        per = q["per_attribute"]
        commands.append(f"- {m['preset']}: `{m['command']}` (manifest `{_rel(path)}`)")
        lines.append(f"| {m['preset']}, by its own dialect | {m['steps']} | {m['seed']} | "
                     f"{m['cpu_s'] / 3600:.2f} h | {_size(m['total_bytes'])} | {_pct(q['fully_correct'])} "
                     f"({_pct(lo)} – {_pct(hi)}; n = {q['n']}) | {_pct(per['shape'])} / {_pct(per['colour'])} / "
                     f"{_pct(per['size'])} | {q['sample_s_per_image']:.3f} |")
        if "quality_heldout_by_standard_convention" in m:
            s = m["quality_heldout_by_standard_convention"]
            lo, hi = s["fully_correct_ci95"]
            per = s["per_attribute"]
            lines.append(f"| {m['preset']}, by the cloud's convention | | | | | {_pct(s['fully_correct'])} "
                         f"({_pct(lo)} – {_pct(hi)}; n = {s['n']}) | {_pct(per['shape'])} / {_pct(per['colour'])} / "
                         f"{_pct(per['size'])} | |")
    return "\n".join([*lines, "", "Commands:", "", *commands])


def _mean_interval(v: dict) -> str:
    """``0.925 [0.915, 0.933]`` (an interval) or ``0.925 ± 0.010`` (a half-width)."""
    if v.get("ci95_interval"):
        lo, hi = v["ci95_interval"]
        return f"{v['mean']:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{v['mean']:.3f} ± {v['ci95_halfwidth']:.3f}"


def provenance() -> str:
    manifests = shipped_manifests()
    by_name = {_rel(p): json.loads(p.read_text()) for p in manifests}
    lines = ["<!-- generated from the manifests shipped in src/dekasim (docs/gen/pages.py): they are the "
             "record; this page only reads them -->", ""]

    lines += ["## The world's text-to-image models", "", world_models(), ""]

    fe = [(p, m) for p, m in by_name.items() if m.get("format", "").startswith("dekasim-feature-encoder")]
    if fe:
        lines += ["## The world's feature encoder", "", "The 64-d image embedding behind `feature_cosine`.", "",
                  "| steps | seed | parameters | held-out accuracy (all five attributes) | sha256 |",
                  "|---|---|---|---|---|"]
        for path, m in fe:
            lines.append(f"| {m['steps']} | {m['seed']} | {m['parameters']:,} | "
                         f"{_pct(m['heldout_accuracy']['fully_correct'])} | `{m['sha256'][:16]}…` |")
        lines += ["", *[f"Command: `{m['command']}` (manifest `{path}`)." for path, m in fe], ""]

    lines += ["## JSCC and CALA checkpoints", "",
              "Trained by the JSCC trainer (`python -m dekasim.training.jscc train …`) through the OFDM/TDL link; "
              "each manifest holds the whole configuration, the loss curve and the versions.", "",
              "| checkpoint | codec | payload | rate | parameters | file | steps | seed | CPU s | date |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    commands = []
    for path, m in by_name.items():
        if m.get("format") != "dekasim-jscc/1":
            continue
        t = m.get("training", {})
        params = " + ".join(f"{k} {v:,}" for k, v in m.get("params", {}).items() if isinstance(v, (int, float)))
        lines.append(f"| `{Path(path).stem}` | `{m['codec']}` | {'×'.join(map(str, m['payload_shape']))} | "
                     f"{m.get('bandwidth_ratio_fraction', '')} | {params} | {_size(m['bytes'])} {m['dtype']} | "
                     f"{t.get('steps', '')} | {t.get('seed', '')} | {t.get('cpu_s', '')} | {t.get('date', '')} |")
        commands.append(f"- `{Path(path).stem}`: `{t.get('command', '(none recorded)')}`")
    lines += ["", "The command of each (its manifest beside it: `src/dekasim/codecs/checkpoints/<name>.json`):", "",
              *commands, ""]

    for path, m in by_name.items():
        if Path(path).name != "SHIPPED.json":
            continue
        pack_dir = Path(path).parent
        title = "The default knowledge pack" if pack_dir.name == "pack" else f"Knowledge pack `{pack_dir.name}`"
        lines += [f"## {title} (`{pack_dir}`)", "", _cell(m["what"]), "",
                  f"- command: `{m['command']}` (seed {m['seed']}, {m['threads']} thread(s))"
                  + (f", then `{m['then']}`" if m.get("then") else "") + f", copied from `{m['copied_from']}`",
                  f"- size: {m['size_bytes']:,} B; the edge model it applies to: `{m['base_model_hash'][:16]}…`", "",
                  "| file | bytes | sha256 |", "|---|---|---|"]
        lines += [f"| `{name}` | {f['size_bytes']:,} | `{f['sha256'][:16]}…` |" for name, f in m["files"].items()]
        if m.get("reproduced"):
            lines += ["", f"Reproduced: {_cell(m['reproduced'])}."]
        tc = m.get("test_consistency", {})
        if tc:
            lines += ["", "Consistency on the alignment's test prompts (from the same record): " + "; ".join(
                f"{k.replace('_', ' ')} {_mean_interval(v)} (n = {v['n']})"
                for k, v in tc.items() if isinstance(v, dict) and "mean" in v) + "."]
        manifest = by_name.get(f"{pack_dir}/manifest.json")
        if manifest:
            lines += ["", f"`{pack_dir}/manifest.json` pins every file by sha256 and records each tensor's shape "
                      f"and dtype ({manifest['bits']}-bit; CALA bank over `{manifest['cala']['base']['codec']}` "
                      f"`{manifest['cala']['base']['sha256'][:16]}…`)."]
        lines.append("")

    for path, m in by_name.items():
        if path.startswith("src/dekasim/codecs/data/"):
            lines += [f"## `{Path(path).name}`", "", _cell(m.get("description", "")), "",
                      f"- command: `{m['command']}` (seed {m.get('seed')})",
                      f"- versions: {', '.join(f'{k} {v}' for k, v in m.get('versions', {}).items())}", ""]

    lines += ["## Every record read for this page", ""] + [f"- `{p}`" for p in by_name] + [""]
    return "\n".join(lines)


GENERATORS = {"scenario-reference": scenario_reference, "codec-options": codec_options,
              "world-models": world_models,
              "cli-reference": cli_reference, "provenance": provenance}


def expand(markdown: str) -> str:
    """Every ``<!-- generated: NAME -->`` directive of a page replaced by its generated Markdown."""
    return DIRECTIVE.sub(lambda m: GENERATORS[m.group(1)](), markdown)
