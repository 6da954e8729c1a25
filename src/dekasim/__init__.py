"""dekasim: a link-level simulator for generative semantic communication.

A 3GPP TDL channel over OFDM (built on Sionna 2.x, PyTorch) carries the payload of a pluggable codec.
See ``README.md`` for the two commands, the docs (``make docs``: ``docs/``) for the rest, and
``dekasim.sim.run_scenario`` for the scripting entry point.
"""

__version__ = "0.1.0"

from dekasim.conditions import Condition  # noqa: E402

__all__ = ["Condition", "__version__"]
