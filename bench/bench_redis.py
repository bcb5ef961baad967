"""Redis Cluster benchmark (issue 6): one command, one run, every figure beside its baseline.

    .venv/bin/python -m bench.bench_redis                     # 1e6 identifiers, 8 s per measurement
    .venv/bin/python -m bench.bench_redis --ids 1e5 --seconds 4   # smoke test

It starts a 3-master + 3-replica Redis Cluster on loopback (tests/redis_cluster.py: AOF everysec,
min-replicas-to-write 1), builds (or reuses) the resolution benchmark's dataset (bench/dataset.py:
the RocksDB node), loads the same records into the cluster with the pipelined loader
(RedisClusterStore.bulk_create, one Lua script per shard, WAIT per master), then measures, in
this run, unary Resolve throughput (raw HTTP/2 load generator, bench/loadgen.py, 64 calls in
flight per target, Zipf keys with 5% misses) against:

- the RocksDB node (one process: bench/node_proc.py);
- one front end on the cluster;
- two front ends on the cluster (one load generator process each, run together);

each with the hot cache on (256 MiB) and off (every resolve reads the store). Memory per
identifier is the growth of ``used_memory`` summed over the masters while the records were loaded,
divided by their number; the 1e8 projection multiplies it (masters + replicas).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import dataset, loadgen

UNARY_PATH = "/idnode.v1.ResolutionService/Resolve"
NAMESPACE = "bench"
ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- front end process
def serve(data_dir: str, nodes: str, cache_bytes: int) -> None:
    """``python -m bench.bench_redis serve DATA_DIR NODES CACHE_BYTES``: one front end."""
    from resolver.server import NodeServer, ServerConfig
    from resolver.shutdown import stop_on_signals

    names = {f.name for f in dataclasses.fields(ServerConfig)}
    kwargs: dict[str, Any] = {
        "data_dir": Path(data_dir),
        "public_address": "127.0.0.1:0",
        "management_address": "127.0.0.1:0",
        "cache_bytes": cache_bytes,
        "store": "redis-cluster",
        "redis_nodes": nodes,
        "redis_namespace": NAMESPACE,
    }
    if "metrics" in names:
        kwargs["metrics"] = True
    server = NodeServer(ServerConfig(**kwargs))
    server.start()
    print(json.dumps({"pids": [os.getpid()], "public_port": server.public_port}), flush=True)
    stop = stop_on_signals()
    stop.wait()
    server.stop(1)


class Proc:
    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"{cmd} did not start (exit {self.proc.returncode})")
        self.port: int = json.loads(line)["public_port"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------------- loading
def load_cluster(ds: dataset.Dataset, nodes: str) -> dict[str, float]:
    """Copy the dataset's node (META, ENTERPRISES, counters, RECORDS) into the cluster."""
    from registry.redis_cluster import RedisClusterStore
    from registry.rocks import RocksStore
    from registry.store import Add, Put, Table, Txn

    with (
        RocksStore(ds.data_dir / "db", block_cache_bytes=64 << 20) as src,
        RedisClusterStore(nodes, namespace=NAMESPACE, recovery=False) as dst,
    ):
        for table in (Table.META, Table.ENTERPRISES):
            rows = src.scan(table, b"", b"\xff" * 8, 1_000_000)
            dst.commit(Txn(writes=tuple(Put(table, k, v) for k, v in rows)))
        dst.commit(Txn(adds=tuple(Add(k, v) for k, v in src.counters(b"").items())))
        before = dst.used_memory()
        t0 = time.perf_counter()
        loaded = 0
        lower = b""
        while True:
            rows = src.scan(Table.RECORDS, lower, b"\xff" * 8, 20_000)
            if not rows:
                break
            skipped = dst.bulk_create(Table.RECORDS, [(k, v, ()) for k, v in rows])
            loaded += len(rows) - len(skipped)
            lower = rows[-1][0] + b"\0"
            if loaded % 200_000 < 20_000:
                log(f"loaded {loaded:,} records into the cluster")
        seconds = time.perf_counter() - t0
        time.sleep(1.0)  # let replication and lazy frees settle
        after = dst.used_memory()
        value_bytes = sum(len(v) for _, v in src.scan(Table.RECORDS, b"", b"\xff" * 8, 10_000)) / 10_000
    return {
        "loaded": loaded,
        "load_seconds": round(seconds, 1),
        "load_per_s": round(loaded / seconds),
        "used_memory_delta": after - before,
        "bytes_per_id": round((after - before) / loaded, 1),
        "avg_value_bytes": round(value_bytes, 1),
    }


