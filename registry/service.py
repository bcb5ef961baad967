"""The node's core operations: resolution, registration, enterprises, statistics.

Sans-I/O with respect to transports: callers (the gRPC adapter, the CLI, bulk import) hand in
already-decoded values and a :class:`~registry.model.Principal`, and get value objects, encoded
record bytes, or a domain error (:mod:`registry.errors`). Storage is reached only through
:class:`~registry.store.Store`.

Authorization rules, enforced here so every adapter gets the same:
- resolution is public;
- an enterprise reads and writes only identifiers under its own prefix (and its sub-prefixes),
  and writes only while ACTIVE;
- the administrator manages enterprises and may write under any existing enterprise's prefix
  (for bulk imports); the identifier's owner is then the enterprise with the longest matching
  prefix.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from registry import codec, limits
from registry.audit import AuditLog, Draft, FeedRetention, Operation, digest
from registry.authz import require_admin
from registry.errors import (
    AlreadyExists,
    EnterpriseSuspended,
    EtagMismatch,
    FailedPrecondition,
    FieldViolation,
    IdnodeError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from registry.identifier import Identifier, fold, parse, parse_prefix, prefix_range, segment_problem
from registry.model import Enterprise, EnterpriseState, Principal, Record, Role, Value
from registry.store import Add, ConditionFailed, Delete, Expect, Put, Store, Table, Txn
from registry.templates import TemplateCatalog
from registry.validation import check_record_size, page, value_violations

META_NODE_PREFIX = b"node_prefix"
META_CREATED = b"created_ns"
META_ADMIN_FINGERPRINTS = b"admin_fingerprints"
COUNT_TOTAL = b"ids:*"
COUNT_ENTERPRISES = b"enterprises"
NEXT_ENTERPRISE_CODE = b"next_enterprise_code"
_COUNT_PREFIX = b"ids:"
_ENTERPRISE_CACHE_MAX = 10_000
"""Cached enterprise look-ups (including "no enterprise at this sub-prefix") before a reset."""


def count_key(enterprise_prefix: str) -> bytes:
    return _COUNT_PREFIX + fold(enterprise_prefix)


def records_under(store: Store, parent: str | None) -> int | None:
    """How many records lie under the prefix ``parent`` (None: in the whole node), by the
    enterprises' counters; None when they cannot tell: ``parent`` lies inside an enterprise's
    prefix without being one."""
    if parent is None:
        return store.counter(COUNT_TOTAL)
    base = fold(parent)
    total = 0
    for name, count in store.counters(_COUNT_PREFIX).items():
        if name == COUNT_TOTAL:
            continue
        owner = name[len(_COUNT_PREFIX) :]
        if owner == base or owner.startswith(base + b"."):
            total += count
        elif base.startswith(owner + b"."):
            return None
    return total


class Cache(Protocol):
    """What the core needs of a record cache (see :class:`cache.RecordCache`)."""

    def get(self, key: bytes) -> bytes | None: ...
    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...
    def epoch(self) -> int: ...
    def fill(self, key: bytes, value: bytes | None, epoch: int) -> None: ...
    def invalidate(self, key: bytes) -> None: ...


class CommitListener(Protocol):
    """Told of every committed record change, after the commit and before the write is
    acknowledged to its caller; the write waits for it to return. ``changes`` are
    (case-folded key, new encoded record or None for a deletion). Used to keep other processes'
    caches and replicas coherent."""

    def records_changed(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None: ...


class EnterpriseHook(Protocol):
    """Told of enterprise allocations and removals (the hierarchy's outbox, the root's refusal).

    ``enterprise_writes`` runs before the commit and returns extra writes for the same Txn (so
    they happen if and only if the enterprise change does), or raises a domain error to refuse the
    change; ``enterprise_committed`` runs after the commit. ``present``: created (True) or
    removed (False)."""

    def enterprise_writes(self, prefix: str, present: bool) -> Sequence[Put | Delete]: ...
    def enterprise_committed(self, prefix: str, present: bool) -> None: ...


class NoCache:
    """A cache that holds nothing: every lookup reads the store."""

    def get(self, key: bytes) -> bytes | None:
        return None

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return [None] * len(keys)

    def epoch(self) -> int:
        return 0

    def fill(self, key: bytes, value: bytes | None, epoch: int) -> None:
        return None

    def invalidate(self, key: bytes) -> None:
        return None


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    """One item's outcome in a batch create: ``etag`` on success, else ``error``."""

    identifier: str
    etag: str = ""
    error: IdnodeError | None = None


@dataclass(frozen=True, slots=True)
class NodeStats:
    node_prefix: str
    identifier_count: int
    identifier_count_by_enterprise: dict[str, int]
    enterprise_count: int
    uptime_seconds: float


