"""A real two-process node (:class:`WorkerPool`): the writer and one reader share the public port.

The pool is started once for the module; the tests run in file order and the last one stops it.
Which process serves a connection is read from ``/proc``: the accepted socket of each connection
to the public port belongs to exactly one worker.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import pytest

from registry.pb import resolution_pb2
from registry.rocks import RocksStore
from resolver.client import IdnodeClient, value
from resolver.datadir import DataDir
from resolver.pb import resolution_pb2_grpc
from resolver.workers import WorkerPool, pin_to_cpu
from tests.node_fixtures import NODE_PREFIX, node_config, save_credential, wait_for

CHANNELS = 24
GENEROUS = 60.0
"""A deadline for waits that should take well under a second; only there so a bug cannot hang."""


@dataclass
class Node:
    pool: WorkerPool
    supervisor: threading.Thread
    stop: threading.Event
    admin: IdnodeClient
    ent: IdnodeClient
    prefix: str
    status: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("pool") / "node"
    data = DataDir(root)
    data.init(NODE_PREFIX)
    pool = WorkerPool(node_config(root), workers=2)
    pool.start()
    stop = threading.Event()
    status: list[int] = []
    supervisor = threading.Thread(target=lambda: status.append(pool.supervise(stop)), daemon=True)
    supervisor.start()
    admin = IdnodeClient(f"localhost:{pool.management_port}", credentials=data.admin.directory)
    ent = None
    try:
        created = admin.create_enterprise("8", "Pool test", "ops@example.com")
        prefix = created.enterprise.prefix
        directory = save_credential(root.parent / "credentials" / prefix, created.credential)
        ent = IdnodeClient(f"localhost:{pool.management_port}", credentials=directory)
        yield Node(pool, supervisor, stop, admin, ent, prefix, status)
    finally:
        if ent is not None:
            ent.close()
        admin.close()
        stop.set()
        supervisor.join(GENEROUS)
        pool.stop()


@contextlib.contextmanager
def channels(port: int, n: int = CHANNELS) -> Iterator[list[resolution_pb2_grpc.ResolutionServiceStub]]:
    """``n`` channels to the public port, each with a connection of its own."""
    opened = [
        grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(n)
    ]
    try:
        yield [resolution_pb2_grpc.ResolutionServiceStub(c) for c in opened]
    finally:
        for c in opened:
            c.close()


def resolve_everywhere(
    stubs: list[resolution_pb2_grpc.ResolutionServiceStub], identifier: str
) -> list[resolution_pb2.ResolveResponse | grpc.StatusCode]:
    """Resolve through every stub at once; each answer, or the status code of each failure."""
    request = resolution_pb2.ResolveRequest(identifier=identifier)
    calls: list[Future] = [s.Resolve.future(request, timeout=GENEROUS) for s in stubs]
    out: list[resolution_pb2.ResolveResponse | grpc.StatusCode] = []
    for call in calls:
        try:
            out.append(call.result())
        except grpc.RpcError as err:
            out.append(err.code())  # type: ignore[attr-defined]
    return out


def texts(answers: list[resolution_pb2.ResolveResponse | grpc.StatusCode]) -> list[str | grpc.StatusCode]:
    return [a if isinstance(a, grpc.StatusCode) else a.record.values[0].text for a in answers]


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def accepted_connections(port: int) -> dict[int, int]:
    """inode -> 1 for every ESTABLISHED server-side TCP socket whose local port is ``port``."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                local_port = int(cols[1].rsplit(":", 1)[1], 16)
                if local_port == port and cols[3] == "01":
                    out[int(cols[9])] = 1
    return out


def connections_by_worker(pool: WorkerPool) -> dict[int, int]:
    """pid -> number of accepted connections on the public port that the worker holds."""
    accepted = accepted_connections(pool.public_port)
    assert pool.writer is not None and pool.writer.pid
    pids = [pool.writer.pid, *(p.pid for p in pool.readers.values() if p.pid)]
    return {pid: len(socket_inodes(pid) & accepted.keys()) for pid in pids}


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after pid and comm


def unique() -> str:
    return f"https://example.com/{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------ tests, in order


