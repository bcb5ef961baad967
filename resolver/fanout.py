"""Coherence between the writer process and the reader processes of a multi-process node.

The writer runs a :class:`ReplicaFanout` (a :class:`~registry.service.CommitListener`): reader
processes connect to it over a Unix socket; after every commit it sends each reader the changed
records with RocksDB's sequence number and waits for every reader to confirm before the write is
acknowledged. A reader that does not confirm within ``ack_timeout`` is killed (SIGKILL) before the
write is acknowledged, so no live reader can answer with data older than an acknowledged write.

The guarantee: once a write is acknowledged, every resolve that *starts* afterwards, on any
worker, sees it.

Each reader runs a :class:`ReplicaFollower`: it applies changes to its
:class:`~registry.replica.ReplicaStore` overlay, drops the keys from its cache, confirms, and in
the background catches its secondary up with the primary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Client, Connection, Listener

from registry.replica import ReplicaStore
from registry.service import Cache

log = logging.getLogger("idnode.fanout")

JOIN_TIMEOUT_SECONDS = 5.0
"""How long a connecting reader may take to introduce itself."""
CATCH_UP_BUSY_SECONDS = 0.5
"""How often a reader catches up while its overlay holds changes. A catch-up costs 7-9 ms
(``python -m bench.bench_catch_up``), so this keeps it near 2% of a reader's time under steady
writes; freshness does not depend on it (pushed changes are served from the overlay meanwhile)."""
CATCH_UP_IDLE_SECONDS = 5.0
"""How often it catches up otherwise (lets RocksDB release files the primary compacted away)."""


class ReplicaFanout:
    """Writer side. ``sequence`` returns the RocksDB sequence number of the commit being published:
    the calling thread's last commit (:meth:`RocksStore.committed_sequence`). Not the store's latest
    sequence read after the commit: another commit may have slipped in by then, and two changes of
    one key would then carry the same number, the older possibly published last and winning."""

    def __init__(
        self, address: str, authkey: bytes, sequence: Callable[[], int], ack_timeout: float = 1.0
    ) -> None:
        self.address = address
        self.ack_timeout = ack_timeout
        self._sequence = sequence
        self._listener = Listener(address, family="AF_UNIX", authkey=authkey)
        self._replicas: list[tuple[int, Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="idnode-fanout", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
                if not conn.poll(JOIN_TIMEOUT_SECONDS):  # a silent peer must not block later joins
                    conn.close()
                    log.warning("a replica connection sent nothing in %.0f s; dropped", JOIN_TIMEOUT_SECONDS)
                    continue
                pid = conn.recv()
            except (OSError, EOFError):
                if self._closed:
                    return
                continue
            except Exception:  # a failed authentication handshake, for one
                log.warning("rejected a replica connection", exc_info=True)
                continue
            with self._lock:  # not in the middle of a publication
                self._replicas.append((pid, conn))
                conn.send("welcome")
            log.info("reader process %d joined", pid)

    def replica_pids(self) -> list[int]:
        with self._lock:
            return [pid for pid, _ in self._replicas]

    def records_changed(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        sequence = self._sequence()
        with self._lock:
            failed = []
            for pid, conn in self._replicas:
                try:
                    conn.send((sequence, list(changes)))
                except OSError:
                    failed.append((pid, conn))
            for pid, conn in self._replicas:
                if (pid, conn) in failed:
                    continue
                try:
                    if not conn.poll(self.ack_timeout) or conn.recv() != sequence:
                        failed.append((pid, conn))
                except (OSError, EOFError):
                    failed.append((pid, conn))
            for pid, conn in failed:
                log.error("reader process %d did not confirm a write in time: stopping it", pid)
                _kill(pid)
                conn.close()
                self._replicas.remove((pid, conn))

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for _, conn in self._replicas:
                conn.close()
            self._replicas.clear()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class ReplicaFollower:
    """Reader side. :meth:`join` connects and waits for the writer's welcome: open (or catch up)
    the secondary only after it, so that nothing acknowledged before joining is missed.
    ``on_lost`` runs if the writer goes away; the reader must then stop serving."""

    def __init__(self, address: str, authkey: bytes) -> None:
        self.conn = Client(address, family="AF_UNIX", authkey=authkey)
        self.conn.send(os.getpid())
        if self.conn.recv() != "welcome":
            raise ConnectionError("unexpected answer from the writer process")
        self._stop = threading.Event()
        self._leaving = threading.Event()

    def start(self, replica: ReplicaStore, cache: Cache, on_lost: Callable[[], None]) -> None:
        self.replica = replica
        self.cache = cache
        self._on_lost = on_lost
        threading.Thread(target=self._follow, name="idnode-follow", daemon=True).start()
        threading.Thread(target=self._catch_up_loop, name="idnode-catch-up", daemon=True).start()

    def _follow(self) -> None:
        try:
            while True:
                sequence, changes = self.conn.recv()
                self.replica.apply(sequence, changes)
                for key, _ in changes:
                    self.cache.invalidate(key)
                self.conn.send(sequence)
        except (EOFError, OSError):
            if self._stop.is_set():
                return
            if self._leaving.is_set():
                log.info("the writer process has stopped; this reader is stopping too")
                return
            log.error("lost the writer process; this reader stops serving")
            self._on_lost()

    def _catch_up_loop(self) -> None:
        while not self._stop.wait(CATCH_UP_BUSY_SECONDS if self.replica.pending() else CATCH_UP_IDLE_SECONDS):
            try:
                self.replica.catch_up()
            except Exception:
                log.exception("catching up with the primary failed")

    def leaving(self) -> None:
        """The reader has begun to stop (it answers only the calls it has already taken): from now
        on the writer going away is expected, not a loss (``on_lost`` does not run). It stays
        safe to answer: a writer that is gone acknowledges no more writes, so nothing answered
        can be older than an acknowledged write. Changes keep being applied until :meth:`stop`."""
        self._leaving.set()

    def stop(self) -> None:
        self._stop.set()
        self.conn.close()
