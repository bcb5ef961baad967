"""The audit trail and the change feed: one ordered log of every write, seen two ways.

Every audited write (record create/update/delete, enterprise and template changes, import
batches) commits, *in the same* :class:`~registry.store.Txn` *as the write itself*:

- one :class:`AuditEntry` per change in :attr:`Table.AUDIT` (kept forever): who (the principal's
  role, prefix and certificate fingerprint, never a secret), what (operation, identifier or
  enterprise, etags before/after), when (node clock, ns), from where (the peer address the adapter
  passed in), chained by ``hash = sha256(prev_hash || canonical entry bytes)``;
- one :class:`Change` with the same sequence number in :attr:`Table.CHANGES` (the feed: it also
  carries the new encoded record), pruned to a :class:`FeedRetention` window;
- the chain head ``(sequence, hash)`` in :attr:`Table.META` under :data:`HEAD_KEY`.

Sequence numbers are allocated under a process-level lock held across the commit, so commit order
is sequence order and a reader never sees sequence *n+1* before *n*. The commit also Expects the
head it extended: a writer in another process or another :class:`AuditLog` on the same store
fails that commit (and this log re-reads the head and retries) instead of forking the chain.
On a store shared by several front ends (``store.shared``: the Redis Cluster), where any of them
may have extended the chain since, the head is read from the store before every commit and for
every cursor check, never taken from this process's memory.

Decisions (see README "Audit trail" and "Change feed"): the audit trail is never pruned, so
:meth:`AuditLog.verify` always checks the whole chain from the genesis hash (32 zero bytes) to the
stored head; only the feed is pruned. A feed consumer whose cursor falls before the retained window
gets FAILED_PRECONDITION ``CHANGE_FEED_CURSOR_EXPIRED`` (never a silent gap): the feed is contiguous
by construction, so any hole after a cursor can only be pruning.

Tamper evidence, not tamper proofing: whoever can rewrite the whole table and the head can forge a
consistent chain; operators should record the head hash ``idnode audit verify`` prints elsewhere.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from registry.authz import require_admin
from registry.errors import FailedPrecondition
from registry.identifier import fold
from registry.model import Principal
from registry.store import ConditionFailed, Delete, Expect, Put, Store, Table, Txn
from registry.validation import decode_page_token, encode_page_token, page_size

HEAD_KEY = b"audit_head"
"""META key of the chain head: 8-byte big-endian sequence + 32-byte SHA-256."""
GENESIS_HASH = bytes(32)
_SEQ = struct.Struct(">Q")
_END = b"\xff" * 9
_SCAN_CHUNK = 1000


def seq_key(sequence: int) -> bytes:
    """The AUDIT / CHANGES key of ``sequence``: big-endian, so key order is sequence order."""
    return _SEQ.pack(sequence)


def digest(data: bytes) -> str:
    """A short content digest standing in for an etag of objects that have none (enterprises,
    templates): the first 16 hex digits of SHA-256."""
    return hashlib.sha256(data).hexdigest()[:16]


class Operation(enum.StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    ENTERPRISE_CREATE = "ENTERPRISE_CREATE"
    ENTERPRISE_UPDATE = "ENTERPRISE_UPDATE"
    ENTERPRISE_REMOVE = "ENTERPRISE_REMOVE"
    TEMPLATE_CREATE = "TEMPLATE_CREATE"
    TEMPLATE_DEPRECATE = "TEMPLATE_DEPRECATE"
    IMPORT_BATCH = "IMPORT_BATCH"


@dataclass(frozen=True, slots=True)
class Draft:
    """What a writer knows about one change; the log adds sequence, time and hashes.

    ``record`` is the new encoded record (None for a deletion or a non-record change); it goes to
    the feed only, the audit entry keeps its etag."""

    operation: Operation
    principal: Principal
    origin: str = ""
    identifier: str = ""
    enterprise: str = ""
    etag_before: str = ""
    etag_after: str = ""
    detail: Mapping[str, str] = field(default_factory=dict)
    record: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit record. ``prev_hash`` and ``hash`` are hex SHA-256; ``hash`` covers every other
    field (see :meth:`canonical`) and the previous entry's hash."""

    sequence: int
    time_ns: int
    operation: str
    actor_role: str
    actor_prefix: str
    actor_fingerprint: str
    origin: str
    identifier: str
    enterprise: str
    etag_before: str
    etag_after: str
    detail: dict[str, str]
    prev_hash: str
    hash: str = ""

    def canonical(self) -> bytes:
        """The bytes the hash covers: sorted-key compact ASCII JSON of every field but ``hash``."""
        body = {name: getattr(self, name) for name in _ENTRY_BODY}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def compute_hash(self) -> str:
        return hashlib.sha256(bytes.fromhex(self.prev_hash) + self.canonical()).hexdigest()

    def encode(self) -> bytes:
        """The stored bytes: the sorted-key compact ASCII JSON of every field."""
        return _with_hash(self.canonical(), self.hash)

    def seal(self) -> tuple[str, bytes]:
        """(the hash of this entry, whose ``hash`` is not set yet; the :meth:`encode` bytes of the
        entry with that hash), from one serialization."""
        canonical = self.canonical()
        digest = hashlib.sha256(bytes.fromhex(self.prev_hash) + canonical).hexdigest()
        return digest, _with_hash(canonical, digest)

    @classmethod
    def decode(cls, data: bytes) -> AuditEntry:
        """Raises ValueError (or KeyError/TypeError) for bytes that are not an entry."""
        doc = json.loads(data)
        return cls(**doc)


