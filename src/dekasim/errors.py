"""Errors a user can act on.

Every error names the field, the value it got, what is allowed and how to fix it. The CLI prints
them as one line and exits with status 2, never with a traceback.
"""

from __future__ import annotations


class DekasimError(Exception):
    """Base class of the errors dekasim reports to users (exit status 2 in the CLI)."""


class ConfigError(DekasimError, ValueError):
    """A value outside what dekasim accepts.

    :param field: dotted name of the offending key, e.g. ``"sweep.delay_spread_ns"``.
    :param value: the value received.
    :param expected: what is allowed, in words (range, unit, choices).
    :param fix: a concrete suggestion; optional.
    :param source: the file the value came from; optional.
    """

    def __init__(self, field: str, value: object, expected: str, fix: str | None = None,
                 source: str | None = None) -> None:
        self.field, self.value, self.expected, self.fix, self.source = field, value, expected, fix, source
        where = f"{source}: " if source else ""
        msg = f"{where}{field} = {value!r}: expected {expected}"
        if fix:
            msg += f". Fix: {fix}"
        super().__init__(msg)

    def with_source(self, source: str) -> "ConfigError":
        """The same error, located in file ``source``."""
        return ConfigError(self.field, self.value, self.expected, self.fix, source)
