"""What keeping each file's index and filter in memory buys a point read, against partitioning
them into the block cache (:data:`registry.rocks.PARTITIONED_INDEX`).

    .venv/bin/python -m bench.bench_index_layout                 # the 10^6 dataset, 5 rounds
    .venv/bin/python -m bench.bench_index_layout --ids 1e7 --rounds 3

The benchmark dataset's store (``bench/dataset.py``) is copied once per layout and every file of
its records is rewritten in that layout (a forced compaction through a :class:`RocksStore` opened
with it). Then, alternating the layouts every round, a fresh process opens the copy as a node does
(256 MiB block cache), reads each sampled key once unmeasured (as the node's runs before a
cache-off one do), and times point reads of the suite's key samples (Zipf(1.0) and uniform, 5%
misses): ``get`` one key at a time and the list ``get`` of 1,000 the node's BatchResolve uses, as
CPU microseconds per key (the process is pinned to one CPU). It also prints the time to open the
store, the memory RocksDB's table readers hold outside the block cache
(``rocksdb.estimate-table-readers-mem``) and the process's RSS after the reads. Medians of the
rounds, and each in-memory figure as a ratio to the partitioned one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rocksdict import BottommostLevelCompaction, CompactOptions

from bench import dataset
from bench._proc import log, rss_mb
from registry.rocks import RocksStore
from registry.store import Table

LAYOUTS = {"in-memory": False, "partitioned": True}
"""Layout name (also its copy's directory) -> ``partitioned_index``."""
SAMPLE = 200_000
SECONDS = 2.0


def rewrite(source: Path, dest: Path, partitioned: bool) -> int:
    """Copy the store at ``source`` to ``dest`` with every records file rewritten in the layout;
    its bytes on disk."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest)
    with RocksStore(dest, fsync=False, partitioned_index=partitioned) as store:
        force = CompactOptions()
        force.set_bottommost_level_compaction(BottommostLevelCompaction.force())
        store._cf[Table.RECORDS].compact_range(None, None, force)
        return store.disk_bytes()


def cpu_us_per_key(read, keys: list[bytes], per_call: int) -> float:
    """CPU microseconds per key of ``read`` over ``keys`` for :data:`SECONDS` (wall clock)."""
    whole = range(0, len(keys) - per_call + 1, per_call)  # whole calls only: each counts per_call keys
    calls = keys if per_call == 1 else [keys[i : i + per_call] for i in whole]
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < SECONDS:
        for call in calls[done % len(calls) : done % len(calls) + 200]:
            read(call)
        done += min(200, len(calls) - done % len(calls))
    return (time.process_time() - cpu) / (done * per_call) * 1e6


def measure(db: Path, partitioned: bool, samples: dict[str, list[bytes]]) -> dict[str, float]:
    """One round for one layout, in this (fresh) process."""
    os.sched_setaffinity(0, {0})
    started = time.perf_counter()
    store = RocksStore(db, fsync=False, partitioned_index=partitioned)
    out = {"open_ms": (time.perf_counter() - started) * 1e3}
    records = store._cf[Table.RECORDS]
    try:
        for dist, keys in samples.items():
            for i in range(0, len(keys), 1000):
                records.get(keys[i : i + 1000])
            out[f"{dist} get"] = cpu_us_per_key(records.get, keys, 1)
            out[f"{dist} get(1000)"] = cpu_us_per_key(records.get, keys, 1000)
        out["readers_mb"] = records.property_int_value("rocksdb.estimate-table-readers-mem") / 2**20
        out["rss_mb"] = rss_mb([os.getpid()])
    finally:
        del records
        store.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", default="1e6")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--data-root", default="/tmp/idnode-bench")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one layout, print JSON
    args = p.parse_args()
    n = int(float(args.ids))
    ds = dataset.build(Path(args.data_root) / f"ids-{n}-seed1", n, 1, log=log)
    samples = {d: [k.upper() for k in dataset.sample(ds, SAMPLE, d)[0]] for d in ("zipf", "uniform")}
    scratch = Path(args.data_root) / f"index-layout-{n}"
    if args.one:
        print(json.dumps(measure(scratch / args.one, LAYOUTS[args.one], samples)))
        return
    disk = {}
    for name, partitioned in LAYOUTS.items():
        log(f"rewriting the store's records files: {name}")
        disk[name] = rewrite(ds.data_dir / "db", scratch / name, partitioned) / n
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in LAYOUTS}
    for r in range(args.rounds):
        for name in LAYOUTS:
            cmd = [sys.executable, "-m", "bench.bench_index_layout", "--ids", args.ids]
            cmd += ["--data-root", args.data_root, "--one", name]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            runs[name].append(json.loads(done.stdout))
            log(f"round {r + 1}/{args.rounds} {name}: {runs[name][-1]}")
    shutil.rmtree(scratch)
    figures = list(runs["in-memory"][0])
    print(f"{n:,} identifiers, {args.rounds} rounds alternating; medians (CPU us per key unless named)")
    print("{:<22} {:>12} {:>12} {:>10}".format("", *LAYOUTS, "ratio"))
    print(f"{'disk bytes/id':<22} {disk['in-memory']:>12.1f} {disk['partitioned']:>12.1f}")
    for fig in figures:
        mem, part = (statistics.median(run[fig] for run in runs[name]) for name in LAYOUTS)
        ratio = f"{mem / part:.2f}" if fig != "readers_mb" else "-"
        print(f"{fig:<22} {mem:>12.2f} {part:>12.2f} {ratio:>10}")


if __name__ == "__main__":
    main()
