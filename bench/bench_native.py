"""BatchResolve(1000) from the hot cache with the native accelerators on and off, side by side.

    .venv/bin/python -m bench.bench_native                 # 1e6 dataset (built or reused), 3 rounds
    .venv/bin/python -m bench.bench_native --rounds 5 --seconds 8

One node process (pinned to CPU 0) per round and mode, alternating ``IDNODE_NATIVE=1`` and ``=0``,
loaded by one load-generator process (CPU 1: 2 threads, one BatchResolve of 1,000 Zipf keys in
flight each, 5% misses); prints ids/s and the node's CPU per identifier (utime+stime from
/proc/PID/stat over the measured window) per round, the medians, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench import dataset, loadgen

ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(ds: dataset.Dataset, msgs: list[bytes], native: bool, seconds: float) -> dict[str, float]:
    """One node process with ``IDNODE_NATIVE`` set as given: warm its cache, then measure."""
    env = dict(os.environ, IDNODE_NATIVE="1" if native else "0")
    node = [sys.executable, "-m", "bench.node_proc", str(ds.data_dir), "1", str(1 << 30), "0"]
    cmd = ["taskset", "-c", "0", *node]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        port, pid = info["public_port"], info["pids"][0]
        load = {"port": port, "kind": "batch", "messages": msgs, "depth": 2, "ids_per_call": 1000}
        loadgen.run_processes(loadgen.grpc_calls, [{**load, "seconds": 3.0}], [1])  # warm the cache
        before = _cpu_seconds(pid)
        result = loadgen.run_processes(loadgen.grpc_calls, [{**load, "seconds": seconds}], [1])
        cpu = _cpu_seconds(pid) - before
    finally:
        proc.terminate()
        proc.wait(30)
    ids = result["ids"]
    return {"ids_per_s": ids / result["seconds"], "server_cpu_us_per_id": cpu / ids * 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", type=float, default=1e6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--data-root", default=os.environ.get("IDNODE_BENCH_DATA", "/tmp/idnode-bench"))
    args = p.parse_args()
    n = int(args.ids)
    ds = dataset.build(Path(args.data_root) / f"ids-{n}-seed1", n, 1)
    keys, _ = dataset.sample(ds, 200_000, "zipf")
    msgs = dataset.batches(keys, 1000)
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    for r in range(args.rounds):
        for native in (True, False):
            row = measure(ds, msgs, native, args.seconds)
            rows[native].append(row)
            mode = "native" if native else "python"
            print(
                f"round {r + 1} {mode:<6} {row['ids_per_s']:>12,.0f} ids/s  "
                f"{row['server_cpu_us_per_id']:.2f} us server CPU per id",
                flush=True,
            )
    med = {
        native: {k: statistics.median(x[k] for x in rows[native]) for k in rows[native][0]} for native in rows
    }
    for native, mode in ((True, "native"), (False, "python")):
        m = med[native]
        print(f"median {mode} {m['ids_per_s']:,.0f} ids/s, {m['server_cpu_us_per_id']:.2f} us/id")
    print(
        f"native / python: {med[True]['ids_per_s'] / med[False]['ids_per_s']:.2f}x ids/s, "
        f"{med[True]['server_cpu_us_per_id'] / med[False]['server_cpu_us_per_id']:.2f}x CPU per id"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
