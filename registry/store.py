"""The storage interface every backend implements, and the transaction it commits.

The core needs only this much of a store: point reads, ordered range scans, and an atomic
conditional commit (compare-and-set on whole values plus counter increments), in the spirit of
etcd's Txn. A backend is correct when it passes ``tests/conformance``.
"""

from __future__ import annotations

import enum
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Table(enum.Enum):
    """Key spaces. Keys and values are opaque bytes to the store."""

    RECORDS = "records"
    """Case-folded identifier -> encoded ``idnode.v1.Record``."""
    ENTERPRISES = "enterprises"
    """Case-folded enterprise prefix -> encoded ``idnode.v1.Enterprise``."""
    REQUESTS = "requests"
    """Idempotency keys of batch requests -> the encoded first response."""
    META = "meta"
    """Node settings (node prefix, creation time, ...)."""
    TEMPLATES = "templates"
    """``NAME@version`` (name ASCII upper-cased) -> canonical JSON of an industry data template."""
    AUDIT = "audit"
    """Audit sequence (8-byte big-endian) -> canonical JSON of a hash-chained audit entry. Kept forever."""
    CHANGES = "changes"
    """Audit sequence (8-byte big-endian) -> JSON change-feed entry (with the new record). Pruned
    to the configured retention."""
    ROUTES = "routes"
    """Hierarchy (root node): case-folded prefix -> JSON route (serving node address and id,
    registration time, registrant, node credential fingerprints). See :mod:`registry.hierarchy`."""
    OUTBOX = "outbox"
    """Hierarchy (secondary node): case-folded enterprise prefix -> JSON pending registration or
    withdrawal to send upstream; written in the enterprise write's Txn, deleted once acknowledged."""


@dataclass(frozen=True, slots=True)
class Expect:
    """Condition: the key holds exactly ``value`` (None: the key is absent)."""

    table: Table
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Put:
    table: Table
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    table: Table
    key: bytes


@dataclass(frozen=True, slots=True)
class Add:
    """Add ``delta`` to the named counter (a missing counter is 0)."""

    counter: bytes
    delta: int


@dataclass(frozen=True, slots=True)
class Txn:
    """All of ``writes`` and ``adds`` happen, atomically and durably, if every ``expects`` holds;
    otherwise nothing happens."""

    expects: tuple[Expect, ...] = ()
    writes: tuple[Put | Delete, ...] = ()
    adds: tuple[Add, ...] = ()


class ConditionFailed(Exception):
    """A commit's condition did not hold; ``index`` is the position of the first failing Expect."""

    def __init__(self, index: int, expect: Expect) -> None:
        super().__init__(f"condition {index} failed on {expect.table.value}:{expect.key!r}")
        self.index = index
        self.expect = expect


class StoreUnavailable(Exception):
    """The store cannot serve right now (a closed handle, an unreachable server)."""


class StoreFull(StoreUnavailable):
    """A write failed because the store has no room (a full disk or quota, a Redis master at its
    ``maxmemory``); it was not applied. Reads go on.

    RocksDB, after a write fails so, refuses every later write until the store is opened again
    (rocksdict offers no ``DB::Resume``): once space is freed, the node must be restarted. Redis
    takes writes again as soon as there is room."""


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is a full disk or quota: an OSError
    with ENOSPC or EDQUOT, or an error whose text carries the system's message for them (RocksDB's
    ``IO error: No space left on device``, which rocksdict raises as a plain Exception)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if isinstance(current, StoreFull) or any(text in str(current) for text in _FULL_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False


@runtime_checkable
class Store(Protocol):
    """A key-value store with ordered scans and atomic conditional commits.

    Contract, tested by the conformance suite:
    - after ``commit`` returns, every later ``get``/``scan`` (from any thread) sees the writes, and
      they survive the process being killed;
    - ``commit`` raises :class:`ConditionFailed` and changes nothing when any Expect fails;
    - ``scan`` yields keys in ascending byte order.

    Also (tested per backend, on a real full disk or a Redis master at its ``maxmemory``):
    ``commit`` raises :class:`StoreFull` and applies nothing when the store has no room.
    """

    def get(self, table: Table, key: bytes) -> bytes | None: ...

    def get_many(self, table: Table, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def scan(self, table: Table, lower: bytes, upper: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` pairs with ``lower <= key < upper``, ascending."""
        ...

    def commit(self, txn: Txn) -> None: ...

    def counter(self, name: bytes) -> int: ...

    def counters(self, prefix: bytes) -> dict[bytes, int]:
        """Every counter whose name starts with ``prefix``."""
        ...

    def close(self) -> None: ...
