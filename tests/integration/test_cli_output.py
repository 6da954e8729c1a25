"""What `dekasim run` writes to stderr when stderr is a log file, not a terminal: no progress-bar frames, and
each warning once, as one line without a source line. Run as a user runs it: a separate process, stderr
redirected to a file."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

# 400 m/s at 30 GHz: the frequency-domain model ignores its ICI and the pilots are too far apart in time;
# both PhysicsWarnings come up when the scenario is validated and again when its first point builds the link
SCENARIO = """
name = "log"
seed = 1
[payload]
resolution_px = 16
[channel]
speed_mps = 400
carrier_frequency_hz = 30e9
[sweep]
snr_db = [10, 20]
delay_spread_ns = [100]
[[codecs]]
codec = "analog"
[monte_carlo]
images_per_point = 1
batch_size = 1
"""


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("logged")
    (d / "log.toml").write_text(SCENARIO)
    with open(d / "stderr.log", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "dekasim", "run", str(d / "log.toml"), "--out", str(d / "out"),
                               "--no-plots"], stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    return proc, (d / "stderr.log").read_text(), d


def test_progress_bar_writes_no_frames_into_a_log(logged_run):
    proc, log, d = logged_run
    assert proc.returncode == 0, log
    assert len((d / "out" / "results.jsonl").read_text().splitlines()) == 2  # the bar was on: two points ran
    assert "\r" not in log and "point/s" not in log and "%|" not in log


def test_each_warning_once_without_a_source_line(logged_run):
    proc, log, _ = logged_run
    lines = log.splitlines()
    assert lines and all(line.startswith("dekasim: warning: ") for line in lines), log
    assert len(lines) == len(set(lines)) == 2
    assert sum("of the subcarrier spacing" in line for line in lines) == 1
    assert sum("between pilot symbols" in line for line in lines) == 1
    assert "check_link_physics" not in log and ".py:" not in log  # neither the code line nor its location


def test_progress_off_a_terminal_reports_through_logging(caplog, monkeypatch):
    from dekasim.progress import LogProgress, progress_bar

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    with caplog.at_level(logging.INFO, logger="dekasim.progress"):
        bar = progress_bar(20, "run demo", unit="point")
        assert isinstance(bar, LogProgress)
        for i in range(20):
            bar.set_postfix_str(f"point {i}")
            bar.update(1)
        bar.close()
    messages = [r.getMessage() for r in caplog.records]
    assert 2 <= len(messages) <= 11 and messages[-1].startswith("run demo: 20/20 points (100 %)")
    assert all("\r" not in m for m in messages) and "point 19" in messages[-1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dekasim.progress"):
        off = progress_bar(5, "quiet", enabled=False)
        off.update(5)
        off.close()
    assert not caplog.records


def test_progress_on_a_terminal_is_a_tqdm_bar(monkeypatch):
    from dekasim.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = progress_bar(3, "tty", unit="point")
    bar.update(3)
    bar.close()
    assert "\rtty: " in term.getvalue() and "/3 [" in term.getvalue()  # a live bar, drawn in place


def test_every_progress_bar_goes_through_dekasim_progress():
    """No module but dekasim.progress imports tqdm: one place decides what a bar writes where."""
    import ast
    from pathlib import Path

    import dekasim

    users = []
    for path in Path(dekasim.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "tqdm" for n in names):
                users.append(path.name)
    assert users == ["progress.py"]
