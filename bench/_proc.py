"""Small helpers shared by the benchmark scripts: process CPU and memory from ``/proc``, latency
percentiles, a free TCP port and a timestamped progress line."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of ``pids`` (seconds), from ``/proc/<pid>/stat``; vanished pids count 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / CLK_TCK


def rss_mb(pids: Iterable[int]) -> float:
    """``VmRSS`` summed over ``pids``, in MiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def percentiles(lat_ns: Sequence[int]) -> dict[str, float]:
    """p50 / p99 / p99.9 in microseconds of latencies given in nanoseconds."""
    if not lat_ns:
        return {"p50_us": 0.0, "p99_us": 0.0, "p999_us": 0.0}
    s = sorted(lat_ns)
    n = len(s)
    return {
        "p50_us": s[n // 2] / 1e3,
        "p99_us": s[min(n - 1, int(n * 0.99))] / 1e3,
        "p999_us": s[min(n - 1, int(n * 0.999))] / 1e3,
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
