"""The resolution benchmark suite (issue 4): one command, a table on stdout, JSON on disk.

    .venv/bin/python -m bench.run --ids 1e6                 # ~7 min on 2 cores with the dataset reused
    .venv/bin/python -m bench.run --quick                   # 1e5 ids, short runs: a smoke test
                                                            # (JSON: bench/results/resolution-quick.json)
    .venv/bin/python -m bench.run --ids 1e7 --workers 1,2 --out bench/results/resolution-1e7.json

Every node figure is printed next to a baseline measured in the same run and their ratio:

- a bare grpcio echo server (:mod:`bench.echo_server`) of the same flavour and process count: the
  ceiling of a Python gRPC call (unary Resolve, and BatchResolve/StreamResolve answering a fixed
  payload of the same size);
- raw rocksdict ``get`` and list ``get`` in process on the node's own database: the ceiling of the
  store (cache-off batch and stream workloads);
- a Redis server's GET / MGET through redis-py on the same records (printed as extra rows).

The node runs in its own process(es) (:mod:`bench.node_proc`); the load generators run in
processes of their own (:mod:`bench.loadgen`) and report their CPU. With one server process the
server is pinned to CPU 0 and the load generator to CPU 1; with more, each server process pins
itself to a CPU of its own (``ServerConfig.pin_workers``, the node's default; the echo does the
same) and the load generator is not pinned.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import dataset, loadgen
from bench._proc import cpu_seconds as proc_cpu_s
from bench._proc import free_port, log, percentiles
from bench._proc import rss_mb as proc_rss_mb
from bench.echo_server import EchoPool

UNARY_PATH = "/idnode.v1.ResolutionService/Resolve"
PAIRED_ROUNDS = 3
"""Resolve c=64 and its paired echo are measured this many times, alternating; their medians give
the ratio (one pair of samples scattered the ratio by +-10% on this shared machine)."""
NCPU = os.cpu_count() or 1
SERVER_CPUS = [0]
CLIENT_CPUS = [1] if NCPU > 1 else [0]

TARGETS = {
    "resolve_c64_vs_echo": 0.9,
    "multiprocess_scaling": 1.6,
    "batch1000_hot_ids_per_s": 1_000_000,
    "batch1000_off_ids_per_s": 150_000,
    "stream_vs_batch": 0.5,
}


# ------------------------------------------------------------------------------- process stats
class CpuSampler:
    """Samples the server processes' CPU time every 50 ms so that the CPU spent in exactly the
    load generator's counted window can be interpolated."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), proc_cpu_s(self.pids)))
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), proc_cpu_s(self.pids)))

    def between(self, t0: float, t1: float) -> float:
        def at(t: float) -> float:
            s = self.samples
            for (ta, ca), (tb, cb) in itertools.pairwise(s):
                if ta <= t <= tb:
                    return ca + (cb - ca) * ((t - ta) / (tb - ta) if tb > ta else 0)
            return s[0][1] if t < s[0][0] else s[-1][1]

        return max(0.0, at(t1) - at(t0))


def scrape_cache(ports: list[int]) -> dict[str, float] | None:
    if not ports:
        return None
    total = {"hits": 0.0, "negative_hits": 0.0, "misses": 0.0}
    names = {
        "idnode_cache_hits_total": "hits",
        "idnode_cache_negative_hits_total": "negative_hits",
        "idnode_cache_misses_total": "misses",
    }
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) == 2 and parts[0] in names:
                total[names[parts[0]]] += float(parts[1])
    return total


