"""A byte-bounded cache of encoded records keyed by case-folded identifier.

Positive entries (the stored record bytes) are bounded by their total size in bytes; negative
entries ("this identifier is not registered") are bounded by count, in a separate map, so a flood
of misses cannot evict real records. Eviction is least-recently-used.

Coherence: a writer calls :meth:`invalidate` after its commit and before acknowledging it. A
reader that missed takes :meth:`epoch` *before* reading the store and passes it to :meth:`fill`;
the fill is dropped if any invalidation happened in between, so a read that raced a write can
never put the old value back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass
from typing import Final

NEGATIVE: Final = b""
"""What :meth:`RecordCache.get` returns for a cached "not registered". (An encoded record is never
empty: it always carries its identifier.)"""

_ENTRY_OVERHEAD = 120
"""Approximate bytes of bookkeeping per entry (dict slot, key object, list links), counted against
the byte budget so that many tiny records cannot exceed it."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    negative_hits: int
    misses: int
    entries: int
    negative_entries: int
    bytes: int
    max_bytes: int


class RecordCache:
    """Thread-safe. ``max_bytes`` bounds the positive entries (keys, values and overhead);
    ``max_negative`` bounds the number of negative entries. A ``max_bytes`` of 0 disables caching."""

    def __init__(self, max_bytes: int, max_negative: int = 100_000) -> None:
        self.max_bytes = max_bytes
        self.max_negative = max_negative
        self._pos: OrderedDict[bytes, bytes] = OrderedDict()
        self._neg: OrderedDict[bytes, None] = OrderedDict()
        self._bytes = 0
        self._epoch = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.negative_hits = 0
        self.misses = 0

    def get(self, key: bytes) -> bytes | None:
        """The cached record bytes, :data:`NEGATIVE` for a cached absence, or None on a miss."""
        value = self._pos.get(key)
        if value is not None:
            self.hits += 1
            # KeyError: evicted by another thread in between; the value returned is still right.
            with suppress(KeyError):
                self._pos.move_to_end(key)
            return value
        if key in self._neg:
            self.negative_hits += 1
            with suppress(KeyError):
                self._neg.move_to_end(key)
            return NEGATIVE
        self.misses += 1
        return None

    def epoch(self) -> int:
        """Token to pass to :meth:`fill` for a store read that starts now."""
        return self._epoch

    def fill(self, key: bytes, value: bytes | None, epoch: int) -> None:
        """Cache ``value`` (None: absent) unless an invalidation happened since ``epoch``."""
        if not self.max_bytes:
            return
        with self._lock:
            if epoch != self._epoch:
                return
            if value is None:
                self._neg[key] = None
                if len(self._neg) > self.max_negative:
                    self._neg.popitem(last=False)
                return
            size = len(key) + len(value) + _ENTRY_OVERHEAD
            if size > self.max_bytes:
                return
            old = self._pos.pop(key, None)
            if old is not None:
                self._bytes -= len(key) + len(old) + _ENTRY_OVERHEAD
            self._pos[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                k, v = self._pos.popitem(last=False)
                self._bytes -= len(k) + len(v) + _ENTRY_OVERHEAD

    def invalidate(self, key: bytes) -> None:
        """Forget ``key`` (positive or negative) and void every fill whose read began before now."""
        with self._lock:
            self._epoch += 1
            old = self._pos.pop(key, None)
            if old is not None:
                self._bytes -= len(key) + len(old) + _ENTRY_OVERHEAD
            self._neg.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._pos.clear()
            self._neg.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self.hits,
            negative_hits=self.negative_hits,
            misses=self.misses,
            entries=len(self._pos),
            negative_entries=len(self._neg),
            bytes=self._bytes,
            max_bytes=self.max_bytes,
        )
