"""The Store conformance suite, unchanged, on RedisClusterStore over a real 3+3 Redis Cluster, plus
what is specific to it (sharding, multi-shard commit recovery)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from registry.redis_cluster import RedisClusterStore
from registry.store import Add, ConditionFailed, Expect, Put, StoreFull, Table, Txn
from tests.conformance.suite import StoreConformance
from tests.redis_cluster import RedisClusterProcesses


def open_store(cluster: RedisClusterProcesses, namespace: str, **kw: object) -> RedisClusterStore:
    return RedisClusterStore(cluster.nodes, namespace=namespace, **kw)  # type: ignore[arg-type]


class TestRedisClusterStoreConformance(StoreConformance):
    @pytest.fixture
    def store(
        self, redis_cluster: RedisClusterProcesses, redis_namespace: str
    ) -> Iterator[RedisClusterStore]:
        s = open_store(redis_cluster, redis_namespace)
        yield s
        s.close()

    @pytest.fixture
    def reopen(
        self, redis_cluster: RedisClusterProcesses
    ) -> Iterator[Callable[[RedisClusterStore], RedisClusterStore]]:
        opened: list[RedisClusterStore] = []

        def _reopen(old: RedisClusterStore) -> RedisClusterStore:
            old.close()
            new = open_store(redis_cluster, old.namespace)
            opened.append(new)
            return new

        yield _reopen
        for s in opened:
            s.close()


@pytest.fixture
def rstore(redis_cluster: RedisClusterProcesses, redis_namespace: str) -> Iterator[RedisClusterStore]:
    s = open_store(redis_cluster, redis_namespace, lease_ms=300, recovery=False)
    yield s
    s.close()


def test_one_enterprise_spreads_over_many_slots(rstore: RedisClusterStore) -> None:
    """Keys hash on the whole identifier: 2,000 codes of one enterprise land in most buckets."""
    keys = [b"88.118.8/P-%05d" % n for n in range(2000)]
    slots = {rstore.slot_of(Table.RECORDS, k) for k in keys}
    assert len(slots) > 800
    rstore.commit(Txn(writes=tuple(Put(Table.RECORDS, k, b"v") for k in keys[:300])))
    rows = rstore.scan(Table.RECORDS, b"88.118.8/", b"88.118.80", 1000)
    assert [k for k, _ in rows] == sorted(keys[:300])


def test_scan_pages_through_many_buckets_in_order(rstore: RedisClusterStore) -> None:
    keys = sorted(b"88.118.9/%04d" % n for n in range(0, 900, 3))
    rstore.commit(Txn(writes=tuple(Put(Table.RECORDS, k, k) for k in keys)))
    seen: list[bytes] = []
    lower = b"88.118.9/"
    while True:
        rows = rstore.scan(Table.RECORDS, lower, b"88.118.90", 37)
        seen += [k for k, _ in rows]
        assert all(k == v for k, v in rows)
        if len(rows) < 37:
            break
        lower = rows[-1][0] + b"\0"
    assert seen == keys


class _Crash(Exception):
    pass


def test_commit_killed_after_its_commit_point_is_rolled_forward(
    redis_cluster: RedisClusterProcesses, rstore: RedisClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A front end dies between the commit point and applying (simulated: the one fault we cannot
    cause with a real kill at that exact instant). Another front end finishes the commit: on
    meeting its lock, or in its recovery sweep. All of it, counters included, exactly once."""
    other = open_store(redis_cluster, rstore.namespace, lease_ms=300, recovery=False)
    try:
        keys = [b"a/%d" % n for n in range(20)]
        txn = Txn(
            expects=tuple(Expect(Table.RECORDS, k, None) for k in keys),
            writes=(*(Put(Table.RECORDS, k, b"v") for k in keys), Put(Table.META, b"m", b"1")),
            adds=(Add(b"ids:*", 20),),
        )

        def crash(*args: object) -> None:
            raise _Crash

        monkeypatch.setattr(rstore, "_roll_forward", crash)
        with pytest.raises(_Crash):
            rstore.commit(txn)
        # Nothing applied yet; the keys are locked by a COMMITTED journal.
        assert other.get_many(Table.RECORDS, keys) == [None] * 20
        # A conflicting commit meets the lock, finishes the dead commit, then fails its own Expect.
        with pytest.raises(ConditionFailed):
            other.commit(
                Txn(
                    expects=(Expect(Table.RECORDS, keys[3], None),),
                    writes=(Put(Table.RECORDS, keys[3], b"w"),),
                )
            )
        assert other.get_many(Table.RECORDS, keys) == [b"v"] * 20
        assert other.get(Table.META, b"m") == b"1"
        assert other.counter(b"ids:*") == 20
        assert other.recover() == 0  # nothing left to do
        assert other.counter(b"ids:*") == 20  # applied once
    finally:
        other.close()