def test_both_workers_serve(node: Node) -> None:
    pool = node.pool
    assert pool.writer is not None and pool.writer.is_alive()
    assert len(pool.readers) == 1 and pool.readers[1].is_alive()
    text = f"{node.prefix}/SPREAD-1"
    node.ent.create(text, [value(1, "URL", "https://example.com/spread")])
    pids = [pool.writer.pid, pool.readers[1].pid]
    with channels(pool.public_port) as stubs:
        assert texts(resolve_everywhere(stubs, text)) == ["https://example.com/spread"] * CHANNELS
        before = {pid: cpu_ticks(pid) for pid in pids}
        for _ in range(40):
            assert texts(resolve_everywhere(stubs, text)) == ["https://example.com/spread"] * CHANNELS
        after = {pid: cpu_ticks(pid) for pid in pids}
        held = connections_by_worker(pool)
    assert set(held) == set(pids)
    assert sum(held.values()) >= CHANNELS
    for pid in pids:
        assert held[pid] > 0, f"worker {pid} holds none of the {CHANNELS} connections: {held}"
        assert after[pid] > before[pid], f"worker {pid} did no work while serving its connections"


def test_no_stale_read_after_an_acknowledged_update(node: Node) -> None:
    text = f"{node.prefix}/FRESH-1"
    node.ent.create(text, [value(1, "URL", unique())])
    with channels(node.pool.public_port) as stubs:
        resolve_everywhere(stubs, text)  # every worker caches the record
        for _ in range(200):
            url = unique()
            node.ent.update(text, [value(1, "URL", url)])
            assert texts(resolve_everywhere(stubs, text)) == [url] * CHANNELS


def test_no_stale_read_after_an_acknowledged_create_or_delete(node: Node) -> None:
    with channels(node.pool.public_port) as stubs:
        for i in range(25):
            text = f"{node.prefix}/CD-{i}"
            # every worker caches the absence first
            assert resolve_everywhere(stubs, text) == [grpc.StatusCode.NOT_FOUND] * CHANNELS
            url = unique()
            node.ent.create(text, [value(1, "URL", url)])
            assert texts(resolve_everywhere(stubs, text)) == [url] * CHANNELS
            node.ent.delete(text)
            assert resolve_everywhere(stubs, text) == [grpc.StatusCode.NOT_FOUND] * CHANNELS
            # the other ASCII case is the same key
            node.ent.create(text.lower(), [value(1, "URL", url + "/again")])
            assert texts(resolve_everywhere(stubs, text)) == [url + "/again"] * CHANNELS


def test_a_killed_reader_is_restarted_and_the_node_stays_current(node: Node) -> None:
    pool = node.pool
    text = f"{node.prefix}/KILL-1"
    node.ent.create(text, [value(1, "URL", unique())])
    old = pool.readers[1]
    old_pid = old.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    # a write while the reader is dead or restarting is acknowledged all the same
    url = unique()
    node.ent.update(text, [value(1, "URL", url)])
    wait_for(lambda: pool.readers[1] is not old, "the supervisor to restart the reader", GENEROUS)
    new = pool.readers[1]
    assert new.is_alive() and new.pid != old_pid
    assert old.exitcode == -signal.SIGKILL
    assert pool.writer is not None and pool.writer.is_alive()
    with channels(pool.public_port) as stubs:
        assert texts(resolve_everywhere(stubs, text)) == [url] * CHANNELS
        held = connections_by_worker(pool)
        assert held.get(new.pid, 0) > 0, held  # the new reader serves too
        for _ in range(20):
            url = unique()
            node.ent.update(text, [value(1, "URL", url)])
            assert texts(resolve_everywhere(stubs, text)) == [url] * CHANNELS
    assert not node.status  # the supervisor is still supervising


def thread_affinities(pid: int) -> list[set[int]]:
    """The CPU affinity of every thread of process ``pid``."""
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


def expected_cpu(index: int) -> set[int]:
    """The CPU set :func:`pin_to_cpu` gives worker ``index`` on this machine (unchanged with 1 CPU)."""
    allowed = sorted(os.sched_getaffinity(0))
    return {allowed[index % len(allowed)]} if len(allowed) > 1 else set(allowed)


