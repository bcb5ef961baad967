"""Unary Resolve throughput against the number of server processes, where the CPU goes.

    .venv/bin/python -m bench.bench_scaling                          # node, 1 / 2 / 4 processes
    .venv/bin/python -m bench.bench_scaling --kind echo --depth 256  # the bare echo, 256 in flight
    .venv/bin/python -m bench.bench_scaling --rounds 5 --out bench/results/scaling.json

Issue 4's target "2 processes >= 1.6 x 1 process" on this 2-core machine, examined: the process
counts run in alternation (1, 2, 4, 1, 2, 4, ...) on the 1e6 dataset (hot cache, Zipf keys, 5%
misses) or on the bare echo server (:mod:`bench.echo_server`), loaded exactly as the suite's
``Resolve c=64`` row (:func:`bench.loadgen.h2_unary`: 64 calls in flight over 8 connections by
default). One process is pinned to CPU 0 and the generator to CPU 1, as in the suite; with more,
the generator is not pinned and each server process pins itself to a CPU of its own, as the
node's workers do by default (``--no-pin``: they do not). Each round prints calls/s, the CPU each
server process used (cores), the generator's, and the whole machine's split from ``/proc/stat``
(its idle share shows CPU the servers left unused);
the end prints the medians and each count's median ratio to one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench import dataset, loadgen
from bench._proc import cpu_seconds, log
from bench.echo_server import EchoPool
from bench.run import CLIENT_CPUS, SERVER_CPUS, UNARY_PATH, Node, warm

_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _machine_ticks() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1 : 1 + len(_STAT_FIELDS)]]


def _client(nice: int, **kw: Any) -> dict[str, Any]:
    """The load generator, at scheduling priority ``nice`` (negative: ahead of the servers)."""
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return loadgen.h2_unary(**kw)


def measure(
    kind: str,
    workers: int,
    ds: dataset.Dataset,
    msgs: list[bytes],
    warm_batches: list[bytes],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One server of ``workers`` processes, started, warmed, loaded for ``args.seconds``, stopped."""
    pinned = workers == 1
    if kind == "node":
        server: Any = Node(ds.data_dir, workers, 256 << 20, pin=not args.no_pin)
        port, pids = server.port, server.pids
        warm(port, warm_batches, 1 if workers == 1 else 8)
    else:
        server = EchoPool(workers, 400, 1000 * 440, cpus=SERVER_CPUS if pinned else None, pin=not args.no_pin)
        port = server.start()
        pids = server.pids
    try:
        kw = [
            {
                "port": port,
                "path": UNARY_PATH,
                "messages": msgs,
                "seconds": args.seconds,
                "connections": args.connections,
                "depth": args.depth,
                "warmup": 0.5,
                "nice": args.client_nice,
            }
        ]
        ticks0, cpu0, t0 = _machine_ticks(), [cpu_seconds([p]) for p in pids], time.perf_counter()
        r = loadgen.run_processes(_client, kw, CLIENT_CPUS if pinned else None)
        elapsed = time.perf_counter() - t0
        ticks1, cpu1 = _machine_ticks(), [cpu_seconds([p]) for p in pids]
    finally:
        server.stop()
    ticks = [b - a for a, b in zip(ticks0, ticks1, strict=True)]
    cores = [(b - a) / elapsed for a, b in zip(cpu0, cpu1, strict=True)]
    calls = r["calls"] / r["seconds"]
    return {
        "kind": kind,
        "workers": workers,
        "calls_per_s": calls,
        "server_cores_per_process": cores,
        "server_cpu_us_per_call": sum(cores) / calls * 1e6 if calls else None,
        "client_cores": r["cpu_s"] / r["seconds"],
        "machine_share": {k: v / max(1, sum(ticks)) for k, v in zip(_STAT_FIELDS, ticks, strict=True)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=("node", "echo"), default="node")
    p.add_argument("--workers", default="1,2,4", help="process counts, run in alternation (default 1,2,4)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--depth", type=int, default=64, help="calls in flight (default 64)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="the generator's nice value (e.g. -10: scheduled ahead of the servers when they share cores)",
    )
    p.add_argument("--no-pin", action="store_true", help="leave a multi-process server's processes unpinned")
    p.add_argument("--ids", default="1e6")
    p.add_argument("--data-root", default="/tmp/idnode-bench")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    n = int(float(args.ids))
    ds = dataset.build(Path(args.data_root) / f"ids-{n}-seed1", n, 1, log=log)
    keys, _ = dataset.sample(ds, 200_000, "zipf")
    msgs = [dataset.resolve_request(k) for k in keys]
    warm_batches = dataset.batches(keys, 1000)
    rows: list[dict[str, Any]] = []
    for rnd in range(1, args.rounds + 1):
        for w in counts:
            row = measure(args.kind, w, ds, msgs, warm_batches, args)
            rows.append(row)
            share = row["machine_share"]
            print(
                f"round {rnd} {args.kind} x{w}: {row['calls_per_s']:>7,.0f} calls/s  server cores "
                f"{' '.join(f'{c:.2f}' for c in row['server_cores_per_process'])}  "
                f"{row['server_cpu_us_per_call']:.0f} us/call  client {row['client_cores']:.2f}  "
                f"machine idle {share['idle']:.0%} system {share['system']:.0%} "
                f"softirq {share['softirq']:.0%}",
                flush=True,
            )
    medians = {w: statistics.median(r["calls_per_s"] for r in rows if r["workers"] == w) for w in counts}
    base = medians[counts[0]]
    print(
        f"\nmedians over {args.rounds} rounds ({args.kind}, {args.depth} in flight, "
        f"{args.connections} connections):"
    )
    for w in counts:
        idle = statistics.median(r["machine_share"]["idle"] for r in rows if r["workers"] == w)
        ratio = medians[w] / base
        print(f"  x{w}: {medians[w]:>7,.0f} calls/s  {ratio:.2f} x x{counts[0]}  machine idle {idle:.0%}")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
