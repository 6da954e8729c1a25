"""The result store: append-only JSON lines, a CSV view, and the run manifest.

A row is written the moment its point finishes (``flush`` + ``fsync``), so ``kill -9`` loses at most
the point in flight. A truncated last line (a kill during the write) is ignored on reading.

One writer per directory: a :class:`ResultStore` holds an exclusive ``flock`` on ``<out>/.dekasim.lock``
for its whole life, so a second run into the same directory is refused instead of computing every
point again and writing each row twice.
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import json
import logging
import math
import os
import socket
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows): no lock, see ResultStore
    fcntl = None  # type: ignore[assignment]

from dekasim.errors import ConfigError

_log = logging.getLogger(__name__)

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
MANIFEST_JSON = "manifest.json"
LOCK_FILE = ".dekasim.lock"

#: The leading columns of the CSV view, in this order. The view holds every field of the rows (see
#: :func:`csv_table`): the fields named here first, then every other one, sorted (plain fields before nested
#: ones). A field named here that is nested or an interval expands in place (``ber_ci95_lo``, ``ber_ci95_hi``).
CSV_COLUMNS = ("codec", "codec_name", "kind", "snr_db", "ebno_db", "delay_spread_ns", "tdl_profile", "speed_mps",
               "csi", "channel_domain", "bandwidth_ratio", "channel_uses", "n_images", "psnr_db", "psnr_db_ci95",
               "ssim", "ssim_ci95",
               "ber", "ber_ci95", "bler", "bler_ci95", "bit_errors", "bits", "block_errors", "blocks", "status",
               "runtime_s", "seed", "point_id", "scenario_hash",
               # DeKA-g rows: end-to-end consistency with the cloud's image (prompts with the pack's subject)
               "attribute_agreement", "attribute_agreement_ci95", "all_attributes_agree", "all_attributes_agree_ci95",
               "feature_cosine", "feature_cosine_ci95")


def _leaves(value: Any, path: str, out: dict[str, Any]) -> None:
    """``value`` as leaves ``path -> scalar or list``: a table's fields under dotted names (``system.edge``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _leaves(v, f"{path}.{k}" if path else str(k), out)
    else:
        out[path] = value


def flatten_row(row: dict[str, Any]) -> dict[str, Any]:
    """A result row as one level: nested tables under dotted names (``info.mcs_index``,
    ``consistency_control.feature_cosine``); lists stay lists (:func:`csv_table` decides how to write them)."""
    out: dict[str, Any] = {}
    _leaves(row, "", out)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_interval(v: Any) -> bool:
    """``[lo, hi]``: two numbers (either may be missing), lo <= hi."""
    return isinstance(v, list) and len(v) == 2 and all(x is None or _is_number(x) for x in v) \
        and (None in v or v[0] <= v[1])


def csv_cell(value: Any) -> str:
    """The CSV text of one value: empty for a missing one, ``true``/``false``, numbers exactly (``repr`` of a
    float reads back to the same float), strings as they are, other lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def csv_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The flat table of ``rows``: (column names, one list of cells per row).

    Every field of every row is a column (the union over the rows, in a stable order: :data:`CSV_COLUMNS`
    first, then the rest sorted, plain before nested), so every value of ``results.jsonl`` can be read back:

    - a nested table's fields are columns with dotted names (``system.edge``, ``info.mcs_index``);
    - a field that is, in every row holding it, a two-number interval ``[lo, hi]`` is two columns,
      ``<name>_lo`` and ``<name>_hi``;
    - any other list is one cell of JSON; a missing value is an empty cell.
    """
    flat = [flatten_row(r) for r in rows]
    paths: dict[str, None] = {}
    for f in flat:
        paths.update(dict.fromkeys(f))
    # a field that is a table in some rows and missing (None) in others: its sub-columns cover it
    paths = {p: None for p in paths
             if not (any(q.startswith(p + ".") for q in paths) and all(f.get(p) is None for f in flat))}
    intervals = {p for p in paths if any(isinstance(f.get(p), list) for f in flat)
                 and all(f.get(p) is None or _is_interval(f.get(p)) for f in flat)}
    lead = {name: i for i, name in enumerate(CSV_COLUMNS)}

    def order(p: str) -> tuple:
        top = p.split(".", 1)[0]
        return (0, lead[top], p) if top in lead else (1, "." in p, p)

    ordered = sorted(paths, key=order)
    columns = [c for p in ordered for c in ((f"{p}_lo", f"{p}_hi") if p in intervals else (p,))]
    table = []
    for f in flat:
        cells: list[str] = []
        for p in ordered:
            v = f.get(p)
            if p in intervals:
                lo, hi = v if v is not None else (None, None)
                cells += [csv_cell(lo), csv_cell(hi)]
            else:
                cells.append(csv_cell(v))
        table.append(cells)
    return columns, table


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