def test_each_worker_is_pinned_to_a_cpu_of_its_own(node: Node) -> None:
    # Runs after the restart test: a restarted reader is pinned as its index says, like the first.
    pool = node.pool
    assert pool.writer is not None and pool.writer.pid and sorted(pool.readers) == [1]
    workers = {0: pool.writer.pid, **{i: p.pid for i, p in pool.readers.items()}}
    for index, pid in workers.items():
        assert pid is not None
        affinities = thread_affinities(pid)
        assert len(affinities) > 2  # gRPC's and the handlers' threads, started after the pinning
        assert affinities == [expected_cpu(index)] * len(affinities), index


def _pin_with_a_thread_running(index: int, out: multiprocessing.connection.Connection) -> None:
    gate = threading.Event()
    early = threading.Thread(target=gate.wait)
    early.start()
    cpu = pin_to_cpu(index)
    late = threading.Thread(target=gate.wait)
    late.start()
    out.send((cpu, thread_affinities(os.getpid())))
    gate.set()
    early.join()
    late.join()


@pytest.mark.parametrize("index", [0, 1, 2, 5])
def test_pin_to_cpu_pins_threads_started_before_and_after(index: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_pin_with_a_thread_running, args=(index, child))
    proc.start()
    cpu, affinities = parent.recv()
    proc.join(GENEROUS)
    assert proc.exitcode == 0
    assert len(affinities) == 3
    assert affinities == [expected_cpu(index)] * 3
    assert cpu == (None if len(os.sched_getaffinity(0)) < 2 else min(expected_cpu(index)))


def test_stop_ends_every_process(node: Node) -> None:
    pool = node.pool
    assert pool.writer is not None
    procs = [pool.writer, *pool.readers.values()]
    assert all(p.is_alive() for p in procs)
    node.stop.set()
    node.supervisor.join(GENEROUS)
    assert not node.supervisor.is_alive()
    assert node.status == [0]
    pool.stop()
    assert not any(p.is_alive() for p in procs)
    # Every worker stops cleanly: a reader still draining when the writer has gone does not take
    # that for a lost writer (it exited 1 then, logging an error).
    assert [p.exitcode for p in procs] == [0] * len(procs)
    for port in (pool.public_port, pool.management_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_workers_are_not_pinned_when_pin_workers_is_off(tmp_path: Path) -> None:
    root = tmp_path / "node"
    DataDir(root).init(NODE_PREFIX)
    pool = WorkerPool(replace(node_config(root), pin_workers=False), workers=2)
    pool.start()
    try:
        assert pool.writer is not None and pool.writer.pid
        for pid in (pool.writer.pid, *(p.pid for p in pool.readers.values())):
            assert pid is not None
            assert set(map(frozenset, thread_affinities(pid))) == {frozenset(os.sched_getaffinity(0))}
    finally:
        pool.stop()


_SUPERVISOR = """
import json, sys, threading
from pathlib import Path
from resolver.datadir import DataDir
from resolver.workers import WorkerPool
from tests.node_fixtures import NODE_PREFIX, node_config

root = Path(sys.argv[1])
DataDir(root).init(NODE_PREFIX)
pool = WorkerPool(node_config(root), workers=2)
pool.start()
print(json.dumps([pool.writer.pid, *(p.pid for p in pool.readers.values())]), flush=True)
threading.Event().wait()
"""


def _exited(pid: int) -> bool:
    """Whether ``pid`` has ended (gone, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """A supervisor killed with SIGKILL cannot stop its workers: they notice and stop by
    themselves, releasing the port and the data directory for a restarted node."""
    root = tmp_path / "node"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISOR, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    pids: list[int] = []
    try:
        assert supervisor.stdout is not None
        pids = json.loads(supervisor.stdout.readline())
        assert len(pids) == 2 and not any(_exited(pid) for pid in pids)
        supervisor.kill()
        supervisor.wait()
        wait_for(lambda: all(_exited(pid) for pid in pids), "the orphaned workers to stop", GENEROUS)
        with RocksStore(root / "db"):  # the data directory is free again: a new node opens it
            pass
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
