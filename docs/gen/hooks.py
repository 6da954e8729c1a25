"""mkdocs hooks of the dekasim docs (``hooks:`` in mkdocs.yml).

- ``on_config``: math as MathML (:mod:`mathml`), no script or font from the web.
- ``on_files``: the result files under ``plots/``, the scenario JSON Schema and the executed tutorials
  (:mod:`tutorials`, run here if ``make docs`` has not) join the site.
- ``on_page_markdown``: ``<!-- generated: ... -->`` (:mod:`pages`) and ``<!-- result/figure: ... -->``
  (:mod:`results`) directives are expanded.
- ``on_post_build``: the link check. Every link, image and anchor inside the site must resolve, and no page
  may load a script, style sheet, font or image from another host. External links (``https://...`` in the
  text) are not fetched: this machine reaches no network beyond the package registries.
"""

from __future__ import annotations

import logging
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import pages  # noqa: E402
import results  # noqa: E402
import tutorials  # noqa: E402
from mathml import MathMLExtension  # noqa: E402
from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.structure.files import File  # noqa: E402

log = logging.getLogger("mkdocs.hooks.dekasim")


def on_config(config):
    config.markdown_extensions.append(MathMLExtension())
    return config


def _add(files, config, src_uri: str, abs_path: Path) -> None:
    files.append(File.generated(config, src_uri, abs_src_path=str(abs_path)))


def on_files(files, config):
    for path in sorted((ROOT / "plots").rglob("*")):
        if path.is_file():
            _add(files, config, str(path.relative_to(ROOT)), path)
    _add(files, config, "reference/scenario.schema.json", ROOT / "schemas" / "scenario.schema.json")
    out = tutorials.DEFAULT_OUT
    missing = tutorials.stale(out)
    if missing:
        log.info("executing tutorials whose page is missing or stale: %s", ", ".join(missing))
        tutorials.build(missing, out)
    for src in tutorials.sources():
        name = src.stem
        _add(files, config, f"tutorials/{name}.md", out / f"{name}.md")
        _add(files, config, f"tutorials/{name}.ipynb", out / f"{name}.ipynb")
        for fig in sorted((out / name).glob("*.png")):
            _add(files, config, f"tutorials/{name}/{fig.name}", fig)
    return files


def on_page_markdown(markdown, page, config, files):
    markdown = pages.expand(markdown)
    return results.expand(markdown, page.file.src_uri)


class _Links(HTMLParser):
    """Links, sources and ids of one HTML page."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for attr in ("href", "src"):
            if attrs.get(attr):
                self.refs.append((tag, attr, attrs[attr]))
        if tag == "link" and attrs.get("href"):
            self.refs.append(("link-" + (attrs.get("rel") or ""), "href", attrs["href"]))


def check_site(site: Path) -> list[str]:
    """Problems of the built site: internal links to missing files or anchors, assets from other hosts."""
    parsed: dict[Path, _Links] = {}
    for html in site.rglob("*.html"):
        p = _Links()
        p.feed(html.read_text(errors="replace"))
        parsed[html] = p
    problems = []
    for html, p in parsed.items():
        page = html.relative_to(site)
        for tag, attr, value in p.refs:
            url = urlsplit(value)
            if url.scheme in ("http", "https") or value.startswith("//"):
                if tag in ("script", "img", "iframe", "source") or tag.startswith("link-") and (
                        "stylesheet" in tag or "preload" in tag or "icon" in tag or "font" in value):
                    problems.append(f"{page}: <{tag.split('-')[0]} {attr}={value!r}> loads from another host")
                continue
            if url.scheme in ("mailto", "data", "javascript") or url.scheme:
                continue
            base = site if url.path.startswith("/") else html.parent  # 404.html links from the site's root
            target = html if not url.path else (base / unquote(url.path).lstrip("/")).resolve()
            if url.path.endswith("/"):
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{page}: {attr}={value!r}: no such file in the site")
                continue
            if url.fragment and target.suffix == ".html" and target in parsed \
                    and unquote(url.fragment) not in parsed[target].ids:
                problems.append(f"{page}: {attr}={value!r}: no anchor #{url.fragment} in {target.relative_to(site)}")
    for css in site.rglob("*.css"):
        for m in re.finditer(r"(@import\s+|url\()\s*['\"]?(https?:)?//", css.read_text(errors="replace")):
            problems.append(f"{css.relative_to(site)}: loads from another host ({m.group(0)}…)")
    return problems


def on_post_build(config):
    problems = check_site(Path(config.site_dir))
    for problem in problems:
        log.error("link check: %s", problem)
    if problems:
        raise PluginError(f"link check: {len(problems)} problem(s) in the built site (listed above)")
    log.info("link check: every internal link, image and anchor resolves; nothing loads from another host")
