"""The stop event of a serving process: set by SIGTERM or SIGINT, with no lock taken in a handler.

A Python signal handler runs in the main thread, between two bytecodes of whatever it was doing.
The obvious handler, ``lambda *_: stop.set()``, can therefore hang the process for good: if the
main thread is inside ``stop.wait()`` at the moment it holds the event's lock (which is not
reentrant), ``set()`` waits for that lock forever. CI hit this once (``idnode serve`` ignoring
SIGTERM), and a throwaway harness sending SIGTERM to a process entering ``stop.wait()`` hung it 1
time in 1,500.

Here the handlers do nothing; the interpreter's wakeup fd, written in C as each signal arrives,
carries the signal to a thread of its own, which sets the event.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _noted(signum: int, frame: object) -> None:
    """The Python-level handler: none is needed beyond the wakeup fd's byte, but without one the
    signal would keep its default action (or, for SIGINT, raise KeyboardInterrupt)."""


def stop_on_signals(signals: Iterable[signal.Signals] = STOP_SIGNALS) -> threading.Event:
    """An event set once one of ``signals`` arrives. Call it once, from the main thread (the only
    one that may install handlers and the wakeup fd), before the threads that should not see
    those signals' default actions start. Replaces any wakeup fd set before."""
    signals = tuple(signals)
    wanted = bytes(int(s) for s in signals)
    stop = threading.Event()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the C handler must never block on a full pipe

    def watch() -> None:
        while chunk := os.read(read_fd, 64):
            if any(byte in wanted for byte in chunk):
                stop.set()

    threading.Thread(target=watch, name="idnode-signals", daemon=True).start()
    for sig in signals:
        signal.signal(sig, _noted)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    return stop
