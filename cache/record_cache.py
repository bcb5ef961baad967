"""A byte-bounded, TTL-honouring cache of encoded records keyed by case-folded identifier.

Positive entries (the stored record bytes) are bounded by their total size in bytes and evicted
by a pluggable policy: SIEVE (the default, scan-resistant: see :mod:`cache.policy_sieve`), LRU
(:mod:`cache.lru`, the measured baseline) or TinyLFU (:mod:`cache.policy_tinylfu`, needs the
optional ``moka-py`` package); bench/bench_cache.py measures them against each other. Negative
entries ("this identifier is not registered") are bounded by count in a separate LRU map, so a
flood of misses cannot evict real records.

Expiry: a record is served from the cache for at most its smallest value TTL (seconds) after it
was filled; a record with a TTL of 0 is never cached. A negative entry lives ``negative_ttl``
seconds. The hit path checks expiry with one float compare against the cache's clock.

Coherence: a writer calls :meth:`RecordCache.invalidate` after its commit and before
acknowledging it. A reader that missed takes :meth:`RecordCache.epoch` *before* reading the store
and passes it to :meth:`RecordCache.fill`; the fill is dropped if any invalidation happened in
between, so a read that raced a write can never put the old value back.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Final, Literal

from cache.lru import LruPolicy
from cache.policy import Policy
from cache.policy_sieve import SievePolicy
from cache.ttl import record_min_ttl
from registry import native

_SIEVE = native.load("cache._sieve")

NEGATIVE: Final = b""
"""What :meth:`RecordCache.get` returns for a cached "not registered". (An encoded record is never
empty: it always carries its identifier.)"""

_ENTRY_OVERHEAD = 120
"""Approximate bytes of bookkeeping per entry (map slot, key object, entry tuple, policy links),
counted against the byte budget so that many tiny records cannot exceed it."""

NEGATIVE_TTL_SECONDS: Final = 60.0
"""Default lifetime of a cached "not registered"."""

PolicyName = Literal["sieve", "lru", "tinylfu"]


def _sieve(max_weight: int) -> Policy:
    """SIEVE: the C implementation (:mod:`cache._sieve`) when built, else the Python one; both
    evict the same entries in the same order."""
    if _SIEVE is not None:
        return _SIEVE.Sieve(max_weight)
    return SievePolicy(max_weight)


def _tinylfu(max_weight: int) -> Policy:
    from cache.policy_tinylfu import TinyLfuPolicy  # optional dependency: imported on use only

    return TinyLfuPolicy(max_weight)


POLICIES: Final[dict[str, Callable[[int], Policy]]] = {
    "lru": LruPolicy,
    "sieve": _sieve,
    "tinylfu": _tinylfu,
}
"""Eviction policies by name: the keys are what ``RecordCache(policy=...)`` accepts."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    negative_hits: int
    misses: int
    entries: int
    negative_entries: int
    bytes: int
    max_bytes: int
    expired: int = 0
    """Lookups that found an entry past its TTL (counted as misses too)."""
    policy: str = ""


