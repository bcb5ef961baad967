"""Multi-process serving: one port, every core.

A node with N workers runs N processes, all serving the public (resolution) port through
SO_REUSEPORT, where the kernel spreads *connections* over them:

- worker 0, the **writer**, owns the data directory (RocksDB read-write) and alone serves the
  management listener; every write it commits is pushed to the readers and confirmed by each
  before it is acknowledged (:mod:`resolver.fanout`);
- workers 1..N-1, the **readers**, open RocksDB as secondary instances behind an overlay of
  pushed changes (:mod:`registry.replica`) and answer resolution only.

The supervisor (the process that ran ``idnode serve``) restarts a reader that dies; if the writer
dies, readers stop (they can no longer promise fresh answers) and the supervisor exits non-zero,
so that a service manager restarts the node.

Each worker pins itself to one CPU (``ServerConfig.pin_workers``, :func:`pin_to_cpu`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import threading
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from registry.replica import ReplicaStore
from registry.rocks import RocksStore
from resolver.fanout import ReplicaFanout, ReplicaFollower
from resolver.logs import configure_logging
from resolver.server import NodeServer, ServerConfig, tune_gc_for_serving, with_port
from resolver.shutdown import stop_on_signals

log = logging.getLogger("idnode.workers")

READY_TIMEOUT_SECONDS = 60.0
RESTART_BACKOFF_SECONDS = 1.0


ORPHAN_CHECK_SECONDS = 1.0
"""How often a worker checks that its supervisor is still its parent."""


def _stop_on_signals() -> threading.Event:
    """The worker's stop event: set by SIGTERM or SIGINT, or once the supervisor is gone (killed
    with SIGKILL, say): a worker left behind would hold the port and the data directory's lock,
    and the node could not start again until someone found and killed it."""
    stop = stop_on_signals()
    supervisor = os.getppid()

    def watch() -> None:
        while not stop.wait(ORPHAN_CHECK_SECONDS):
            if os.getppid() != supervisor:  # re-parented: the supervisor has died
                log.error("the supervisor process %d is gone; this worker stops", supervisor)
                stop.set()

    threading.Thread(target=watch, name="idnode-supervisor-watch", daemon=True).start()
    return stop


def pin_to_cpu(index: int) -> int | None:
    """Pin every thread of this process to one CPU: the ``index``-th (mod their number) of the CPUs
    this process may run on, which a spawned worker inherits from the supervisor (so ``taskset``
    on ``idnode serve`` still bounds the node). Returns that CPU; ``None`` when there is only one.

    Threads started later inherit it. A worker's threads hand every call from gRPC's poller to a
    handler thread and back: a worker left to migrate paid for those handoffs across CPUs."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    cpu = allowed[index % len(allowed)]
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that has just exited
            os.sched_setaffinity(int(tid), {cpu})
    return cpu


def _pin(config: ServerConfig, index: int) -> None:
    if config.pin_workers and (cpu := pin_to_cpu(index)) is not None:
        log.info("worker %d pinned to CPU %d", index, cpu)


def writer_main(config: ServerConfig, address: str, authkey: bytes, ready: Connection) -> None:
    """Worker 0: the node proper, plus the fan-out that keeps readers coherent."""
    configure_logging(config.log_format)
    _pin(config, 0)
    stop = _stop_on_signals()
    server = NodeServer(config, reuse_port=True)
    assert isinstance(server.store, RocksStore)
    fanout = ReplicaFanout(address, authkey, server.store.committed_sequence)
    server.registry.listeners.append(fanout)
    server.start()
    tune_gc_for_serving()
    ready.send(
        (
            server.public_port,
            server.management_port,
            server.registry.node_prefix,
            server.http_port,
            server.https_port,
        )
    )
    stop.wait()
    server.stop()
    fanout.close()


