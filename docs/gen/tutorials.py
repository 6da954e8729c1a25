"""Execute the tutorials and turn them into docs pages with their outputs.

The tutorials are jupytext "percent" scripts (``docs/tutorials/*.py``): plain Python with ``# %%`` cells and
``# %% [markdown]`` text, committed without outputs. This script reads each as a notebook (jupytext),
executes it in a fresh Jupyter kernel (nbclient) from the repository root with one torch thread, and writes

- ``OUT/<name>.md``: the page (text, code, printed output, figures), headed by when, where and in how long it ran;
- ``OUT/<name>/``: its figures as PNG;
- ``OUT/<name>.ipynb``: the executed notebook (a download on the page);
- ``OUT/timings.json``: seconds per tutorial.

A cell that raises fails the build. ``make docs`` runs this before ``mkdocs build``; the mkdocs hook runs it
too for a tutorial whose page is missing or older than its source.

    python docs/gen/tutorials.py [--out build/docs-tutorials] [NAME ...]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "docs" / "tutorials"
DEFAULT_OUT = ROOT / "build" / "docs-tutorials"
#: The most output lines of one cell a page shows (the rest is elided, with a note).
MAX_LINES = 40
#: Lines of stderr that say something about the notebook machinery, not about the tutorial.
NOISE = ("TqdmWarning: IProgress not found", "from .autonotebook import", "Missing packages: ['ipywidgets']",
         "Token authentication is enabled for this Ray cluster")


def sources() -> list[Path]:
    return sorted(SOURCES.glob("*.py"))


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "docs/tutorials"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def execute(path: Path, timeout_s: int = 600):
    """The executed notebook of tutorial ``path`` and its wall time [s]."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env_threads = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    saved = {k: os.environ.get(k) for k in [*env_threads, "MPLBACKEND", "PYTHONPATH"]}
    os.environ.update(env_threads, MPLBACKEND="module://matplotlib_inline.backend_inline")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), saved["PYTHONPATH"]]))
    try:
        client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}})
        t0 = time.perf_counter()
        client.execute()
        return nb, time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fence(text: str, lang: str = "text") -> list[str]:
    lines = text.rstrip("\n").splitlines()
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + [f"… ({len(lines) - MAX_LINES} more lines)"]
    return [f"```{lang}", *lines, "```", ""]


def _merged_streams(outputs: list) -> list:
    """Consecutive outputs of one stream (a loop's prints arrive in pieces) as one."""
    merged: list = []
    for output in outputs:
        if (output.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == output.get("name")):
            merged[-1] = {**merged[-1], "text": "".join(merged[-1]["text"]) + "".join(output["text"])}
        else:
            merged.append(output)
    return merged


def to_markdown(nb, name: str, out: Path, header: str) -> str:
    """The executed notebook as a Markdown page; figures written to ``out/<name>/``."""
    figures = out / name
    figures.mkdir(parents=True, exist_ok=True)
    lines = [header, ""]
    n_fig = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines += [cell.source, ""]
            continue
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        lines += _fence(cell.source, "python")
        for output in _merged_streams(cell.get("outputs", [])):
            kind = output.get("output_type")
            if kind == "stream":
                text = "".join(output.get("text", ""))
                if output.get("name") == "stderr":  # progress bars, and tqdm's note that a kernel has no widgets
                    text = "\n".join(ln for ln in text.splitlines() if "\r" not in ln and not any(
                        noise in ln for noise in NOISE))
                if text.strip():
                    lines += _fence(text)
            elif kind in ("execute_result", "display_data"):
                data = output.get("data", {})
                if "image/png" in data:
                    n_fig += 1
                    file = figures / f"figure-{n_fig}.png"
                    file.write_bytes(base64.b64decode(data["image/png"]))
                    lines += [f"![figure {n_fig} of this tutorial]({name}/{file.name})", ""]
                elif "text/markdown" in data:
                    lines += ["".join(data["text/markdown"]), ""]
                elif "text/plain" in data:
                    lines += _fence("".join(data["text/plain"]))
            elif kind == "error":  # nbclient raises before we get here; kept for notebooks run elsewhere
                raise RuntimeError(f"{name}: a cell failed: {output.get('ename')}: {output.get('evalue')}")
    return "\n".join(lines).rstrip() + "\n"


def build(names: list[str] | None = None, out: Path = DEFAULT_OUT) -> dict[str, float]:
    """Execute the tutorials (all, or those named) into ``out``; returns seconds per tutorial."""
    import jupytext
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    commit = _commit()
    for path in sources():
        name = path.stem
        if names and name not in names:
            continue
        print(f"tutorial {name}: executing ...", file=sys.stderr, flush=True)
        nb, seconds = execute(path)
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        header = (f"!!! info \"Executed when these docs were built\"\n    This page is "
                  f"`docs/tutorials/{path.name}`, run by `make docs` on {when} at {commit} "
                  f"({platform.machine()}, {os.cpu_count()} CPUs, one torch thread) in {seconds:.0f} s; "
                  f"what you see below is that run's output. [Download the executed notebook]({name}.ipynb), "
                  f"or run the source yourself: `jupytext --to notebook docs/tutorials/{path.name}`.")
        (out / f"{name}.md").write_text(to_markdown(nb, name, out, header))
        nbformat.write(nb, out / f"{name}.ipynb")
        (out / f"{name}.source").write_text(jupytext.writes(jupytext.read(path), "py:percent"))
        timings[name] = round(seconds, 1)
        timings_file.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
        print(f"tutorial {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return timings


def stale(out: Path = DEFAULT_OUT) -> list[str]:
    """Tutorials whose page is missing or was built from another version of the source."""
    import jupytext

    return [p.stem for p in sources() if not (out / f"{p.stem}.md").is_file()
            or not (out / f"{p.stem}.source").is_file()
            or (out / f"{p.stem}.source").read_text() != jupytext.writes(jupytext.read(p), "py:percent")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="tutorials to run (default: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--limit-s", type=float, default=None, help="fail if a tutorial takes longer than this")
    args = ap.parse_args(argv)
    timings = build(args.names or None, args.out)
    slow = {k: v for k, v in timings.items() if args.limit_s and v > args.limit_s and (not args.names
                                                                                        or k in args.names)}
    for name, seconds in sorted(timings.items()):
        print(f"{name}: {seconds:.1f} s")
    if slow:
        print(f"over the {args.limit_s:.0f} s limit: {slow}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
