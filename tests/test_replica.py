"""The reader side of a multi-process node, in process: :class:`ReplicaStore` over a real RocksDB
secondary, and :class:`ReplicaFanout` / :class:`ReplicaFollower` over a real Unix socket.

The fan-out SIGKILLs a follower that does not confirm a write. In-process followers report this
process's pid, so ``_kill`` is guarded here: a kill aimed at this process is recorded (and fails the
test) instead of ending pytest.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from cache.record_cache import RecordCache
from registry.identifier import fold
from registry.model import Principal
from registry.replica import ReplicaStore
from registry.rocks import RocksStore
from registry.service import Registry
from registry.store import Add, Delete, Put, StoreUnavailable, Table, Txn
from resolver import fanout as fanout_module
from resolver.fanout import ReplicaFanout, ReplicaFollower
from tests.conftest import ENTERPRISE_PREFIX
from tests.helpers import TEST_BLOCK_CACHE_BYTES, url

E = ENTERPRISE_PREFIX


def commit_put(store: RocksStore, key: bytes, value: bytes) -> int:
    store.commit(Txn(writes=(Put(Table.RECORDS, key, value),)))
    return store.sequence()


# ------------------------------------------------------------------------------ ReplicaStore


@pytest.fixture
def secondary(store: RocksStore, tmp_path: Path) -> Iterator[RocksStore]:
    """A secondary instance of ``store`` (the primary), opened now: it sees later commits only
    after a catch-up."""
    s = RocksStore(store.path, block_cache_bytes=TEST_BLOCK_CACHE_BYTES, secondary_dir=tmp_path / "secondary")
    yield s
    s.close()


@pytest.fixture
def replica(secondary: RocksStore) -> ReplicaStore:
    return ReplicaStore(secondary)


def test_replica_needs_a_secondary(store: RocksStore) -> None:
    with pytest.raises(ValueError):
        ReplicaStore(store)


def test_apply_is_visible_before_catch_up(
    store: RocksStore, secondary: RocksStore, replica: ReplicaStore
) -> None:
    seq = commit_put(store, b"K1", b"v1")
    assert secondary.get(Table.RECORDS, b"K1") is None  # not caught up
    replica.apply(seq, [(b"K1", b"v1")])
    assert replica.get(Table.RECORDS, b"K1") == b"v1"
    assert replica.pending() == 1
    assert secondary.get(Table.RECORDS, b"K1") is None  # served from the overlay


def test_deletion_hides_a_key_the_secondary_still_has(
    store: RocksStore, secondary: RocksStore, replica: ReplicaStore
) -> None:
    commit_put(store, b"K1", b"v1")
    replica.catch_up()
    assert replica.get(Table.RECORDS, b"K1") == b"v1"
    store.commit(Txn(writes=(Delete(Table.RECORDS, b"K1"),)))
    replica.apply(store.sequence(), [(b"K1", None)])
    assert secondary.get(Table.RECORDS, b"K1") == b"v1"
    assert replica.get(Table.RECORDS, b"K1") is None


def test_older_sequence_does_not_override_newer(replica: ReplicaStore) -> None:
    replica.apply(1_000_010, [(b"K1", b"new"), (b"K2", None)])
    replica.apply(1_000_009, [(b"K1", b"old"), (b"K2", b"resurrected")])
    assert replica.get(Table.RECORDS, b"K1") == b"new"
    assert replica.get(Table.RECORDS, b"K2") is None
    replica.apply(1_000_011, [(b"K1", b"newer")])
    assert replica.get(Table.RECORDS, b"K1") == b"newer"


def test_catch_up_prunes_only_what_the_secondary_holds(
    store: RocksStore, secondary: RocksStore, replica: ReplicaStore
) -> None:
    seq = commit_put(store, b"K1", b"v1")
    replica.apply(seq, [(b"K1", b"v1")])
    # A change at a sequence the primary has not reached: the secondary cannot hold it yet.
    replica.apply(seq + 1_000_000, [(b"K2", b"v2")])
    assert replica.pending() == 2
    caught = replica.catch_up()
    assert seq <= caught < seq + 1_000_000
    assert replica.pending() == 1
    assert secondary.get(Table.RECORDS, b"K1") == b"v1"
    assert replica.get(Table.RECORDS, b"K1") == b"v1"  # now from the secondary
    assert replica.get(Table.RECORDS, b"K2") == b"v2"  # still from the overlay
    assert secondary.get(Table.RECORDS, b"K2") is None


def test_a_late_change_the_secondary_already_has_is_ignored(
    store: RocksStore, secondary: RocksStore, replica: ReplicaStore
) -> None:
    """Two writes of one key may be published out of commit order; when the newer one was already
    applied and pruned by a catch-up, the older one arriving late must not resurrect itself."""
    s1 = commit_put(store, b"K1", b"v1")
    s2 = commit_put(store, b"K1", b"v2")
    assert s1 < s2
    replica.apply(s2, [(b"K1", b"v2")])
    replica.catch_up()
    assert replica.pending() == 0
    replica.apply(s1, [(b"K1", b"v1")])  # late
    assert replica.get(Table.RECORDS, b"K1") == b"v2"


def test_other_reads_catch_up_first(store: RocksStore, replica: ReplicaStore) -> None:
    """Scans, reads of the other tables and counters catch up with the primary by themselves.
    Nothing is applied to the overlay, and each read follows a commit of its own, so that no read
    passes on an earlier one's catch-up."""
    replica.catch_up()
    store.commit(Txn(writes=(Put(Table.RECORDS, b"A/1", b"r1"), Put(Table.RECORDS, b"A/2", b"r2"))))
    assert replica.pending() == 0
    assert replica.scan(Table.RECORDS, b"A/", b"A0", 10) == [(b"A/1", b"r1"), (b"A/2", b"r2")]
    store.commit(Txn(writes=(Put(Table.META, b"m", b"meta"),)))
    assert replica.get(Table.META, b"m") == b"meta"
    store.commit(Txn(writes=(Put(Table.ENTERPRISES, b"E", b"ent"),)))
    assert replica.get_many(Table.ENTERPRISES, [b"E", b"F"]) == [b"ent", None]
    store.commit(Txn(adds=(Add(b"other", 7),)))
    assert replica.counter(b"other") == 7
    store.commit(Txn(adds=(Add(b"ids:A", 2), Add(b"ids:B", 1))))
    assert replica.counters(b"ids:") == {b"ids:A": 2, b"ids:B": 1}
    store.commit(Txn(adds=(Add(b"other", 1),)))
    assert replica.counter(b"other") == 8


