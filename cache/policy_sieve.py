"""SIEVE eviction (Zhang et al., NSDI 2024), byte-weighted, in pure Python: a measured alternative.

Entries sit in a FIFO queue in insertion order; a hit only sets the entry's *visited* bit. To make
room, a hand walks from the oldest entry towards the newest (wrapping round), clearing visited
bits, and evicts the first entry it finds unvisited. New entries join at the newest end, so an entry
touched again before the hand reaches it survives, while a one-pass scan leaves only unvisited
entries behind, which are the first to go.
"""

from __future__ import annotations

from cache.policy import Entry


class SievePolicy:
    """Byte-weighted SIEVE. Admits every entry that fits on its own. ``get`` is lock-free (it sets
    a flag in a list). The queue is a Python list with tombstones (None), compacted when half dead,
    so a removal is O(1) amortised."""

    name = "sieve"

    def __init__(self, max_weight: int) -> None:
        self.max_weight = max_weight
        self._map: dict[bytes, list] = {}  # key -> [entry, visited, slot]
        self._queue: list[bytes | None] = []  # oldest first
        self._hand = 0
        self._weight = 0
        self._dead = 0

    def get(self, key: bytes) -> Entry | None:
        node = self._map.get(key)
        if node is None:
            return None
        node[1] = True
        return node[0]

    def put(self, key: bytes, entry: Entry) -> None:
        if entry[2] > self.max_weight:
            return
        node = self._map.get(key)
        if node is not None:  # replace in place: keeps its queue position and visited bit
            self._weight += entry[2] - node[0][2]
            node[0] = entry
        else:
            self._map[key] = [entry, False, len(self._queue)]
            self._queue.append(key)
            self._weight += entry[2]
        while self._weight > self.max_weight:
            self._evict_one(keep=key)

    def _evict_one(self, keep: bytes) -> None:
        queue, m = self._queue, self._map
        hand = self._hand
        while True:
            if hand >= len(queue):
                hand = 0
            k = queue[hand]
            if k is not None and k != keep:
                node = m[k]
                if node[1]:
                    node[1] = False
                else:
                    break
            hand += 1
        self._hand = hand + 1  # the hand stays where the victim was, pointing at the next newer
        del m[k]
        queue[hand] = None
        self._weight -= node[0][2]
        self._dead += 1
        self._maybe_compact()

    def remove(self, key: bytes) -> None:
        node = self._map.pop(key, None)
        if node is not None:
            self._queue[node[2]] = None
            self._weight -= node[0][2]
            self._dead += 1
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._dead * 2 <= len(self._queue) or self._dead < 64:
            return
        live: list[bytes | None] = []
        hand = 0
        for i, k in enumerate(self._queue):
            if i == self._hand:
                hand = len(live)
            if k is not None:
                self._map[k][2] = len(live)
                live.append(k)
        self._hand = hand if self._hand < len(self._queue) else 0
        self._queue = live
        self._dead = 0

    def clear(self) -> None:
        self._map.clear()
        self._queue = []
        self._hand = self._weight = self._dead = 0

    def sizes(self) -> tuple[int, int]:
        return len(self._map), self._weight
