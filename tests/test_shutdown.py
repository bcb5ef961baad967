"""The serving processes' stop event (resolver.shutdown), each probe in a process of its own: a
handler and the wakeup fd belong to the process for its whole life."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HELD_LOCK_PROBE = """
import os, signal
from resolver.shutdown import stop_on_signals

stop = stop_on_signals()
# The moment that hung `idnode serve`: the main thread inside stop.wait(), holding the event's lock,
# when SIGTERM arrives. A handler calling stop.set() waits for that lock forever.
with stop._cond:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10_000):  # bytecodes, between which the handler runs
        pass
print(stop.wait(10), flush=True)
"""

SIGNAL_PROBE = """
from resolver.shutdown import stop_on_signals

stop = stop_on_signals()
print("ready", flush=True)
print(stop.wait(10), flush=True)
"""


def _run(probe: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=30, cwd=ROOT
    )


def test_a_signal_that_arrives_while_the_main_thread_holds_the_events_lock_still_stops() -> None:
    done = _run(HELD_LOCK_PROBE)
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_set_the_event_and_nothing_else(sig: signal.Signals) -> None:
    """No KeyboardInterrupt for SIGINT, no death for SIGTERM: the process goes on to stop cleanly."""
    command = [sys.executable, "-c", SIGNAL_PROBE]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out.strip()) == (0, "True"), err


def test_other_signals_leave_the_event_alone() -> None:
    """SIGUSR1 with a Python handler also writes the wakeup fd; only the stop signals set the event."""
    probe = """
import os, signal
from resolver.shutdown import stop_on_signals

stop = stop_on_signals()
signal.signal(signal.SIGUSR1, lambda *_: None)
os.kill(os.getpid(), signal.SIGUSR1)
print(stop.wait(1), flush=True)
"""
    done = _run(probe)
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr
