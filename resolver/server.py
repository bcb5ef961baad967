"""Assembly of a running node: store, cache, core, services, listeners.

Two listeners share one set of services:
- the public listener (plaintext by default, or TLS with the node certificate) for anonymous
  resolution; registration and admin calls there fail UNAUTHENTICATED;
- the management listener, TLS with a *required* node-issued client certificate (mutual TLS), for
  enterprises and the administrator.
Both also serve gRPC health checking and server reflection.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cache import RecordCache
from registry import limits
from registry.audit import FeedRetention
from registry.replica import ReplicaStore
from registry.rocks import RocksStore
from registry.service import COUNT_TOTAL, Registry
from registry.store import Store
from resolver.auth import Authenticator
from resolver.datadir import DataDir
from resolver.handle_rest import HandleRestServer
from resolver.hierarchy import SERVICE_NAME as HIERARCHY_SERVICE
from resolver.hierarchy import Hierarchy
from resolver.interceptors import build_interceptors
from resolver.metrics import Metrics
from resolver.pb import admin_pb2_grpc, changes_pb2_grpc, registration_pb2_grpc
from resolver.services.admin import AdminServicer
from resolver.services.changes import ChangeFeedServicer
from resolver.services.registration import RegistrationServicer
from resolver.services.resolution import SERVICE_NAME as RESOLUTION_SERVICE
from resolver.services.resolution import ResolutionHandlers

log = logging.getLogger("idnode.server")

SERVICE_NAMES = (
    RESOLUTION_SERVICE,
    "idnode.v1.RegistrationService",
    "idnode.v1.AdminService",
    "idnode.v1.ChangeFeedService",
    HIERARCHY_SERVICE,
)


@dataclass
class ServerConfig:
    """Everything ``idnode serve`` can set, from flags or a TOML file (see README "Configuration")."""

    data_dir: Path = Path("data")
    public_address: str = "127.0.0.1:8470"
    management_address: str = "127.0.0.1:8471"
    public_tls: bool = False
    cache_bytes: int = 256 << 20
    cache_negative_entries: int = 100_000
    block_cache_bytes: int = 256 << 20
    fsync: bool = True
    threads: int = 32
    pin_workers: bool = True
    """Worker pool: pin worker i (every thread of it) to one CPU, the i-th of the CPUs the node may
    use (mod their number). On 2 cores, unpinned, two workers served 1.26x one worker's unary calls;
    pinned, 2.16x (bench/README.md "Two workers: a CPU each")."""
    max_concurrent_rpcs: int = 1000
    access_log: bool = False
    metrics: bool = True
    """Count calls and latencies (off only to measure what counting costs: bench/bench_overhead.py)."""
    log_format: str = "text"
    """``text`` or ``json`` (one object per line)."""
    metrics_address: str = ""
    """host:port of the Prometheus endpoint; empty: none. Worker i of a pool adds i to the port."""
    grace_seconds: float = 5.0
    extra_options: list[tuple[str, int]] = field(default_factory=list)
    http_address: str = ""
    """Handle REST API over plain HTTP (reads only: for local use); empty: off. In a worker pool
    every worker serves it (SO_REUSEPORT). ``idnode serve`` defaults to 127.0.0.1:8480."""
    https_address: str = ""
    """Handle REST API over TLS with the node certificate (reads and authenticated writes); empty:
    off. Served by the writer process only. ``idnode serve`` defaults to 127.0.0.1:8443."""
    feed_retention_entries: int = 1_000_000
    """Change feed: keep at most this many newest changes (the audit trail is kept whole)."""
    feed_retention_days: float = 7.0
    """Change feed: drop changes older than this (0: no age limit)."""
    store: str = "rocksdb"
    """``rocksdb`` (the data directory's own store) or ``redis-cluster`` (a stateless front end on
    a shared Redis Cluster: README "Running on a Redis Cluster")."""
    redis_nodes: str = ""
    """Some nodes of the Redis Cluster, ``host:port,host:port``."""
    redis_namespace: str = ""
    """Key prefix of this node's data in the cluster (several nodes may share one cluster)."""
    redis_wait_replicas: int = 1
    """Replicas every write waits for (``WAIT``) before it is acknowledged."""
    coherence_lease_ms: int = 3000
    """Front-end cache lease: the longest a stuck front end can delay a write (plus 1 s)."""
    role: str = "secondary"
    """``secondary`` (allocates enterprises) or ``root`` (holds prefix -> node routes only):
    README "The hierarchy"."""
    upstream: str = ""
    """Secondary: host:port of the root's management listener; empty: a stand-alone node."""
    upstream_credentials: str = ""
    """Secondary: directory of the node credential the root issued (cert.pem, key.pem, ca.pem)."""
    advertise_address: str = ""
    """This node's public address as the upstream should route to it; empty: the public listener."""
    route_cache_seconds: float = 30.0
    """How long routes learnt from the upstream are reused."""
    foreign_cache_bytes: int = 64 << 20
    """Records fetched from other nodes (recursive resolution), kept for their TTL."""