def init_node(store: Store, node_prefix: str, *, clock: Callable[[], int] = time.time_ns) -> None:
    """Record the node prefix in a new store. Idempotent for the same prefix; FAILED_PRECONDITION
    if the store already belongs to another prefix."""
    parse_prefix(node_prefix, "node_prefix")
    existing = store.get(Table.META, META_NODE_PREFIX)
    if existing is not None:
        if existing.decode() != node_prefix:
            raise FailedPrecondition(f"this data directory belongs to node prefix {existing.decode()}")
        return
    try:
        store.commit(
            Txn(
                expects=(Expect(Table.META, META_NODE_PREFIX, None),),
                writes=(
                    Put(Table.META, META_NODE_PREFIX, node_prefix.encode()),
                    Put(Table.META, META_CREATED, str(clock()).encode()),
                ),
            )
        )
    except ConditionFailed:
        init_node(store, node_prefix, clock=clock)


def set_admin_fingerprints(store: Store, fingerprints: Sequence[str]) -> None:
    """Replace the set of administrator certificate fingerprints (SHA-256 hex) the node accepts."""
    store.commit(Txn(writes=(Put(Table.META, META_ADMIN_FINGERPRINTS, ",".join(fingerprints).encode()),)))


class Registry:
    """The core of one node. Thread-safe: reads run concurrently; the store serializes commits."""

    def __init__(
        self,
        store: Store,
        *,
        cache: Cache | None = None,
        clock: Callable[[], int] = time.time_ns,
        listeners: Sequence[CommitListener] = (),
        feed_retention: FeedRetention | None = None,
    ) -> None:
        """``feed_retention``: how much of the change feed to keep (the audit trail is kept whole)."""
        raw = store.get(Table.META, META_NODE_PREFIX)
        if raw is None:
            raise FailedPrecondition("the data directory is not initialised; run `idnode init` first")
        self.store = store
        self.cache: Cache = cache if cache is not None else NoCache()
        self.node_prefix = raw.decode()
        self._clock = clock
        created = store.get(Table.META, META_CREATED)
        self.created_ns = int(created) if created else clock()
        self.started_ns = clock()
        self.listeners: list[CommitListener] = list(listeners)
        self.enterprise_hooks: list[EnterpriseHook] = []
        self._enterprises: dict[bytes, Enterprise | None] = {}
        self._enterprise_generation = 0
        self._enterprise_lock = threading.Lock()
        self._etags = random.Random()  # seeded from the OS, once per registry
        """Where new etags come from. An etag is a version tag that every reader sees, not a
        secret; `secrets.token_hex` (a getrandom call that releases the GIL) cost a serving node
        ~23 us a record under load, 14% of a batch create (bench/README.md, "Session 10")."""
        self.audit = AuditLog(store, clock=clock, retention=feed_retention)
        """Every write below commits through it: the audit entry and feed item go in the write's Txn."""
        self.templates = TemplateCatalog(store, self.audit, clock)

    # ---------------------------------------------------------------- resolution (public)
    def lookup(self, key: bytes) -> bytes | None:
        """The hot path: the encoded record stored under case-folded ``key``, or None.

        Never decodes; does not validate ``key`` (only valid identifiers are ever stored, so an
        invalid one simply is not found; callers validate on a miss to tell the two apart).
        """
        cache = self.cache
        hit = cache.get(key)
        if hit is not None:
            return hit or None
        epoch = cache.epoch()
        value = self.store.get(Table.RECORDS, key)
        cache.fill(key, value, epoch)
        return value

    def lookup_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`lookup` for many keys, in order: one cache pass, one store read for the misses.

        An identifier with no record gets a false value: None, or b"" when the cache answered
        with a cached absence (callers test ``if not data``; this spares the hot path a pass
        that turns one into the other)."""
        cache = self.cache
        found = cache.get_many(keys)
        if None in found:
            missing = [i for i, value in enumerate(found) if value is None]
            epoch = cache.epoch()
            values = self.store.get_many(Table.RECORDS, [keys[i] for i in missing])
            for i, value in zip(missing, values, strict=True):
                cache.fill(keys[i], value, epoch)
                found[i] = value
        return found

    def resolve(
        self, text: str, types: Sequence[str] = (), indexes: Sequence[int] = (), field: str = "identifier"
    ) -> bytes:
        """The encoded record of ``text`` filtered by ``types`` and ``indexes``.

        Raises InvalidArgument for a malformed identifier, NotFound when none is registered.
        """
        data = self.lookup(fold(text))
        if data is None:
            raise self.missing(text, field)
        return codec.filter_record_bytes(data, types, indexes)

    def missing(self, text: str, field: str = "identifier") -> IdnodeError:
        """The error for ``text`` having no record: InvalidArgument if it is not a well-formed
        identifier (raised), else NotFound (returned)."""
        return _not_registered(parse(text, field))

    def _records_changed(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        """After a commit, before acknowledging it: drop stale cache entries, tell listeners."""
        for key, _ in changes:
            self.cache.invalidate(key)
        for listener in self.listeners:
            listener.records_changed(changes)

    # ---------------------------------------------------------------- enterprises and principals
    def enterprise(self, prefix: str) -> Enterprise | None:
        """The enterprise with exactly this prefix (ASCII case-insensitive), or None."""
        key = fold(prefix)
        try:
            return self._enterprises[key]
        except KeyError:
            pass
        generation = self._enterprise_generation
        raw = self.store.get(Table.ENTERPRISES, key)
        found = codec.decode_enterprise(raw) if raw is not None else None
        with self._enterprise_lock:
            # A forget since our read means what we read may be stale: do not cache it.
            if generation == self._enterprise_generation:
                if len(self._enterprises) >= _ENTERPRISE_CACHE_MAX:
                    self._enterprises.clear()
                self._enterprises[key] = found
        return found

    def forget_enterprise(self, prefix: str) -> None:
        """Drop a cached enterprise; called after every enterprise write (and by replicas)."""
        with self._enterprise_lock:
            self._enterprise_generation += 1
            self._enterprises.pop(fold(prefix), None)

    def forget_all_enterprises(self) -> None:
        """Drop every cached enterprise (another process may have changed any of them)."""
        with self._enterprise_lock:
            self._enterprise_generation += 1
            self._enterprises.clear()

    def owner_of(self, ident: Identifier) -> Enterprise | None:
        """The enterprise with the longest prefix that ``ident`` falls under (longest-prefix match)."""
        segments = ident.prefix.split(".")
        for n in range(len(segments), 0, -1):
            found = self.enterprise(".".join(segments[:n]))
            if found is not None:
                return found
        return None

    def authenticate_enterprise(self, prefix: str, fingerprint: str) -> Principal:
        """The principal for a client certificate naming enterprise ``prefix`` with SHA-256
        ``fingerprint``. UNAUTHENTICATED unless the enterprise exists and lists that fingerprint
        (so a re-issued credential revokes the old one)."""
        found = self.enterprise(prefix)
        if found is None or fingerprint not in found.fingerprints:
            raise Unauthenticated("the client certificate is not a current credential of this node")
        return Principal.enterprise(found.prefix, fingerprint)

    def authenticate_admin(self, fingerprint: str) -> Principal:
        """The administrator principal for a certificate with SHA-256 ``fingerprint``; UNAUTHENTICATED
        unless the node lists it."""
        raw = self.store.get(Table.META, META_ADMIN_FINGERPRINTS) or b""
        if not fingerprint or fingerprint not in raw.decode().split(","):
            raise Unauthenticated("the client certificate is not a current credential of this node")
        return Principal.admin(fingerprint)

    def writer_owner(self, principal: Principal, ident: Identifier, field: str) -> Enterprise:
        """The enterprise that will own ``ident`` if ``principal`` may write it; raises otherwise.
        The one owner rule: the gRPC, REST and bulk-import paths all call it."""
        if principal.role is Role.ENTERPRISE:
            if not ident.is_under(principal.prefix):
                raise PermissionDenied(
                    f"{ident.text} is not under your prefix {principal.prefix}",
                    reason="PREFIX_NOT_OWNED",
                    metadata={"identifier": ident.text, "prefix": principal.prefix},
                )
            owner = self.enterprise(principal.prefix)
            if owner is None:
                raise Unauthenticated("the enterprise of this credential no longer exists")
            if not owner.active:
                raise EnterpriseSuspended(
                    f"enterprise {owner.prefix} is suspended", metadata={"prefix": owner.prefix}
                )
            # A sub-prefix may itself be another enterprise's allocation: longest prefix wins.
            longest = self.owner_of(ident)
            if longest is not None and fold(longest.prefix) != fold(owner.prefix):
                raise PermissionDenied(
                    f"{ident.text} falls under enterprise {longest.prefix}",
                    reason="PREFIX_NOT_OWNED",
                    metadata={"identifier": ident.text, "prefix": principal.prefix},
                )
            return owner
        if principal.role is Role.ADMIN:
            found = self.owner_of(ident)
            if found is None:
                raise FailedPrecondition(
                    f"no enterprise owns the prefix of {ident.text}",
                    reason="ENTERPRISE_NOT_FOUND",
                    metadata={"identifier": ident.text},
                )
            return found
        raise Unauthenticated("writing needs a credential")

    def reader_check(self, principal: Principal, ident: Identifier) -> None:
        """PERMISSION_DENIED ``PREFIX_NOT_OWNED`` if an enterprise reads outside its prefix."""
        if principal.role is Role.ENTERPRISE and not ident.is_under(principal.prefix):
            raise PermissionDenied(
                f"{ident.text} is not under your prefix {principal.prefix}",
                reason="PREFIX_NOT_OWNED",
                metadata={"identifier": ident.text, "prefix": principal.prefix},
            )

    # ---------------------------------------------------------------- registration
    def _stamp(self, values: Sequence[Value], now: int, previous: Sequence[Value] = ()) -> tuple[Value, ...]:
        """Values sorted by index and timestamped now, except those unchanged from ``previous``."""
        before = {v.index: v for v in previous}
        out = []
        for v in sorted(values, key=lambda v: v.index):
            old = before.get(v.index)
            out.append(v.stamped(old.timestamp_ns if old and old.same_content(v) else now))
        return tuple(out)

    def _template_violations(
        self, owner: Enterprise, template: str, values: Sequence[Value], *, new: bool
    ) -> list[FieldViolation]:
        """Problems of ``values`` against ``template`` (relative paths), including the owner's
        policy that a template is required. ``new``: the record takes this template now."""
        if not template:
            if owner.require_template:
                return [
                    FieldViolation(
                        "template",
                        f"enterprise {owner.prefix} registers identifiers against a template (NAME@VERSION)",
                    )
                ]
            return []
        return self.templates.violations_for(template, values, new=new)

    def _new_record(
        self,
        principal: Principal,
        text: str,
        values: Sequence[Value],
        field: str,
        template: str = "",
        now: int = 0,
    ) -> Record:
        ident = parse(text, f"{field}.identifier")
        owner = self.writer_owner(principal, ident, f"{field}.identifier")
        violations = value_violations(values) + self._template_violations(owner, template, values, new=True)
        if violations:
            raise InvalidArgument(violations).under(field)
        now = now or self._clock()
        return Record(
            identifier=ident.text,
            values=self._stamp(values, now),
            owner=owner.prefix,
            create_time_ns=now,
            update_time_ns=now,
            etag=self._new_etag(),
            template=template,
        )

    def _new_etag(self) -> str:
        """16 hex digits, drawn afresh for each write of a record."""
        return f"{self._etags.getrandbits(64):016x}"

    def _encode_checked(self, record: Record, field: str) -> bytes:
        data = codec.encode_record(record)
        try:
            check_record_size(data)
        except InvalidArgument as exc:
            raise exc.under(field) from None
        return data

    def create(
        self,
        principal: Principal,
        text: str,
        values: Sequence[Value],
        field: str = "record",
        *,
        template: str = "",
        origin: str = "",
    ) -> Record:
        """Register ``text``. ALREADY_EXISTS if it is taken in any ASCII case.

        ``template`` (``name@version``): validate against it and keep it in the record; every
        violation is reported at once. ``origin``: where the call came from, for the audit trail."""
        record = self._new_record(principal, text, values, field, template)
        data = self._encode_checked(record, field)
        key = fold(record.identifier)
        try:
            self.audit.commit(
                Txn(
                    expects=(Expect(Table.RECORDS, key, None),),
                    writes=(Put(Table.RECORDS, key, data),),
                    adds=(Add(count_key(record.owner), 1), Add(COUNT_TOTAL, 1)),
                ),
                [_record_draft(Operation.CREATE, principal, origin, record, data)],
            )
        except ConditionFailed:
            raise self._exists(record.identifier) from None
        self._records_changed([(key, data)])
        return record

    def _exists(self, text: str) -> AlreadyExists:
        return AlreadyExists(f"{text} is already registered", metadata={"identifier": text})

    def batch_create(
        self,
        principal: Principal,
        items: Sequence[tuple[str, Sequence[Value]]],
        request_id: str = "",
        *,
        templates: Sequence[str] = (),
        origin: str = "",
    ) -> list[CreateOutcome]:
        """Create each item on its own; all successful items commit in one atomic write (with one
        audit entry per item).

        With a ``request_id``, the first answer is stored with the writes and returned for any
        retry of the same request; reusing the id for a different request is INVALID_ARGUMENT.
        ``templates[i]`` (if given) is item i's template, as in :meth:`create`.
        """
        if len(items) > limits.BATCH_CREATE_MAX:
            raise InvalidArgument.single("requests", f"at most {limits.BATCH_CREATE_MAX} items per batch")
        if len(request_id) > limits.REQUEST_ID_MAX_CHARS:
            raise InvalidArgument.single(
                "request_id", f"must be at most {limits.REQUEST_ID_MAX_CHARS} characters"
            )
        request_key = digest = b""
        if request_id:
            if principal.role is Role.ENTERPRISE:
                self.writer_owner(principal, Identifier(principal.prefix, "x"), "request_id")
            request_key = fold(principal.prefix or "*") + b"\0" + request_id.encode()
            digest = _request_digest(items, templates)
            previous = self.store.get(Table.REQUESTS, request_key)
            if previous is not None:
                return _replay(previous, digest)

        outcomes: list[CreateOutcome | None] = [None] * len(items)
        staged: dict[bytes, tuple[int, Record, bytes]] = {}
        now = self._clock()  # one atomic write: its records share their creation time
        for i, (text, values) in enumerate(items):
            field = f"requests[{i}].record"
            try:
                template = templates[i] if i < len(templates) else ""
                record = self._new_record(principal, text, values, field, template, now)
                data = self._encode_checked(record, field)
            except IdnodeError as exc:
                outcomes[i] = CreateOutcome(text, error=exc)
                continue
            key = fold(record.identifier)
            if key in staged:
                outcomes[i] = CreateOutcome(text, error=self._exists(record.identifier))
                continue
            staged[key] = (i, record, data)

        existing = self.store.get_many(Table.RECORDS, list(staged))
        for key, found in zip(list(staged), existing, strict=True):
            if found is not None:
                i, record, _ = staged.pop(key)
                outcomes[i] = CreateOutcome(record.identifier, error=self._exists(record.identifier))

        while True:
            keys = list(staged)
            adds: dict[bytes, int] = {}
            answer = list(outcomes)
            for i, record, _ in staged.values():
                adds[count_key(record.owner)] = adds.get(count_key(record.owner), 0) + 1
                answer[i] = CreateOutcome(record.identifier, etag=record.etag)
            resolved = [a for a in answer if a is not None]
            writes: list[Put | Delete] = [Put(Table.RECORDS, k, staged[k][2]) for k in keys]
            expects = [Expect(Table.RECORDS, k, None) for k in keys]
            if request_key:
                # A retry racing this call: whichever commits first defines the answer.
                expects.insert(0, Expect(Table.REQUESTS, request_key, None))
                writes.append(Put(Table.REQUESTS, request_key, _encode_outcomes(resolved, digest)))
            drafts = [
                _record_draft(Operation.CREATE, principal, origin, staged[k][1], staged[k][2]) for k in keys
            ]
            try:
                self.audit.commit(
                    Txn(
                        expects=tuple(expects),
                        writes=tuple(writes),
                        adds=(*(Add(k, n) for k, n in adds.items()), Add(COUNT_TOTAL, len(keys))),
                    ),
                    drafts,
                )
            except ConditionFailed as exc:
                if request_key and exc.index == 0:
                    return _replay(self.store.get(Table.REQUESTS, request_key) or b"", digest)
                # Created by someone else since our read: that item loses, the rest retry.
                i, record, _ = staged.pop(keys[exc.index - (1 if request_key else 0)])
                outcomes[i] = CreateOutcome(record.identifier, error=self._exists(record.identifier))
                continue
            self._records_changed([(k, staged[k][2]) for k in keys])
            return resolved

    def get(self, principal: Principal, text: str, field: str = "identifier") -> Record:
        ident = parse(text, field)
        self.reader_check(principal, ident)
        data = self.store.get(Table.RECORDS, ident.key)
        if data is None:
            raise _not_registered(ident)
        return codec.decode_record(data)

    def update(
        self,
        principal: Principal,
        text: str,
        values: Sequence[Value],
        etag: str = "",
        field: str = "record",
        *,
        template: str = "",
        origin: str = "",
    ) -> Record:
        """Replace the values of ``text``. A non-empty ``etag`` must match the stored one
        (ABORTED otherwise); the write is conditional on the record read, so a concurrent update
        is never overwritten silently. ``template`` empty keeps the record's template (and the
        new values are checked against it); otherwise the record moves to that template."""
        ident = parse(text, f"{field}.identifier")
        owner = self.writer_owner(principal, ident, f"{field}.identifier")
        violations = value_violations(values)
        key = ident.key
        while True:
            old_data = self.store.get(Table.RECORDS, key)
            if old_data is None:
                if violations:
                    raise InvalidArgument(violations).under(field)
                raise _not_registered(ident)
            old = codec.decode_record(old_data)
            ref = template or old.template
            problems = violations + self._template_violations(owner, ref, values, new=ref != old.template)
            if problems:
                raise InvalidArgument(problems).under(field)
            _check_etag(old, etag)
            now = self._clock()
            record = replace(
                old,
                values=self._stamp(values, now, old.values),
                update_time_ns=now,
                etag=self._new_etag(),
                template=ref,
            )
            data = self._encode_checked(record, field)
            try:
                self.audit.commit(
                    Txn(
                        expects=(Expect(Table.RECORDS, key, old_data),),
                        writes=(Put(Table.RECORDS, key, data),),
                    ),
                    [_record_draft(Operation.UPDATE, principal, origin, record, data, old.etag)],
                )
            except ConditionFailed:
                continue  # changed under us: re-read, and re-check the caller's etag
            self._records_changed([(key, data)])
            return record

    def delete(
        self, principal: Principal, text: str, etag: str = "", field: str = "identifier", *, origin: str = ""
    ) -> None:
        ident = parse(text, field)
        self.writer_owner(principal, ident, field)
        key = ident.key
        while True:
            old_data = self.store.get(Table.RECORDS, key)
            if old_data is None:
                raise _not_registered(ident)
            old = codec.decode_record(old_data)
            _check_etag(old, etag)
            gone = replace(old, etag="")
            try:
                self.audit.commit(
                    Txn(
                        expects=(Expect(Table.RECORDS, key, old_data),),
                        writes=(Delete(Table.RECORDS, key),),
                        adds=(Add(count_key(old.owner), -1), Add(COUNT_TOTAL, -1)),
                    ),
                    [_record_draft(Operation.DELETE, principal, origin, gone, None, old.etag)],
                )
            except ConditionFailed:
                continue
            self._records_changed([(key, None)])
            return

    def list(
        self, principal: Principal, parent: str, size: int = 0, token: str = ""
    ) -> tuple[list[bytes], str]:
        """Encoded records under ``parent`` (and its sub-prefixes) in case-folded byte order, and
        the next page token ("" on the last page)."""
        parse_prefix(parent, "parent")
        if principal.role is Role.ENTERPRISE:
            self.reader_check(principal, Identifier(parent, "x"))
        lower, upper = prefix_range(parent)
        return page(self.store, Table.RECORDS, lower, upper, size, token)

    # ---------------------------------------------------------------- administration
    def create_enterprise(
        self,
        principal: Principal,
        code: str,
        display_name: str,
        contact: str,
        issue_fingerprint: Callable[[str], str],
        *,
        origin: str = "",
    ) -> Enterprise:
        """Allocate ``node_prefix.code`` (the next free number when ``code`` is empty).

        ``issue_fingerprint(prefix)`` is called once the prefix is known; it issues the credential
        (outside the core) and returns its certificate's SHA-256 fingerprint, the only part the
        node stores.
        """
        require_admin(principal)
        violations = _enterprise_field_violations(display_name, contact)
        problem = segment_problem(code) if code else None
        if problem:
            violations.insert(0, FieldViolation("code", problem))
        if violations:
            raise InvalidArgument(violations)
        while True:
            chosen = code or str(self.store.counter(NEXT_ENTERPRISE_CODE) + 1)
            prefix = f"{self.node_prefix}.{chosen}"
            parse_prefix(prefix, "code")
            key = fold(prefix)
            if self.store.get(Table.ENTERPRISES, key) is not None:
                if code:
                    raise _prefix_taken(prefix)
                self.store.commit(Txn(adds=(Add(NEXT_ENTERPRISE_CODE, 1),)))
                continue
            hooked = tuple(w for h in self.enterprise_hooks for w in h.enterprise_writes(prefix, True))
            now = self._clock()
            enterprise = Enterprise(
                prefix=prefix,
                display_name=display_name,
                contact=contact,
                state=EnterpriseState.ACTIVE,
                create_time_ns=now,
                update_time_ns=now,
                fingerprints=(issue_fingerprint(prefix),),
            )
            adds = [Add(COUNT_ENTERPRISES, 1)]
            if not code:
                adds.append(Add(NEXT_ENTERPRISE_CODE, 1))
            encoded = codec.encode_enterprise(enterprise)
            try:
                self.audit.commit(
                    Txn(
                        expects=(Expect(Table.ENTERPRISES, key, None),),
                        writes=(Put(Table.ENTERPRISES, key, encoded), *hooked),
                        adds=tuple(adds),
                    ),
                    [
                        _enterprise_draft(
                            Operation.ENTERPRISE_CREATE, principal, origin, None, encoded, prefix
                        )
                    ],
                )
            except ConditionFailed:
                if code:
                    raise _prefix_taken(prefix) from None
                continue
            self.forget_enterprise(prefix)
            for hook in self.enterprise_hooks:
                hook.enterprise_committed(prefix, True)
            return enterprise

    def remove_enterprise(self, principal: Principal, prefix: str, *, origin: str = "") -> None:
        """Remove the enterprise ``prefix`` (administrator; audited). Refused (FAILED_PRECONDITION)
        while it is ACTIVE (``ENTERPRISE_ACTIVE``: suspend it first, so its own writes have stopped)
        or still owns identifiers (``ENTERPRISE_NOT_EMPTY``). Its credential stops working at once;
        enterprise hooks add their writes (the upstream withdrawal) to the same Txn."""
        require_admin(principal)
        parse_prefix(prefix)
        key = fold(prefix)
        while True:
            raw = self.store.get(Table.ENTERPRISES, key)
            if raw is None:
                raise _no_enterprise(prefix)
            current = codec.decode_enterprise(raw)
            meta = {"prefix": current.prefix}
            if current.active:
                raise FailedPrecondition(
                    f"enterprise {current.prefix} is active; suspend it before removing it",
                    reason="ENTERPRISE_ACTIVE",
                    metadata=meta,
                )
            count = self.identifier_count(current.prefix)
            if count:
                raise FailedPrecondition(
                    f"enterprise {current.prefix} still has {count} identifiers",
                    reason="ENTERPRISE_NOT_EMPTY",
                    metadata=meta,
                )
            hooked = tuple(
                w for h in self.enterprise_hooks for w in h.enterprise_writes(current.prefix, False)
            )
            draft = Draft(
                Operation.ENTERPRISE_REMOVE,
                principal,
                origin,
                enterprise=current.prefix,
                etag_before=digest(raw),
            )
            try:
                self.audit.commit(
                    Txn(
                        expects=(Expect(Table.ENTERPRISES, key, raw),),
                        writes=(Delete(Table.ENTERPRISES, key), *hooked),
                        adds=(Add(COUNT_ENTERPRISES, -1),),
                    ),
                    [draft],
                )
            except ConditionFailed:
                continue
            self.forget_enterprise(current.prefix)
            for hook in self.enterprise_hooks:
                hook.enterprise_committed(current.prefix, False)
            return

    def get_enterprise(self, principal: Principal, prefix: str, field: str = "prefix") -> Enterprise:
        require_admin(principal)
        parse_prefix(prefix, field)
        raw = self.store.get(Table.ENTERPRISES, fold(prefix))
        if raw is None:
            raise _no_enterprise(prefix)
        return codec.decode_enterprise(raw)

    def list_enterprises(
        self, principal: Principal, size: int = 0, token: str = ""
    ) -> tuple[list[Enterprise], str]:
        require_admin(principal)
        rows, next_token = page(self.store, Table.ENTERPRISES, b"", b"\xff", size, token)
        return [codec.decode_enterprise(v) for v in rows], next_token

    def set_enterprise_state(
        self, principal: Principal, prefix: str, state: EnterpriseState, *, origin: str = ""
    ) -> Enterprise:
        """Suspend or resume. Takes effect for the enterprise's next request."""
        return self.update_enterprise(principal, prefix, state=state, origin=origin)

    def update_enterprise(
        self,
        principal: Principal,
        prefix: str,
        *,
        display_name: str | None = None,
        contact: str | None = None,
        require_template: bool | None = None,
        state: EnterpriseState | None = None,
        origin: str = "",
    ) -> Enterprise:
        """Change the given attributes (None: unchanged) of the enterprise ``prefix``; audited."""
        require_admin(principal)
        violations = _enterprise_field_violations(display_name, contact)
        if violations:
            raise InvalidArgument(violations)
        changes: dict[str, object] = {
            k: v
            for k, v in (
                ("display_name", display_name),
                ("contact", contact),
                ("require_template", require_template),
                ("state", state),
            )
            if v is not None
        }
        while True:
            parse_prefix(prefix)
            raw = self.store.get(Table.ENTERPRISES, fold(prefix))
            if raw is None:
                raise _no_enterprise(prefix)
            current = codec.decode_enterprise(raw)
            updated = replace(current, **changes, update_time_ns=self._clock())  # type: ignore[arg-type]
            encoded = codec.encode_enterprise(updated)
            detail = {k: str(v.name if isinstance(v, EnterpriseState) else v) for k, v in changes.items()}
            try:
                self.audit.commit(
                    Txn(
                        expects=(Expect(Table.ENTERPRISES, fold(prefix), raw),),
                        writes=(Put(Table.ENTERPRISES, fold(prefix), encoded),),
                    ),
                    [
                        _enterprise_draft(
                            Operation.ENTERPRISE_UPDATE,
                            principal,
                            origin,
                            raw,
                            encoded,
                            current.prefix,
                            detail,
                        )
                    ],
                )
            except ConditionFailed:
                continue
            self.forget_enterprise(prefix)
            return updated

    def identifier_count(self, enterprise_prefix: str) -> int:
        return self.store.counter(count_key(enterprise_prefix))

    def stats(self, principal: Principal) -> NodeStats:
        require_admin(principal)
        counts = self.store.counters(_COUNT_PREFIX)
        total = counts.pop(COUNT_TOTAL, 0)
        by_enterprise: dict[str, int] = {}
        token = ""
        while True:
            page, token = self.list_enterprises(principal, limits.PAGE_SIZE_MAX, token)
            for e in page:
                by_enterprise[e.prefix] = counts.get(count_key(e.prefix), 0)
            if not token:
                break
        return NodeStats(
            node_prefix=self.node_prefix,
            identifier_count=total,
            identifier_count_by_enterprise=by_enterprise,
            enterprise_count=self.store.counter(COUNT_ENTERPRISES),
            uptime_seconds=(self._clock() - self.started_ns) / 1e9,
        )


