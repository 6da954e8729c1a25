"""The README's generated blocks: the numbers it shows are quoted from result files, never typed.

A block sits between ``<!-- NAME:start ... -->`` and ``<!-- NAME:end -->``; :data:`BLOCKS` says which file and
part it quotes (the same selection as a docs page's ``<!-- result: ... -->``). ``--check`` fails when the
README no longer matches the files (``tests/unit/test_readme.py`` runs it); ``--write`` refreshes it.

    python docs/gen/readme.py --write
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: block name -> (result file, the options of :func:`results.quote`)
BLOCKS = {"deka-claims": ("plots/deka_report.md", {"section": "The paper's claims"})}


def block(name: str) -> str:
    path, options = BLOCKS[name]
    return results.quote(path, options)


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- {name}:start[^>]*-->\n)(.*?)(\n<!-- {name}:end -->)", re.S)


def refreshed(text: str) -> str:
    """``text`` (the README) with every generated block quoted afresh from its file."""
    for name in BLOCKS:
        if not _pattern(name).search(text):
            raise KeyError(f"README.md has no {name} block")
        text = _pattern(name).sub(lambda m: m.group(1) + block(name) + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the README's generated blocks")
    args = ap.parse_args(argv)
    text = README.read_text()
    new = refreshed(text)
    if args.write:
        README.write_text(new)
        return 0
    if new != text:
        print("README.md is stale: run `python docs/gen/readme.py --write`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
