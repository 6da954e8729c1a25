"""Output directory safety: one writer per --out (a lock), and --out that cannot be a directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dekasim.cli import main
from dekasim.errors import ConfigError
from dekasim.sim import read_rows
from dekasim.sim.store import LOCK_FILE, ResultStore

QUICK = Path(__file__).resolve().parents[2] / "scenarios" / "quick.toml"


def _manifest(h="h1"):
    return {"scenario": {"name": "lock-test"}, "scenario_hash": h, "date": "2024-01-01T00:00:00+00:00"}


def _run_argv(scen, out):
    return ["run", str(scen), "--out", str(out), "--no-progress", "--no-plots"]


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_second_store_on_an_open_directory_is_refused_until_close(tmp_path):
    first = ResultStore(tmp_path, _manifest())
    holder = json.loads((tmp_path / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
    with pytest.raises(ConfigError) as info:
        ResultStore(tmp_path, _manifest())
    assert info.value.field == "--out" and f"pid {os.getpid()}" in str(info.value)
    assert "wait for it to finish, or choose another --out" in str(info.value)
    first.close()
    first.close()  # idempotent
    assert first.closed
    with pytest.raises(RuntimeError, match="closed"):
        first.append({"point_id": "x"})
    with ResultStore(tmp_path, _manifest()) as second:
        assert not second.closed
    assert second.closed
    ResultStore(tmp_path, _manifest()).close()


def test_refused_store_leaves_the_holder_and_the_manifest_alone(tmp_path):
    with ResultStore(tmp_path, _manifest("h1")):
        with pytest.raises(ConfigError, match="pid"):
            ResultStore(tmp_path, _manifest("other-scenario"))  # lock is checked before the manifest
        assert json.loads((tmp_path / "manifest.json").read_text())["scenario_hash"] == "h1"
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_lock_of_another_process_refuses_run_and_a_killed_holder_is_taken_over(tmp_path, capsys):
    scen = tmp_path / "q.toml"
    scen.write_text(QUICK.read_text())
    out = tmp_path / "out"
    out.mkdir()
    code = ("import sys, time\n"
            "from dekasim.sim.store import ResultStore\n"
            "s = ResultStore(sys.argv[1], {'scenario': {'name': 'x'}, 'scenario_hash': 'x', 'date': None})\n"
            "time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        lock = out / LOCK_FILE
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if json.loads(lock.read_text()).get("pid") == holder.pid:
                    break
            except (OSError, ValueError):
                pass
            assert holder.poll() is None, "the lock-holding helper died"
            time.sleep(0.05)
        else:
            pytest.fail("the helper never took the lock")
        capsys.readouterr()
        assert main(_run_argv(scen, out)) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "--out" in line and f"pid {holder.pid}" in line
        assert read_rows(out) == []
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # the helper's manifest (another hash) would refuse the run: drop it, keep the stale lock file
    (out / "manifest.json").unlink()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid  # stale, left by kill -9
    assert main(_run_argv(scen, out)) == 0
    rows = read_rows(out)
    assert len(rows) == 2 and len({r["point_id"] for r in rows}) == 2
    assert (out / "results.csv").read_text().count("\n") == 3
    # released once the run is over: a rerun skips everything and still writes each row once
    assert main(_run_argv(scen, out)) == 0
    assert len(read_rows(out)) == 2


@pytest.mark.parametrize("under", [False, True], ids=["is-a-file", "under-a-file"])
def test_out_that_is_or_lies_under_a_file_is_one_line_error(tmp_path, capsys, under):
    scen = tmp_path / "q.toml"
    scen.write_text(QUICK.read_text())
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    out = blocker / "sub" / "dir" if under else blocker
    capsys.readouterr()
    assert main(_run_argv(scen, out)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--out" in line and str(out) in line and "is a file" in line and "choose another --out" in line
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_out_that_cannot_be_created_is_a_config_error(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="permission denied") as info:
            ResultStore(locked / "out", _manifest())
        assert info.value.field == "--out"
        with pytest.raises(ConfigError, match="permission denied"):
            ResultStore(locked, _manifest())  # exists, but the lock file cannot be written
    finally:
        locked.chmod(0o700)


def test_abandon_leaves_a_directory_as_found(tmp_path):
    """A store that appended no row undoes itself: directories it created go, a manifest it replaced comes
    back byte for byte, other files stay; after a row it only closes."""
    new = tmp_path / "a" / "b" / "out"
    ResultStore(new, _manifest()).abandon()
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    ResultStore(kept, _manifest()).abandon()
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
    ResultStore(kept, _manifest("h1")).close()
    before = (kept / "manifest.json").read_bytes()
    store = ResultStore(kept, {**_manifest("h1"), "date": "2025-01-01T00:00:00+00:00", "command": "again"})
    assert (kept / "manifest.json").read_bytes() != before
    store.abandon()
    assert (kept / "manifest.json").read_bytes() == before
    store = ResultStore(kept, _manifest("h1"))
    store.append({"point_id": "p1"})
    store.abandon()  # a row was written: the run's results stay
    assert store.closed and [r["point_id"] for r in read_rows(kept)] == ["p1"]
    assert json.loads((kept / "manifest.json").read_text())["scenario_hash"] == "h1"


def test_a_manifest_without_rows_is_taken_over_by_another_scenario(tmp_path):
    """A manifest with no row beside it (left by a run stopped before its first point, or by an older
    dekasim on refusal) does not block another scenario; one with rows does."""
    ResultStore(tmp_path, _manifest("old")).close()
    with ResultStore(tmp_path, _manifest("new")) as store:
        assert store.manifest["scenario_hash"] == "new"
        store.append({"point_id": "p1"})
    assert json.loads((tmp_path / "manifest.json").read_text())["scenario_hash"] == "new"
    with pytest.raises(ConfigError, match="a directory of the same scenario") as info:
        ResultStore(tmp_path, _manifest("third"))
    assert info.value.field == "--out"
    assert json.loads((tmp_path / "manifest.json").read_text())["scenario_hash"] == "new"


def test_a_run_that_fails_before_its_first_row_leaves_out_as_found(tmp_path, capsys, monkeypatch):
    """A refusal after the store exists (here: the first point raises a ConfigError) leaves nothing behind,
    so the next command, even of another scenario, runs into the same --out."""
    from dekasim.sim import runner

    scen = tmp_path / "q.toml"
    scen.write_text(QUICK.read_text())
    out = tmp_path / "new" / "out"

    def refuse(scenario, point):
        raise ConfigError("codecs[0].options.x", 1, "something the codec takes")

    monkeypatch.setattr(runner, "evaluate_point", refuse)
    capsys.readouterr()
    assert main(_run_argv(scen, out)) == 2
    assert "codecs[0].options.x" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert main([*_run_argv(scen, out), "--set", "sweep.snr_db=[5]"]) == 0
    assert [r["snr_db"] for r in read_rows(out)] == [5.0]