class NodeServer:
    """A node process serving one data directory. ``start()`` binds and returns; ``stop()``
    drains calls (up to ``grace_seconds``) and closes the store so every acknowledged write is on
    disk.

    By default it owns the store (opening RocksDB read-write) and serves both listeners. A reader
    worker of a multi-process node passes its own read-only ``store`` and ``management=False``;
    ``reuse_port`` lets several processes share the public port (SO_REUSEPORT).
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        store: Store | None = None,
        management: bool = True,
        reuse_port: bool = False,
    ) -> None:
        self.config = config
        self.data_dir = DataDir(config.data_dir)
        if store is None and config.store == "redis-cluster":
            from resolver.cluster_frontend import open_cluster_store

            store = open_cluster_store(config, self.data_dir)
        self.store: Store = store or RocksStore(
            self.data_dir.db, block_cache_bytes=config.block_cache_bytes, fsync=config.fsync
        )
        self.management = management
        self.cache = RecordCache(config.cache_bytes, config.cache_negative_entries)
        self.registry = Registry(
            self.store,
            cache=self.cache,
            feed_retention=FeedRetention(
                max_entries=config.feed_retention_entries,
                max_age_seconds=config.feed_retention_days * 86400,
                prune_every=max(1, min(256, config.feed_retention_entries // 4)),
            ),
        )
        self.coherence = None
        if config.store == "redis-cluster":
            from resolver.cluster_frontend import attach_coherence

            self.coherence = attach_coherence(
                self.store, self.registry, self.cache, config.coherence_lease_ms
            )  # type: ignore[arg-type]
        self.auth = Authenticator(self.registry)
        self.hierarchy = Hierarchy(
            self.registry,
            self.auth,
            self.data_dir.ca,
            role=config.role,
            upstream=config.upstream,
            upstream_credentials=config.upstream_credentials,
            writer=management,
            route_ttl=config.route_cache_seconds,
            foreign_cache_bytes=config.foreign_cache_bytes,
        )
        self.public_port = 0
        self.management_port = 0
        self.metrics_port = 0
        self.http_port = 0
        self.https_port = 0
        self.reuse_port = reuse_port
        self.rest: HandleRestServer | None = None
        self.metrics = Metrics(
            self.cache,
            identifiers=(lambda: self.store.counter(COUNT_TOTAL)) if management else None,
            store_memory=_rocksdb_memory(self.store),
        )
        options = [
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", limits.MESSAGE_MAX_BYTES),
            ("grpc.max_send_message_length", 128 << 20),
            *config.extra_options,
        ]
        self.grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="idnode-rpc"),
            interceptors=build_interceptors(
                metrics=self.metrics if config.metrics else None, access_log_enabled=config.access_log
            ),
            options=options,
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        self.health = health.HealthServicer()
        self._register_services()

    def _register_services(self) -> None:
        server = self.grpc_server
        server.add_generic_rpc_handlers(
            (ResolutionHandlers(self.registry, self.hierarchy.router).generic_handler(),)
        )
        self.hierarchy.register(server)
        registration_pb2_grpc.add_RegistrationServiceServicer_to_server(
            RegistrationServicer(self.registry, self.auth), server
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(self.registry, self.auth, self.data_dir.ca()), server
        )
        changes_pb2_grpc.add_ChangeFeedServiceServicer_to_server(
            ChangeFeedServicer(self.registry, self.auth), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )

    def _server_credentials(self, require_client_auth: bool) -> grpc.ServerCredentials:
        d = self.data_dir
        return grpc.ssl_server_credentials(
            [(d.server_key.read_bytes(), d.server_cert.read_bytes())],
            root_certificates=d.ca_cert.read_bytes(),
            require_client_auth=require_client_auth,
        )

    def start(self) -> None:
        c = self.config
        if c.public_tls:
            self.public_port = self.grpc_server.add_secure_port(
                c.public_address, self._server_credentials(False)
            )
        else:
            self.public_port = self.grpc_server.add_insecure_port(c.public_address)
        if self.management:
            self.management_port = self.grpc_server.add_secure_port(
                c.management_address, self._server_credentials(True)
            )
        self.grpc_server.start()
        self.hierarchy.start(c.advertise_address or with_port(c.public_address, self.public_port))
        if c.http_address or c.https_address:
            self.rest = HandleRestServer.for_node(
                c, self.registry, self.data_dir, writer=self.management, reuse_port=self.reuse_port
            )
            self.rest.start()
            self.http_port, self.https_port = self.rest.http_port, self.rest.https_port
        if c.metrics_address:
            self.metrics_port = self.metrics.serve(c.metrics_address)
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "idnode serving node prefix %s: public %s%s",
            self.registry.node_prefix,
            with_port(c.public_address, self.public_port),
            f", management {with_port(c.management_address, self.management_port)} (mutual TLS)"
            if self.management
            else " (reader worker)",
        )

    def stop(self, grace: float | None = None) -> None:
        self.health.enter_graceful_shutdown()
        self.registry.audit.close()  # end change-feed streams (UNAVAILABLE: reconnect with the cursor)
        if self.rest is not None:
            self.rest.stop()
        self.grpc_server.stop(self.config.grace_seconds if grace is None else grace).wait()
        self.hierarchy.stop()
        if self.coherence is not None:
            self.coherence.close()
        self.store.close()

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


SERVING_GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the cyclic collector's youngest generation in a serving
process (CPython's default: 700). A resolve leaves no cyclic garbage (every collection under the
benchmark's load freed nothing), so a collection is pure overhead: fewer of them, each over the
calls in flight, cost less. Cyclic garbage from other paths waits for up to 10,000 allocations
instead of 700."""


