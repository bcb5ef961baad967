"""The hierarchy on the wire: HierarchyService, the router behind resolution of identifiers other
nodes serve, and the thread that drains the outbox to the upstream.

Roles (``ServerConfig.role``):

- ``root``: holds prefix -> node routes (:class:`registry.hierarchy.Routes`), serves
  HierarchyService in full, allocates no enterprises, and answers every resolution from its
  routes (a referral, or the record fetched from the serving node).
- ``secondary`` with ``upstream`` (the root's management listener, reached with a node
  credential): registers every enterprise prefix it allocates through a durable outbox, and
  answers identifiers outside its node prefix by looking the route up upstream.
- ``secondary`` without upstream: a stand-alone node, exactly as before.

Loops and deadlines: a forwarded Resolve carries metadata ``idnode-hops`` (forwards so far) and
``idnode-via`` (node ids it passed through). A node refuses a request that already passed through
it, has made :data:`MAX_HOPS` forwards, or whose route names the node itself: FAILED_PRECONDITION
reason ROUTING_LOOP. Each forward gets the caller's remaining deadline (less a margin, at most
:data:`FORWARD_TIMEOUT_MAX`); an unreachable node is UNAVAILABLE reason UPSTREAM_UNAVAILABLE, a
node too slow DEADLINE_EXCEEDED reason UPSTREAM_DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from cache import RecordCache
from registry import codec
from registry.authz import require_admin
from registry.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    IdnodeError,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from registry.hierarchy import META_OUTBOX_SYNCED, REGISTER, Outbox, RootGuard, Route, Routes
from registry.identifier import parse, parse_prefix
from registry.model import Principal, Role
from registry.pb import admin_pb2, hierarchy_pb2, resolution_pb2
from registry.service import Registry
from registry.store import StoreUnavailable, Table
from resolver import pki
from resolver.auth import Authenticator
from resolver.client import IdnodeClient, IdnodeRpcError
from resolver.errors import STATUS_OF
from resolver.pb import hierarchy_pb2_grpc
from resolver.services.mapping import maps_errors

log = logging.getLogger("idnode.hierarchy")

SERVICE_NAME = "idnode.v1.HierarchyService"
HOPS_KEY = "idnode-hops"
VIA_KEY = "idnode-via"
MAX_HOPS = 4
"""Forwards one resolution may take (root -> node is one)."""
FORWARD_TIMEOUT_MAX = 10.0
"""The longest one forward may wait, whatever the caller's deadline."""
FORWARD_MARGIN = 0.05
"""Seconds (at least; 10% of the time left, at most 0.5 s) kept back from the caller's deadline so
that our own error reaches it in time."""
NO_ROUTE_TTL = 5.0
"""How long a secondary remembers that the upstream knows no route for a prefix."""
ROUTE_CACHE_MAX = 10_000
OUTBOX_BATCH = 1000
"""Outbox entries read per drain pass; after a full batch the next pass starts at once."""
CHANNEL_OPTIONS: tuple[tuple[str, object], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
"""Reconnect quickly to a node that was down (gRPC's default backoff grows to 120 s)."""


def domain_error(err: IdnodeRpcError, node: str) -> IdnodeError:
    """The domain error for a failed call to another node (``node``: its address)."""
    meta = {"node": node}
    if err.code is grpc.StatusCode.UNAVAILABLE:
        return Unavailable(
            f"node {node} is unreachable: {err.message}", reason="UPSTREAM_UNAVAILABLE", metadata=meta
        )
    if err.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(
            f"node {node} did not answer within the deadline",
            reason="UPSTREAM_DEADLINE_EXCEEDED",
            metadata=meta,
        )
    if err.code is grpc.StatusCode.INVALID_ARGUMENT:
        violations = [FieldViolation(f, d) for f, d in err.violations] or [
            FieldViolation("identifier", err.message)
        ]
        return InvalidArgument(violations, reason=err.reason or None)
    for cls, code in STATUS_OF.items():
        if code is err.code and issubclass(cls, IdnodeError):
            return cls(err.message, reason=err.reason or None, metadata=meta)
    return IdnodeError(f"node {node} failed: {err}", reason=err.reason or None, metadata=meta)


def _no_route(prefix: str) -> NotFound:
    """A fresh NO_ROUTE error (a cached error instance re-raised by many threads would keep
    growing its traceback)."""
    return NotFound(f"no node serves prefix {prefix}", reason="NO_ROUTE", metadata={"prefix": prefix})


def routing_loop(message: str, prefix: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason="ROUTING_LOOP", metadata={"prefix": prefix})


def route_to_pb(route: Route) -> hierarchy_pb2.Route:
    ts = Timestamp()
    ts.FromNanoseconds(route.registered_ns)
    return hierarchy_pb2.Route(
        prefix=route.prefix,
        node_address=route.node_address,
        node_id=route.node_id,
        register_time=ts,
        registered_by=route.registered_by,
    )


def route_from_pb(route: hierarchy_pb2.Route) -> Route:
    return Route(
        route.prefix,
        route.node_address,
        route.node_id,
        route.register_time.ToNanoseconds(),
        route.registered_by,
    )


class Router:
    """Answers identifiers this node does not hold: with a referral, or (recursive) with the
    record fetched from the serving node and kept in ``foreign_cache`` for the record's TTL.

    ``node_id``: this node's id, which is its node prefix; ``routes``: the root's own table (None
    on a secondary); ``upstream``: a client of the root's management listener (None on the root).
    Thread-safe."""

    def __init__(
        self,
        *,
        node_id: str,
        routes: Routes | None,
        upstream: IdnodeClient | None,
        foreign_cache: RecordCache,
        route_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self._own = node_id.upper()
        self.routes = routes
        self.upstream = upstream
        self.cache = foreign_cache
        self.route_ttl = route_ttl
        self.advertise = ""
        """This node's public address as routes name it (set at start)."""
        self._clock = clock
        self._route_cache: dict[str, tuple[float, Route | None]] = {}
        """Folded prefix -> (expiry, route); None: the upstream knows no route."""
        self._clients: dict[str, IdnodeClient] = {}
        self._lock = threading.Lock()

    def handles(self, text: str) -> bool:
        """Whether ``text`` is answered by routing: every identifier at the root, those outside the
        node prefix on a secondary. Cheap; does not validate."""
        if self.routes is not None:
            return True
        prefix = text.partition("/")[0].upper()
        own = self._own
        return not (prefix == own or prefix.startswith(own + "."))

    # ------------------------------------------------------------------ routes
    def route(self, prefix: str, deadline: float) -> Route:
        """The route for ``prefix``: from the root's table, else from the upstream (cached for
        ``route_ttl``; a NO_ROUTE answer for :data:`NO_ROUTE_TTL`)."""
        if self.routes is not None:
            return self.routes.lookup(prefix)
        if self.upstream is None:
            raise _no_route(prefix)
        key = prefix.upper()
        now = self._clock()
        cached = self._route_cache.get(key)
        if cached is not None and cached[0] > now:
            if cached[1] is None:
                raise _no_route(prefix)
            return cached[1]
        timeout = self._timeout(deadline)
        found: Route | None
        try:
            found = route_from_pb(self.upstream.lookup_route(prefix, timeout=timeout))
            ttl = self.route_ttl
        except IdnodeRpcError as err:
            error = domain_error(err, "upstream")
            if not isinstance(error, NotFound):
                raise error from None
            found, ttl = None, min(NO_ROUTE_TTL, self.route_ttl)
        with self._lock:
            if len(self._route_cache) >= ROUTE_CACHE_MAX:
                self._route_cache.clear()
            self._route_cache[key] = (now + ttl, found)
        if found is None:
            raise _no_route(prefix)
        return found

    # ------------------------------------------------------------------ resolution
    def deadline(self, context: grpc.ServicerContext | None) -> float:
        """The caller's deadline on this router's clock (at most an hour away; without one,
        :data:`FORWARD_TIMEOUT_MAX` from now)."""
        remaining = context.time_remaining() if context is not None else None
        return self._clock() + min(remaining if remaining is not None else FORWARD_TIMEOUT_MAX, 3600.0)

    def _timeout(self, deadline: float) -> float:
        left = deadline - self._clock()
        remaining = left - min(max(FORWARD_MARGIN, left * 0.1), 0.5)
        if remaining <= 0:
            raise DeadlineExceeded("the deadline passed before the serving node could be asked")
        return min(remaining, FORWARD_TIMEOUT_MAX)

    @staticmethod
    def _trail(context: grpc.ServicerContext | None) -> tuple[int, list[str]]:
        hops, via = 0, []
        if context is not None:
            for key, value in context.invocation_metadata() or ():
                if key == HOPS_KEY:
                    hops = int(value) if str(value).isdigit() else MAX_HOPS
                elif key == VIA_KEY:
                    via = [v for v in str(value).split(",") if v]
        return hops, via

    def answer(
        self,
        text: str,
        types: Sequence[str],
        indexes: Sequence[int],
        recursive: bool,
        context: grpc.ServicerContext | None,
        field: str = "identifier",
    ) -> tuple[bytes | None, hierarchy_pb2.Referral | None]:
        """(filtered record bytes, None) or, without ``recursive``, (None, referral).

        Raises InvalidArgument (malformed), NotFound (NO_ROUTE, or the serving node has no such
        identifier), FailedPrecondition ROUTING_LOOP, Unavailable, DeadlineExceeded."""
        ident = parse(text, field)
        hops, via = self._trail(context)
        if self.node_id in via or hops >= MAX_HOPS:
            raise routing_loop(
                f"routing loop resolving {ident.text}: it already passed through {', '.join(via) or '?'} "
                f"({hops} forwards)",
                ident.prefix,
            )
        deadline = self.deadline(context)
        route = self.route(ident.prefix, deadline)
        if route.node_id == self.node_id or (self.advertise and route.node_address == self.advertise):
            raise routing_loop(
                f"the route for {route.prefix} names this node ({route.node_address}), "
                f"which does not hold {ident.text}",
                ident.prefix,
            )
        if not recursive:
            return None, hierarchy_pb2.Referral(
                prefix=route.prefix, node_address=route.node_address, node_id=route.node_id
            )
        key = ident.key
        data = self.cache.get(key)
        if not data:
            epoch = self.cache.epoch()
            data = self._fetch(route, ident.text, hops, via, deadline)
            self.cache.fill(key, data, epoch)
        return codec.filter_record_bytes(data, types, indexes), None

    def _client(self, address: str) -> IdnodeClient:
        client = self._clients.get(address)
        if client is None:
            with self._lock:
                client = self._clients.get(address)
                if client is None:
                    client = IdnodeClient(address, retries=False, channel_options=CHANNEL_OPTIONS)
                    self._clients[address] = client
        return client

    def _fetch(self, route: Route, text: str, hops: int, via: list[str], deadline: float) -> bytes:
        client = self._client(route.node_address)
        metadata = ((HOPS_KEY, str(hops + 1)), (VIA_KEY, ",".join([*via, self.node_id])))
        request = resolution_pb2.ResolveRequest(identifier=text, recursive=True)
        try:
            response = client.resolution.Resolve(request, timeout=self._timeout(deadline), metadata=metadata)
        except grpc.RpcError as err:
            raise domain_error(IdnodeRpcError.from_rpc_error(err), route.node_address) from None
        if not response.HasField("record"):
            raise routing_loop(f"node {route.node_address} answered {text} with a referral", route.prefix)
        return response.record.SerializeToString()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


class OutboxDrainer:
    """Sends the outbox to the upstream: each entry as an idempotent RegisterPrefix or
    WithdrawPrefix, deleted only once acknowledged; failures are retried with exponential backoff
    (up to ``max_backoff`` seconds) until they succeed, across restarts (the outbox is durable)."""

    def __init__(
        self,
        outbox: Outbox,
        upstream: IdnodeClient,
        advertise: Callable[[], str],
        *,
        max_backoff: float = 10.0,
        call_timeout: float = 5.0,
    ) -> None:
        self.outbox = outbox
        self.upstream = upstream
        self.advertise = advertise
        self.max_backoff = max_backoff
        self.call_timeout = call_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idnode-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.outbox.wake.set()
        self._thread.join(self.call_timeout + 1)

    def drain_once(self, batch: int = OUTBOX_BATCH) -> tuple[bool, bool]:
        """Try up to ``batch`` pending entries once: (all of them acknowledged, the batch was
        full so more may be pending). The pass ends at the first UNAVAILABLE or
        DEADLINE_EXCEEDED: the upstream is down or slow and the rest would only wait for it."""
        ok = True
        entries = self.outbox.pending(batch)
        for entry in entries:
            if self._stop.is_set():
                return False, True
            try:
                if entry.op == REGISTER:
                    self.upstream.register_prefix(entry.prefix, self.advertise(), timeout=self.call_timeout)
                else:
                    self.upstream.withdraw_prefix(entry.prefix, timeout=self.call_timeout)
            except IdnodeRpcError as err:
                log.warning("upstream %s of %s failed (will retry): %s", entry.op, entry.prefix, err)
                if err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return False, True
                ok = False
                continue
            self.outbox.done(entry)
            log.info("upstream acknowledged %s of %s", entry.op, entry.prefix)
        return ok, len(entries) >= batch

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            self.outbox.wake.clear()
            try:
                ok, more = self.drain_once()
            except StoreUnavailable:
                return
            except Exception:
                log.exception("draining the outbox failed")
                ok = more = False
            if ok:
                backoff = 0.2
                if not more:
                    self.outbox.wake.wait(30.0)
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)


class HierarchyServicer(hierarchy_pb2_grpc.HierarchyServiceServicer):
    """HierarchyService. Route writes need the root role; LookupRoute works on every node with
    a router (a secondary asks its upstream)."""

    def __init__(
        self,
        auth: Authenticator,
        routes: Routes | None,
        router: Router | None,
        ca: Callable[[], pki.KeyPair],
    ) -> None:
        self.auth = auth
        self.routes = routes
        self.router = router
        self._ca = ca

    def _table(self) -> Routes:
        if self.routes is None:
            raise FailedPrecondition("this node is not a root node: it holds no routes", reason="NOT_ROOT")
        return self.routes

    def _node(self, context: grpc.ServicerContext) -> Principal:
        certs = context.auth_context().get("x509_pem_cert")
        if not certs:
            raise Unauthenticated(
                "this call needs a node credential, on the management listener", reason="CREDENTIAL_REQUIRED"
            )
        # Any credential maps to its principal; the route rules refuse all but a node's.
        return self.auth.principal_for_pem(certs[0], node=self._table().authenticate_node)

    @maps_errors
    def RegisterPrefix(
        self, request: hierarchy_pb2.RegisterPrefixRequest, context: grpc.ServicerContext
    ) -> hierarchy_pb2.Route:
        table = self._table()
        return route_to_pb(table.register(self._node(context), request.prefix, request.node_address))

    @maps_errors
    def WithdrawPrefix(
        self, request: hierarchy_pb2.WithdrawPrefixRequest, context: grpc.ServicerContext
    ) -> hierarchy_pb2.WithdrawPrefixResponse:
        table = self._table()
        table.withdraw(self._node(context), request.prefix)
        return hierarchy_pb2.WithdrawPrefixResponse()

    @maps_errors
    def LookupRoute(
        self, request: hierarchy_pb2.LookupRouteRequest, context: grpc.ServicerContext
    ) -> hierarchy_pb2.Route:
        if self.routes is not None:
            return route_to_pb(self.routes.lookup(request.prefix))
        if self.router is None:
            raise FailedPrecondition("this node has no upstream and holds no routes", reason="NOT_ROOT")
        parse_prefix(request.prefix)
        return route_to_pb(self.router.route(request.prefix, self.router.deadline(context)))

    @maps_errors
    def AddNodeRoute(
        self, request: hierarchy_pb2.AddNodeRouteRequest, context: grpc.ServicerContext
    ) -> hierarchy_pb2.AddNodeRouteResponse:
        table = self._table()
        principal = self.auth.principal(context)
        require_admin(principal)
        parse_prefix(request.prefix)
        pair = None
        fingerprint = ""
        if request.issue_credential:
            pair = pki.issue_client_cert(self._ca(), Role.NODE, request.prefix)
            fingerprint = pki.fingerprint(pair.cert_pem)
        route = table.add(principal, request.prefix, request.node_address, request.node_id, fingerprint)
        response = hierarchy_pb2.AddNodeRouteResponse(route=route_to_pb(route))
        if pair is not None:
            response.credential.CopyFrom(
                admin_pb2.Credential(
                    certificate_pem=pair.cert_pem.decode(),
                    private_key_pem=pair.key_pem.decode(),
                    ca_certificate_pem=self._ca().cert_pem.decode(),
                )
            )
        return response

    @maps_errors
    def RemoveRoute(
        self, request: hierarchy_pb2.RemoveRouteRequest, context: grpc.ServicerContext
    ) -> hierarchy_pb2.RemoveRouteResponse:
        self._table().remove(self.auth.principal(context), request.prefix)
        return hierarchy_pb2.RemoveRouteResponse()

    @maps_errors
    def ListRoutes(
        self, request: hierarchy_pb2.ListRoutesRequest, context: grpc.ServicerContext
    ) -> hierarchy_pb2.ListRoutesResponse:
        page, token = self._table().list(self.auth.principal(context), request.page_size, request.page_token)
        return hierarchy_pb2.ListRoutesResponse(routes=[route_to_pb(r) for r in page], next_page_token=token)


class Hierarchy:
    """The hierarchy parts of one node process, assembled from its configuration.

    ``role``: ``root`` or ``secondary``; ``upstream``: host:port of the root's management
    listener (secondary only), reached with the node credential in ``upstream_credentials``;
    ``writer``: this process owns the store (it alone drains the outbox)."""

    def __init__(
        self,
        registry: Registry,
        auth: Authenticator,
        ca: Callable[[], pki.KeyPair],
        *,
        role: str = "secondary",
        upstream: str = "",
        upstream_credentials: str | Path = "",
        writer: bool = True,
        route_ttl: float = 30.0,
        foreign_cache_bytes: int = 64 << 20,
        outbox_max_backoff: float = 10.0,
    ) -> None:
        if role not in ("root", "secondary"):
            raise InvalidArgument.single("role", "must be root or secondary")
        if role == "root" and upstream:
            raise InvalidArgument.single("upstream", "a root node has no upstream")
        if upstream and not upstream_credentials:
            raise InvalidArgument.single(
                "upstream_credentials", "a node with an upstream needs the node credential the root issued"
            )
        self.registry = registry
        self.role = role
        self.upstream_address = upstream
        self.routes = Routes(registry.store) if role == "root" else None
        if self.routes is not None and writer:
            registry.enterprise_hooks.append(RootGuard())
        self.upstream = (
            IdnodeClient(
                upstream, credentials=upstream_credentials, retries=False, channel_options=CHANNEL_OPTIONS
            )
            if upstream
            else None
        )
        self.router = (
            Router(
                node_id=registry.node_prefix,
                routes=self.routes,
                upstream=self.upstream,
                foreign_cache=RecordCache(foreign_cache_bytes, negative_ttl=0),
                route_ttl=route_ttl,
            )
            if self.routes is not None or self.upstream is not None
            else None
        )
        self.outbox: Outbox | None = None
        self.drainer: OutboxDrainer | None = None
        if self.upstream is not None and writer:
            self.outbox = Outbox(registry.store)
            registry.enterprise_hooks.append(self.outbox)
            self.drainer = OutboxDrainer(
                self.outbox,
                self.upstream,
                lambda: self.router.advertise if self.router else "",
                max_backoff=outbox_max_backoff,
            )
        self.servicer = HierarchyServicer(auth, self.routes, self.router, ca)

    def register(self, server: grpc.Server) -> None:
        hierarchy_pb2_grpc.add_HierarchyServiceServicer_to_server(self.servicer, server)

    def start(self, advertise: str) -> None:
        """Begin serving as ``advertise`` (this node's public address in routes): queue every
        existing enterprise once per upstream/address, then start draining the outbox."""
        if self.router is not None:
            self.router.advertise = advertise
        if self.outbox is not None and self.drainer is not None:
            marker = f"{self.upstream_address}|{advertise}"
            # Scan every enterprise only when the marker changed (queue_all checks it again).
            if self.registry.store.get(Table.META, META_OUTBOX_SYNCED) != marker.encode():
                prefixes = [
                    codec.decode_enterprise(raw).prefix
                    for _, raw in self.registry.store.scan(Table.ENTERPRISES, b"", b"\xff", 1 << 30)
                ]
                self.outbox.queue_all(prefixes, marker)
            self.drainer.start()

    def stop(self) -> None:
        if self.drainer is not None:
            self.drainer.stop()
        if self.router is not None:
            self.router.close()
        if self.upstream is not None:
            self.upstream.close()
