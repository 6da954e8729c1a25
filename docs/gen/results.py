"""Result tables and figures in the docs come from result files, quoted when the site is built.

A page writes a directive where a result goes; :func:`expand` replaces it by the file's table or figure and a
line naming the command that made the file and the commit that last changed it:

- ``<!-- result: plots/deka_report.md section="The paper's claims" -->``: the part of a Markdown file under
  that heading (to the next heading of the same or a higher level); ``after="<!-- table -->"`` the part after
  a marker; ``before="## Every regime"`` the part before one; none of them: the whole file after its title.
- ``<!-- figure: plots/deka_psnr_vs_snr.png alt="PSNR against Es/N0" -->``: the figure.

:data:`RESULT_FILES` names the command behind every file under ``plots/`` (a test checks that none is
missing), so a rerun of that command and a rebuild refresh the page.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_MAKE_RUN = "make run (dekasim run scenarios/default.toml --out runs/default --threads 1)"
#: Every shipped result file -> the command that made it (and, where it was copied, from where).
RESULT_FILES: dict[str, str] = {
    "plots/deka_consistency_vs_snr.png": f"{_MAKE_RUN}; runs/default/consistency_vs_snr.png",
    "plots/deka_psnr_vs_snr.png": f"{_MAKE_RUN}; runs/default/psnr_vs_snr.png",
    "plots/deka_report.md": f"{_MAKE_RUN}; runs/default/deka_report.md",
    "plots/deka_link_psnr_vs_snr.png": "dekasim run scenarios/deka_link.toml; runs/deka-link/psnr_vs_snr.png",
    "plots/jscc_vs_digital_psnr_vs_snr.png": "dekasim run scenarios/jscc_vs_digital.toml; "
                                             "runs/jscc-vs-digital/psnr_vs_snr.png",
    "plots/photos_psnr_vs_snr.png": "dekasim run scenarios/photos.toml; runs/photos/psnr_vs_snr.png",
    "plots/photos_bler_vs_snr.png": "dekasim run scenarios/photos.toml; runs/photos/bler_vs_snr.png",
    "plots/ber_waterfall/ber_vs_ebno.png": "dekasim run scenarios/ber_waterfall.toml --threads 1; "
                                           "dekasim plot runs/ber_waterfall --x ebno_db --out plots/ber_waterfall",
    "plots/ber_waterfall/bler_vs_ebno.png": "dekasim run scenarios/ber_waterfall.toml --threads 1; "
                                            "dekasim plot runs/ber_waterfall --x ebno_db --out plots/ber_waterfall",
    "plots/ber_vs_sim_ber.md": "python benchmarks/ber_vs_sim_ber.py",
    "plots/ber_vs_sim_ber.png": "python benchmarks/ber_vs_sim_ber.py",
    "plots/align_report.md": "dekasim align --out runs/align-cala --set threads=2 --cala "
                             "src/dekasim/codecs/checkpoints/cala-48x8x8-bw1_6.json; runs/align-cala/report.md",
    "plots/align_grid.png": "dekasim align --out runs/align --set threads=2; runs/align/grid.png",
    "plots/align_multi_report.md": "dekasim align --subject triangle --subject purple --out runs/align-multi --bits 8,2 "
                                   "--cala src/dekasim/codecs/checkpoints/cala_generic-48x8x8-bw1_6.json --set "
                                   "threads=1; runs/align-multi/report.md",
    "plots/align_multi_grid.png": "dekasim align --subject triangle --subject purple --out runs/align-multi --bits 8,2 "
                                  "--cala src/dekasim/codecs/checkpoints/cala_generic-48x8x8-bw1_6.json --set "
                                  "threads=1; runs/align-multi/grid.png",
    "plots/tka_bank_choice.json": "python benchmarks/tka_generic.py --base src/dekasim/codecs/checkpoints/jscc_generic-48x8x8-bw1_6.json --pack runs/align-multi/pack-q8 --split val --extra old=src/dekasim/codecs/checkpoints/cala_generic-48x8x8-bw1_6.json k2r4=runs/tka3/k2r4/cala_k2r4-48x8x8-bw1_6.json s14=runs/tka3/s14/cala_s14-48x8x8-bw1_6.json s18=runs/tka3/s18/cala_s18-48x8x8-bw1_6.json --threads 1 --json plots/tka_bank_choice.json",
    "plots/tka_bank_choice.md": "python benchmarks/tka_generic.py --base src/dekasim/codecs/checkpoints/jscc_generic-48x8x8-bw1_6.json --pack runs/align-multi/pack-q8 --split val --extra old=src/dekasim/codecs/checkpoints/cala_generic-48x8x8-bw1_6.json k2r4=runs/tka3/k2r4/cala_k2r4-48x8x8-bw1_6.json s14=runs/tka3/s14/cala_s14-48x8x8-bw1_6.json s18=runs/tka3/s18/cala_s18-48x8x8-bw1_6.json --threads 1 --json plots/tka_bank_choice.json; then --render plots/tka_bank_choice.json --markdown plots/tka_bank_choice.md",
    "plots/digital_default.md": "python benchmarks/digital_default.py --threads 1",
    "plots/digital_default.json": "python benchmarks/digital_default.py --threads 1",
    "plots/interval_coverage.md": "python benchmarks/interval_coverage.py",
    "plots/interval_coverage.json": "python benchmarks/interval_coverage.py",
    "plots/generic_vs_world.md": "python benchmarks/generic_vs_world.py --threads 1; its --render writes this table "
                                 "from the run's JSON",
    "plots/generic_vs_world.json": "python benchmarks/generic_vs_world.py --threads 1",
    "plots/sd_scale_cpu.md": "python benchmarks/sd_scale.py --preset sd15 --device cpu",
    "plots/sd_scale_cpu.json": "python benchmarks/sd_scale.py --preset sd15 --device cpu",
    **{f"plots/edge_users{name}": f"dekasim edge-users --out runs/edge_users2; runs/edge_users2/{source}"
       for name, source in ((".json", "results.json"), (".md", "edge_users.md"),
                            ("_channel_uses.png", "edge_users_channel_uses.png"),
                            ("_consistency.png", "edge_users_consistency.png"),
                            ("_payoff.png", "edge_users_payoff.png"))},
}

DIRECTIVE = re.compile(r"^<!-- (result|figure): (\S+)((?:\s+\w+=\"[^\"]*\")*)\s*-->$", re.M)


@lru_cache(maxsize=None)
def last_commit(path: str) -> str:
    """``commit abc1234 (2026-12-08)``: the commit that last changed ``path``, or why there is none."""
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", path], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
        out = subprocess.run(["git", "log", "-1", "--format=commit %h (%ad)", "--date=short", "--", path], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no git history here"
    if dirty:
        return "its uncommitted changes" + (f" (last committed in {out})" if out else "")
    return out or "not committed"


def provenance(path: str) -> str:
    """The line under a quoted result: which command made the file, and which commit last changed it."""
    if path not in RESULT_FILES:
        raise KeyError(f"{path}: not in docs/gen/results.py RESULT_FILES (name the command that made it)")
    return (f"<small>From `{path}`, made by `{RESULT_FILES[path]}`; the file as of "
            f"{last_commit(path)}. Rerun the command and rebuild to refresh it.</small>")


def _options(text: str) -> dict[str, str]:
    return {k: v for k, v in re.findall(r"(\w+)=\"([^\"]*)\"", text)}


def _section(text: str, heading: str) -> str:
    """The body under the heading whose text starts with ``heading``, to the next heading of its level or
    higher."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(#+)\s+(.*)", line)
        if m and m.group(2).startswith(heading):
            level, body = len(m.group(1)), []
            for rest in lines[i + 1:]:
                n = re.match(r"(#+)\s", rest)
                if n and len(n.group(1)) <= level:
                    break
                body.append(rest)
            return "\n".join(body).strip()
    raise KeyError(f"no heading starting with {heading!r}")