def test_record_reads_do_not_catch_up(store: RocksStore, replica: ReplicaStore) -> None:
    """get / get_many of RECORDS answer from the overlay, else from the secondary as it stands:
    a commit reaches them through ``apply`` or the next catch-up, never by the read itself."""
    replica.catch_up()
    store.commit(Txn(writes=(Put(Table.RECORDS, b"B/1", b"r3"),)))
    assert replica.get_many(Table.RECORDS, [b"B/1", b"C/1"]) == [None, None]
    assert replica.get(Table.RECORDS, b"B/1") is None
    replica.catch_up()
    assert replica.get_many(Table.RECORDS, [b"B/1", b"C/1"]) == [b"r3", None]


def test_replica_refuses_commits(replica: ReplicaStore, secondary: RocksStore) -> None:
    with pytest.raises(StoreUnavailable):
        replica.commit(Txn(writes=(Put(Table.RECORDS, b"K", b"v"),)))
    with pytest.raises(StoreUnavailable):
        secondary.commit(Txn(writes=(Put(Table.RECORDS, b"K", b"v"),)))


# ------------------------------------------------------------------------------ fan-out


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Pids the fan-out tried to kill; a kill aimed at this (test) process is only recorded."""
    original = fanout_module._kill
    aimed: list[int] = []

    def guarded(pid: int) -> None:
        aimed.append(pid)
        if pid != os.getpid():
            original(pid)

    monkeypatch.setattr(fanout_module, "_kill", guarded)
    return aimed


@pytest.fixture
def no_background_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Followers never catch up on their own: fresh answers can then only come from the overlay."""
    monkeypatch.setattr(fanout_module, "CATCH_UP_BUSY_SECONDS", 3600.0)
    monkeypatch.setattr(fanout_module, "CATCH_UP_IDLE_SECONDS", 3600.0)