def _first_file_ancestor(path: Path) -> Path | None:
    """``path`` itself or its nearest ancestor that exists and is not a directory, if any."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, outermost first (what creating it adds)."""
    missing = []
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    return missing[::-1]


def _make_out_dir(path: Path) -> None:
    """Create output directory ``path``; every way it can fail is one ``--out`` ConfigError."""
    blocker = _first_file_ancestor(path)
    if blocker is not None:
        what = "it is a file" if blocker == path else f"{str(blocker)!r} above it is a file"
        raise ConfigError("--out", str(path), f"a directory ({what})", "choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file appeared meanwhile, or a dangling link
        raise ConfigError("--out", str(path), "a directory (a file is in the way)", "choose another --out") from None
    except PermissionError as err:
        raise ConfigError("--out", str(path), f"a directory dekasim may create (permission denied: "
                          f"{err.filename or path})", "choose another --out, or fix the permissions") from None
    except OSError as err:
        raise ConfigError("--out", str(path), f"a directory that can be created ({err.strerror or err})",
                          "choose another --out") from None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(raw) if raw.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _acquire_lock(directory: Path) -> int | None:
    """Take the exclusive lock of ``directory`` and sign it; return its file descriptor."""
    if fcntl is None:  # pragma: no cover
        return None
    path = directory / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except PermissionError:
        raise ConfigError("--out", str(directory), "a directory dekasim may write (permission denied)",
                          "choose another --out, or fix the permissions") from None
    except OSError as err:
        raise ConfigError("--out", str(directory), f"a writable directory (cannot open {LOCK_FILE}: "
                          f"{err.strerror or err})", "choose another --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = _read_holder(fd)
        os.close(fd)
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ConfigError("--out", str(directory), f"a directory that can be locked ({err.strerror or err})",
                              "choose another --out (on a network file system, a local one)") from None
        who = f"pid {holder['pid']}" if holder.get("pid") is not None else "another process"
        if holder.get("host") and holder["host"] != socket.gethostname():
            who += f" on host {holder['host']}"
        if holder.get("started"):
            who += f", running since {holder['started']}"
        raise ConfigError("--out", str(directory), f"a directory no other dekasim run is writing: it is in use by "
                          f"{who} (lock {path})", "wait for it to finish, or choose another --out") from None
    try:
        stamp = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        data = (json.dumps(stamp, sort_keys=True) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    except OSError:
        pass  # the lock holds even unsigned; only the refusal message of another run loses the pid
    return fd


class ResultStore:
    """One output directory of one scenario, written by one process at a time.

    :param out_dir: created if missing (with its parents). A path that is a file, or lies under a
        file, or cannot be created or written, is a :class:`~dekasim.errors.ConfigError` on ``--out``.
    :param manifest: resolved scenario, its hash, versions, command, seed, date.
    :raises ConfigError: also when another live process holds the directory's lock.

    **The lock.** Before the manifest is read or written, the store takes an exclusive, non-blocking
    ``fcntl.flock`` on ``<out_dir>/.dekasim.lock`` and writes the holder's pid, host name and start
    time into it (that is what the refusal message of a second run names). The lock is held until
    :meth:`close` (or the end of a ``with`` block, or the object being collected). It is *advisory*
    (only dekasim honours it) and *per host*: ``flock`` on NFS is emulated or ignored depending on the
    client and server, so two machines writing into one shared directory are not reliably kept apart;
    give each host its own ``--out``. A lock left by a killed process (even ``kill -9``) never blocks:
    the kernel drops a ``flock`` when its holder dies, so the stale ``.dekasim.lock`` file is simply
    taken over by the next run (its old contents are then overwritten). The file itself is never
    deleted (deleting it would let two processes lock two different files of the same name), except by
    :meth:`abandon` when this store created it, while still holding it; it is emptied on :meth:`close`.
    Without ``fcntl`` (not POSIX) no lock is taken.

    **Another scenario.** A directory whose manifest names another scenario is refused while it holds
    rows of that scenario; a manifest with no row beside it (a run stopped before its first point) is
    replaced. A run refused before its first row calls :meth:`abandon`, which leaves the directory as it
    was found.
    """

    def __init__(self, out_dir: str | Path, manifest: dict[str, Any]) -> None:
        self.dir = Path(out_dir)
        self._lock_fd: int | None = None
        self._appended = 0
        self._created = _missing_dirs(self.dir)  # what abandon() may remove again, deepest last
        _make_out_dir(self.dir)
        lock_existed = (self.dir / LOCK_FILE).exists()
        try:
            self._lock_fd = _acquire_lock(self.dir)
        except BaseException:
            self._remove_created_dirs()
            raise
        self._created_lock = not lock_existed
        mpath = self.dir / MANIFEST_JSON
        self._old_manifest = mpath.read_bytes() if mpath.exists() else None
        try:
            self.manifest = self._write_manifest(manifest)
        except BaseException:
            self.abandon()
            raise

    def _write_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        mpath = self.dir / MANIFEST_JSON
        if mpath.exists():
            old = json.loads(mpath.read_text())
            if old.get("scenario_hash") != manifest["scenario_hash"] and not self.rows():
                # a manifest and no row: a run of another scenario that stopped before its first point (a
                # kill, or a version of dekasim that left its manifest on refusal); nothing to protect
                _log.info("--out %s: replacing the manifest of '%s' (hash %s), which has no rows", self.dir,
                          old.get("scenario", {}).get("name"), old.get("scenario_hash"))
                old = {}
            elif old.get("scenario_hash") != manifest["scenario_hash"]:
                raise ConfigError(
                    "--out", str(self.dir),
                    f"a directory of the same scenario: it holds '{old.get('scenario', {}).get('name')}' "
                    f"(hash {old.get('scenario_hash')}), this is '{manifest['scenario']['name']}' "
                    f"(hash {manifest['scenario_hash']})",
                    "choose another --out directory (results of different scenarios never mix)")
            manifest = {**manifest, "first_run_date": old.get("first_run_date", old.get("date", manifest.get("date")))}
        else:
            manifest = {**manifest, "first_run_date": manifest.get("date")}
        self._truncate_partial_line()
        tmp = mpath.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmp, mpath)
        return manifest

    @property
    def closed(self) -> bool:
        return self._lock_fd is None

    def abandon(self) -> None:
        """Close, leaving the directory as this store found it when it has appended no row: the manifest it
        wrote is removed (or the one it replaced restored), and the lock file and the directories it
        created are removed again when nothing else is in them. A run refused before its first row calls
        this, so the corrected command (even another scenario) can use the same ``--out``. A lock file
        that was there before stays, emptied. After a row, the same as :meth:`close`."""
        if self.closed or self._appended:
            self.close()
            return
        try:
            mpath = self.dir / MANIFEST_JSON
            if self._old_manifest is None:
                mpath.unlink(missing_ok=True)
            else:
                tmp = mpath.with_suffix(".json.tmp")
                tmp.write_bytes(self._old_manifest)
                os.replace(tmp, mpath)
            if self._created_lock:
                (self.dir / LOCK_FILE).unlink(missing_ok=True)  # still held: a run arriving now is refused
        except OSError as err:
            _log.warning("--out %s: could not undo this run's manifest (%s)", self.dir, err)
        finally:
            self.close()
        self._remove_created_dirs()

    def _remove_created_dirs(self) -> None:
        for d in reversed(self._created):  # deepest first; a directory with anything in it stays
            try:
                d.rmdir()
            except OSError:
                break

    def close(self) -> None:
        """Release the directory's lock (idempotent). Reading rows still works; appending does not."""
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # an empty lock file: nobody holds it
        except OSError:
            pass
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

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
        """Append ``row`` durably, then refresh the CSV view. Only while the store holds its lock."""
        if self.closed:
            raise RuntimeError(f"ResultStore({str(self.dir)!r}) is closed: it no longer holds the directory's lock")
        line = json.dumps(_clean(row), sort_keys=True)
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._appended += 1
        self.write_csv()

    def write_csv(self) -> None:
        """Rewrite ``results.csv``, the flat view of every row (:func:`csv_table`)."""
        columns, table = csv_table(self.rows())
        tmp = self.dir / (RESULTS_CSV + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(table)
        os.replace(tmp, self.dir / RESULTS_CSV)