_ENTRY_BODY = tuple(f.name for f in fields(AuditEntry) if f.name != "hash")
"""The fields an entry's hash covers (``dataclasses.asdict`` gave the same documents at several
times the cost: it copies every value)."""


def _with_hash(canonical: bytes, digest: str) -> bytes:
    """An entry's canonical JSON with its "hash" key added where sorting puts it: between
    "etag_before" and "identifier". The last ``,"identifier":`` is the top-level key's (every later
    value is an escaped string or a number; ``detail``, which may hold such a key, comes earlier)."""
    at = canonical.rfind(b',"identifier":')
    return b'%s,"hash":%s%s' % (canonical[:at], json.dumps(digest).encode(), canonical[at:])


@dataclass(frozen=True, slots=True)
class Change:
    """One change-feed item: the audit entry's sequence, operation and subject, plus the new
    encoded record (None for a deletion or a non-record change)."""

    sequence: int
    time_ns: int
    operation: str
    identifier: str
    enterprise: str
    etag_before: str
    etag_after: str
    detail: dict[str, str]
    record: bytes | None

    def encode(self) -> bytes:
        doc = {name: getattr(self, name) for name in _CHANGE_FIELDS}
        doc["record"] = base64.b64encode(self.record).decode() if self.record is not None else None
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Change:
        doc = json.loads(data)
        if doc["record"] is not None:
            doc["record"] = base64.b64decode(doc["record"])
        return cls(**doc)

    def under(self, prefix: str) -> bool:
        """Whether this change concerns ``prefix`` (ASCII case-insensitive, sub-prefixes
        included). Template changes concern no prefix."""
        subject = self.identifier.partition("/")[0] if self.identifier else self.enterprise
        if not subject:
            return False
        p, s = fold(prefix), fold(subject)
        return s == p or s.startswith(p + b".")


_CHANGE_FIELDS = tuple(f.name for f in fields(Change))


