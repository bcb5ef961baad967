"""Two idnode front ends on one real Redis Cluster: coherent caches, shared enterprises, config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from resolver.client import IdnodeClient, value
from resolver.coherence import ClusterCoherence
from resolver.datadir import DataDir
from resolver.server import NodeServer
from tests.node_fixtures import (
    NODE_PREFIX,
    management_target,
    node_config,
    public_target,
    rpc_error,
    save_credential,
)
from tests.redis_cluster import RedisClusterProcesses


@pytest.fixture
def cluster_dir(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "node")
    d.init(NODE_PREFIX)
    return d


@pytest.fixture
def front_ends(
    redis_cluster: RedisClusterProcesses, redis_namespace: str, cluster_dir: DataDir
) -> Iterator[list[NodeServer]]:
    """Two front ends (A, B) on one namespace, each with its own hot cache."""
    servers: list[NodeServer] = []
    try:
        for _ in range(2):
            config = node_config(
                cluster_dir.root,
                store="redis-cluster",
                redis_nodes=redis_cluster.nodes,
                redis_namespace=redis_namespace,
                coherence_lease_ms=1500,
            )
            server = NodeServer(config)
            server.start()
            servers.append(server)
        yield servers
    finally:
        for s in servers:
            s.stop(0)


@pytest.fixture
def clients() -> Iterator[list[IdnodeClient]]:
    opened: list[IdnodeClient] = []
    yield opened
    for c in opened:
        c.close()


def test_both_front_ends_serve_one_registry_and_caches_stay_coherent(
    front_ends: list[NodeServer], cluster_dir: DataDir, tmp_path: Path, clients: list[IdnodeClient]
) -> None:
    a, b = front_ends
    admin_a = IdnodeClient(management_target(a), credentials=cluster_dir.admin.directory)
    clients.append(admin_a)
    created = admin_a.create_enterprise("9", "Acme", "ops@acme.example")
    cred = save_credential(tmp_path / "acme", created.credential)
    acme_a = IdnodeClient(management_target(a), credentials=cred)
    acme_b = IdnodeClient(management_target(b), credentials=cred)
    public_a, public_b = IdnodeClient(public_target(a)), IdnodeClient(public_target(b))
    clients += [acme_a, acme_b, public_a, public_b]

    record = acme_a.create("88.118.9/P-1", [value(1, "URL", "https://acme.example/1")])
    # B caches it (second resolve is a cache hit on B).
    assert public_b.resolve("88.118.9/p-1").values[0].text == "https://acme.example/1"
    hits = b.cache.stats().hits
    assert public_b.resolve("88.118.9/P-1").values[0].text == "https://acme.example/1"
    assert b.cache.stats().hits == hits + 1

    # A write through A is acknowledged only after B dropped its entry: B answers the new value.
    acme_a.update("88.118.9/P-1", [value(1, "URL", "https://acme.example/1b")], etag=record.etag)
    assert public_b.resolve("88.118.9/P-1").values[0].text == "https://acme.example/1b"

    # And the other way round, for a deletion cached negatively... and positively on A.
    assert public_a.resolve("88.118.9/P-1").values[0].text == "https://acme.example/1b"
    acme_b.delete("88.118.9/P-1")
    err = rpc_error(lambda: public_a.resolve("88.118.9/P-1"))
    assert err.code is grpc.StatusCode.NOT_FOUND
    acme_b.create("88.118.9/P-1", [value(1, "URL", "https://acme.example/again")])
    assert public_a.resolve("88.118.9/P-1").values[0].text == "https://acme.example/again"

    # Counters are shared: stats through B count what A created.
    admin_b = IdnodeClient(management_target(b), credentials=cluster_dir.admin.directory)
    clients.append(admin_b)
    assert admin_b.stats().identifier_count == 1

    # Suspending through B takes effect on A at once (A had the enterprise cached).
    admin_b.suspend_enterprise("88.118.9")
    err = rpc_error(lambda: acme_a.create("88.118.9/P-2", [value(1, "URL", "https://acme.example/2")]))
    assert err.code is grpc.StatusCode.PERMISSION_DENIED


def test_a_front_end_that_stops_confirming_is_evicted_before_the_write_is_acknowledged(
    front_ends: list[NodeServer], cluster_dir: DataDir, tmp_path: Path, clients: list[IdnodeClient]
) -> None:
    """B stops processing invalidations (the fault is injected: a hung thread). A's write then
    evicts B and waits out B's lease before acknowledging, so B never answers the old value: its
    cache no longer serves, and when B learns of its eviction it clears it and joins again."""
    a, b = front_ends
    admin_a = IdnodeClient(management_target(a), credentials=cluster_dir.admin.directory)
    clients.append(admin_a)
    created = admin_a.create_enterprise("9", "Acme", "o@a.example")
    cred = save_credential(tmp_path / "acme", created.credential)
    acme_a = IdnodeClient(management_target(a), credentials=cred)
    public_b = IdnodeClient(public_target(b))
    clients += [acme_a, public_b]
    record = acme_a.create("88.118.9/S-1", [value(1, "URL", "old")])
    assert public_b.resolve("88.118.9/S-1").values[0].text == "old"
    assert public_b.resolve("88.118.9/S-1").values[0].text == "old"  # now cached on B

    coherence_a, coherence_b = a.coherence, b.coherence
    assert isinstance(coherence_a, ClusterCoherence) and isinstance(coherence_b, ClusterCoherence)
    coherence_b._on_invalidation = lambda data: None  # type: ignore[method-assign]
    acme_a.update("88.118.9/S-1", [value(1, "URL", "new")], etag=record.etag)
    assert coherence_a.evictions == 1
    # Both lookup paths of B (batch first: it must not slip past the coherence gate).
    [result] = public_b.batch_resolve(["88.118.9/S-1"])
    assert result.record.values[0].text == "new"
    assert public_b.resolve("88.118.9/S-1").values[0].text == "new"


def test_bulk_import_through_a_front_end_lands_in_the_cluster(
    front_ends: list[NodeServer], cluster_dir: DataDir, tmp_path: Path, clients: list[IdnodeClient]
) -> None:
    """`idnode import --via` works against a cluster front end: pipelined BatchCreate calls, every
    row readable through the *other* front end right away, counts right, a rerun is a no-op."""
    from resolver.bulk_remote import run_remote_import

    a, b = front_ends
    admin_a = IdnodeClient(management_target(a), credentials=cluster_dir.admin.directory)
    admin_b = IdnodeClient(management_target(b), credentials=cluster_dir.admin.directory)
    public_b = IdnodeClient(public_target(b))
    clients += [admin_a, admin_b, public_b]
    admin_a.create_enterprise("9", "Acme", "ops@acme.example")
    rows = [f"88.118.9/B{i:04d},https://acme.example/{i},L{i % 5}\n" for i in range(700)]
    rows[3] = "88.118.9/B0001,https://dup,\n"  # already imported by row 1
    src = tmp_path / "in.csv"
    src.write_text("identifier,URL,2:product.batch\n" + "".join(rows))

    summary = run_remote_import(admin_a, src, batch_rows=200, chunk_bytes=6000)
    assert (summary.rows, summary.imported, summary.rejected) == (700, 699, 1)
    for i in (0, 350, 699):
        record = public_b.resolve(f"88.118.9/b{i:04d}")
        assert [v.text for v in record.values] == [f"https://acme.example/{i}", f"L{i % 5}"]
    assert admin_b.stats().identifier_count_by_enterprise["88.118.9"] == 699
    assert run_remote_import(admin_a, src).already_done


def test_the_coherence_gate_covers_every_cache_read() -> None:
    """While a front end is not a live coherence member, neither single nor batch lookups may be
    answered from its cache (the batch path once reached the inner cache around the gate)."""
    from cache import RecordCache
    from resolver.coherence import CoherentCache

    inner = RecordCache(1 << 20, ttl_of=lambda _value: 3600)  # test bytes, not a real record
    inner.fill(b"88.118.9/K", b"possibly-stale", inner.epoch())
    live = [True]
    gated = CoherentCache(inner, lambda: live[0])
    assert gated.get(b"88.118.9/K") == b"possibly-stale"
    assert gated.get_many([b"88.118.9/K"]) == [b"possibly-stale"]
    live[0] = False
    assert gated.get(b"88.118.9/K") is None
    assert gated.get_many([b"88.118.9/K", b"88.118.9/OTHER"]) == [None, None]
    gated.fill(b"88.118.9/NEW", b"x", gated.epoch())
    assert inner.get(b"88.118.9/NEW") is None  # no fills while not live either
