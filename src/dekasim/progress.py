"""Progress bars of the long commands (``dekasim run``, ``align``, ``world train``, the JSCC trainer, the
MCS-table tool): tqdm on stderr with the ETA and the current loss or score, and silent when stderr is not a
terminal (CI logs, pipes) -- what they would print there is logged instead, line by line."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator


def progress_bar(total: int, desc: str, *, initial: int = 0, enabled: bool = True, unit: str = "step") -> Any:
    """A tqdm bar (``update``, ``set_postfix``, ``close``); off when ``enabled`` is False or stderr is no TTY."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=None if enabled else True, leave=False)


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
