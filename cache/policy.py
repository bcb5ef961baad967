"""The interface between :class:`~cache.record_cache.RecordCache` and an eviction policy.

A policy stores *entries* ``(value, expires_at, weight)`` under byte-string keys and keeps the sum
of the weights of the entries it holds at or below its ``max_weight``. It knows nothing about
TTLs, negative entries or the epoch guard: the record cache handles those.
"""

from __future__ import annotations

from typing import Protocol

Entry = tuple[bytes, float, int]
"""``(encoded record, expiry on the cache's clock, weight in bytes)``."""


class Policy(Protocol):
    """A byte-weighted map with an eviction policy.

    Contract:
    - ``get`` may be called from any thread without a lock, concurrently with everything else; it
      records the access for the policy and returns the entry or None.
    - ``put``, ``remove`` and ``clear`` are called by one thread at a time (the record cache holds
      its lock), possibly concurrently with ``get``.
    - ``put`` may decline to keep an entry (an admission policy), and may evict others to make room;
      when it returns, the total weight held is at most ``max_weight``.
    - ``sizes`` returns exact ``(entries, total weight)``; it may be slow.
    """

    name: str
    max_weight: int

    def get(self, key: bytes) -> Entry | None: ...
    def put(self, key: bytes, entry: Entry) -> None: ...
    def remove(self, key: bytes) -> None: ...
    def clear(self) -> None: ...
    def sizes(self) -> tuple[int, int]: ...
