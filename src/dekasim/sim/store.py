"""The result store: append-only JSON lines, a CSV view, and the run manifest.

A row is written the moment its point finishes (``flush`` + ``fsync``), so ``kill -9`` loses at most
the point in flight. A truncated last line (a kill during the write) is ignored on reading.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from dekasim.errors import ConfigError

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
MANIFEST_JSON = "manifest.json"

#: Columns of the CSV view, in order (the JSONL row may hold more, e.g. ``info``).
CSV_COLUMNS = ("codec", "codec_name", "kind", "snr_db", "ebno_db", "delay_spread_ns", "tdl_profile", "speed_mps",
               "csi", "bandwidth_ratio", "channel_uses", "n_images", "psnr_db", "psnr_db_ci95", "ssim", "ssim_ci95",
               "ber", "ber_ci95", "bler", "bler_ci95", "bit_errors", "bits", "block_errors", "blocks", "status",
               "runtime_s", "seed", "point_id", "scenario_hash")


def _clean(value: Any) -> Any:
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``; an incomplete last line is skipped."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_JSONL
    if not p.exists():
        return []
    rows = []
    lines = p.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue  # killed mid-write
            raise
    return rows


class ResultStore:
    """One output directory of one scenario.

    :param out_dir: created if missing.
    :param manifest: resolved scenario, its hash, versions, command, seed, date.
    """

    def __init__(self, out_dir: str | Path, manifest: dict[str, Any]) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        mpath = self.dir / MANIFEST_JSON
        if mpath.exists():
            old = json.loads(mpath.read_text())
            if old.get("scenario_hash") != manifest["scenario_hash"]:
                raise ConfigError(
                    "--out", str(self.dir),
                    f"a directory of the same scenario: it holds '{old.get('scenario', {}).get('name')}' "
                    f"(hash {old.get('scenario_hash')}), this is '{manifest['scenario']['name']}' "
                    f"(hash {manifest['scenario_hash']})",
                    "choose another --out directory (results of different scenarios never mix)")
            manifest = {**manifest, "first_run_date": old.get("first_run_date", old.get("date"))}
        else:
            manifest = {**manifest, "first_run_date": manifest.get("date")}
        self._truncate_partial_line()
        tmp = mpath.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmp, mpath)
        self.manifest = manifest

    @property
    def jsonl(self) -> Path:
        return self.dir / RESULTS_JSONL

    def _truncate_partial_line(self) -> None:
        """Drop an incomplete last line left by a killed run, so appends stay line-aligned."""
        if not self.jsonl.exists():
            return
        data = self.jsonl.read_bytes()
        if data and not data.endswith(b"\n"):
            self.jsonl.write_bytes(data[: data.rfind(b"\n") + 1])

    def finished_point_ids(self) -> set[str]:
        return {r["point_id"] for r in read_rows(self.jsonl)}

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.jsonl)

    def append(self, row: dict[str, Any]) -> None:
        """Append ``row`` durably, then refresh the CSV view."""
        line = json.dumps(_clean(row), sort_keys=True)
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.write_csv()

    def write_csv(self) -> None:
        rows = self.rows()
        tmp = self.dir / (RESULTS_CSV + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for r in rows:
                w.writerow(["" if r.get(c) is None else (json.dumps(r[c]) if isinstance(r.get(c), list) else r[c])
                            for c in CSV_COLUMNS])
        os.replace(tmp, self.dir / RESULTS_CSV)
