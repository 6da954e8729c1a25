"""An edge's cache of knowledge packs, bounded in bytes: LRU and LFU eviction (pure Python, no I/O).

Used by :mod:`dekasim.deka.edge_users`. Keys are any hashable (a subject's catalogue index there); sizes are
bytes (a pack's :func:`~dekasim.generative.pack.pack_size_bytes`).

- ``"lru"``: evicts the entry whose last access is oldest.
- ``"lfu"``: evicts the entry with the fewest accesses since it entered the cache (in-cache LFU: the count
  starts at 1 on insertion and is forgotten on eviction); ties go to the least recently accessed.

An entry larger than the whole capacity is never cached (:meth:`ByteCache.insert` returns ``False`` and
evicts nothing). Eviction removes victims one by one until the new entry fits; the new entry is never its
own victim.

Example::

    c = ByteCache(300, "lru")
    c.insert("a", 100); c.insert("b", 100); c.insert("c", 100)
    c.access("a")                                  # "b" is now the least recently used
    c.insert("d", 100)                             # -> (True, ["b"])
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from dekasim.errors import ConfigError

#: Eviction policies of :class:`ByteCache`.
POLICIES = ("lru", "lfu")


@dataclass
class _Entry:
    size_bytes: int
    count: int       #: accesses since insertion (insertion counts as one)
    last: int        #: the cache's clock at the last access or insertion


class ByteCache:
    """Entries with sizes in bytes, at most ``capacity_bytes`` in all, evicted by ``policy``.

    :param capacity_bytes: the capacity [B], an integer >= 0 (0: nothing is ever cached).
    :param policy: ``"lru"`` or ``"lfu"`` (see the module doc).
    :raises ConfigError: naming ``cache_bytes`` or ``policy``.
    """

    def __init__(self, capacity_bytes: int, policy: str = "lru") -> None:
        if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, int) or capacity_bytes < 0:
            raise ConfigError("cache_bytes", capacity_bytes, "a whole number of bytes >= 0",
                              "e.g. --cache-bytes 500000,1000000 (0: no cache)")
        if policy not in POLICIES:
            raise ConfigError("policy", policy, f"one of {list(POLICIES)}", "e.g. --policy lru,lfu")
        self.capacity_bytes, self.policy = capacity_bytes, policy
        self._entries: dict[Hashable, _Entry] = {}
        self._clock = 0
        self.used_bytes = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        """The cached keys, in insertion order."""
        return list(self._entries)

    def access(self, key: Hashable) -> None:
        """Record one access (a hit) to a cached ``key``; a key not cached is ignored."""
        e = self._entries.get(key)
        if e is not None:
            self._clock += 1
            e.count += 1
            e.last = self._clock

    def _victim(self) -> Hashable:
        if self.policy == "lru":
            return min(self._entries, key=lambda k: self._entries[k].last)
        return min(self._entries, key=lambda k: (self._entries[k].count, self._entries[k].last))

    def insert(self, key: Hashable, size_bytes: int) -> tuple[bool, list[Hashable]]:
        """Cache ``key`` of ``size_bytes`` bytes, evicting as the policy says until it fits.

        :return: ``(cached, evicted keys in eviction order)``; ``(False, [])`` for an entry larger than the
            capacity. Inserting a key already cached counts as an access.
        """
        if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
            raise ConfigError("size_bytes", size_bytes, "a whole number of bytes >= 0")
        if key in self._entries:
            self.access(key)
            return True, []
        if size_bytes > self.capacity_bytes:
            return False, []
        evicted: list[Hashable] = []
        while self.used_bytes + size_bytes > self.capacity_bytes:
            victim = self._victim()
            self.used_bytes -= self._entries.pop(victim).size_bytes
            evicted.append(victim)
        self._clock += 1
        self._entries[key] = _Entry(size_bytes, 1, self._clock)
        self.used_bytes += size_bytes
        return True, evicted
