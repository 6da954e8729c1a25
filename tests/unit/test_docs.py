"""The docs' generators: references that contain every key, command and flag, provenance read from every
shipped manifest, result quotes that name their file's command, math as MathML, and a link check that catches
what it should. ``make docs`` builds the whole site (CI runs it); these tests check the parts without mkdocs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "gen"))

import pages  # noqa: E402
import results  # noqa: E402

PAGES = sorted(p for p in DOCS.rglob("*.md") if "gen" not in p.relative_to(DOCS).parts)


def test_every_result_file_names_the_command_that_made_it():
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "plots").rglob("*") if p.is_file()}
    assert shipped == set(results.RESULT_FILES), "plots/ and docs/gen/results.py RESULT_FILES disagree"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_directive_of_every_page_expands(page):
    text = page.read_text()
    rel = str(page.relative_to(DOCS))
    out = results.expand(pages.expand(text), rel)
    assert "<!-- result:" not in out and "<!-- figure:" not in out and "<!-- generated:" not in out
    for m in results.DIRECTIVE.finditer(text):
        assert f"made by `{results.RESULT_FILES[m.group(2)]}`" in out


def test_a_quote_is_the_file_and_names_command_and_commit():
    out = results.expand('<!-- result: plots/deka_report.md section="The paper\'s claims" -->', "deka/index.md")
    report = (ROOT / "plots" / "deka_report.md").read_text()
    table = [ln for ln in report[report.index("## The paper's claims"):].splitlines()[1:12] if ln.startswith("|")]
    assert table and all(ln in out for ln in table)
    assert "make run" in out and "commit" in out
    fig = results.expand('<!-- figure: plots/deka_psnr_vs_snr.png alt="PSNR" -->', "deka/index.md")
    assert "![PSNR](../plots/deka_psnr_vs_snr.png)" in fig
    with pytest.raises(FileNotFoundError):
        results.expand("<!-- result: plots/nothing.md -->", "index.md")


def test_the_cli_reference_has_every_command_and_flag():
    text = pages.cli_reference()
    sections = re.split(r"^#+ `(dekasim[^`]*)`$", text, flags=re.M)
    by_command = {"dekasim": sections[0], **dict(zip(sections[1::2], sections[2::2]))}
    flags = pages.cli_flags()
    assert {"dekasim run", "dekasim validate", "dekasim schema", "dekasim world train", "dekasim build-pack"} \
        <= set(flags)
    for command, options in flags.items():
        assert command in by_command, command
        for option in options:
            assert f"`{option}`" in by_command[command], (command, option)


def test_the_provenance_page_reads_every_shipped_manifest():
    text = pages.provenance()
    manifests = pages.shipped_manifests()
    assert len(manifests) >= 15
    for path in manifests:
        assert f"`{path.relative_to(ROOT)}`" in text
    for ckpt in (ROOT / "src" / "dekasim" / "codecs" / "checkpoints").glob("*.json"):
        assert f"`{ckpt.stem}`" in text
    assert "dekasim world train --preset cloud" in text and "dekasim align --out runs/align-generic2" in text


def test_the_codec_options_page_has_every_builtin_codec_and_option():
    from dekasim.codecs import available_codecs
    from dekasim.codecs.base import codec_options_help

    text = pages.codec_options()
    for name, cls in available_codecs().items():
        if ":" not in name:
            assert f"### `{name}`" in text
            for h in codec_options_help(cls):
                assert f"| `{h.name}` |" in text, (name, h.name)


def test_every_page_and_tutorial_is_in_the_navigation():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    nav = set(walk(config["nav"]))
    written = {str(p.relative_to(DOCS)) for p in PAGES}
    tutorials = {f"tutorials/{p.stem}.md" for p in (DOCS / "tutorials").glob("*.py")}
    assert written | tutorials == nav
    assert len(tutorials) == 5


def test_tutorials_are_percent_scripts_without_outputs():
    for path in sorted((DOCS / "tutorials").glob("*.py")):
        text = path.read_text()
        assert text.startswith("# %% [markdown]\n# # "), path.name
        assert "# %%\n" in text and "execution_count" not in text and "outputs" not in text


def test_math_becomes_mathml_and_code_stays_code():
    markdown = pytest.importorskip("markdown")
    pytest.importorskip("latex2mathml")
    from mathml import MathMLExtension

    html = markdown.markdown("SNR $E_s/N_0$, `$PY` costs $5 and $6.\n\n$$\nx = \\frac{a}{b}\n$$\n\n"
                             "```\n$$\nnot math\n$$\n```\n", extensions=[MathMLExtension(), "fenced_code"])
    assert html.count("<math") == 2 and 'display="block"' in html and "<mfrac>" in html
    assert "<code>$PY</code>" in html and "$5 and $6" in html and "not math" in html


def test_the_link_check_finds_broken_links_missing_anchors_and_foreign_assets(tmp_path):
    pytest.importorskip("mkdocs")
    import hooks

    (tmp_path / "a").mkdir()
    (tmp_path / "index.html").write_text('<h1 id="top">x</h1><a href="a/b.html#here">ok</a><img src="p.png">'
                                         '<a href="https://example.org/">external text link</a>')
    (tmp_path / "p.png").write_bytes(b"")
    (tmp_path / "a" / "b.html").write_text('<h2 id="here">b</h2><a href="../index.html#top">up</a>')
    assert hooks.check_site(tmp_path) == []
    (tmp_path / "a" / "c.html").write_text('<a href="../missing.html">x</a><a href="b.html#nowhere">y</a>'
                                           '<script src="https://cdn.example.org/x.js"></script>'
                                           '<link rel="stylesheet" href="https://fonts.example.org/f.css">')
    problems = hooks.check_site(tmp_path)
    assert len(problems) == 4
    assert any("missing.html" in p for p in problems) and any("#nowhere" in p for p in problems)
    assert sum("another host" in p for p in problems) == 2
