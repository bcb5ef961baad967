"""The bulk import's worker processes: started first, told the import's settings later.

:func:`registry.bulk.run_import` starts them before it opens the store, and forks them if the
process runs a single thread at that moment (as ``idnode import`` does): a forked worker starts in
~10 ms with every module already imported, where a spawned one starts a fresh interpreter and
imports them (~0.14 s, 7% of a 10^6-row import; bench/README.md, "Session 8", 4). A process
running other threads (grpc's, a caller's, RocksDB's, which outlive the first database it opened)
is never forked, since the child would inherit their locks in whatever state they were: its
workers are spawned.

The settings (:class:`registry.bulk.chunks.Settings`) need the open store, so they reach the
workers after the fact: :meth:`WorkerPool.configure` hands one copy to each worker.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import AsyncResult, Pool
from types import TracebackType
from typing import Any, TypeVar

from registry.bulk.chunks import Settings, init_worker
from registry.bulk.malloc import keep_freed_memory
from registry.bulk.session import BulkImportError

T = TypeVar("T")
R = TypeVar("R")

CONFIGURE_TIMEOUT = 120.0
"""Seconds a worker waits for the others to take their settings before the import fails (one that
died before taking them would otherwise hold every other one forever)."""


def single_threaded() -> bool:
    """True when this process runs exactly one thread, native threads included (Linux's
    ``/proc/self/task``); False when that cannot be told."""
    if threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


_all_configured: Any = None
"""This worker's copy of the pool's barrier (set by :func:`_keep_barrier`)."""


def _keep_barrier(barrier: Any) -> None:
    global _all_configured
    _all_configured = barrier


def _configure(settings: Settings) -> int:
    """Pool task: take ``settings`` and fix this worker's allocator settings
    (:mod:`registry.bulk.malloc`), then wait until every worker has taken its own, so that no
    worker takes two copies and leaves another with none. Returns this worker's pid."""
    keep_freed_memory()
    init_worker(settings)
    _all_configured.wait(CONFIGURE_TIMEOUT)
    return os.getpid()


class WorkerPool:
    """``processes`` worker processes (>= 1); a context manager that stops them on the way out.

    Forked if this process runs a single thread now (:func:`single_threaded`), else spawned
    (:attr:`start_method`). Call :meth:`configure` before giving them work."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("a worker pool needs at least one process")
        self.start_method = "fork" if single_threaded() else "spawn"
        ctx = multiprocessing.get_context(self.start_method)
        self.processes = processes
        barrier = ctx.Barrier(processes)
        self._pool: Pool = ctx.Pool(processes, initializer=_keep_barrier, initargs=(barrier,))

    def configure(self, settings: Settings) -> list[int]:
        """Give each worker ``settings`` (and its own checker and run reader); returns the workers'
        pids. Raises :class:`BulkImportError` if a worker does not take its copy within
        :data:`CONFIGURE_TIMEOUT`."""
        try:
            return self._pool.map(_configure, [settings] * self.processes, chunksize=1)
        except threading.BrokenBarrierError:
            raise BulkImportError(
                f"the import's {self.processes} worker processes did not all start within "
                f"{CONFIGURE_TIMEOUT:.0f} s"
            ) from None

    def apply_async(self, fn: Callable[[T], R], arg: T) -> AsyncResult[R]:
        return self._pool.apply_async(fn, (arg,))

    def imap(self, fn: Callable[[T], R], args: Iterable[T]) -> Iterator[R]:
        return self._pool.imap(fn, args)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.terminate()
        self._pool.join()
