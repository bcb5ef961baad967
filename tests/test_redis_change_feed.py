"""The audit chain and the change feed across two front ends on one Redis Cluster namespace:
each front end commits on top of the other's writes (the stored head, not its own memory), and a
cursor from one front end is valid on the other (no gap, no duplicate, no CURSOR_INVALID)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from registry.model import Principal, Value
from registry.redis_cluster import RedisClusterStore
from registry.service import Registry, init_node
from registry.store import ConditionFailed, Txn
from tests.redis_cluster import RedisClusterProcesses

ADMIN = Principal.admin("a" * 64)
URL = [Value(1, "URL", "https://acme.example/p")]


@pytest.fixture
def two_stores(
    redis_cluster: RedisClusterProcesses, redis_namespace: str
) -> Iterator[list[RedisClusterStore]]:
    stores = [
        RedisClusterStore(redis_cluster.nodes, namespace=redis_namespace, wait_replicas=1, recovery=False)
        for _ in range(2)
    ]
    try:
        yield stores
    finally:
        for s in stores:
            s.close()


def test_a_cursor_from_front_end_a_continues_on_front_end_b(
    two_stores: list[RedisClusterStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    sa, sb = two_stores
    init_node(sa, "88.118")
    a, b = Registry(sa), Registry(sb)
    head_failures = {"a": 0, "b": 0}
    for name, store in (("a", sa), ("b", sb)):
        real: Callable[[Txn], None] = store.commit

        def counting(txn: Txn, name: str = name, real: Callable[[Txn], None] = real) -> None:
            try:
                real(txn)
            except ConditionFailed:
                head_failures[name] += 1
                raise

        monkeypatch.setattr(store, "commit", counting)

    e = a.create_enterprise(ADMIN, "8", "Acme", "", lambda prefix: "e" * 64)
    acme = Principal.enterprise(e.prefix, "e" * 64)
    cursor = a.audit.last_sequence()
    # Interleaved writes: each front end extends the chain the other one just extended.
    b.create(acme, "88.118.8/P-1", URL)
    a.create(acme, "88.118.8/P-2", URL)
    b.create(acme, "88.118.8/P-3", URL)
    a.create(acme, "88.118.8/P-4", URL)
    assert head_failures == {"a": 0, "b": 0}  # the stored head was read, never a stale one

    # B continues A's cursor: every change once, in order.
    seen, at = [], cursor
    while True:
        changes, scanned = b.audit.changes(at, 2)
        if scanned == at:
            break
        seen += changes
        at = scanned
    assert [c.identifier for c in seen] == [f"88.118.8/P-{n}" for n in (1, 2, 3, 4)]
    assert [c.sequence for c in seen] == list(range(cursor + 1, cursor + 5))
    # A's newest cursor is B's too ("from now" on either front end), not CURSOR_INVALID.
    newest = a.audit.last_sequence()
    assert b.audit.changes(newest) == ([], newest)
    assert b.audit.read_head()[0] == newest == b.audit.last_sequence()
    report = b.audit.verify()
    assert report.ok and report.entries == newest