def quote(path: str, options: dict[str, str]) -> str:
    """The part of result file ``path`` that ``options`` select (see the module docstring)."""
    text = (ROOT / path).read_text()
    if "section" in options:
        text = _section(text, options["section"])
    if "after" in options:
        text = text[text.index(options["after"]) + len(options["after"]):]
    if "before" in options:
        text = text[:text.index(options["before"])]
    if not {"section", "after"} & set(options):
        text = re.sub(r"\A# .*\n", "", text)  # the file's own title
    # headings inside a quote sit below the page's own
    text = re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", text, flags=re.M)
    return text.strip()


def figure(path: str, options: dict[str, str], page_path: str) -> str:
    depth = page_path.count("/")
    rel = "../" * depth + path
    alt = options.get("alt", Path(path).stem.replace("_", " "))
    return f"![{alt}]({rel})"


def expand(markdown: str, page_path: str) -> str:
    """Every result/figure directive of a page replaced by the quote or figure and its provenance line.
    ``page_path`` is the page's path under ``docs/`` (relative links to the figures depend on it)."""
    def one(m: re.Match) -> str:
        kind, path, options = m.group(1), m.group(2), _options(m.group(3))
        if not (ROOT / path).is_file():
            raise FileNotFoundError(f"{page_path}: {kind} {path} does not exist")
        body = quote(path, options) if kind == "result" else figure(path, options, page_path)
        return f"{body}\n\n{provenance(path)}"
    return DIRECTIVE.sub(one, markdown)

