"""Progress bars of the long commands (``dekasim run``, ``align``, ``world train``, the JSCC trainer, the
MCS-table tool): tqdm on stderr with the ETA and the current loss or score, and silent when stderr is not a
terminal (CI logs, pipes) -- what they would print there is logged instead, line by line."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, desc: str, *, initial: int = 0, enabled: bool = True, unit: str = "step") -> Any:
    """A tqdm bar (``update``, ``set_postfix``, ``close``); off when ``enabled`` is False or stderr is no TTY."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=None if enabled else True, leave=False)