def test_recovery_sweep_finishes_a_committed_journal(
    redis_cluster: RedisClusterProcesses, rstore: RedisClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = open_store(redis_cluster, rstore.namespace, lease_ms=300, recovery=False)
    try:
        keys = [b"b/%d" % n for n in range(10)]

        def crash(*args: object) -> None:
            raise _Crash

        monkeypatch.setattr(rstore, "_roll_forward", crash)
        with pytest.raises(_Crash):
            rstore.commit(Txn(writes=tuple(Put(Table.RECORDS, k, b"v") for k in keys), adds=(Add(b"n", 10),)))
        time.sleep(0.4)  # past the lease: the sweep only takes journals whose lease ran out
        assert other.recover() == 1
        assert other.get_many(Table.RECORDS, keys) == [b"v"] * 10
        assert other.counter(b"n") == 10
    finally:
        other.close()


def test_commit_killed_before_its_commit_point_is_aborted(
    redis_cluster: RedisClusterProcesses, rstore: RedisClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dead after locking, before the commit point: once its lease runs out another commit aborts
    it and proceeds; nothing of the dead commit is ever applied."""
    other = open_store(redis_cluster, rstore.namespace, lease_ms=300, recovery=False)
    try:
        keys = [b"c/%d" % n for n in range(10)]
        real_journal = rstore._journal

        def journal(mode: str, *args: object, **kw: object) -> object:
            if mode == "commit":
                raise _Crash
            return real_journal(mode, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(rstore, "_journal", journal)
        with pytest.raises(_Crash):
            rstore.commit(
                Txn(writes=tuple(Put(Table.RECORDS, k, b"dead") for k in keys), adds=(Add(b"n", 1),))
            )
        other.commit(
            Txn(
                expects=(Expect(Table.RECORDS, keys[0], None),),
                writes=(Put(Table.RECORDS, keys[0], b"live"),),
            )
        )
        assert other.get(Table.RECORDS, keys[0]) == b"live"
        assert other.recover() == 0
        assert other.get_many(Table.RECORDS, keys[1:]) == [None] * 9
        assert other.counter(b"n") == 0
        # The dead commit's locks are gone: every key is writable again.
        other.commit(Txn(writes=tuple(Put(Table.RECORDS, k, b"again") for k in keys)))
        assert other.get_many(Table.RECORDS, keys) == [b"again"] * 10
    finally:
        other.close()


def test_overlapping_multi_shard_commits_from_two_front_ends(
    redis_cluster: RedisClusterProcesses, rstore: RedisClusterStore
) -> None:
    """Two front ends race batches that overlap on some keys: for each key exactly one batch wins
    (Expect absent), every batch is all-or-nothing, and the counter matches the keys present."""
    other = open_store(redis_cluster, rstore.namespace, lease_ms=2000, recovery=False)
    try:
        results: dict[int, bool] = {}

        def batch(store: RedisClusterStore, n: int) -> None:
            keys = [b"d/%d" % k for k in range(n * 5, n * 5 + 10)]  # overlaps the next batch by 5
            try:
                store.commit(
                    Txn(
                        expects=tuple(Expect(Table.RECORDS, k, None) for k in keys),
                        writes=tuple(Put(Table.RECORDS, k, b"%d" % n) for k in keys),
                        adds=(Add(b"n", len(keys)),),
                    )
                )
                results[n] = True
            except ConditionFailed:
                results[n] = False

        threads = [threading.Thread(target=batch, args=(rstore if n % 2 else other, n)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 12
        rows = dict(rstore.scan(Table.RECORDS, b"d/", b"d0", 1000))
        for n, won in results.items():
            keys = [b"d/%d" % k for k in range(n * 5, n * 5 + 10)]
            mine = [rows.get(k) == b"%d" % n for k in keys]
            assert all(mine) if won else not any(mine)
        assert rstore.counter(b"n") == len(rows) == 10 * sum(results.values())
    finally:
        other.close()


def test_bulk_create_loads_skips_existing_and_counts_exactly(rstore: RedisClusterStore) -> None:
    rstore.commit(Txn(writes=(Put(Table.RECORDS, b"e/0007", b"already"),), adds=(Add(b"ids:e", 1),)))
    items = [(b"e/%04d" % n, b"v%d" % n, (b"ids:e", b"ids:*")) for n in range(500)]
    skipped = rstore.bulk_create(Table.RECORDS, items)
    assert skipped == [b"e/0007"]
    assert rstore.get(Table.RECORDS, b"e/0007") == b"already"
    assert rstore.get(Table.RECORDS, b"e/0123") == b"v123"
    assert rstore.counter(b"ids:e") == 500
    assert rstore.counter(b"ids:*") == 499
    # Loading the same items again (e.g. resuming after a failure) adds nothing.
    assert len(rstore.bulk_create(Table.RECORDS, items)) == 500
    assert rstore.counter(b"ids:e") == 500
    assert len(rstore.scan(Table.RECORDS, b"e/", b"e0", 10_000)) == 500


def test_a_write_to_a_master_at_its_maxmemory_is_store_full(
    rstore: RedisClusterStore, redis_cluster: RedisClusterProcesses
) -> None:
    """Redis refuses writes with OOM once a master uses more than its maxmemory (the default
    policy evicts nothing): that is StoreFull, as a full disk is for RocksDB, not a retryable
    outage. Unlike RocksDB, the cluster takes writes again as soon as there is room."""
    rstore.commit(Txn(writes=(Put(Table.RECORDS, b"88.118.8/BEFORE", b"v"),)))
    masters = redis_cluster.masters()
    for port in masters:
        redis_cluster.client(port).config_set("maxmemory", "1")
    try:
        with pytest.raises(StoreFull):
            rstore.commit(Txn(writes=(Put(Table.RECORDS, b"88.118.8/DURING", b"v"),)))
        assert rstore.get(Table.RECORDS, b"88.118.8/BEFORE") == b"v"  # reads go on
    finally:
        for port in masters:
            redis_cluster.client(port).config_set("maxmemory", "0")
    assert rstore.get(Table.RECORDS, b"88.118.8/DURING") is None
    rstore.commit(Txn(writes=(Put(Table.RECORDS, b"88.118.8/AFTER", b"v"),)))
    assert rstore.get(Table.RECORDS, b"88.118.8/AFTER") == b"v"
