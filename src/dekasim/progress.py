"""Progress bars of the long commands (``dekasim run``, ``align``, ``world train``, the JSCC trainer, the
MCS-table tool): every one goes through :func:`progress_bar`.

On a terminal it is a tqdm bar on stderr with the ETA and the current loss or score. Anywhere else (stderr
redirected to a file, a pipe, CI logs) nothing is drawn -- no ``\\r`` frames -- and the bar reports through
``logging`` instead: one line at every tenth of the work and one at the end, at INFO level on the logger
``dekasim.progress`` (silent unless a command or the user turns INFO on)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, Iterator

log = logging.getLogger(__name__)


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class LogProgress:
    """The bar of :func:`progress_bar` where stderr is no terminal: the same methods as a tqdm bar
    (``update``, ``set_postfix``, ``set_postfix_str``, ``close``), reported as whole log lines."""

    def __init__(self, total: int, desc: str, initial: int = 0, unit: str = "step") -> None:
        self.total, self.desc, self.n, self.unit = int(total), desc, int(initial), unit
        self._start_n, self._t0 = self.n, time.monotonic()
        self._postfix = ""
        self._next = self._next_mark(self.n)
        self._closed = False

    def _next_mark(self, n: int) -> int:
        step = max(self.total // 10, 1)
        return (n // step + 1) * step

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = str(s)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total > 0 and self.n >= self._next and self.n < self.total:
            self._next = self._next_mark(self.n)
            self._report()

    def _report(self) -> None:
        done = self.n - self._start_n
        elapsed = time.monotonic() - self._t0
        eta = ""
        if 0 < done and self.n < self.total:
            eta = f", ETA {elapsed / done * (self.total - self.n):.0f} s"
        tail = f" ({self._postfix})" if self._postfix else ""
        log.info("%s: %d/%d %s%s, %.0f s%s%s", self.desc, self.n, self.total, self.unit + ("s" if self.total != 1
                 else ""), f" ({100 * self.n / self.total:.0f} %)" if self.total else "", elapsed, eta, tail)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n > self._start_n:
                self._report()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Off:
    """A bar that does nothing (``enabled=False``)."""

    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Off":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int, desc: str, *, initial: int = 0, enabled: bool = True, unit: str = "step") -> Any:
    """A progress bar (``update``, ``set_postfix``, ``set_postfix_str``, ``close``).

    :param total: units of work; :param initial: units already done (a resumed run).
    :param enabled: False: no bar and no log lines.
    :return: a tqdm bar on stderr when stderr is a terminal; else a :class:`LogProgress` (log lines only,
        never ``\\r`` frames in a file or a pipe).
    """
    if not enabled:
        return _Off()
    if not _stderr_is_terminal():
        return LogProgress(total, desc, initial, unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence transformers' and diffusers' own progress bars ("Loading weights", "Writing model shards") and
    info logs inside a library call: dekasim's commands print one line per error and their own bars only."""
    try:
        import transformers.utils.logging as tlog
    except ImportError:  # pragma: no cover
        tlog = None
    try:
        import diffusers.utils.logging as dlog
    except ImportError:  # pragma: no cover
        dlog = None
    t_bar = tlog.is_progress_bar_enabled() if tlog else False
    t_level = tlog.get_verbosity() if tlog else None
    d_level = dlog.get_verbosity() if dlog else None
    if tlog:
        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    if dlog:
        dlog.set_verbosity_error()
    try:
        yield
    finally:
        if tlog:
            tlog.set_verbosity(t_level)
            if t_bar:
                tlog.enable_progress_bar()
        if dlog:
            dlog.set_verbosity(d_level)
