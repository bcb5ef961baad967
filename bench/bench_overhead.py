"""What the operators' view costs the hot path: server CPU per unary Resolve with metrics off,
metrics on (the default), and metrics plus the access log, beside the bare grpcio echo server of
:mod:`bench.echo_server` (built like the node's public listener) answering a reply of the size of
the node's answer for the same records, measured in the same run. Every server tunes its cyclic
collector as ``idnode serve`` does (:func:`resolver.server.tune_gc_for_serving`: the startup heap
frozen, a higher young-generation threshold); the echo and the node with metrics are also measured
without it ("untuned"), which shows what the tuning saves; and
the node with metrics answering only identifiers that are not registered ("misses": each call
ends NOT_FOUND with its ``google.rpc`` details), which shows what a miss costs beside a hit.

Each configuration runs in its own server process pinned to core 0; the load (64 calls in flight
from one C-core channel) runs pinned to core 1. Configurations alternate over several rounds and
medians are printed, so the machine's noise hits them all alike. Run:

    .venv/bin/python -m bench.bench_overhead [--rounds 3] [--seconds 4]   # JSON: bench/results/overhead.json
    .venv/bin/python -m bench.bench_overhead --quick    # 1 round of 1 s, a smoke test: overhead-quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from bench._proc import cpu_seconds
from registry.pb import resolution_pb2
from registry.rocks import RocksStore
from registry.service import Registry
from resolver.datadir import DataDir
from resolver.demo import seed
from resolver.services.wire import TAG1, field

ROOT = Path(__file__).resolve().parent.parent
IDS = [f"88.118.8/DEMO-000{i}" for i in range(1, 6)]
MISSING_IDS = [f"88.118.8/NOT-REGISTERED-{i}" for i in range(1, 6)]
"""Well-formed identifiers under the demo enterprise that are not registered: every call ends
NOT_FOUND (a negative cache hit, then the memoised status)."""

SERVER = r"""
import sys, pathlib
from concurrent import futures
import grpc
mode, data, reply_bytes = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
tuned = not mode.endswith("-untuned")
mode = mode.removesuffix("-untuned")
from resolver.server import NodeServer, ServerConfig, tune_gc_for_serving
if mode == "echo":
    from bench.echo_server import build_server
    server, port = build_server(0, b"x" * reply_bytes, b"", False, ServerConfig())
    server.start()
else:
    config = ServerConfig(
        data_dir=data, public_address="127.0.0.1:0", management_address="127.0.0.1:0", fsync=False,
        metrics=mode != "metrics-off", access_log=mode == "metrics+access-log",
    )
    if mode == "metrics+access-log":
        import logging
        logging.basicConfig(filename=str(data / "access.log"), level=logging.INFO)
    node = NodeServer(config)
    node.start()
    port = node.public_port
if tuned:
    tune_gc_for_serving()  # as `idnode serve` does
print(port, flush=True)
sys.stdin.read()
"""


def load(port: int, seconds: float, ids: list[str], inflight: int = 64) -> int:
    """Keep ``inflight`` Resolve calls outstanding for ``seconds``; returns completed calls."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/idnode.v1.ResolutionService/Resolve")
    payloads = [resolution_pb2.ResolveRequest(identifier=i).SerializeToString() for i in ids]
    slots = threading.Semaphore(inflight)
    done = [0]

    def finished(_: grpc.Future) -> None:
        done[0] += 1
        slots.release()

    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        slots.acquire()
        call.future(payloads[n % len(payloads)]).add_done_callback(finished)
        n += 1
    for _ in range(inflight):
        slots.acquire()
    channel.close()
    return done[0]


def measure(mode: str, data: Path, seconds: float, reply_bytes: int) -> tuple[float, float]:
    """(server CPU microseconds per call, calls per second) for one configuration; a mode ending
    in ``-misses`` resolves only identifiers that are not registered."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ids = MISSING_IDS if mode.endswith("-misses") else IDS
    server_mode = mode.removesuffix("-misses")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-c", SERVER, server_mode, str(data), str(reply_bytes)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        load(port, 1.0, ids)  # warm the cache and the connection
        before, start = cpu_seconds([proc.pid]), time.perf_counter()
        calls = load(port, seconds, ids)
        elapsed, cpu = time.perf_counter() - start, cpu_seconds([proc.pid]) - before
        return cpu / calls * 1e6, calls / elapsed
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round of 1 s")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: see above)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 1.0
    if args.out is None:
        args.out = ROOT / "bench" / "results" / f"overhead{'-quick' if args.quick else ''}.json"
    os.sched_setaffinity(0, {1})  # the load generator: core 1
    modes = ["echo", "metrics-off", "metrics-on", "metrics+access-log"]
    modes += ["echo-untuned", "metrics-on-untuned", "metrics-on-misses"]
    samples: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="idnode-overhead-") as tmp:
        data = Path(tmp)
        DataDir(data).init("88.118")
        with RocksStore(DataDir(data).db) as store:
            registry = Registry(store)
            seed(DataDir(data), registry)
            # The node's answer: a ResolveResponse whose field 1 is the record (as the node frames it).
            reply_bytes = round(statistics.mean(len(field(TAG1, registry.resolve(i))) for i in IDS))
        print(f"echo reply: {reply_bytes} bytes (the node's mean answer for {len(IDS)} demo records)")
        for _ in range(args.rounds):
            for mode in modes:
                samples[mode].append(measure(mode, data, args.seconds, reply_bytes))
    rows = []
    base = statistics.median(us for us, _ in samples["metrics-off"])
    echo = statistics.median(us for us, _ in samples["echo"])
    print(
        f"{'configuration':<22}{'server CPU us/call':>20}{'calls/s':>10}{'vs metrics-off':>16}{'vs echo':>10}"
    )
    for mode in modes:
        us = statistics.median(u for u, _ in samples[mode])
        rate = statistics.median(r for _, r in samples[mode])
        rows.append({"name": mode, "server_cpu_us_per_call": us, "calls_per_s": rate,
                     "baseline": "metrics-off", "baseline_us": base, "ratio": us / base,
                     "echo_us": echo, "ratio_to_echo": us / echo,
                     "echo_reply_bytes": reply_bytes})  # fmt: skip
        print(f"{mode:<22}{us:>20.1f}{rate:>10.0f}{us / base:>16.3f}{us / echo:>10.3f}")
    us_of = {row["name"]: row["server_cpu_us_per_call"] for row in rows}
    for tuned, untuned in (("echo", "echo-untuned"), ("metrics-on", "metrics-on-untuned")):
        print(
            f"the collector's tuning, {tuned}: {us_of[untuned]:.1f} -> {us_of[tuned]:.1f} us/call "
            f"({us_of[tuned] / us_of[untuned] - 1:+.1%})"
        )
    miss, hit = us_of["metrics-on-misses"], us_of["metrics-on"]
    print(f"a NOT_FOUND answer: {miss:.1f} us/call, a found record {hit:.1f} ({miss - hit:+.1f} us)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"(medians of {args.rounds} alternating rounds of {args.seconds:g} s; JSON: {args.out})")


if __name__ == "__main__":
    main()