def committed_sequence(store: RocksStore) -> Callable[[], int]:
    """What the writer process gives its fan-out: the sequence of the calling thread's commit."""
    return store.committed_sequence


@dataclass
class Replicated:
    primary: Registry
    store: RocksStore
    fanout: ReplicaFanout
    follower: ReplicaFollower
    replica: ReplicaStore
    cache: RecordCache
    reader: Registry
    authkey: bytes
    lost: threading.Event


@pytest.fixture
def replicated(
    registry: Registry,
    store: RocksStore,
    enterprise: Principal,
    tmp_path: Path,
    kills: list[int],
    no_background_catch_up: None,
) -> Iterator[Replicated]:
    """The primary ``registry`` with a fan-out, and one in-process follower feeding a reader-side
    registry (ReplicaStore on a secondary + its own record cache)."""
    authkey = secrets.token_bytes(32)
    address = f"\0idnode-test-{os.getpid()}-{secrets.token_hex(6)}"
    fan = ReplicaFanout(address, authkey, committed_sequence(store), ack_timeout=10.0)
    registry.listeners.append(fan)
    follower = ReplicaFollower(address, authkey)  # joins first, as a reader process does
    replica = ReplicaStore(
        RocksStore(store.path, block_cache_bytes=TEST_BLOCK_CACHE_BYTES, secondary_dir=tmp_path / "reader-1")
    )
    replica.catch_up()
    cache = RecordCache(1 << 20)
    lost = threading.Event()
    follower.start(replica, cache, lost.set)
    reader = Registry(replica, cache=cache)
    try:
        yield Replicated(registry, store, fan, follower, replica, cache, reader, authkey, lost)
    finally:
        follower.stop()
        fan.close()
        replica.close()
    assert os.getpid() not in kills, "the fan-out gave up on the in-process follower"


def test_writes_are_visible_on_the_reader_when_acknowledged(
    replicated: Replicated, enterprise: Principal
) -> None:
    r = replicated
    text = f"{E}/ABC-1"
    key = fold(text)
    assert r.reader.lookup(key) is None  # the reader's cache now holds the absence
    r.primary.create(enterprise, text, url(1))
    assert r.reader.lookup(key) == r.store.get(Table.RECORDS, key)
    assert r.replica.pending() > 0  # answered from the overlay, not a catch-up
    assert r.reader.lookup(key) == r.store.get(Table.RECORDS, key)  # cached now
    for n in range(2, 12):
        r.primary.update(enterprise, text, url(n))
        data = r.reader.lookup(key)
        assert data == r.store.get(Table.RECORDS, key)
        assert data is not None and f"https://example.com/{n}".encode() in data
    r.primary.delete(enterprise, text)
    assert r.reader.lookup(key) is None
    assert r.reader.lookup(fold(text.lower())) is None
    r.primary.create(enterprise, text, url("again"))
    assert b"https://example.com/again" in (r.reader.lookup(key) or b"")
    assert not r.lost.is_set()


def test_batch_create_is_visible_on_the_reader(replicated: Replicated, enterprise: Principal) -> None:
    r = replicated
    texts = [f"{E}/batch-{i}" for i in range(50)]
    for t in texts[:10]:
        assert r.reader.lookup(fold(t)) is None
    outcomes = r.primary.batch_create(enterprise, [(t, url(t)) for t in texts])
    assert all(o.error is None for o in outcomes)
    for t in texts:
        assert r.reader.lookup(fold(t)) == r.store.get(Table.RECORDS, fold(t))


