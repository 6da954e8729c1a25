"""Every shipped scenario keeps its hash and its point ids across changes of the sweep syntax.

The values were computed from the scenario files before the sweep syntax grew ranges, fractions,
zipped axes and groups (issue 20, item 4); ``ber_waterfall.toml`` from its first version. A run directory records the scenario hash in its manifest
and skips finished points by id, so a changed hash or id would make every existing run directory
refuse (or silently redo) its own scenario.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest

from dekasim.scenarios.schema import load_scenario
from dekasim.sim.runner import sweep_points

ROOT = Path(__file__).resolve().parents[2]

#: file -> (Scenario.hash(), number of points, sha256[:16] of the point ids in sweep order,
#: sha256[:16] of the sorted point ids)
PINNED = {
    "default.toml": ("af072e1abaad33c3", 120, "6069ba513af76160", "51a0c25cfa3a6929"),
    "deka_link.toml": ("5a7dd0c3fe9981d1", 120, "a6792ed428d6905c", "9191c48707d0e592"),
    "jscc_vs_digital.toml": ("ab193afef0d4305d", 125, "66dc275a884d0f3e", "fe553f6eccd46c37"),
    "photos.toml": ("aca4ab9c1ea41af0", 60, "841712557af8ba94", "df3411602d6f58df"),
    "quick.toml": ("ad3e0464d2181cc5", 2, "b86ec52e037ca87c", "b86ec52e037ca87c"),
    "time_domain.toml": ("2d3c0c5e9647b25f", 16, "fce35cd0d52cdf67", "a0f14e9e3171e445"),
    # added with the sweep groups and the bits payload; pinned from then on (its README figure is its run)
    "ber_waterfall.toml": ("65ba5eae79b29aeb", 90, "d211202b20365ec2", "d689de0cde6c7eba"),
}


def _digest(ids: list[str]) -> str:
    return hashlib.sha256(",".join(ids).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_scenario_keeps_hash_and_point_ids(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scenario = load_scenario(ROOT / "scenarios" / name)
    ids = [p.point_id for p in sweep_points(scenario)]
    assert (scenario.hash(), len(ids), _digest(ids), _digest(sorted(ids))) == PINNED[name]