# ------------------------------------------------------------------------------- measuring
def measure(ports: list[int], messages: list[bytes], seconds: float) -> dict[str, Any]:
    kwargs = [
        {
            "port": port,
            "path": UNARY_PATH,
            "messages": messages,
            "seconds": seconds,
            "connections": 8,
            "depth": 64,
            "start_at": i * 104_729,
            "warmup": 1.0,
        }
        for i, port in enumerate(ports)
    ]
    r = loadgen.run_processes(loadgen.h2_unary, kwargs)
    lat = sorted(r["lat"])
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6) if lat else (lambda q: 0.0)
    calls = r["ok"] + r["errors"]
    return {
        "calls_per_s": round(calls / r["seconds"]),
        "p50_ms": round(p(0.5), 2),
        "p99_ms": round(p(0.99), 2),
        "client_cpu_s": round(r["cpu_s"], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", type=float, default=1e6)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "redis.json")
    args = ap.parse_args()
    n = int(args.ids)

    from tests.redis_cluster import start_cluster

    scratch = Path(tempfile.mkdtemp(prefix="idnode-bench-redis-"))
    log(f"starting a 3+3 Redis Cluster under {scratch}")
    cluster = start_cluster(scratch / "cluster")
    procs: list[Proc] = []
    try:
        ds = dataset.build(ROOT / "bench" / "results" / f"dataset-{n}", n, log=log)
        log(f"dataset of {n:,} ids ready; loading it into the cluster")
        memory = load_cluster(ds, cluster.nodes)
        log(f"memory: {memory}")
        keys, misses = dataset.sample(ds, 200_000, "zipf")
        messages = [dataset.resolve_request(k) for k in keys]
        rows: list[dict[str, Any]] = []
        for cache_mb in (256, 0):
            cache = cache_mb << 20
            rocks = Proc([sys.executable, "-m", "bench.node_proc", str(ds.data_dir), "1", str(cache), "0"])
            procs.append(rocks)
            log(f"cache {cache_mb} MiB: RocksDB node")
            rows.append(
                {
                    "target": "RocksDB node",
                    "cache_mb": cache_mb,
                    **measure([rocks.port], messages, args.seconds),
                }
            )
            rocks.stop()
            procs.remove(rocks)
            fes = [
                Proc(
                    [
                        sys.executable,
                        "-m",
                        "bench.bench_redis",
                        "serve",
                        str(ds.data_dir),
                        cluster.nodes,
                        str(cache),
                    ]
                )
                for _ in range(2)
            ]
            procs += fes
            measure([f.port for f in fes], messages, 2.0)  # warm-up, not counted: fresh processes
            log(f"cache {cache_mb} MiB: one front end")
            rows.append(
                {
                    "target": "1 front end",
                    "cache_mb": cache_mb,
                    **measure([fes[0].port], messages, args.seconds),
                }
            )
            log(f"cache {cache_mb} MiB: two front ends")
            rows.append(
                {
                    "target": "2 front ends",
                    "cache_mb": cache_mb,
                    **measure([f.port for f in fes], messages, args.seconds),
                }
            )
            for f in fes:
                f.stop()
                procs.remove(f)
    finally:
        for p in procs:
            p.stop()
        cluster.stop()

    per_id = memory["bytes_per_id"]
    projection = {
        "ids": 100_000_000,
        "masters_gib": round(per_id * 1e8 / 2**30, 1),
        "with_one_replica_each_gib": round(2 * per_id * 1e8 / 2**30, 1),
    }
    doc = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}",
        "ids": n,
        "seconds": args.seconds,
        "misses": misses,
        "memory": memory,
        "projection_1e8": projection,
        "resolve": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"\n{doc['machine']}; {n:,} identifiers; unary Resolve, 64 in flight per target, Zipf, 5% misses\n")
    print("| target | cache | calls/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['target']} | {r['cache_mb']} MiB | {r['calls_per_s']:,} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    print(
        f"\nmemory: {per_id} bytes per identifier on the masters "
        f"(avg stored record {memory['avg_value_bytes']} B); "
        f"1e8 ids: {projection['masters_gib']} GiB on the masters, "
        f"{projection['with_one_replica_each_gib']} GiB with one replica each; "
        f"load: {memory['load_per_s']:,} records/s"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