def _not_registered(ident: Identifier) -> NotFound:
    return NotFound(f"{ident.text} is not registered", metadata={"identifier": ident.text})


def _check_etag(record: Record, etag: str) -> None:
    """ABORTED (EtagMismatch) unless ``etag`` is empty or the record's current one."""
    if etag and etag != record.etag:
        raise EtagMismatch(
            f"{record.identifier} changed since etag {etag} was read",
            metadata={"identifier": record.identifier},
        )


def _prefix_taken(prefix: str) -> AlreadyExists:
    return AlreadyExists(f"enterprise prefix {prefix} is taken", metadata={"prefix": prefix})


def _enterprise_field_violations(display_name: str | None, contact: str | None) -> list[FieldViolation]:
    """Length problems of an enterprise's display name and contact (None: not being set)."""
    out = []
    if display_name is not None and len(display_name) > limits.DISPLAY_NAME_MAX_CHARS:
        out.append(
            FieldViolation("display_name", f"must be at most {limits.DISPLAY_NAME_MAX_CHARS} characters")
        )
    if contact is not None and len(contact) > limits.CONTACT_MAX_CHARS:
        out.append(FieldViolation("contact", f"must be at most {limits.CONTACT_MAX_CHARS} characters"))
    return out


def _no_enterprise(prefix: str) -> NotFound:
    return NotFound(
        f"no enterprise has prefix {prefix}", reason="ENTERPRISE_NOT_FOUND", metadata={"prefix": prefix}
    )


