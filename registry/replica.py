"""The read side of a worker process that does not own the data directory.

A :class:`ReplicaStore` is a secondary RocksDB instance plus an *overlay*: the record changes the
writer process has pushed since the secondary last caught up. The writer pushes every change
(:meth:`ReplicaStore.apply`) before acknowledging it, so a lookup that starts after the
acknowledgement finds it in the overlay even though the secondary has not caught up yet. A
periodic :meth:`ReplicaStore.catch_up` brings the secondary forward and prunes overlay entries it
now holds; that costs 7-9 ms with the node's column families whatever the number of writes
(``python -m bench.bench_catch_up``), which is why it is not done per write.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from registry.rocks import RocksStore
from registry.store import StoreUnavailable, Table, Txn


class ReplicaStore:
    """:class:`~registry.store.Store` for a reader process. Reads only; ``commit`` raises
    :class:`StoreUnavailable`. Record point reads see every applied change at once; other reads
    (scans, counters, other tables) catch up with the primary first, so they too see every write
    acknowledged before they started."""

    def __init__(self, secondary: RocksStore) -> None:
        if not secondary.secondary:
            raise ValueError("ReplicaStore needs a secondary RocksStore")
        self.secondary = secondary
        self._overlay: dict[bytes, tuple[int, bytes | None]] = {}
        self._caught = -1
        """The sequence the secondary has reached: it holds every change at or below it."""
        self._lock = threading.Lock()

    def apply(self, sequence: int, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Record changes committed by the primary at RocksDB ``sequence`` (the commit's own,
        see :meth:`RocksStore.committed_sequence`). Messages may arrive out of commit order: a
        change older than one already held for the same key is ignored, and so is one the
        secondary already holds (it holds that change or a newer one; the overlay entry of the
        newer one may have been pruned already)."""
        with self._lock:
            if sequence <= self._caught:
                return
            for key, value in changes:
                held = self._overlay.get(key)
                if held is None or held[0] <= sequence:
                    self._overlay[key] = (sequence, value)

    def pending(self) -> int:
        """Overlay entries not yet known to be in the secondary."""
        return len(self._overlay)

    def catch_up(self) -> int:
        """Follow the primary and drop the overlay entries the secondary now holds."""
        caught = self.secondary.catch_up()
        with self._lock:
            self._caught = max(self._caught, caught)
            for key in [k for k, (seq, _) in self._overlay.items() if seq <= caught]:
                del self._overlay[key]
        return caught

    def get(self, table: Table, key: bytes) -> bytes | None:
        if table is Table.RECORDS:
            held = self._overlay.get(key)
            if held is not None:
                return held[1]
            return self.secondary.get(table, key)
        self.catch_up()
        return self.secondary.get(table, key)

    def get_many(self, table: Table, keys: Sequence[bytes]) -> list[bytes | None]:
        if table is not Table.RECORDS:
            self.catch_up()
            return self.secondary.get_many(table, keys)
        return [self.get(table, key) for key in keys]  # overlay first, like get: no catch-up

    def scan(self, table: Table, lower: bytes, upper: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        self.catch_up()
        return self.secondary.scan(table, lower, upper, limit)

    def commit(self, txn: Txn) -> None:
        raise StoreUnavailable("this worker serves reads only; writes go to the management listener")

    def counter(self, name: bytes) -> int:
        self.catch_up()
        return self.secondary.counter(name)

    def counters(self, prefix: bytes) -> dict[bytes, int]:
        self.catch_up()
        return self.secondary.counters(prefix)

    def close(self) -> None:
        self.secondary.close()
