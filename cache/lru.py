"""Least-recently-used eviction over an OrderedDict: the measured baseline for other policies."""

from __future__ import annotations

from collections import OrderedDict
from contextlib import suppress

from cache.policy import Entry


class LruPolicy:
    """Byte-weighted LRU. Admits every entry that fits on its own; evicts least recently used
    first. ``get`` is lock-free (a concurrent eviction can only make ``move_to_end`` miss)."""

    name = "lru"

    def __init__(self, max_weight: int) -> None:
        self.max_weight = max_weight
        self._map: OrderedDict[bytes, Entry] = OrderedDict()
        self._weight = 0

    def get(self, key: bytes) -> Entry | None:
        entry = self._map.get(key)
        if entry is not None:
            # KeyError: evicted by another thread in between; the entry returned is still right.
            with suppress(KeyError):
                self._map.move_to_end(key)
        return entry

    def put(self, key: bytes, entry: Entry) -> None:
        if entry[2] > self.max_weight:
            return
        old = self._map.pop(key, None)
        if old is not None:
            self._weight -= old[2]
        self._map[key] = entry
        self._weight += entry[2]
        while self._weight > self.max_weight:
            _, evicted = self._map.popitem(last=False)
            self._weight -= evicted[2]

    def remove(self, key: bytes) -> None:
        old = self._map.pop(key, None)
        if old is not None:
            self._weight -= old[2]

    def clear(self) -> None:
        self._map.clear()
        self._weight = 0

    def sizes(self) -> tuple[int, int]:
        return len(self._map), self._weight
