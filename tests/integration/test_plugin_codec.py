"""The docs' "Write your own codec" page (docs/codecs.md), run as written: a codec from a package outside dekasim,
checked, named in a scenario by its import path and by an entry point, swept locally and on Ray, plotted;
and the one-line errors for a codec that cannot be found."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dekasim.cli import main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "codecs.md"
SPEC = "mypkg.codecs:NormalisedLinear"


def _section_blocks() -> tuple[str, str]:
    section = PAGE.read_text()
    assert section.startswith("# Write your own codec")
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    return python, toml


@pytest.fixture
def package(tmp_path, monkeypatch):
    """The page's codec as the package ``mypkg`` on sys.path (and PYTHONPATH, for Ray workers)."""
    from dekasim.codecs import base

    python, toml = _section_blocks()
    assert len(python.strip().splitlines()) <= 40  # the section promises a short example
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "codecs.py").write_text(python)
    (tmp_path / "my-codec.toml").write_text(toml)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + ":" + __import__("os").environ.get("PYTHONPATH", ""))
    yield tmp_path
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]
    for key in [k for k in base._REGISTRY if k.startswith("mypkg.")]:
        del base._REGISTRY[key]
    base._ENTRY_POINTS = None


def _dekasim(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``dekasim ARGS`` in ``cwd`` as the installed command runs it: ``-P`` keeps the current directory off the
    import path (``python -m`` would put it first and hide the trouble), and PYTHONPATH holds only what the
    environment had (made absolute), never the user's project."""
    paths = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if Path(p) != cwd.resolve())}
    return subprocess.run([sys.executable, "-P", "-m", "dekasim", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_readme_commands_work_as_written_without_pythonpath(tmp_path):
    """The page's files as it names them (only ``mypkg/codecs.py``: no ``__init__.py``, no install, no
    PYTHONPATH) and its commands: from the directory holding ``mypkg``, and from elsewhere with ``mypkg``
    beside the scenario file."""
    python, toml = _section_blocks()
    section = PAGE.read_text()
    assert f"`dekasim check-codec {SPEC}`" in section and "`dekasim run my-codec.toml`" in section
    project = tmp_path / "project"
    (project / "mypkg").mkdir(parents=True)
    (project / "mypkg" / "codecs.py").write_text(python)
    (project / "my-codec.toml").write_text(toml)
    check = _dekasim(["check-codec", SPEC], cwd=project)
    assert check.returncode == 0, check.stderr
    assert f"{SPEC}: 6 passed, 0 failed" in check.stdout
    run = _dekasim(["run", "project/my-codec.toml", "--out", "out", "--no-plots", "--no-progress"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert {r["codec_name"] for r in rows} == {SPEC, "analog"} and len(rows) == 6


def test_check_codec_passes_the_readme_codec(package, capsys):
    assert main(["check-codec", SPEC]) == 0
    out = capsys.readouterr().out
    assert f"{SPEC}: 6 passed, 0 failed" in out and "FAIL" not in out
    assert main(["check-codec", SPEC, "--shape", "48", "8", "8", "--bandwidth-ratio", "1/12"]) == 0


def test_a_scenario_sweeps_and_plots_the_readme_codec(package, capsys):
    out = package / "out"
    assert main(["run", str(package / "my-codec.toml"), "--out", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    mine = {r["snr_db"]: r for r in rows if r["codec"] == "normalised linear"}
    assert set(mine) == {0.0, 10.0, 20.0} and all(r["codec_name"] == SPEC for r in mine.values())
    assert mine[0.0]["psnr_db"] < mine[10.0]["psnr_db"] < mine[20.0]["psnr_db"]  # physics: more SNR, better
    assert mine[20.0]["channel_uses"] == 512
    assert (out / "psnr_vs_snr.png").is_file()


@pytest.mark.slow
def test_ray_workers_resolve_the_codec_by_its_import_path(package):
    pytest.importorskip("ray")
    from dekasim.scenarios import load_scenario
    from dekasim.sim import run_scenario

    scenario = load_scenario(package / "my-codec.toml")
    local = run_scenario(scenario, out_dir=package / "local", progress=False, plots=False).rows
    ray = run_scenario(scenario, out_dir=package / "ray", progress=False, plots=False, executor="ray",
                       num_cpus=2).rows

    def key(rows):
        return sorted((r["point_id"], r["codec"], r["psnr_db"]) for r in rows)

    assert key(ray) == key(local)


def test_an_entry_point_registers_the_codec_by_name(package):
    from dekasim.codecs import available_codecs, base
    from dekasim.scenarios import scenario_from_dict

    dist = package / "mypkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[dekasim.codecs]\nnormalised_linear = {SPEC}\n")
    base._ENTRY_POINTS = None
    assert available_codecs()["normalised_linear"].__name__ == "NormalisedLinear"
    s = scenario_from_dict({"name": "ep", "payload": {"resolution_px": 32}, "sweep": {"snr_db": [10]},
                            "codecs": [{"codec": "normalised_linear"}]})
    assert s.codecs[0].codec == "normalised_linear"


@pytest.mark.parametrize("codec, expected", [
    ("nosuchpkg.codecs:Thing", "an importable module 'nosuchpkg.codecs'"),
    ("mypkg.codecs:torch", "a subclass of dekasim.codecs.Codec"),
    ("mypkg.codecs:Missing", "a subclass of dekasim.codecs.Codec"),
])
def test_a_codec_that_cannot_be_used_is_one_line(package, capsys, codec, expected):
    toml = package / "bad.toml"
    toml.write_text(f'name = "bad"\n[payload]\nresolution_px = 32\n[sweep]\nsnr_db = [0]\n[[codecs]]\ncodec = "{codec}"\n')
    assert main(["validate", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "codecs[0].codec" in err and expected in err
    toml.write_text(f'name = "bad"\n[payload]\nresolution_px = 32\n[sweep]\nsnr_db = [0]\n[[codecs]]\ncodec = "{SPEC}"\n'
                    'options = { bogus = 1 }\n')
    assert main(["validate", str(toml)]) == 2
    assert f"codecs[{SPEC}].options.bogus = 1: expected no options" in capsys.readouterr().err
