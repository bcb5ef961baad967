"""The hierarchy's core: the root's route table and a secondary node's durable outbox.

Sans-I/O like :mod:`registry.service`: storage through :class:`~registry.store.Store`, domain
errors out; the gRPC service, the upstream client and the drain thread are in
:mod:`resolver.hierarchy`.

- :class:`Routes` (the root node): folded prefix -> :class:`Route`. Longest-prefix lookup is
  public; the administrator adds and removes routes (typically one per secondary node, carrying
  that node's credential fingerprint); a secondary node registers and withdraws routes strictly
  under its own node prefix. Registration and withdrawal are idempotent, so an outbox retry after
  a crash is harmless.
- :class:`Outbox` (a secondary node): an :class:`~registry.service.EnterpriseHook` that puts
  "register P" / "withdraw P" into the very Txn that creates / removes enterprise P, keyed by P so
  a later operation replaces an unsent earlier one. An entry is deleted only after the upstream
  acknowledged it, and only if it was not replaced meanwhile.
- :class:`RootGuard`: the root allocates no enterprises.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from registry.authz import require_admin
from registry.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from registry.identifier import fold, parse_prefix
from registry.model import Principal, Role
from registry.store import ConditionFailed, Delete, Expect, Put, Store, Table, Txn
from registry.validation import page

REGISTER = "register"
WITHDRAW = "withdraw"
ADMIN_REGISTRANT = "admin"
ADDRESS_MAX_CHARS = 255
META_OUTBOX_SYNCED = b"hierarchy_outbox_synced"
"""The ``upstream|advertise`` pair every existing enterprise was last queued for (see
:meth:`Outbox.queue_all`)."""


@dataclass(frozen=True, slots=True)
class Route:
    """``prefix`` is served by the node whose public listener is ``node_address``.

    ``registered_by`` is ``admin`` or the node prefix of the node that registered the route;
    ``fingerprints`` (admin routes only) are the SHA-256 fingerprints of the node credentials
    allowed to register under ``prefix``."""

    prefix: str
    node_address: str
    node_id: str = ""
    registered_ns: int = 0
    registered_by: str = ADMIN_REGISTRANT
    fingerprints: tuple[str, ...] = field(default=(), repr=False)


def encode_route(route: Route) -> bytes:
    return json.dumps(asdict(route), separators=(",", ":"), sort_keys=True).encode()


def decode_route(raw: bytes) -> Route:
    doc = json.loads(raw)
    doc["fingerprints"] = tuple(doc.get("fingerprints", ()))
    return Route(**doc)


def check_address(address: str, field_name: str = "node_address") -> str:
    """``host:port`` with a numeric port, or InvalidArgument naming ``field_name``."""
    host, colon, port = address.rpartition(":")
    if (
        not colon
        or not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or len(address) > ADDRESS_MAX_CHARS
    ):
        raise InvalidArgument.single(field_name, "must be host:port, e.g. 10.0.0.5:8470")
    return address


def _strictly_under(prefix: str, parent: str) -> bool:
    return prefix.upper().startswith(parent.upper() + ".")


class Routes:
    """The root's route table. Thread-safe (conditional commits, retried on conflict)."""

    def __init__(self, store: Store, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self._clock = clock

    def get(self, prefix: str) -> Route | None:
        raw = self.store.get(Table.ROUTES, fold(prefix))
        return decode_route(raw) if raw is not None else None

    def lookup(self, prefix: str, field_name: str = "prefix") -> Route:
        """The route with the longest prefix that ``prefix`` is or falls under (public).
        NOT_FOUND with reason NO_ROUTE when there is none."""
        parse_prefix(prefix, field_name)
        segments = prefix.split(".")
        keys = [fold(".".join(segments[:n])) for n in range(len(segments), 0, -1)]
        for raw in self.store.get_many(Table.ROUTES, keys):
            if raw is not None:
                return decode_route(raw)
        raise NotFound(f"no node serves prefix {prefix}", reason="NO_ROUTE", metadata={"prefix": prefix})

    def _put(self, prefix: str, make: Callable[[Route | None], Route]) -> Route:
        key = fold(prefix)
        while True:
            raw = self.store.get(Table.ROUTES, key)
            route = make(decode_route(raw) if raw is not None else None)
            encoded = encode_route(route)
            if raw == encoded:
                return route
            try:
                self.store.commit(
                    Txn(expects=(Expect(Table.ROUTES, key, raw),), writes=(Put(Table.ROUTES, key, encoded),))
                )
            except ConditionFailed:
                continue
            return route

    def add(
        self, principal: Principal, prefix: str, node_address: str, node_id: str = "", fingerprint: str = ""
    ) -> Route:
        """Administrator: add or replace the route of ``prefix``. A non-empty ``fingerprint``
        replaces the node credential the route accepts; empty keeps the current one."""
        require_admin(principal)
        parse_prefix(prefix)
        check_address(node_address)

        def make(old: Route | None) -> Route:
            keep = old.fingerprints if old is not None else ()
            return Route(
                prefix=prefix,
                node_address=node_address,
                node_id=node_id or prefix,
                registered_ns=self._clock(),
                registered_by=ADMIN_REGISTRANT,
                fingerprints=(fingerprint,) if fingerprint else keep,
            )

        return self._put(prefix, make)

    def remove(self, principal: Principal, prefix: str) -> None:
        """Administrator: remove the route of exactly ``prefix`` (NOT_FOUND if there is none)."""
        require_admin(principal)
        parse_prefix(prefix)
        key = fold(prefix)
        raw = self.store.get(Table.ROUTES, key)
        if raw is None:
            raise NotFound(f"no route for {prefix}", reason="NO_ROUTE", metadata={"prefix": prefix})
        self.store.commit(Txn(writes=(Delete(Table.ROUTES, key),)))

    def authenticate_node(self, prefix: str, fingerprint: str) -> Principal:
        """The node principal for a node credential naming ``prefix``; UNAUTHENTICATED unless the
        administrator's route for exactly ``prefix`` lists ``fingerprint``."""
        try:
            route = self.get(parse_prefix(prefix))
        except InvalidArgument:
            route = None
        if route is None or not fingerprint or fingerprint not in route.fingerprints:
            raise Unauthenticated("the client certificate is not a current node credential of this root")
        return Principal(Role.NODE, route.prefix, fingerprint)

    def register(self, principal: Principal, prefix: str, node_address: str) -> Route:
        """A node registers ``prefix`` (strictly under its node prefix) at ``node_address``.
        Idempotent. PERMISSION_DENIED for a prefix outside its own or an administrator's route."""
        node = _require_node(principal)
        parse_prefix(prefix)
        check_address(node_address)
        if not _strictly_under(prefix, node):
            raise PermissionDenied(
                f"{prefix} is not under your node prefix {node}",
                reason="PREFIX_NOT_OWNED",
                metadata={"prefix": prefix, "node": node},
            )

        def make(old: Route | None) -> Route:
            if old is not None and old.registered_by != node:
                raise PermissionDenied(
                    f"the route of {prefix} is not yours to change",
                    reason="PREFIX_NOT_OWNED",
                    metadata={"prefix": prefix, "node": node},
                )
            if old is not None and old.node_address == node_address:
                return old
            return Route(prefix, node_address, node, self._clock(), node)

        return self._put(prefix, make)

    def withdraw(self, principal: Principal, prefix: str) -> None:
        """A node withdraws a route it registered. Idempotent: an absent route is no error."""
        node = _require_node(principal)
        parse_prefix(prefix)
        key = fold(prefix)
        while True:
            raw = self.store.get(Table.ROUTES, key)
            if raw is None:
                return
            if decode_route(raw).registered_by != node:
                raise PermissionDenied(
                    f"the route of {prefix} is not yours to withdraw",
                    reason="PREFIX_NOT_OWNED",
                    metadata={"prefix": prefix, "node": node},
                )
            try:
                self.store.commit(
                    Txn(expects=(Expect(Table.ROUTES, key, raw),), writes=(Delete(Table.ROUTES, key),))
                )
            except ConditionFailed:
                continue
            return

    def list(self, principal: Principal, size: int = 0, token: str = "") -> tuple[list[Route], str]:
        """Administrator: routes in folded-prefix order, and the next page token ("" at the end)."""
        require_admin(principal)
        rows, next_token = page(self.store, Table.ROUTES, b"", b"\xff", size, token)
        return [decode_route(v) for v in rows], next_token


def _require_node(principal: Principal) -> str:
    if principal.role is not Role.NODE or not principal.prefix:
        raise PermissionDenied("this call needs a node credential issued by this root", reason="NODE_ONLY")
    return principal.prefix


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One pending upstream operation: ``op`` is :data:`REGISTER` or :data:`WITHDRAW`."""

    key: bytes
    raw: bytes
    op: str
    prefix: str


class Outbox:
    """A secondary node's durable queue of route registrations and withdrawals for its upstream.

    Used as an enterprise hook (:attr:`registry.service.Registry.enterprise_hooks`): the queue
    entry commits atomically with the enterprise change, so a crash can neither lose it nor send
    one for a change that did not happen. ``wake`` is set after each commit (the drainer waits on
    it)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.wake = threading.Event()

    def _put(self, prefix: str, op: str) -> Put:
        return Put(Table.OUTBOX, fold(prefix), json.dumps({"op": op, "prefix": prefix}).encode())

    def enterprise_writes(self, prefix: str, present: bool) -> Sequence[Put | Delete]:
        return (self._put(prefix, REGISTER if present else WITHDRAW),)

    def enterprise_committed(self, prefix: str, present: bool) -> None:
        self.wake.set()

    def pending(self, limit: int = 1000) -> list[OutboxEntry]:
        """Up to ``limit`` unacknowledged operations, in folded-prefix order."""
        out = []
        for key, raw in self.store.scan(Table.OUTBOX, b"", b"\xff", limit):
            doc = json.loads(raw)
            out.append(OutboxEntry(key, raw, doc["op"], doc["prefix"]))
        return out

    def done(self, entry: OutboxEntry) -> bool:
        """Drop an acknowledged entry, unless it was replaced since it was read (False: the newer
        operation stays queued)."""
        try:
            self.store.commit(
                Txn(
                    expects=(Expect(Table.OUTBOX, entry.key, entry.raw),),
                    writes=(Delete(Table.OUTBOX, entry.key),),
                )
            )
        except ConditionFailed:
            return False
        return True

    def queue_all(self, prefixes: Sequence[str], marker: str) -> bool:
        """Queue a registration of every one of ``prefixes`` (the node's enterprises) once per
        ``marker`` (the upstream and advertised address): covers enterprises allocated before the
        node had an upstream, and address changes. Returns whether it queued anything."""
        done = self.store.get(Table.META, META_OUTBOX_SYNCED)
        if done == marker.encode():
            return False
        for start in range(0, len(prefixes), 1000):
            chunk = prefixes[start : start + 1000]
            self.store.commit(Txn(writes=tuple(self._put(p, REGISTER) for p in chunk)))
        self.store.commit(Txn(writes=(Put(Table.META, META_OUTBOX_SYNCED, marker.encode()),)))
        self.wake.set()
        return True


class RootGuard:
    """Enterprise hook of a root node: it holds routes and allocates no enterprises."""

    def enterprise_writes(self, prefix: str, present: bool) -> Sequence[Put | Delete]:
        if present:
            raise FailedPrecondition(
                "this is a root node: it holds prefix routes and allocates no enterprises",
                reason="ROOT_NODE",
            )
        return ()

    def enterprise_committed(self, prefix: str, present: bool) -> None:
        return None


__all__ = [
    "REGISTER",
    "WITHDRAW",
    "Outbox",
    "OutboxEntry",
    "RootGuard",
    "Route",
    "Routes",
    "check_address",
    "decode_route",
    "encode_route",
]
