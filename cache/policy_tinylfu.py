"""TinyLFU admission over a byte-weighted cache, from the ``moka-py`` library (Rust ``moka``).

Every access (hit or miss) is counted in a count-min frequency sketch. While the cache has room,
every entry is admitted; once it is full, a new entry is admitted only if its estimated frequency
beats that of the entries it would evict (least recently used first). A one-pass scan over cold
keys therefore cannot displace a hot set, and on skewed (Zipf) traffic the cache keeps the most
frequently requested records rather than the most recent ones.

The sketch is hashed with the keys' Python hashes (randomised per process unless PYTHONHASHSEED
is set), so exact hit counts can differ by a few in a thousand from run to run.
"""

from __future__ import annotations

from collections.abc import Callable

from moka_py import Moka

from cache.policy import Entry


def _weigh(key: bytes, entry: Entry) -> int:
    return entry[2]


class TinyLfuPolicy:
    """Byte-weighted TinyLFU. ``get`` is moka's own thread-safe lookup (no Python frame).
    ``put`` runs the library's pending maintenance before returning, so the weight bound holds
    exactly after every ``put`` rather than eventually."""

    name = "tinylfu"
    get: Callable[[bytes], Entry | None]
    """The entry under ``key`` or None; counts the access. Moka's own lookup, bound per instance."""

    def __init__(self, max_weight: int) -> None:
        self.max_weight = max_weight
        self._moka: Moka[bytes, Entry] = Moka(max(max_weight, 1), weigher=_weigh, policy="tiny_lfu")
        self.get = self._moka.get  # the hot path: a bound builtin, no Python frame

    def put(self, key: bytes, entry: Entry) -> None:
        if entry[2] > self.max_weight:
            return
        self._moka.set(key, entry)
        self._moka.run_pending_tasks()

    def remove(self, key: bytes) -> None:
        self._moka.remove(key)

    def clear(self) -> None:
        self._moka.clear()
        self._moka.run_pending_tasks()

    def sizes(self) -> tuple[int, int]:
        self._moka.run_pending_tasks()
        return self._moka.count(), self._moka.weighted_size()