def _request_digest(items: Sequence[tuple[str, Sequence[Value]]], templates: Sequence[str] = ()) -> bytes:
    h = hashlib.sha256()
    for text, values in items:
        h.update(repr((text, [(v.index, v.type, v.data, v.ttl) for v in values])).encode())
    if any(templates):  # absent from digests of requests without templates, as before templates existed
        h.update(repr(list(templates)).encode())
    return h.digest()


def _record_draft(
    operation: Operation,
    principal: Principal,
    origin: str,
    record: Record,
    data: bytes | None,
    etag_before: str = "",
) -> Draft:
    """The audit draft of a record write; ``data`` is the new encoded record (None: deleted)."""
    return Draft(
        operation,
        principal,
        origin,
        identifier=record.identifier,
        enterprise=record.owner,
        etag_before=etag_before,
        etag_after=record.etag,
        detail={"template": record.template} if record.template else {},
        record=data,
    )


def _enterprise_draft(
    operation: Operation,
    principal: Principal,
    origin: str,
    before: bytes | None,
    after: bytes,
    prefix: str,
    detail: dict[str, str] | None = None,
) -> Draft:
    """The audit draft of an enterprise write; etags are digests of the encoded enterprise."""
    return Draft(
        operation,
        principal,
        origin,
        enterprise=prefix,
        etag_before=digest(before) if before is not None else "",
        etag_after=digest(after),
        detail=detail or {},
    )


