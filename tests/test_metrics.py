"""The Prometheus endpoint of a real node, scraped over HTTP: calls by method and code, latency,
the cache's counters, identifiers, and what the embedded RocksDB holds in memory."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry.replica import ReplicaStore
from registry.rocks import RocksStore
from registry.store import Put, Table, Txn
from resolver.client import IdnodeClient, value
from resolver.datadir import DataDir
from resolver.server import NodeServer, _rocksdb_memory
from resolver.services.resolution import SERVICE_NAME
from tests.node_fixtures import node_config, rpc_error

RESOLVE = f"/{SERVICE_NAME}/Resolve"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def node(node_dir: DataDir) -> Iterator[NodeServer]:
    """The node with its metrics endpoint on a free loopback port (overrides the shared fixture)."""
    server = NodeServer(node_config(node_dir.root, metrics_address="127.0.0.1:0"))
    server.start()
    try:
        yield server
    finally:
        server.stop(0)


def scrape(node: NodeServer) -> Samples:
    """Every sample of the node's ``/metrics``, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_calls_codes_latency_and_cache_counted(ent, anon_client: IdnodeClient, node: NodeServer) -> None:
    prefix, c = ent
    for i in range(3):
        c.create(f"{prefix}/M-{i}", [value(1, "URL", f"https://example.com/{i}")])
    before = scrape(node)
    anon_client.resolve(f"{prefix}/M-0")  # a cache miss: one store read
    anon_client.resolve(f"{prefix}/m-0")  # a hit (identifiers fold ASCII case)
    assert rpc_error(lambda: anon_client.resolve(f"{prefix}/NOPE")).code is grpc.StatusCode.NOT_FOUND
    anon_client.batch_resolve([f"{prefix}/M-1", f"{prefix}/M-2"])  # two misses
    after = scrape(node)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert moved("idnode_grpc_requests_total", method=RESOLVE, code="OK") == 2
    assert moved("idnode_grpc_requests_total", method=RESOLVE, code="NOT_FOUND") == 1
    assert moved("idnode_grpc_requests_total", method=f"/{SERVICE_NAME}/BatchResolve", code="OK") == 1
    assert moved("idnode_grpc_request_duration_seconds_count", method=RESOLVE) == 3
    assert moved("idnode_grpc_request_duration_seconds_bucket", method=RESOLVE, le="+Inf") == 3
    assert moved("idnode_grpc_request_duration_seconds_sum", method=RESOLVE) > 0
    assert moved("idnode_cache_hits_total") == 1
    assert moved("idnode_cache_misses_total") == 4
    assert after[("idnode_identifiers", ())] == 3


def test_store_memory_by_part(ent, node: NodeServer) -> None:
    """The memtables hold the writes until they are flushed to files; the files' index and filter
    blocks are then held by the table readers (registry.rocks.PARTITIONED_INDEX)."""
    prefix, c = ent
    for i in range(200):
        c.create(f"{prefix}/S-{i}", [value(1, "URL", f"https://example.com/{i}")])

    def memory() -> dict[str, float]:
        return {
            dict(labels)["part"]: v
            for (name, labels), v in scrape(node).items()
            if name == "idnode_store_memory_bytes"
        }

    written = memory()
    assert set(written) == {"block_cache", "table_readers", "memtables"}
    assert written["memtables"] > 200 * 50  # the records, in memory only
    node.store.compact(Table.RECORDS)  # flushes the records' memtable into a file
    flushed = memory()
    assert flushed["table_readers"] > written["table_readers"]
    assert flushed["memtables"] < written["memtables"]


def test_a_reader_worker_reports_its_own_secondary_instance(tmp_path: Path) -> None:
    """A reader worker's store is a replica over a secondary RocksDB instance: its metrics report
    that instance's memory (each worker holds its own block cache and table readers)."""
    primary = RocksStore(tmp_path / "db", fsync=False, block_cache_bytes=8 << 20)
    secondary = RocksStore(tmp_path / "db", secondary_dir=tmp_path / "reader-1", block_cache_bytes=4 << 20)
    try:
        primary.commit(Txn(writes=(Put(Table.RECORDS, b"88.118.8/K", b"v" * 1000),)))
        primary.compact(Table.RECORDS)
        secondary.catch_up()
        assert secondary.get(Table.RECORDS, b"88.118.8/K") == b"v" * 1000  # fills its block cache
        figures = _rocksdb_memory(ReplicaStore(secondary))
        assert figures is not None
        assert figures() == secondary.memory_bytes() != primary.memory_bytes()
        assert figures()["table_readers"] > 0
    finally:
        secondary.close()
        primary.close()
