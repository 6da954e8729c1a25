"""Numbers the docs quote come from the files the project's commands write, not from typing.

``benchmarks/ber_vs_sim_ber.py`` writes ``plots/ber_vs_sim_ber.md`` and ``benchmarks/generic_vs_world.py``
``plots/generic_vs_world.md``; the docs pages quote them when the docs are built (docs/gen/results.py).
Rerunning a benchmark changes its file, and the next build shows the new numbers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "gen"))

import results  # noqa: E402


def test_the_docs_quote_the_sim_ber_comparison_from_its_file():
    text = (ROOT / "plots" / "ber_vs_sim_ber.md").read_text()
    quoted = text[text.index("<!-- table -->") + len("<!-- table -->"):].strip()
    assert quoted.count("\n| ") >= 10 and "z-scores" in quoted  # the table and its summary
    page = (ROOT / "docs" / "results" / "ber-waterfall.md").read_text()
    assert '<!-- result: plots/ber_vs_sim_ber.md after="<!-- table -->" -->' in page
    shown = results.expand(page, "results/ber-waterfall.md")
    assert quoted in shown and "python benchmarks/ber_vs_sim_ber.py" in shown


def test_the_docs_quote_the_generic_vs_world_table_from_its_file():
    """``benchmarks/generic_vs_world.py`` writes ``plots/generic_vs_world.md`` (from its JSON); the page on your
    own models quotes it, and the first two paths agree in every number (the generic path given the world's
    split)."""
    table = (ROOT / "plots" / "generic_vs_world.md").read_text().strip()
    page = (ROOT / "docs" / "deka" / "own-models.md").read_text()
    assert "<!-- result: plots/generic_vs_world.md -->" in page
    assert table in results.expand(page, "deka/own-models.md"), "docs do not quote plots/generic_vs_world.md"
    paths = list(json.loads((ROOT / "plots" / "generic_vs_world.json").read_text())["paths"].values())
    for m, row in paths[0]["methods"].items():  # the world path also has its checker's agreement
        other = paths[1]["methods"][m]
        assert row["test_feature_cosine"] == other["test_feature_cosine"] and row["steps"] == other["steps"]
        assert row.get("gain_feature_cosine") == other.get("gain_feature_cosine")