def reader_main(config: ServerConfig, index: int, address: str, authkey: bytes, ready: Connection) -> None:
    """Worker ``index`` >= 1: resolution from a secondary instance kept coherent by the writer."""
    configure_logging(config.log_format)
    _pin(config, index)
    stop = _stop_on_signals()
    lost = threading.Event()
    # Open everything slow (the secondary opens every SST file) before joining: once joined, the
    # writer waits for this reader to confirm each write, and kills it if it does not in time.
    secondary = RocksStore(
        config.data_dir / "db",
        block_cache_bytes=config.block_cache_bytes,
        secondary_dir=config.data_dir / "run" / f"reader-{index}",
    )
    replica = ReplicaStore(secondary)
    server = NodeServer(config, store=replica, management=False, reuse_port=True)

    def on_lost() -> None:
        lost.set()
        stop.set()

    follower = ReplicaFollower(address, authkey)  # join: nothing acknowledged after this is missed
    replica.catch_up()  # ... and everything acknowledged before it is in the secondary now
    follower.start(replica, server.cache, on_lost)
    server.start()
    tune_gc_for_serving()
    ready.send((server.public_port, 0, server.registry.node_prefix, server.http_port, 0))
    stop.wait()
    if not lost.is_set():
        follower.leaving()  # the writer may stop first (one SIGTERM to the whole node)
    server.stop(0 if lost.is_set() else None)
    follower.stop()
    if lost.is_set():
        os._exit(1)


class WorkerPool:
    """Starts and supervises the worker processes of one node."""

    def __init__(self, config: ServerConfig, workers: int) -> None:
        if workers < 2:
            raise ValueError("a worker pool needs at least 2 workers; use NodeServer for one")
        self.config = config
        self.workers = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._address = f"\0idnode-{os.getpid()}-{secrets.token_hex(6)}"  # Linux abstract socket
        self._authkey = secrets.token_bytes(32)
        self.public_port = 0
        self.management_port = 0
        self.http_port = 0
        """Handle REST plain HTTP port, shared by every worker (0: off)."""
        self.https_port = 0
        """Handle REST HTTPS port, the writer's only (0: off)."""
        self.node_prefix = ""
        self.writer: BaseProcess | None = None
        self.readers: dict[int, BaseProcess] = {}

    def _spawn(
        self, target: object, args: tuple[object, ...]
    ) -> tuple[BaseProcess, tuple[int, int, str, int, int]]:
        parent, child = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=target, args=(*args, child), daemon=False)  # type: ignore[attr-defined]
        proc.start()
        child.close()
        if not parent.poll(READY_TIMEOUT_SECONDS):
            proc.kill()
            raise RuntimeError(f"worker {args[1] if len(args) > 3 else 0} did not start")
        try:
            ports = parent.recv()
        except EOFError:
            proc.join()
            raise RuntimeError(f"a worker process exited during start-up (status {proc.exitcode})") from None
        return proc, ports

    def _start_reader(self, index: int) -> None:
        config = replace(
            self.config,
            public_address=with_port(self.config.public_address, self.public_port),
            http_address=with_port(self.config.http_address, self.http_port)
            if self.config.http_address
            else "",
            metrics_address=_offset_port(self.config.metrics_address, index),
        )
        proc, _ = self._spawn(reader_main, (config, index, self._address, self._authkey))
        self.readers[index] = proc

    def start(self) -> None:
        """Start the writer, then the readers on the writer's public port; returns when all serve."""
        (
            self.writer,
            (self.public_port, self.management_port, self.node_prefix, self.http_port, self.https_port),
        ) = self._spawn(writer_main, (self.config, self._address, self._authkey))
        for index in range(1, self.workers):
            self._start_reader(index)

    def supervise(self, stop: threading.Event) -> int:
        """Restart readers that die until ``stop`` is set (0) or the writer dies (1)."""
        assert self.writer is not None
        while not stop.is_set():
            sentinels = [self.writer.sentinel, *(p.sentinel for p in self.readers.values())]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            if not self.writer.is_alive():
                if stop.is_set():
                    break
                log.error("the writer process exited (status %s); stopping the node", self.writer.exitcode)
                self.stop()
                return 1
            for index, proc in list(self.readers.items()):
                if not proc.is_alive() and not stop.is_set():
                    log.warning("reader %d exited (status %s); restarting it", index, proc.exitcode)
                    try:
                        self._start_reader(index)
                    except RuntimeError:
                        # Keep the old (dead) process as the entry: the next round retries.
                        log.exception("restarting reader %d failed; retrying", index)
                        stop.wait(RESTART_BACKOFF_SECONDS)
        return 0

    def stop(self) -> None:
        """SIGTERM every worker (readers first), then wait for them to drain and exit."""
        procs = [*self.readers.values(), *([self.writer] if self.writer else [])]
        for proc in procs:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.join(self.config.grace_seconds + 10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _offset_port(address: str, offset: int) -> str:
    """``host:port`` with ``offset`` added to a non-zero port (each worker its own endpoint)."""
    if not address:
        return address
    host, _, port = address.rpartition(":")
    return address if int(port) == 0 else f"{host}:{int(port) + offset}"
