"""Numbers the docs quote come from the files the project's commands write, not from typing.

``benchmarks/ber_vs_sim_ber.py`` writes ``plots/ber_vs_sim_ber.md``; the page on BER/BLER waterfalls quotes its
table, summary and cost lines when the docs are built (docs/gen/results.py). Rerunning the benchmark changes
the file, and the next build shows the new numbers.
"""

from __future__ import annotations

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
