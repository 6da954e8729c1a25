"""Math in the docs as MathML, rendered when the page is built: ``$x$`` inline, ``$$ ... $$`` on lines of
their own for a display. Browsers draw MathML themselves, so a page needs no script and no font from the
web (MathJax or KaTeX would have to be fetched or hosted)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as etree

from latex2mathml.converter import convert
from markdown import Extension
from markdown.inlinepatterns import InlineProcessor
from markdown.preprocessors import Preprocessor

#: ``$...$`` not touching a word or another ``$`` outside, no space just inside (so "$5 and $6" is text).
INLINE = r"(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])"


class _Inline(InlineProcessor):
    def handleMatch(self, m, data):  # noqa: N802 - Python-Markdown's name
        html = convert(m.group(1), display="inline")
        return self.md.htmlStash.store(html), m.start(0), m.end(0)


class _Display(Preprocessor):
    """``$$`` alone on a line opens and closes a display (after fenced code is stashed: code is never math)."""

    def run(self, lines):
        out, block, inside = [], [], False
        for line in lines:
            if line.strip() == "$$":
                if inside:
                    html = convert(" ".join(block).strip(), display="block")
                    out += ["", self.md.htmlStash.store(f'<div class="math-display">{html}</div>'), ""]
                    block = []
                inside = not inside
            elif inside:
                block.append(line)
            else:
                out.append(line)
        if inside:
            raise ValueError("a $$ display is not closed: " + " ".join(block)[:80])
        return out


class MathMLExtension(Extension):
    def extendMarkdown(self, md):  # noqa: N802 - Python-Markdown's name
        md.preprocessors.register(_Display(md), "mathml_display", 20)  # fenced code runs at 25, before this
        md.inlinePatterns.register(_Inline(INLINE, md), "mathml_inline", 185)  # code spans (190) first


def makeExtension(**kwargs):  # noqa: N802 - Python-Markdown's name
    return MathMLExtension(**kwargs)
