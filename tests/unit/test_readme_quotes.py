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
