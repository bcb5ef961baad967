"""The change feed: every committed change in commit order, live delivery, resume after a
disconnect and across a server restart with no gap and no duplicate, prefix filtering, and a
clear error (never a silent gap) for a consumer behind the retained window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from registry.audit import Change, FeedRetention
from registry.errors import FailedPrecondition
from registry.model import Principal, Value
from registry.pb import changes_pb2, record_pb2
from registry.rocks import RocksStore
from registry.service import Registry, init_node
from resolver.client import IdnodeClient, IdnodeRpcError, value
from resolver.datadir import DataDir
from resolver.server import NodeServer
from tests.node_fixtures import MakeEnterprise, management_target, node_config, rpc_error, save_credential

STREAM_DEADLINE = 60.0
"""A safety net so a broken feed fails the test instead of hanging it; nothing asserts on time."""
ADMIN = Principal.admin("a" * 64)


def _take(stream: Iterator[changes_pb2.Change], n: int) -> list[changes_pb2.Change]:
    return [next(stream) for _ in range(n)]


def _url(n: int) -> list[record_pb2.Value]:
    return [value(1, "URL", f"https://acme.example/p/{n}")]


def test_live_changes_arrive_in_commit_order_with_the_record(
    admin_client: IdnodeClient, make_enterprise: MakeEnterprise
) -> None:
    prefix, acme = make_enterprise("8")
    stream = admin_client.watch_changes(0, timeout=STREAM_DEADLINE)
    (enterprise,) = _take(stream, 1)
    assert enterprise.operation == "ENTERPRISE_CREATE" and enterprise.enterprise == prefix
    # The stream has caught up and waits: everything below is committed after it started.
    first = acme.create(f"{prefix}/P-0", _url(0))
    (created,) = _take(stream, 1)
    assert created.operation == "CREATE" and created.identifier == f"{prefix}/P-0"
    assert created.record.etag == first.etag and created.record.values[0].text.endswith("/p/0")
    updated = acme.update(f"{prefix}/P-0", _url(1), first.etag)
    acme.delete(f"{prefix}/P-0")
    admin_client.suspend_enterprise(prefix)
    later = _take(stream, 3)
    stream.close()
    assert [c.operation for c in later] == ["UPDATE", "DELETE", "ENTERPRISE_UPDATE"]
    assert [c.sequence for c in later] == [created.sequence + i for i in (1, 2, 3)]
    assert later[0].etag_before == first.etag and later[0].etag_after == updated.etag
    assert not later[1].HasField("record") and later[1].etag_before == updated.etag
    assert later[2].enterprise == prefix and later[2].detail["state"] == "SUSPENDED"


def test_resume_after_disconnect_misses_nothing_and_repeats_nothing(
    admin_client: IdnodeClient, make_enterprise: MakeEnterprise
) -> None:
    prefix, acme = make_enterprise("8")
    acme.batch_create([(f"{prefix}/P-{n}", _url(n)) for n in range(10)])
    stream = admin_client.watch_changes(0, timeout=STREAM_DEADLINE)
    seen = _take(stream, 6)  # ENTERPRISE_CREATE + 5 of the 10 creations
    stream.close()  # disconnect mid-way
    cursor = seen[-1].sequence
    for n in range(10, 15):  # committed while disconnected
        acme.create(f"{prefix}/P-{n}", _url(n))
    resumed = admin_client.watch_changes(cursor, timeout=STREAM_DEADLINE)
    rest = _take(resumed, 10)
    resumed.close()
    sequences = [c.sequence for c in seen + rest]
    assert sequences == list(range(1, 17))
    identifiers = [c.identifier for c in seen + rest if c.operation == "CREATE"]
    assert identifiers == [f"{prefix}/P-{n}" for n in range(15)]


def test_resume_across_a_server_restart(node_dir: DataDir, tmp_path: Path) -> None:
    config = node_config(node_dir.root)
    server = NodeServer(config)
    server.start()
    try:
        with IdnodeClient(management_target(server), credentials=node_dir.admin.directory) as admin:
            cred = save_credential(tmp_path / "acme", admin.create_enterprise("8", "Acme").credential)
            with IdnodeClient(management_target(server), credentials=cred) as acme:
                for n in range(4):
                    acme.create(f"88.118.8/P-{n}", _url(n))
            stream = admin.watch_changes(0, timeout=STREAM_DEADLINE)
            before = _take(stream, 3)
            stream.close()
    finally:
        server.stop(0)

    server = NodeServer(config)  # same data directory, new process state, new ports
    server.start()
    try:
        with IdnodeClient(management_target(server), credentials=node_dir.admin.directory) as admin:
            stream = admin.watch_changes(before[-1].sequence, timeout=STREAM_DEADLINE)
            backlog = _take(stream, 2)  # committed before the restart, not yet seen
            with IdnodeClient(management_target(server), credentials=cred) as acme:
                acme.create("88.118.8/P-4", _url(4))  # committed after it, while streaming
            (live,) = _take(stream, 1)
            stream.close()
            assert admin.verify_audit().ok
    finally:
        server.stop(0)
    everything = before + backlog + [live]
    assert [c.sequence for c in everything] == list(range(1, 7))
    assert [c.identifier for c in everything[1:]] == [f"88.118.8/P-{n}" for n in range(5)]


def test_prefix_filter_and_enterprise_scope(
    admin_client: IdnodeClient, make_enterprise: MakeEnterprise
) -> None:
    p8, acme = make_enterprise("8")
    p9, other = make_enterprise("9")
    acme.create(f"{p8}/A", _url(1))
    other.create(f"{p9}/B", _url(2))
    acme.create(f"{p8}/C", _url(3))
    acme_stream = acme.watch_changes(0, timeout=STREAM_DEADLINE)  # an enterprise: its prefix only
    mine = _take(acme_stream, 3)
    acme_stream.close()
    assert [(c.operation, c.identifier or c.enterprise) for c in mine] == [
        ("ENTERPRISE_CREATE", p8),
        ("CREATE", f"{p8}/A"),
        ("CREATE", f"{p8}/C"),
    ]
    admin_stream = admin_client.watch_changes(0, prefix=p9, timeout=STREAM_DEADLINE)
    theirs = _take(admin_stream, 2)
    admin_stream.close()
    assert [c.identifier or c.enterprise for c in theirs] == [p9, f"{p9}/B"]
    err = rpc_error(lambda: next(acme.watch_changes(0, prefix=p9, timeout=STREAM_DEADLINE)))
    assert err.code is grpc.StatusCode.PERMISSION_DENIED


def test_anonymous_callers_cannot_watch(anon_client: IdnodeClient) -> None:
    err = rpc_error(lambda: next(anon_client.watch_changes(0, timeout=STREAM_DEADLINE)))
    assert err.code is grpc.StatusCode.UNAUTHENTICATED


def test_a_consumer_behind_the_retained_window_is_told_to_resync(node_dir: DataDir, tmp_path: Path) -> None:
    server = NodeServer(node_config(node_dir.root, feed_retention_entries=4))
    server.start()
    try:
        with IdnodeClient(management_target(server), credentials=node_dir.admin.directory) as admin:
            cred = save_credential(tmp_path / "acme", admin.create_enterprise("8", "Acme").credential)
            with IdnodeClient(management_target(server), credentials=cred) as acme:
                for n in range(12):
                    acme.create(f"88.118.8/P-{n}", _url(n))
            with pytest.raises(IdnodeRpcError) as info:
                next(admin.watch_changes(1, timeout=STREAM_DEADLINE))
            assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
            assert info.value.reason == "CHANGE_FEED_CURSOR_EXPIRED"
            assert "resync" in info.value.message
            # Within the window the feed still serves, and the audit trail is whole.
            tail = admin.watch_changes(11, timeout=STREAM_DEADLINE)
            assert [c.sequence for c in _take(tail, 2)] == [12, 13]
            tail.close()
            verified = admin.verify_audit()
            assert verified.ok and verified.entry_count == 13
    finally:
        server.stop(0)


# ---------------------------------------------------------------- the core view


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    store = RocksStore(tmp_path / "db", fsync=False, block_cache_bytes=8 << 20)
    init_node(store, "88.118")
    yield Registry(store, feed_retention=FeedRetention(max_entries=3, prune_every=1000))
    store.close()


def test_core_feed_is_contiguous_and_pruning_is_detected(registry: Registry) -> None:
    registry.create_enterprise(ADMIN, "8", "", "", lambda prefix: "e" * 64)
    for n in range(6):
        registry.create(ADMIN, f"88.118.8/P-{n}", [Value(1, "URL", "u")])
    changes, cursor = registry.audit.changes(0, 100)
    assert [c.sequence for c in changes] == list(range(1, 8)) and cursor == 7
    assert registry.audit.changes(7, 100) == ([], 7)
    assert Change.decode(changes[1].encode()) == changes[1]
    assert registry.audit.prune_feed() == 4  # keep the newest 3
    with pytest.raises(FailedPrecondition) as info:
        registry.audit.changes(2, 100)
    assert info.value.reason == "CHANGE_FEED_CURSOR_EXPIRED"
    assert info.value.metadata == {"oldest_sequence": "5", "head_sequence": "7"}
    assert [c.sequence for c in registry.audit.changes(4, 100)[0]] == [5, 6, 7]
    with pytest.raises(FailedPrecondition) as info:
        registry.audit.changes(8, 100)
    assert info.value.reason == "CHANGE_FEED_CURSOR_INVALID"
    filtered, cursor = registry.audit.changes(4, 100, prefix="88.118.9")
    assert filtered == [] and cursor == 7
    assert registry.audit.verify().ok  # pruning the feed never touches the audit trail
