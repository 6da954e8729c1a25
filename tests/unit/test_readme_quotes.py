"""Numbers the README quotes come from the files the project's commands write, not from typing.

``benchmarks/ber_vs_sim_ber.py`` writes ``plots/ber_vs_sim_ber.md``; the README copies its table, summary and
cost lines verbatim. Rerunning the benchmark changes the file; this test then says the README is stale.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_quotes_the_sim_ber_comparison_from_its_file():
    text = (ROOT / "plots" / "ber_vs_sim_ber.md").read_text()
    quoted = text[text.index("<!-- table -->"):].strip()
    assert quoted.count("\n| ") >= 10 and "z-scores" in quoted  # the table and its summary
    assert quoted in (ROOT / "README.md").read_text(), \
        "README.md does not quote plots/ber_vs_sim_ber.md as written: copy its table and summary again"


def test_the_readme_quotes_the_generic_vs_world_table_from_its_file():
    """``benchmarks/generic_vs_world.py`` writes ``plots/generic_vs_world.md`` (from its JSON); the README
    copies it, and the first two paths agree in every number (the generic path given the world's split)."""
    import json

    table = (ROOT / "plots" / "generic_vs_world.md").read_text()
    assert table in (ROOT / "README.md").read_text(), "README.md does not quote plots/generic_vs_world.md"
    paths = list(json.loads((ROOT / "plots" / "generic_vs_world.json").read_text())["paths"].values())
    for m, row in paths[0]["methods"].items():  # the world path also has its checker's agreement
        other = paths[1]["methods"][m]
        assert row["test_feature_cosine"] == other["test_feature_cosine"] and row["steps"] == other["steps"]
        assert row.get("gain_feature_cosine") == other.get("gain_feature_cosine")
