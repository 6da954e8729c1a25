"""The edge's pack cache: LRU and LFU eviction, capacity in bytes, packs larger than the cache."""

from __future__ import annotations

import numpy as np
import pytest

from dekasim.deka.edge_cache import ByteCache
from dekasim.errors import ConfigError


def test_lru_evicts_the_least_recently_used():
    c = ByteCache(300, "lru")
    for k in "abc":
        assert c.insert(k, 100) == (True, [])
    c.access("a")
    c.access("c")
    assert c.insert("d", 100) == (True, ["b"])
    c.access("a")
    assert c.insert("e", 200) == (True, ["c", "d"])
    assert set(c.keys()) == {"a", "e"} and c.used_bytes == 300


def test_lfu_evicts_the_least_frequently_used_ties_by_recency():
    c = ByteCache(300, "lfu")
    for k in "abc":
        c.insert(k, 100)
    for _ in range(3):
        c.access("a")
    c.access("b")
    assert c.insert("d", 100) == (True, ["c"])       # c: 1 access (its insertion), the fewest
    c.access("d")                                    # b and d: 2 each; b's last access is older
    assert c.insert("e", 100) == (True, ["b"])
    assert c.insert("f", 100) == (True, ["e"])       # e: 1 access; LRU would have evicted d
    assert set(c.keys()) == {"a", "d", "f"}


def test_lru_and_lfu_differ_where_they_should():
    lru, lfu = ByteCache(200, "lru"), ByteCache(200, "lfu")
    for c in (lru, lfu):
        c.insert("hot", 100)
        for _ in range(5):
            c.access("hot")
        c.insert("cold", 100)
        c.insert("new", 100)
    assert "hot" not in lru and "cold" in lru
    assert "hot" in lfu and "cold" not in lfu


def test_byte_capacity_is_never_exceeded():
    rng = np.random.default_rng(0)
    for policy in ("lru", "lfu"):
        c = ByteCache(1000, policy)
        sizes = {k: int(s) for k, s in enumerate(rng.integers(1, 400, 30))}
        for _ in range(500):
            k = int(rng.integers(30))
            if k in c:
                c.access(k)
            else:
                cached, evicted = c.insert(k, sizes[k])
                assert cached and k not in evicted and all(e not in c for e in evicted)
            assert c.used_bytes == sum(sizes[k] for k in c.keys()) <= 1000


def test_a_pack_larger_than_the_cache_is_never_cached():
    c = ByteCache(250, "lru")
    c.insert("a", 100)
    assert c.insert("big", 251) == (False, [])
    assert "big" not in c and "a" in c and c.used_bytes == 100
    assert ByteCache(0, "lfu").insert("x", 1) == (False, [])
    assert ByteCache(0, "lfu").insert("empty", 0) == (True, [])


@pytest.mark.parametrize("cap, policy, field", [(-1, "lru", "cache_bytes"), (1.5, "lru", "cache_bytes"),
                                                (10, "fifo", "policy")])
def test_bad_settings_name_their_key(cap, policy, field):
    with pytest.raises(ConfigError) as e:
        ByteCache(cap, policy)
    assert e.value.field == field
