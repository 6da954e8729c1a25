"""Reading the result files a run writes: ``DIR/results.jsonl`` and ``DIR/manifest.json``.

The plotting code reads nothing else. A run appends one JSON object per finished sweep point to
``results.jsonl``; a run killed while writing leaves a truncated last line, and a resumed run then
appends after it, so an unparsable line may also sit in the middle. Such lines are skipped with a
:class:`ResultsWarning` that names the file and the line; every other line is kept.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "manifest.json"

#: Keys :func:`load_results` adds to every row (they are not part of the stored schema).
RUN_DIR_KEY = "run_dir"
RUN_LABEL_KEY = "run_label"
SCENARIO_NAME_KEY = "scenario_name"

PathLike = str | os.PathLike[str]


class ResultsWarning(UserWarning):
    """A result file had lines that could not be read, or repeated a point; the rest was used."""


def load_results(dirs: PathLike | Iterable[PathLike]) -> list[dict[str, Any]]:
    """Read the result rows of one or several run directories.

    Reads ``results.jsonl`` of each directory (required) and ``manifest.json`` (optional: it gives
    the scenario name). Writes nothing.

    :param dirs: a run directory, or several (to overlay runs). A path to a ``results.jsonl`` file
        itself is accepted and stands for its directory.
    :return: the rows in file order, run after run. Each row is the stored JSON object plus three
        tags: ``run_dir`` (the directory, as a string), ``scenario_name`` (``manifest["scenario"]
        ["name"]``, else the directory name) and ``run_label`` (the scenario name, made unique
        among ``dirs`` by appending the directory when two runs share a name). Plots use
        ``run_label`` to tell overlaid runs apart.

    Lines that are not valid JSON objects (a truncated last line of a killed run, or such a line
    followed by the appended rows of a resumed run) are skipped with a :class:`ResultsWarning`.
    When one run holds the same ``point_id`` twice, the later row wins (also warned).

    :raises FileNotFoundError: a directory has no ``results.jsonl``.
    """
    paths = [Path(dirs)] if isinstance(dirs, (str, os.PathLike)) else [Path(d) for d in dirs]
    run_dirs = [p.parent if p.name == RESULTS_FILE and p.is_file() else p for p in paths]

    names = [_scenario_name(d) for d in run_dirs]
    labels = list(names)
    for i, name in enumerate(names):
        if names.count(name) > 1:
            labels[i] = f"{name} [{run_dirs[i]}]"

    rows: list[dict[str, Any]] = []
    for run_dir, name, label in zip(run_dirs, names, labels):
        for row in _read_jsonl(run_dir):
            row[RUN_DIR_KEY] = str(run_dir)
            row[SCENARIO_NAME_KEY] = name
            row[RUN_LABEL_KEY] = label
            rows.append(row)
    return rows


def _scenario_name(run_dir: Path) -> str:
    """The scenario name from ``manifest.json``, else the directory's name."""
    manifest = run_dir / MANIFEST_FILE
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            name = data.get("scenario", {}).get("name")
            if isinstance(name, str) and name:
                return name
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as exc:
            warnings.warn(f"{manifest}: unreadable manifest ({exc}); using the directory name "
                          f"{run_dir.name!r} as the run's label", ResultsWarning, stacklevel=3)
    return run_dir.resolve().name or str(run_dir)


def _read_jsonl(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no result file. Expected a run directory written by `dekasim run` "
            f"(holding {RESULTS_FILE} and {MANIFEST_FILE}); check the path.")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    last = max((i for i, s in enumerate(lines) if s.strip()), default=-1)
    by_point: dict[Any, int] = {}
    rows: list[dict[str, Any]] = []
    for i, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            why = ("truncated last line (a run killed while writing?)" if i == last
                   else f"unparsable line ({exc.__class__.__name__})")
            warnings.warn(f"{path}:{i + 1}: {why}; skipped it and kept the other rows",
                          ResultsWarning, stacklevel=4)
            continue
        pid = row.get("point_id")
        if pid is not None and pid in by_point:
            warnings.warn(f"{path}:{i + 1}: point_id {pid!r} appears again; the later row replaces "
                          f"the earlier one", ResultsWarning, stacklevel=4)
            rows[by_point[pid]] = row
            continue
        if pid is not None:
            by_point[pid] = len(rows)
        rows.append(row)
    return rows


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` for null, NaN, inf and non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
