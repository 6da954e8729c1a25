"""The package's layers read top to bottom (DESIGN.md, "Layout"): no module imports a higher layer,
codecs and generative never import each other, and no import cycle exists among modules.

Layers, lowest first: errors/conditions/checksums/devices/photos/progress < channels, metrics < codecs, generative <
deka, training < scenarios < sim, plots < cli. Every import counts, also one inside a function: a lazy
import is still a dependency. (Shims that forward an old ``python -m`` entry point do so with ``runpy``
at run time, not by importing the module above them.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "src" / "dekasim"
RANK = {"errors": 0, "conditions": 0, "checksums": 0, "devices": 0, "photos": 0, "progress": 0, "channels": 1,
        "metrics": 1, "codecs": 2, "generative": 2, "training": 3, "deka": 3, "scenarios": 4, "sim": 5, "plots": 5,
        "cli": 6, "__main__": 6}
NEVER_EACH_OTHER = {frozenset({"codecs", "generative"})}


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("dekasim")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            if base.startswith("dekasim"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    return {m for m in out if m in modules}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for every import of a higher layer (or between codecs and generative)."""
    bad = []
    for m, deps in graph.items():
        for d in deps:
            a, b = _top(m), _top(d)
            if a == b or "__init__" in (a, b):
                continue
            if a not in RANK or b not in RANK:
                bad.append(f"{m} -> {d} (a package without a layer: add it to RANK and DESIGN.md)")
            elif RANK[b] > RANK[a] or frozenset({a, b}) in NEVER_EACH_OTHER:
                bad.append(f"{m} -> {d}")
    return sorted(bad)


def import_cycles(graph: dict[str, set[str]], packages: set[str]) -> list[str]:
    """Import cycles among modules (package ``__init__`` re-exports left out)."""
    g = {m: {d for d in deps if d not in packages} for m, deps in graph.items() if m not in packages}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(g.get(u, ())):
            if state.get(v) == 1:
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif not state.get(v):
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(g):
        if not state.get(m):
            visit(m)
    return cycles


def _graph() -> tuple[dict[str, set[str]], set[str]]:
    modules = _modules()
    packages = {m for m, f in modules.items() if f.name == "__init__.py"}
    return {m: _imports(f, m, modules) for m, f in modules.items()}, packages


def test_no_module_imports_a_higher_layer():
    graph, _ = _graph()
    assert layer_violations(graph) == []


def test_no_import_cycle():
    graph, packages = _graph()
    assert import_cycles(graph, packages) == []


@pytest.mark.parametrize("edge", [
    ("dekasim.codecs.digital", "dekasim.codecs.mcs"),          # with mcs -> digital: the old cycle
    ("dekasim.codecs.jscc", "dekasim.sim.payloads"),           # the trainer reading photos from sim
    ("dekasim.metrics.consistency", "dekasim.generative.world"),
    ("dekasim.generative.pack", "dekasim.codecs.cala"),
    ("dekasim.codecs.cala", "dekasim.training.jscc"),          # inference importing a trainer
])
def test_the_check_catches_each_old_tangle(edge):
    """Put back one of the tangles the layering removed: the check reports it."""
    graph, packages = _graph()
    a, b = edge
    graph = {**graph, a: graph[a] | {b}}
    if b == "dekasim.codecs.mcs":  # the cycle needs its other half too
        graph["dekasim.codecs.mcs"] = graph["dekasim.codecs.mcs"] | {a}
        assert import_cycles(graph, packages)
    else:
        assert any(v.startswith(f"{a} -> {b}") for v in layer_violations(graph))


TRAINERS = ("dekasim.training", "dekasim.generative.makd", "dekasim.generative.train")
INFERENCE = ("dekasim.sim", "dekasim.codecs", "dekasim.channels", "dekasim.metrics", "dekasim.deka.system",
             "dekasim.deka.generated", "dekasim.deka.pack_codec", "dekasim.deka.downlink", "dekasim.deka.report",
             "dekasim.generative.aligned", "dekasim.generative.consistency", "dekasim.generative.pack",
             "dekasim.generative.models", "dekasim.generative.run_dir", "dekasim.generative.ldm")


def _is(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_library_code_never_imports_a_trainer():
    """The sweep's path (simulation, codecs, channel, metrics, the DeKA-g system and its payload) loads
    models and packs without importing any trainer; and nothing outside the training layer imports it
    (the CLI dispatches to trainers by name)."""
    graph, _ = _graph()
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                 if _is(m, INFERENCE) and _is(d, TRAINERS))
    bad += sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                  if _is(d, ("dekasim.training",)) and not _is(m, ("dekasim.training", "dekasim.cli")))
    assert bad == []


@pytest.mark.parametrize("edge", [
    ("dekasim.generative.models", "dekasim.generative.train"),   # load_model reading a run through the trainer
    ("dekasim.sim.payloads", "dekasim.generative.makd"),          # the payload applying a pack through MAKD
])
def test_the_check_catches_inference_importing_a_trainer(edge):
    graph, _ = _graph()
    a, b = edge
    graph = {**graph, a: graph[a] | {b}}
    modules = set(graph)
    assert a in modules and b in modules
    bad = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if _is(m, INFERENCE) and _is(d, TRAINERS)]
    assert f"{a} -> {b}" in bad