class RecordCache:
    """Thread-safe. ``max_bytes`` bounds the positive entries (keys, values and
    ``_ENTRY_OVERHEAD`` each); ``max_negative`` bounds the number of negative entries. A
    ``max_bytes`` of 0 disables caching.

    ``clock`` returns seconds on a monotonic scale (injectable for tests); ``ttl_of`` returns the
    TTL in seconds of an encoded record (default :func:`cache.ttl.record_min_ttl`); a value it
    cannot decode is not cached. ``negative_ttl`` <= 0 disables negative entries.
    """

    def __init__(
        self,
        max_bytes: int,
        max_negative: int = 100_000,
        *,
        policy: PolicyName = "sieve",
        negative_ttl: float = NEGATIVE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        ttl_of: Callable[[bytes], int] = record_min_ttl,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_negative = max_negative
        self.negative_ttl = negative_ttl
        self._policy: Policy = POLICIES[policy](max_bytes)
        self._pos_get = self._policy.get
        self._native_get_many = (
            self._policy.get_many if _SIEVE is not None and isinstance(self._policy, _SIEVE.Sieve) else None
        )
        self._neg: OrderedDict[bytes, float] = OrderedDict()
        self._clock = clock
        self._ttl_of = ttl_of
        self._epoch = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.negative_hits = 0
        self.misses = 0
        self.expired = 0

    def get(self, key: bytes) -> bytes | None:
        """The cached record bytes, :data:`NEGATIVE` for a cached absence, or None on a miss
        (including an entry past its TTL). Lock-free."""
        entry = self._pos_get(key)
        if entry is not None:
            if entry[1] > self._clock():
                self.hits += 1
                return entry[0]
            self.expired += 1
        else:
            expires = self._neg.get(key)
            if expires is not None:
                if expires > self._clock():
                    self.negative_hits += 1
                    # KeyError: evicted by another thread in between; the answer is still right.
                    with suppress(KeyError):
                        self._neg.move_to_end(key)
                    return NEGATIVE
                self.expired += 1
        self.misses += 1
        return None

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`get` for each key, in order, with one clock read: the batch resolve path. With
        the native SIEVE policy (:mod:`cache._sieve`) the loop runs in C, holding the GIL, so the
        batch sees one state of the cache."""
        now = self._clock()
        if self._native_get_many is not None and isinstance(keys, list):
            out, hits, negative, expired = self._native_get_many(keys, self._neg, now)
            self.hits += hits
            self.negative_hits += negative
            self.expired += expired
            self.misses += len(keys) - hits - negative
            return out
        pos_get, neg = self._pos_get, self._neg
        out: list[bytes | None] = []
        append = out.append
        hits = negative = expired = 0
        for key in keys:
            entry = pos_get(key)
            if entry is not None:
                if entry[1] > now:
                    hits += 1
                    append(entry[0])
                    continue
                expired += 1
            else:
                expires = neg.get(key)
                if expires is not None:
                    if expires > now:
                        negative += 1
                        append(NEGATIVE)
                        continue
                    expired += 1
            append(None)
        self.hits += hits
        self.negative_hits += negative
        self.expired += expired
        self.misses += len(keys) - hits - negative
        return out

    def epoch(self) -> int:
        """Token to pass to :meth:`fill` for a store read that starts now."""
        return self._epoch

    def fill(self, key: bytes, value: bytes | None, epoch: int) -> None:
        """Cache ``value`` (None: absent) unless an invalidation happened since ``epoch``.

        A record is kept for its TTL (``ttl_of(value)``) from now, and not at all if that is 0; an
        absence for ``negative_ttl``. The policy may decline a record (admission) or evict others.
        A fill replaces whatever the cache held for ``key``, positive or negative.
        """
        if not self.max_bytes:
            return
        if value is None:
            if self.negative_ttl <= 0 or self.max_negative <= 0:
                return
            with self._lock:
                if epoch != self._epoch:
                    return
                self._policy.remove(key)
                self._neg[key] = self._clock() + self.negative_ttl
                self._neg.move_to_end(key)
                if len(self._neg) > self.max_negative:
                    self._neg.popitem(last=False)
            return
        size = len(key) + len(value) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        try:
            ttl = self._ttl_of(value)
        except Exception:  # not an encoded record: never serve what we cannot vouch for
            return
        if ttl <= 0:
            return
        with self._lock:
            if epoch != self._epoch:
                return
            self._neg.pop(key, None)
            self._policy.put(key, (value, self._clock() + ttl, size))

    def invalidate(self, key: bytes) -> None:
        """Forget ``key`` (positive or negative) and void every fill whose read began before now."""
        with self._lock:
            self._epoch += 1
            self._policy.remove(key)
            self._neg.pop(key, None)

    def clear(self) -> None:
        """Forget everything and void every fill whose read began before now."""
        with self._lock:
            self._epoch += 1
            self._policy.clear()
            self._neg.clear()

    def stats(self) -> CacheStats:
        """Counters and exact sizes (expired entries not yet dropped are still counted)."""
        with self._lock:
            entries, size = self._policy.sizes()
        return CacheStats(
            hits=self.hits,
            negative_hits=self.negative_hits,
            misses=self.misses,
            entries=entries,
            negative_entries=len(self._neg),
            bytes=size,
            max_bytes=self.max_bytes,
            expired=self.expired,
            policy=self._policy.name,
        )