def tune_gc_for_serving() -> None:
    """Call once a serving process has started, in the process's entry point.

    1. Move every object built so far (modules, protobuf descriptors, the server itself) out of
       the cyclic collector's reach (:func:`gc.freeze`), so its collections, which grpcio's
       per-call garbage sets off, traverse only what was made since.
    2. Collect the youngest generation every :data:`SERVING_GC_YOUNG_THRESHOLD` allocations.

    Measured (``bench/bench_overhead.py`` runs servers with and without both): 8% less server CPU
    per unary call for the node, 4% for the bare echo, in session 6's 5-round run; the freeze
    alone had saved about 5% (bench/README.md, "Per-call overhead").

    Not for processes that start and stop many servers (tests): cyclic garbage among frozen
    objects is never collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(SERVING_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    log.info(
        "startup heap frozen: %d objects out of the cyclic collector's reach; young-generation threshold %d",
        gc.get_freeze_count(),
        gc.get_threshold()[0],
    )


def with_port(address: str, port: int) -> str:
    """``address`` (host:port) with its port replaced, e.g. after binding port 0."""
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"


def _rocksdb_memory(store: Store) -> Callable[[], dict[str, int]] | None:
    """What RocksDB holds in memory, for the metrics, when ``store`` is RocksDB or a reader's
    replica of it (:meth:`RocksStore.memory_bytes`); None for other stores."""
    if isinstance(store, ReplicaStore):
        store = store.secondary
    return store.memory_bytes if isinstance(store, RocksStore) else None