def hit_rate(before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
    if before is None or after is None:
        return None
    hits = after["hits"] + after["negative_hits"] - before["hits"] - before["negative_hits"]
    misses = after["misses"] - before["misses"]
    return hits / (hits + misses) if hits + misses else None


# ------------------------------------------------------------------------------- servers
class Node:
    def __init__(self, data_dir: Path, workers: int, cache_bytes: int, pin: bool = True) -> None:
        self.workers = workers
        metrics_port = free_port() if workers == 1 else _free_port_run(workers)
        cmd = [sys.executable, "-m", "bench.node_proc", str(data_dir), str(workers), str(cache_bytes)]
        cmd += [str(metrics_port), "1" if pin else "0"]
        if workers == 1 and NCPU > 1:
            cmd = ["taskset", "-c", ",".join(map(str, SERVER_CPUS)), *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"node did not start (exit {self.proc.returncode})")
        info = json.loads(line)
        self.pids: list[int] = info["pids"]
        self.port: int = info["public_port"]
        self.management_port: int = info["management_port"]
        self.metrics_ports: list[int] = info["metrics_ports"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port_run(n: int) -> int:
    for _ in range(50):
        base = free_port()
        ok = True
        for i in range(1, n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + i))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no run of free ports")


class Redis:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="idnode-bench-redis-")
        self.port = free_port()
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server (apt-get install -y redis-server)")
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--dir", self.dir, "--daemonize", "no", "--protected-mode", "yes"]
        if NCPU > 1:
            cmd = ["taskset", "-c", ",".join(map(str, SERVER_CPUS)), *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        self.pids = [self.proc.pid]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------- baselines
def store_baseline(ds: dataset.Dataset, keys: list[bytes], seconds: float) -> dict[str, dict[str, Any]]:
    """rocksdict get and list-get on the node's own database, in this process (pinned)."""
    from registry.rocks import RocksStore
    from registry.store import Table

    if NCPU > 1:
        os.sched_setaffinity(0, SERVER_CPUS)
    store = RocksStore(ds.data_dir / "db", fsync=False)
    cf = store._cf[Table.RECORDS]
    folded = [k.upper() for k in keys]
    out: dict[str, dict[str, Any]] = {}
    try:
        # One untimed pass over every sampled key, as the node gets before it is measured (the
        # hot cache's warm-up, and the runs before a cache-off one): the page cache and the block
        # cache then hold what the node's reads find there. (A pass over 50,000 keys left the
        # 10^7 baseline reading a cold page cache: 24 us a key.)
        for i in range(0, len(folded), 1000):
            cf.get(folded[i : i + 1000])
        for name, fn, per in (
            ("rocksdict get", lambda i: cf.get(folded[i % len(folded)]), 1),
            (
                "rocksdict get_many(1000)",
                lambda i: cf.get(
                    folded[(i * 1000) % (len(folded) - 1000) : (i * 1000) % (len(folded) - 1000) + 1000]
                ),
                1000,
            ),
        ):
            n = 0
            lat = array("q")
            t0 = time.perf_counter()
            c0 = time.process_time()
            while time.perf_counter() - t0 < seconds:
                for _ in range(200 // per + 1):
                    a = time.perf_counter_ns()
                    fn(n)
                    lat.append(time.perf_counter_ns() - a)
                    n += 1
            el = time.perf_counter() - t0
            cpu = time.process_time() - c0
            out[name] = {
                "ids_per_s": n * per / el,
                **percentiles(lat),
                "server_cpu_us_per_id": cpu / (n * per) * 1e6,
            }
        sizes = [len(v) for v in cf.get(folded[:5000]) if v is not None]
        out["_record_bytes"] = {"mean": sum(sizes) / max(1, len(sizes))}
    finally:
        store.close()
        if NCPU > 1:
            os.sched_setaffinity(0, range(NCPU))
    return out


def redis_calls(port: int, keys: list[bytes], seconds: float, mget: int) -> dict[str, Any]:
    import redis

    r = redis.Redis(port=port)
    lat = array("q")
    n = ids = 0
    perf = time.perf_counter_ns
    t_start = time.time()
    c0 = time.process_time()
    end = perf() + int(seconds * 1e9)
    i = 0
    while perf() < end:
        a = perf()
        if mget > 1:
            r.mget(keys[i : i + mget])
            ids += mget
            i = (i + mget) % (len(keys) - mget)
        else:
            r.get(keys[i])
            ids += 1
            i = (i + 1) % len(keys)
        lat.append(perf() - a)
        n += 1
    return {
        "calls": n,
        "ok": n,
        "errors": 0,
        "ids": ids,
        "seconds": seconds,
        "cpu_s": time.process_time() - c0,
        "lat_ns": lat.tobytes(),
        "t0": t_start,
        "t1": time.time(),
    }


# ------------------------------------------------------------------------------- running
class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.seconds = args.seconds
        self.warmup = args.warmup

    def measure(
        self,
        name: str,
        config: str,
        pids: list[int],
        fn: Any,
        kwargs_list: list[dict[str, Any]],
        client_cpus: list[int] | None,
        metrics_ports: list[int] | None = None,
        extra: dict[str, Any] | None = None,
        keep: bool = True,
    ) -> dict[str, Any]:
        """One workload's row; ``keep``: add it to the suite's rows (and log it)."""
        sampler = CpuSampler(pids)
        before = scrape_cache(metrics_ports or [])
        t_wall0 = time.time()
        r = loadgen.run_processes(fn, kwargs_list, client_cpus)
        t_wall1 = time.time()
        after = scrape_cache(metrics_ports or [])
        sampler.stop()
        # the counted window, as the generators report it (wall clock)
        t0 = max(t_wall0, r.get("t0") or t_wall1 - r["seconds"])
        t1 = min(t_wall1, r.get("t1") or t_wall1)
        server_cpu = sampler.between(t0, t1) * (r["seconds"] / max(1e-9, t1 - t0))
        ids = r["ids"]
        row = {
            "name": name,
            "config": config,
            "ids_per_s": ids / r["seconds"],
            "calls_per_s": r["calls"] / r["seconds"],
            **percentiles(r["lat"]),
            "server_cpu_us_per_id": server_cpu / ids * 1e6 if ids else None,
            "server_cpu_cores": server_cpu / r["seconds"],
            "client_cpu_cores": r["cpu_s"] / r["seconds"],
            "client_processes": r["processes"],
            "not_found_fraction": r["errors"] / r["calls"] if r["calls"] else None,
            "cache_hit_rate": hit_rate(before, after),
            "server_rss_mb": proc_rss_mb(pids),
            **(extra or {}),
        }
        if keep:
            self.keep(row)
        return row

    def keep(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        log(
            f"{row['name']:<28} {row['config']:<14} {row['ids_per_s']:>12,.0f} ids/s  "
            f"p50 {row['p50_us']:>9,.0f} us  server {row['server_cpu_cores']:.2f} cores  "
            f"client {row['client_cpu_cores']:.2f} cores"
        )

    def alternating(
        self, first: Callable[..., dict[str, Any]], second: Callable[..., dict[str, Any]], rounds: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Measure ``first`` then ``second`` (each called with ``keep``), ``rounds`` times in turn;
        keep and return each one's median row by ids/s, with every round's ids/s in
        ``rounds_ids_per_s``."""
        if rounds == 1:
            return first(keep=True), second(keep=True)
        runs: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
        for _ in range(rounds):
            runs[0].append(first(keep=False))
            runs[1].append(second(keep=False))
        medians = []
        for rows in runs:
            row = sorted(rows, key=lambda r: r["ids_per_s"])[len(rows) // 2]
            row["rounds_ids_per_s"] = [r["ids_per_s"] for r in rows]
            self.keep(row)
            medians.append(row)
        return medians[0], medians[1]

    # -- workloads against a gRPC server (node or echo) ------------------------------------
    def unary(
        self,
        name: str,
        config: str,
        port: int,
        pids: list[int],
        msgs: list[bytes],
        depth: int,
        procs: int,
        client_cpus: list[int] | None,
        metrics: list[int] | None = None,
        keep: bool = True,
    ) -> dict[str, Any]:
        conns = 1 if depth == 1 else 8
        kw = [
            {
                "port": port,
                "path": UNARY_PATH,
                "messages": msgs,
                "seconds": self.seconds,
                "connections": conns,
                "depth": max(1, depth // procs),
                "start_at": i * 10007,
                "warmup": self.warmup,
            }
            for i in range(procs)
        ]
        return self.measure(name, config, pids, loadgen.h2_unary, kw, client_cpus, metrics, keep=keep)

    def grpc(
        self,
        name: str,
        config: str,
        port: int,
        pids: list[int],
        kind: str,
        msgs: list[bytes],
        ids_per_call: int,
        depth: int,
        procs: int,
        client_cpus: list[int] | None,
        metrics: list[int] | None = None,
        mix: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        kw = [
            {
                "port": port,
                "kind": kind,
                "messages": msgs,
                "seconds": self.seconds,
                "depth": depth,
                "ids_per_call": ids_per_call,
                "start_at": i * 101,
                "warmup": self.warmup,
                "mix": {**mix, "proc": i} if mix else None,
            }
            for i in range(procs)
        ]
        return self.measure(name, config, pids, loadgen.grpc_calls, kw, client_cpus, metrics)


def warm(port: int, batches: list[bytes], channels: int) -> None:
    """One pass over ``batches`` (BatchResolve) on each of ``channels`` connections, so that every
    worker process behind a SO_REUSEPORT port sees every key (with high probability)."""
    import grpc

    def one(_: int) -> None:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        call = ch.unary_unary("/idnode.v1.ResolutionService/BatchResolve")
        for b in batches:
            call(b, timeout=60)
        ch.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(channels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def verify(port: int, keys: list[bytes], missing: set[bytes]) -> None:
    """The node answers hits with their record and misses with NOT_FOUND, one by one and in a batch."""
    import grpc

    from registry.pb import resolution_pb2 as pb

    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = ch.unary_unary(UNARY_PATH)
    try:
        for k in keys:
            try:
                data = call(dataset.resolve_request(k), timeout=10)
            except grpc.RpcError as exc:
                if k not in missing or exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise RuntimeError(f"verify: {k!r} answered {exc.code()}") from exc
                continue
            rec = pb.ResolveResponse.FromString(data).record
            if k in missing or rec.identifier.encode().upper() != k.upper():
                raise RuntimeError(f"verify: {k!r} answered the record of {rec.identifier!r}")
        batch = ch.unary_unary("/idnode.v1.ResolutionService/BatchResolve")
        res = pb.BatchResolveResponse.FromString(batch(b"".join(dataset.resolve_request(k) for k in keys)))
        if [r.identifier.encode() for r in res.results] != keys:
            raise RuntimeError("verify: BatchResolve answered other identifiers or another order")
        if sum(r.HasField("error") for r in res.results) != sum(k in missing for k in keys):
            raise RuntimeError("verify: BatchResolve errors do not match the unregistered identifiers")
    finally:
        ch.close()


def enterprise_credential(ds: dataset.Dataset) -> tuple[Path, str]:
    """A credential of a bench enterprise (created once per data dir) for the register mix."""
    from registry.model import Principal, Role
    from registry.rocks import RocksStore
    from registry.service import Registry
    from resolver import pki
    from resolver.datadir import DataDir

    dd = DataDir(ds.data_dir)
    prefix = f"{dataset.NODE_PREFIX}.900"
    creds = dd.enterprise_credentials(prefix)
    if creds.exists():
        return creds.directory, prefix
    ca = dd.ca()
    pair = pki.issue_client_cert(ca, Role.ENTERPRISE, prefix)
    with RocksStore(dd.db) as store:
        reg = Registry(store)
        if reg.enterprise(prefix) is None:
            reg.create_enterprise(
                Principal.admin(),
                "900",
                "Bench",
                "bench@example.com",
                lambda p: pki.fingerprint(pair.cert_pem),
            )
        else:
            raise RuntimeError(f"enterprise {prefix} exists without a saved credential")
    creds.save(pair, ca.cert_pem)
    return creds.directory, prefix


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    log(
        f"load average before the run: {load0[0]:.2f} (other processes share these CPUs: figures are noisier)"
    )
    suite = Suite(args)
    n = int(float(args.ids))
    root = Path(args.data_root) / f"ids-{n}-seed{args.seed}"
    log(f"dataset {n:,} identifiers in {root}")
    ds = dataset.build(root, n, args.seed, log=log)
    log(f"dataset ready ({'reused; built' if ds.reused else 'built'} in {ds.build_seconds:.0f}s)")
    dists = args.dists.split(",")
    samples: dict[str, tuple[list[bytes], set[bytes]]] = {}
    for d in dists:
        keys, _ = dataset.sample(ds, args.sample, d)
        missing = {k for k in keys if b"/MISS-" in k}
        samples[d] = (keys, missing)
    unary_msgs = {d: [dataset.resolve_request(k) for k in samples[d][0]] for d in dists}
    batch100 = {d: dataset.batches(samples[d][0], 100) for d in dists}
    batch1000 = {d: dataset.batches(samples[d][0], 1000) for d in dists}
    workers_list = [int(w) for w in args.workers.split(",")]
    run_tag = str(int(time.time()))

    # ---- baselines: store
    d0 = dists[0]
    log("baseline: rocksdict in process")
    store = store_baseline(ds, samples[d0][0], min(2.0, args.seconds))
    record_bytes = int(store.pop("_record_bytes")["mean"])
    baselines: dict[str, dict[str, Any]] = {}
    for k, v in store.items():
        baselines[k] = {"name": k, "config": "in process", **v}
        suite.rows.append({"name": f"baseline: {k}", "config": "in process, 1 core", **v})

    # ---- baselines: redis
    if not args.no_redis:
        log("baseline: redis-server + redis-py")
        from registry.rocks import RocksStore
        from registry.store import Table

        redis = Redis()
        try:
            with RocksStore(ds.data_dir / "db", fsync=False) as st:
                keys = sorted({k.upper() for k in samples[d0][0]} - {k.upper() for k in samples[d0][1]})
                pipe = redis.client.pipeline(transaction=False)
                for i in range(0, len(keys), 1000):
                    vals = st.get_many(Table.RECORDS, keys[i : i + 1000])
                    pipe.mset({k: v for k, v in zip(keys[i : i + 1000], vals, strict=True) if v is not None})
                pipe.execute()
            rkeys = [k.upper() for k in samples[d0][0]]
            for label, mget, procs in (
                ("GET c=1", 1, 1),
                ("GET c=8 (8 procs)", 1, 8),
                ("MGET 1000", 1000, 2),
            ):
                kw = [
                    {
                        "port": redis.port,
                        "keys": rkeys[i * 997 :] + rkeys[: i * 997],
                        "seconds": args.seconds,
                        "mget": mget,
                    }
                    for i in range(procs)
                ]
                row = suite.measure(
                    f"baseline: redis {label}",
                    "redis-server, 1 core",
                    redis.pids,
                    redis_calls,
                    kw,
                    CLIENT_CPUS,
                )
                baselines[f"redis {label}"] = row
        finally:
            redis.stop()

    # ---- baselines: echo, per process count. The pools stay up (idle) while the node is measured:
    # each unary node row is paired with an echo row measured just before it (see `paired_echo`).
    echo_pools: dict[int, tuple[EchoPool, int]] = {}
    try:
        for w in workers_list:
            cfg = f"echo x{w}"
            log(f"baseline: bare grpcio echo, {w} process(es)")
            pinned = w == 1 and NCPU > 1
            pool = EchoPool(
                w, record_bytes + 3, 1000 * (record_bytes + 40), cpus=SERVER_CPUS if pinned else None
            )
            port = pool.start()
            echo_pools[w] = (pool, port)
            cc = CLIENT_CPUS if pinned else None
            baselines[f"echo c1 x{w}"] = suite.unary(
                "baseline: echo unary c=1", cfg, port, pool.pids, unary_msgs[d0], 1, 1, cc
            )
            baselines[f"echo c64 x{w}"] = suite.unary(
                "baseline: echo unary c=64", cfg, port, pool.pids, unary_msgs[d0], 64, 1, cc
            )
            if w == workers_list[0]:
                baselines[f"echo batch1000 x{w}"] = suite.grpc(
                    "baseline: echo batch(1000)", cfg, port, pool.pids, "batch", batch1000[d0], 1000, 4, 2, cc
                )
        measure_node(
            suite, args, ds, samples, unary_msgs, batch100, batch1000, baselines, echo_pools, run_tag
        )
    finally:
        for pool, _ in echo_pools.values():
            pool.stop()
    log(f"suite finished in {time.perf_counter() - t_start:.0f}s")
    suite.rows.append(
        {
            "name": "_meta",
            "dataset_build_seconds": ds.build_seconds,
            "dataset_reused": ds.reused,
            "suite_seconds": time.perf_counter() - t_start,
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
        }
    )
    return suite.rows


def measure_node(
    suite: Suite,
    args: argparse.Namespace,
    ds: dataset.Dataset,
    samples: dict[str, tuple[list[bytes], set[bytes]]],
    unary_msgs: dict[str, list[bytes]],
    batch100: dict[str, list[bytes]],
    batch1000: dict[str, list[bytes]],
    baselines: dict[str, dict[str, Any]],
    echo_pools: dict[int, tuple[EchoPool, int]],
    run_tag: str,
) -> None:
    """Every node configuration: cache modes x worker counts x key distributions."""
    dists = args.dists.split(",")
    d0 = dists[0]
    workers_list = [int(w) for w in args.workers.split(",")]
    cred_dir, ent_prefix = enterprise_credential(ds)

    # ---- the node
    for cache in args.cache.split(","):
        cache_bytes = args.cache_bytes if cache == "hot" else 0
        for w in workers_list:
            cfg = f"x{w} cache {cache}"
            log(f"node: {w} worker(s), cache {cache}")
            node = Node(ds.data_dir, w, cache_bytes)
            try:
                pinned = w == 1 and NCPU > 1
                cc = CLIENT_CPUS if pinned else None
                mp = node.metrics_ports
                verify(node.port, samples[d0][0][:300], samples[d0][1])
                if cache == "hot":
                    for d in dists:
                        warm(node.port, batch1000[d], 1 if w == 1 else 8)
                for d in dists:
                    c = f"{cfg} {d}"

                    def rel(row: dict[str, Any], base: str) -> None:
                        b = baselines.get(base)
                        if b:
                            row["baseline"] = {"name": base, "ids_per_s": b["ids_per_s"]}
                            row["ratio"] = row["ids_per_s"] / b["ids_per_s"]

                    pool, echo_port = echo_pools[w]
                    for depth in (1, 64):
                        # The echo of the same process count, measured just before the node (and,
                        # at c=64, alternating with it): the ratio then compares figures taken
                        # seconds apart on this noisy machine.
                        key = f"echo c{depth} x{w} before {c}"
                        baselines[key], r = suite.alternating(
                            functools.partial(
                                suite.unary,
                                f"baseline: echo unary c={depth} (paired)",
                                f"echo x{w}",
                                echo_port,
                                pool.pids,
                                unary_msgs[d],
                                depth,
                                1,
                                cc,
                            ),
                            functools.partial(
                                suite.unary,
                                f"Resolve c={depth}",
                                c,
                                node.port,
                                node.pids,
                                unary_msgs[d],
                                depth,
                                1,
                                cc,
                                mp,
                            ),
                            PAIRED_ROUNDS if depth == 64 else 1,
                        )
                        rel(r, key)
                    if w != workers_list[0] and not args.all_workloads_every_workers:
                        continue
                    r = suite.grpc(
                        "BatchResolve(100)", c, node.port, node.pids, "batch", batch100[d], 100, 8, 2, cc, mp
                    )
                    rel(r, "rocksdict get")
                    r = suite.grpc(
                        "BatchResolve(1000)",
                        c,
                        node.port,
                        node.pids,
                        "batch",
                        batch1000[d],
                        1000,
                        4,
                        2,
                        cc,
                        mp,
                    )
                    rel(r, "rocksdict get_many(1000)")
                    b1000 = r
                    r = suite.grpc(
                        "StreamResolve(1000/msg)",
                        c,
                        node.port,
                        node.pids,
                        "stream",
                        batch1000[d],
                        1000,
                        4,
                        2,
                        cc,
                        mp,
                    )
                    r["baseline"] = {"name": f"BatchResolve(1000) {c}", "ids_per_s": b1000["ids_per_s"]}
                    r["ratio"] = r["ids_per_s"] / b1000["ids_per_s"]
                    if d == d0:
                        mix = {
                            "port": node.management_port,
                            "cred": str(cred_dir),
                            "prefix": ent_prefix,
                            "run": f"{run_tag}-{cache}-{w}",
                        }
                        r = suite.grpc(
                            "mix 95% Resolve/5% Create",
                            c,
                            node.port,
                            node.pids,
                            "mix",
                            unary_msgs[d],
                            1,
                            16,
                            2,
                            cc,
                            mp,
                            mix=mix,
                        )
                        rel(r, f"echo c64 x{w}")
            finally:
                node.stop()


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with the figures it compares."""

    def find(name: str, config_prefix: str) -> dict[str, Any] | None:
        for r in rows:
            if r["name"] == name and r.get("config", "").startswith(config_prefix):
                return r
        return None

    out = []
    for cache in ("hot", "off"):
        r = find("Resolve c=64", f"x1 cache {cache} zipf")
        if r and r.get("ratio") is not None:
            out.append(
                {
                    "target": f"Resolve c=64 >= 0.9 x echo (x1, cache {cache})",
                    "value": r["ratio"],
                    "met": r["ratio"] >= TARGETS["resolve_c64_vs_echo"],
                }
            )
        r2 = find("Resolve c=64", f"x2 cache {cache} zipf")
        if r and r2:
            v = r2["ids_per_s"] / r["ids_per_s"]
            out.append(
                {
                    "target": f"2 workers >= 1.6 x 1 worker, Resolve c=64 (cache {cache})",
                    "value": v,
                    "met": v >= TARGETS["multiprocess_scaling"],
                }
            )
        batch = [
            r
            for r in rows
            if r["name"] == "BatchResolve(1000)" and f"cache {cache} zipf" in r.get("config", "")
        ]
        if batch:
            r = max(batch, key=lambda r: r["ids_per_s"])  # the node's best worker count
            goal = TARGETS[f"batch1000_{cache}_ids_per_s"]
            out.append(
                {
                    "target": f"BatchResolve(1000) >= {goal:,} ids/s (cache {cache}; best: {r['config']})",
                    "value": r["ids_per_s"],
                    "met": r["ids_per_s"] >= goal,
                }
            )
        r = find("StreamResolve(1000/msg)", f"x1 cache {cache} zipf")
        if r and r.get("ratio") is not None:
            out.append(
                {
                    "target": f"StreamResolve >= 0.5 x BatchResolve per id (cache {cache})",
                    "value": r["ratio"],
                    "met": r["ratio"] >= TARGETS["stream_vs_batch"],
                }
            )
    rest = next((r for r in rows if r["name"] == "Handle REST GET (per core)"), None)
    if rest:
        out.append(
            {
                "target": "Handle REST >= 40,000 cached GETs/s per core",
                "value": rest["ids_per_s"],
                "met": rest["ids_per_s"] >= 40_000,
            }
        )
    return out


def fmt(v: Any, spec: str = ",.0f") -> str:
    if v is None:
        return "-"
    return format(v, spec)


REST_LINE = re.compile(r"^(?P<name>.+?)\s+(?P<rate>[\d,]+) req/s\s+(?P<per_core>[\d,]+) req/CPU-s")


def rest_rows(seconds: float) -> list[dict[str, Any]]:
    """Handle REST cached GETs per server CPU-second (``bench/bench_rest.py``: node and a constant
    HTTP responder on the same stack, driven by wrk), as rows beside the gRPC figures."""
    if shutil.which("wrk") is None:
        log("Handle REST: skipped, wrk is not installed (apt-get install -y wrk)")
        return []
    log("Handle REST: bench/bench_rest.py")
    script = Path(__file__).resolve().parent / "bench_rest.py"
    done = subprocess.run(
        [sys.executable, str(script), "--seconds", str(max(2, round(seconds)))],
        capture_output=True,
        text=True,
        check=True,
    )
    found = {}
    for line in done.stdout.splitlines():
        m = REST_LINE.match(line)
        if m:
            found[m["name"].strip()] = (
                float(m["rate"].replace(",", "")),
                float(m["per_core"].replace(",", "")),
            )
    base = next((v for k, v in found.items() if k.startswith("baseline")), None)
    node = next((v for k, v in found.items() if k.startswith("idnode REST")), None)
    if base is None or node is None:
        raise RuntimeError(f"unexpected bench_rest output:\n{done.stdout}")
    return [
        {"name": "Handle REST GET (per core)", "config": "x1 cache hot, wrk", "ids_per_s": node[1],
         "req_per_s_at_saturation": node[0], "ratio": node[1] / base[1],
         "baseline": {"name": "uvloop+httptools constant", "ids_per_s": base[1]}},
    ]  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "workload",
        "config",
        "ids/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "srv us/id",
        "srv cores",
        "cli cores",
        "hit %",
        "RSS MB",
        "baseline",
        "base ids/s",
        "ratio",
    )
    lines = []
    for r in rows:
        if r["name"] == "_meta":
            continue
        b = r.get("baseline") or {}
        lines.append(
            (
                r["name"],
                r.get("config", ""),
                fmt(r["ids_per_s"]),
                fmt(r.get("p50_us")),
                fmt(r.get("p99_us")),
                fmt(r.get("p999_us")),
                fmt(r.get("server_cpu_us_per_id"), ".2f"),
                fmt(r.get("server_cpu_cores"), ".2f"),
                fmt(r.get("client_cpu_cores"), ".2f"),
                fmt(r.get("cache_hit_rate") * 100 if r.get("cache_hit_rate") is not None else None, ".1f"),
                fmt(r.get("server_rss_mb"), ".0f"),
                b.get("name", ""),
                fmt(b.get("ids_per_s")),
                fmt(r.get("ratio"), ".2f"),
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        out.append("| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", default="1e6", help="identifiers in the dataset: 1e6 (default), 1e7, 1e8")
    p.add_argument("--quick", action="store_true", help="smoke test: 1e5 ids, 1 s runs")
    p.add_argument("--workers", default="1,2", help="server process counts to measure (default 1,2)")
    p.add_argument("--cache", default="hot,off", help="cache modes: hot (warmed), off (cache_bytes=0)")
    p.add_argument("--dists", default="zipf,uniform", help="key popularity: zipf (s=1.0), uniform")
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per workload")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each workload")
    p.add_argument("--sample", type=int, default=200_000, help="keys drawn per distribution")
    p.add_argument("--cache-bytes", type=int, default=256 << 20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-root", default=os.environ.get("IDNODE_BENCH_DATA", "/tmp/idnode-bench"))
    p.add_argument(
        "--out",
        default=None,
        help="JSON path (default bench/results/resolution.json; resolution-quick.json with --quick)",
    )
    p.add_argument("--no-redis", action="store_true")
    p.add_argument("--no-rest", action="store_true", help="skip the Handle REST measurement")
    p.add_argument(
        "--all-workloads-every-workers",
        action="store_true",
        help="run batch/stream/mix for every worker count (default: the first only)",
    )
    args = p.parse_args(argv)
    if args.out is None:
        args.out = f"bench/results/resolution{'-quick' if args.quick else ''}.json"
    if args.quick:
        args.ids = "1e5" if args.ids == "1e6" else args.ids
        args.seconds = min(args.seconds, 1.0)
        args.warmup = min(args.warmup, 0.3)
        args.sample = min(args.sample, 30_000)
    rows = run(args)
    if not args.no_rest:
        rows.extend(rest_rows(args.seconds))
    for r in rows:
        r.setdefault("baseline", None)
        r.setdefault("ratio", None)
    checks = targets(rows)
    print()
    print(
        f"# idnode resolution benchmark: {int(float(args.ids)):,} ids, {NCPU} CPUs "
        f"({_cpu_model()}), python {platform.python_version()}"
    )
    print(table(rows))
    print()
    for c in checks:
        v = c["value"]
        shown = f"{v:,.0f}" if v > 100 else f"{v:.2f}"
        print(f"  [{'met' if c['met'] else 'NOT met'}] {c['target']}: {shown}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "ids": int(float(args.ids)),
        "machine": {"nproc": NCPU, "cpu": _cpu_model(), "python": platform.python_version()},
        "command": " ".join(sys.argv),
        "workloads": [{k: v for k, v in r.items()} for r in rows if r["name"] != "_meta"],
        "meta": next((r for r in rows if r["name"] == "_meta"), {}),
        "targets": checks,
    }
    out.write_text(json.dumps(doc, indent=1))
    print(f"\nJSON: {out}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