def test_reader_answers_stay_current_after_catching_up(replicated: Replicated, enterprise: Principal) -> None:
    r = replicated
    text = f"{E}/CU-1"
    r.primary.create(enterprise, text, url(1))
    r.primary.update(enterprise, text, url(2))
    r.replica.catch_up()
    assert r.replica.pending() == 0
    assert b"https://example.com/2" in (r.reader.lookup(fold(text)) or b"")
    r.primary.update(enterprise, text, url(3))
    assert b"https://example.com/3" in (r.reader.lookup(fold(text)) or b"")


class _Gate:
    """A commit listener placed before the fan-out: holds the thread named ``held`` right after its
    commit, before the fan-out publishes it (the window in which another write can overtake)."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.committed = threading.Event()
        self.release = threading.Event()

    def records_changed(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        if threading.current_thread().name == self.held:
            self.committed.set()
            assert self.release.wait(30)


def test_a_write_overtaken_before_its_publication_does_not_win(
    replicated: Replicated, enterprise: Principal
) -> None:
    """Update A commits, then update B of the same key commits and is published before A is:
    once both are acknowledged the reader must answer B's value."""
    r = replicated
    text = f"{E}/RACE-1"
    key = fold(text)
    r.primary.create(enterprise, text, url("v0"))
    gate = _Gate("writer-A")
    r.primary.listeners.insert(0, gate)
    errors: list[BaseException] = []

    def write_a() -> None:
        try:
            r.primary.update(enterprise, text, url("A"))
        except BaseException as exc:
            errors.append(exc)

    a = threading.Thread(target=write_a, name="writer-A")
    a.start()
    try:
        assert gate.committed.wait(30)
        r.primary.update(enterprise, text, url("B"))  # commits after A, published first
    finally:
        gate.release.set()
        a.join(30)
    assert not errors
    assert b"https://example.com/B" in (r.store.get(Table.RECORDS, key) or b"")
    assert r.reader.lookup(key) == r.store.get(Table.RECORDS, key)


_SILENT_FOLLOWER = """
import os, sys, time
from multiprocessing.connection import Client
conn = Client(bytes.fromhex(sys.argv[1]).decode(), family="AF_UNIX", authkey=bytes.fromhex(sys.argv[2]))
conn.send(os.getpid())
assert conn.recv() == "welcome"
print("joined", flush=True)
time.sleep(600)  # never confirms anything
"""


def test_a_follower_that_does_not_confirm_is_killed(
    replicated: Replicated, enterprise: Principal, kills: list[int]
) -> None:
    r = replicated
    r.fanout.ack_timeout = 0.5
    child = subprocess.Popen(
        [sys.executable, "-c", _SILENT_FOLLOWER, r.fanout.address.encode().hex(), r.authkey.hex()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "joined"
        assert child.pid in r.fanout.replica_pids()
        text = f"{E}/SILENT-1"
        r.primary.create(enterprise, text, url(1))  # returns although the child never confirms
        assert child.wait(timeout=60) == -signal.SIGKILL
        assert kills == [child.pid]
        assert child.pid not in r.fanout.replica_pids()
        # the healthy follower was served as usual, and later writes no longer wait for the child
        assert r.reader.lookup(fold(text)) == r.store.get(Table.RECORDS, fold(text))
        r.primary.update(enterprise, text, url(2))
        assert b"https://example.com/2" in (r.reader.lookup(fold(text)) or b"")
        assert kills == [child.pid]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


GENEROUS_SECONDS = 60.0
"""A bound for waits that take milliseconds; only there so that a bug cannot hang the test."""


def _follow_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "idnode-follow"]


def test_the_writer_going_away_is_a_loss(replicated: Replicated) -> None:
    replicated.fanout.close()  # the writer goes away, as when its process dies
    assert replicated.lost.wait(GENEROUS_SECONDS)


def test_a_leaving_reader_takes_the_writer_going_away_for_no_loss(replicated: Replicated) -> None:
    r = replicated
    threads = _follow_threads()
    assert len(threads) == 1
    r.follower.leaving()
    r.fanout.close()
    threads[0].join(GENEROUS_SECONDS)  # the follower has seen the end of the connection
    assert not threads[0].is_alive()
    assert not r.lost.is_set()