@dataclass(frozen=True, slots=True)
class FeedRetention:
    """How much of the change feed is kept: at most ``max_entries`` and nothing older than
    ``max_age_seconds`` (0: no age limit). Pruning runs after every ``prune_every``-th audited
    commit of this process (and on :meth:`AuditLog.prune_feed`)."""

    max_entries: int = 1_000_000
    max_age_seconds: float = 7 * 86400.0
    prune_every: int = 256


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of :meth:`AuditLog.verify`. ``ok`` False names the first bad ``sequence`` and
    the ``problem``."""

    ok: bool
    entries: int
    head_sequence: int
    head_hash: str
    problem: str = ""
    sequence: int = 0


class AuditLog:
    """The node's audit trail and change feed over ``store``. Thread-safe.

    Only the process that writes the store commits through it (the writer of a multi-process
    node, or every front end of a Redis Cluster: see ``shared``); readers may read (list,
    verify) anything. :meth:`wait` is woken by this process's commits only: a change committed
    by another front end is seen when the wait times out.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], int] = time.time_ns,
        retention: FeedRetention | None = None,
    ) -> None:
        self.store = store
        self.retention = retention or FeedRetention()
        self._clock = clock
        self._lock = threading.Lock()
        self._prune_lock = threading.Lock()
        self._changed = threading.Condition()
        self._head: tuple[int, bytes] | None = None
        self.shared = bool(getattr(store, "shared", False))
        """Other processes commit to the store too (front ends of a Redis Cluster): the stored
        head is the truth, this process's last commit is not."""
        self._since_prune = 0
        self._closed = False

    # ------------------------------------------------------------ writing
    def read_head(self) -> tuple[int, bytes]:
        """The stored chain head (sequence, hash); (0, genesis) for an empty log."""
        raw = self.store.get(Table.META, HEAD_KEY)
        if raw is None:
            return 0, GENESIS_HASH
        return _SEQ.unpack(raw[:8])[0], raw[8:40]

    def last_sequence(self) -> int:
        """The sequence of the newest committed entry (0: none): this process's last commit,
        or the stored head if it has not committed yet or the store is :attr:`shared`."""
        head = self._head
        return head[0] if head is not None and not self.shared else self.read_head()[0]

    def commit(
        self, txn: Txn, drafts: Sequence[Draft], *, apply: Callable[[Txn], None] | None = None
    ) -> list[int]:
        """Commit ``txn`` with one audit entry and one feed entry per draft, atomically, and
        return their sequence numbers.

        The head Expect is appended *after* ``txn.expects``, so a :class:`ConditionFailed` from
        one of the caller's own conditions keeps its index and propagates unchanged. ``apply``
        replaces ``store.commit`` for callers that commit differently (bulk import's SST ingest
        takes the Txn to commit with its files). Waiters of :meth:`wait` are woken afterwards.
        """
        if not drafts:
            (apply or self.store.commit)(txn)
            return []
        with self._lock:
            while True:
                cached = None if self.shared else self._head
                head_seq, head_hash = cached if cached is not None else self.read_head()
                expected = _SEQ.pack(head_seq) + head_hash if head_seq else None
                now = self._clock()
                writes: list[Put | Delete] = []
                seq, prev = head_seq, head_hash
                for d in drafts:
                    seq += 1
                    entry = AuditEntry(
                        sequence=seq,
                        time_ns=now,
                        operation=str(d.operation),
                        actor_role=d.principal.role.value,
                        actor_prefix=d.principal.prefix,
                        actor_fingerprint=d.principal.fingerprint,
                        origin=d.origin,
                        identifier=d.identifier,
                        enterprise=d.enterprise,
                        etag_before=d.etag_before,
                        etag_after=d.etag_after,
                        detail=dict(d.detail),
                        prev_hash=prev.hex(),
                    )
                    digest, encoded = entry.seal()
                    change = Change(
                        seq, now, entry.operation, d.identifier, d.enterprise, d.etag_before,
                        d.etag_after, dict(d.detail), d.record,
                    )  # fmt: skip
                    writes.append(Put(Table.AUDIT, seq_key(seq), encoded))
                    writes.append(Put(Table.CHANGES, seq_key(seq), change.encode()))
                    prev = bytes.fromhex(digest)
                full = Txn(
                    expects=(*txn.expects, Expect(Table.META, HEAD_KEY, expected)),
                    writes=(*txn.writes, *writes, Put(Table.META, HEAD_KEY, _SEQ.pack(seq) + prev)),
                    adds=txn.adds,
                )
                try:
                    (apply or self.store.commit)(full)
                except ConditionFailed as exc:
                    self._head = None
                    if exc.index == len(txn.expects):
                        continue  # someone else extended the chain: re-read the head, retry
                    raise
                except BaseException:
                    self._head = None  # the outcome may be unknown: re-read the head next time
                    raise
                self._head = (seq, prev)
                break
        with self._changed:
            self._changed.notify_all()
        self._since_prune += 1
        if self._since_prune >= self.retention.prune_every:
            self._since_prune = 0
            self.prune_feed()
        return list(range(head_seq + 1, seq + 1))

    # ------------------------------------------------------------ the audit view
    def list(
        self,
        principal: Principal,
        *,
        enterprise: str = "",
        identifier: str = "",
        since_ns: int = 0,
        until_ns: int = 0,
        size: int = 0,
        token: str = "",
    ) -> tuple[list[AuditEntry], str]:
        """Entries oldest first, filtered by owning ``enterprise`` (exact prefix, or the actor's
        prefix), ``identifier`` (both ASCII case-insensitive) and time ``[since_ns, until_ns)``
        (0: open); and the next page token. Administrator only. Filtering scans the log."""
        require_admin(principal, "the audit trail")
        limit = page_size(size)
        start = decode_page_token(token, b"", _END) + b"\0" if token else b""
        want_enterprise = fold(enterprise) if enterprise else b""
        want_identifier = fold(identifier) if identifier else b""
        found: list[tuple[bytes, AuditEntry]] = []
        while len(found) <= limit:
            rows = self.store.scan(Table.AUDIT, start, _END, _SCAN_CHUNK)
            for key, raw in rows:
                e = AuditEntry.decode(raw)
                if since_ns and e.time_ns < since_ns:
                    continue
                if until_ns and e.time_ns >= until_ns:
                    continue
                if want_identifier and fold(e.identifier) != want_identifier:
                    continue
                if want_enterprise and want_enterprise not in (fold(e.enterprise), fold(e.actor_prefix)):
                    continue
                found.append((key, e))
                if len(found) > limit:
                    break
            if len(rows) < _SCAN_CHUNK:
                break
            start = rows[-1][0] + b"\0"
        if len(found) > limit:
            return [e for _, e in found[:limit]], encode_page_token(found[limit - 1][0])
        return [e for _, e in found], ""

    def verify(self) -> VerifyReport:
        """Walk the whole chain: every entry decodes, sequences run 1, 2, 3 ... without a hole,
        each ``prev_hash`` is the previous entry's hash, each ``hash`` recomputes, and the last
        entry is the stored head. Detects an altered, inserted or removed entry (including the
        newest: the head would no longer match)."""
        head_seq, head_hash = self.read_head()
        expected_prev = GENESIS_HASH.hex()
        count = 0
        start = b""

        def bad(problem: str, sequence: int) -> VerifyReport:
            return VerifyReport(False, count, head_seq, head_hash.hex(), problem, sequence)

        while True:
            rows = self.store.scan(Table.AUDIT, start, _END, _SCAN_CHUNK)
            for key, raw in rows:
                at = _SEQ.unpack(key)[0] if len(key) == 8 else 0
                try:
                    entry = AuditEntry.decode(raw)
                except (ValueError, KeyError, TypeError):
                    return bad("the entry does not decode (altered)", at)
                if entry.sequence != at:
                    return bad(f"the entry stored at {at} claims sequence {entry.sequence} (altered)", at)
                if at != count + 1:
                    return bad(f"entries {count + 1}..{at - 1} are missing (removed)", count + 1)
                if entry.prev_hash != expected_prev:
                    return bad("prev_hash does not match the previous entry (altered or removed)", at)
                if entry.compute_hash() != entry.hash:
                    return bad("the entry's hash does not match its contents (altered)", at)
                expected_prev = entry.hash
                count += 1
            if len(rows) < _SCAN_CHUNK:
                break
            start = rows[-1][0] + b"\0"
        if count != head_seq or expected_prev != head_hash.hex():
            return bad(
                f"the log ends at sequence {count} but the recorded head is {head_seq} (removed or altered)",
                count + 1,
            )
        return VerifyReport(True, count, head_seq, head_hash.hex())

    # ------------------------------------------------------------ the change-feed view
    def changes(self, after: int, limit: int = 500, prefix: str = "") -> tuple[list[Change], int]:
        """Feed items with sequence > ``after`` (at most ``limit`` scanned), those under
        ``prefix`` if given, and the cursor to continue from (the last sequence scanned, which
        may be past the last item returned when filtered out).

        FAILED_PRECONDITION ``CHANGE_FEED_CURSOR_EXPIRED`` if items after ``after`` were pruned;
        ``CHANGE_FEED_CURSOR_INVALID`` if ``after`` is beyond the newest sequence."""
        if after < 0:
            raise FailedPrecondition(
                "a change feed cursor is never negative", reason="CHANGE_FEED_CURSOR_INVALID"
            )
        rows = self.store.scan(Table.CHANGES, seq_key(after + 1), _END, limit)
        if not rows:
            head = self.read_head()[0]  # the store's: another front end may have committed
            if head < after:
                raise FailedPrecondition(
                    f"cursor {after} is beyond this node's newest change {head}; resync",
                    reason="CHANGE_FEED_CURSOR_INVALID",
                    metadata={"head_sequence": str(head)},
                )
            if head == after:
                return [], after
            rows = self.store.scan(Table.CHANGES, seq_key(after + 1), _END, limit)  # committed since
        first = _SEQ.unpack(rows[0][0])[0] if rows else 0
        if first != after + 1:
            raise self._expired(after)
        out = [Change.decode(raw) for _, raw in rows]
        cursor = out[-1].sequence
        if prefix:
            out = [c for c in out if c.under(prefix)]
        return out, cursor

    def _expired(self, after: int) -> FailedPrecondition:
        oldest_rows = self.store.scan(Table.CHANGES, b"", _END, 1)
        head = self.read_head()[0]
        oldest = _SEQ.unpack(oldest_rows[0][0])[0] if oldest_rows else head + 1
        return FailedPrecondition(
            f"change feed cursor {after} is older than the retained window (oldest retained "
            f"sequence {oldest}): changes were pruned; resync from a snapshot (ListIdentifiers) "
            f"and watch after sequence {head}",
            reason="CHANGE_FEED_CURSOR_EXPIRED",
            metadata={"oldest_sequence": str(oldest), "head_sequence": str(head)},
        )

    def wait(self, after: int, timeout: float) -> bool:
        """Block until a change with sequence > ``after`` is committed through this log, the log
        is closed, or ``timeout`` seconds pass; True if there is something newer (in the store:
        a change committed by another front end is found when the timeout ends)."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self.last_sequence() > after, timeout)
        return self.last_sequence() > after

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every waiter for good (the server is stopping)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def prune_feed(self, now_ns: int | None = None) -> int:
        """Delete feed items outside the retention window; returns how many. The audit trail is
        untouched."""
        r = self.retention
        now = self._clock() if now_ns is None else now_ns
        min_time = now - int(r.max_age_seconds * 1e9) if r.max_age_seconds > 0 else 0
        deleted = 0
        with self._prune_lock:
            keep_from = self.last_sequence() - r.max_entries + 1
            while True:
                rows = self.store.scan(Table.CHANGES, b"", _END, _SCAN_CHUNK)
                doomed = []
                for key, raw in rows:
                    seq = _SEQ.unpack(key)[0]
                    if seq >= keep_from and (not min_time or Change.decode(raw).time_ns >= min_time):
                        break
                    doomed.append(Delete(Table.CHANGES, key))
                if doomed:
                    self.store.commit(Txn(writes=tuple(doomed)))
                    deleted += len(doomed)
                if len(doomed) < _SCAN_CHUNK:
                    return deleted
