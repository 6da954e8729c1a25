"""A griffe extension for the API pages: dekasim's docstrings are reST (``:param name:`` fields, which
mkdocstrings' sphinx style parses, and roles such as :class:`~dekasim.sim.RunResult` in the text, which it
leaves as they are). This turns each role into inline code (the object's last name for ``~``-prefixed
targets), so the pages read ``RunResult`` instead of ``:class:`~dekasim.sim.RunResult```."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc|py:\w+):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """reST roles of ``text`` as Markdown inline code."""
    return ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:  # noqa: ARG002 - griffe's signature
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