def _encode_outcomes(outcomes: Sequence[CreateOutcome], digest: bytes) -> bytes:
    rows = []
    for o in outcomes:
        if o.error is None:
            rows.append({"i": o.identifier, "e": o.etag})
        else:
            err = o.error
            rows.append(
                {
                    "i": o.identifier,
                    "c": type(err).__name__,
                    "r": err.reason,
                    "m": err.message,
                    "v": [[v.field, v.description] for v in getattr(err, "violations", ())],
                    "d": err.metadata,
                }
            )
    return json.dumps({"digest": digest.hex(), "results": rows}, separators=(",", ":")).encode()


_ERROR_CLASSES: dict[str, type[IdnodeError]] = {
    cls.__name__: cls
    for cls in (
        AlreadyExists,
        EnterpriseSuspended,
        FailedPrecondition,
        NotFound,
        PermissionDenied,
        Unauthenticated,
    )
}


def _replay(stored: bytes, digest: bytes) -> list[CreateOutcome]:
    doc = json.loads(stored)
    if doc["digest"] != digest.hex():
        raise InvalidArgument.single(
            "request_id", "was already used for a different request", reason="REQUEST_ID_REUSED"
        )
    out = []
    for row in doc["results"]:
        if "e" in row:
            out.append(CreateOutcome(row["i"], etag=row["e"]))
            continue
        error: IdnodeError
        if row["c"] == "InvalidArgument":
            error = InvalidArgument(
                [FieldViolation(f, d) for f, d in row["v"]], reason=row["r"], message=row["m"]
            )
        else:
            error = _ERROR_CLASSES.get(row["c"], IdnodeError)(row["m"], reason=row["r"], metadata=row["d"])
        out.append(CreateOutcome(row["i"], error=error))
    return out
