"""The README stays what issue 22 asked: short, every number it shows produced by a command, its links and
its scenario working, its commands true."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT / "docs" / "gen"))

import readme as readme_gen  # noqa: E402

#: Names that hold digits and are not numbers a run produced.
NAMES = [r"E[sb]/N0", r"3GPP TR 38\.901", r"Sionna 2\.x", r"\b5G\b", r"Python 3\.11", r"95 %", r"JPEG 2000",
         r"arXiv:2506\.19893", r"Apache License 2\.0"]


def _text() -> str:
    return README.read_text()


def _prose(text: str) -> str:
    """The README without what may hold numbers: code blocks and spans, generated blocks, link targets."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for name in readme_gen.BLOCKS:
        text = re.sub(rf"<!-- {name}:start.*?<!-- {name}:end -->", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return text


def test_the_readme_is_short():
    assert len(_text().splitlines()) <= 200


def test_every_number_the_readme_shows_is_quoted_from_a_result_file():
    prose = _prose(_text())
    for name in NAMES:
        prose = re.sub(name, "", prose)
    typed = sorted({m.group(0) for m in re.finditer(r"\S*\d\S*", prose)})
    assert typed == [], f"numbers typed into the README outside code and generated blocks: {typed}"


def test_the_generated_blocks_are_the_files_as_they_are():
    text = _text()
    assert readme_gen.refreshed(text) == text, "README.md is stale: run `python docs/gen/readme.py --write`"
    claims = re.search(r"<!-- deka-claims:start.*?-->\n(.*?)\n<!-- deka-claims:end -->", text, re.S).group(1)
    assert claims.count("\n| ") >= 4 and "DeKA-g vs no alignment" in claims


def test_every_relative_link_of_the_readme_exists():
    targets = re.findall(r"\]\(([^)#\s]+)", _text())
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local and all((ROOT / t).exists() for t in local), [t for t in local if not (ROOT / t).exists()]
    assert any(t.startswith("docs/") for t in local)


def test_the_commands_it_gives_exist():
    makefile = (ROOT / "Makefile").read_text()
    text = _text()
    for target in ("run", "test", "docs"):
        assert f"make {target}" in text and re.search(rf"^{target}:", makefile, re.M), target
    assert "scenarios/default.toml" in re.search(r"^run:.*\n\t.*", makefile, re.M).group(0)


def test_the_readme_scenario_is_short_and_valid():
    from dekasim.scenarios import scenario_from_dict
    from dekasim.sim import validate_scenario

    block = re.search(r"```toml\n(.*?)```", _text(), re.S).group(1)
    assert len(block.strip().splitlines()) <= 15
    raw = tomllib.loads(block)
    schema = json.loads((ROOT / "schemas" / "scenario.schema.json").read_text())
    jsonschema.validate(raw, schema)
    scenario = scenario_from_dict(raw)
    validate_scenario(scenario)
    assert {c.codec for c in scenario.codecs} == {"jscc", "digital"} and len(scenario.points()) == 20


def test_the_citation_is_the_docs_citation():
    bib = re.search(r"```bibtex\n.*?```", _text(), re.S).group(0)
    assert bib in (ROOT / "docs" / "gen" / "citation.bib.md").read_text()
    assert "2506.19893" in bib and "Distillation-Enabled Knowledge Alignment" in bib
