"""Bulk import benchmark: end-to-end rows/s, peak RSS, disk bytes per identifier after compaction,
the import's peak use of disk (node and scratch files, sampled every 0.25 s), and the raw rate of
rocksdict's SstFileWriter on the same pre-encoded records, in the same run. Then ``idnode export``
of the node in the input's format, next to a bare read of every record (the export's ceiling).

    .venv/bin/python bench/bench_import.py 1000000            # CSV, one worker per core
    .venv/bin/python bench/bench_import.py 10000000 --format jsonl --enterprises 50
    .venv/bin/python bench/bench_import.py 1000000 --via-node-rows 0   # offline import only

Generated input is cached in bench/results/ (git-ignored). The import runs in a child process so
its peak RSS (and its workers') is measured alone. The raw SST figure writes the first
min(N, 1,000,000) records exactly as the import stored them, already sorted and in memory, with one
SstFileWriter in one process: the ceiling for a single writer with no parsing, checking or encoding.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gen_data  # noqa: E402
from rocksdict import SstFileWriter  # noqa: E402

from registry.bulk import TextProgress, run_export, run_import  # noqa: E402
from registry.bulk.export import iter_pages  # noqa: E402
from registry.bulk.session import stopped_node_store  # noqa: E402
from registry.bulk.space import tree_bytes  # noqa: E402
from registry.model import Principal  # noqa: E402
from registry.rocks import RocksStore, sst_options  # noqa: E402
from registry.service import Registry, init_node  # noqa: E402
from registry.store import Table  # noqa: E402

RAW_SAMPLE = 1_000_000


def _import_child(db: str, source: str, workers: int | None, out: multiprocessing.Queue) -> None:
    summary = run_import(
        db,
        source,
        workers=workers,
        reject_path=db + ".rejects.csv",
        progress=TextProgress(sys.stderr, interval=10),
    )
    out.put(
        {
            "summary": summary.to_dict(),
            "main_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        }
    )


class _DiskPeak:
    """The most bytes the files under ``path`` took, sampled every ``interval`` s in a thread."""

    def __init__(self, path: Path, interval: float = 0.25) -> None:
        self.peak = 0
        self._path = path
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(self._interval):
            self.peak = max(self.peak, tree_bytes(self._path))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, tree_bytes(self._path))


def export_rates(db: Path, dest: Path) -> tuple[float, float]:
    """rows/s of ``run_export`` of the node at ``db`` to ``dest`` (its defaults), and of reading
    every record as the export does (its pages, nothing formatted or written): the export's
    ceiling."""
    store = stopped_node_store(db, block_cache_bytes=8 << 20)
    try:
        started = time.perf_counter()
        records = sum(len(page) for page in iter_pages(store))
        read_rate = records / (time.perf_counter() - started)
    finally:
        store.close()
    return run_export(db, dest).records_per_second, read_rate


def raw_sst_rate(db: Path, scratch: Path) -> tuple[float, int]:
    """rows/s of one SstFileWriter writing the first RAW_SAMPLE stored records from memory."""
    with RocksStore(db) as store:
        pairs = store.scan(Table.RECORDS, b"", b"\xff" * 8, RAW_SAMPLE)
    path = scratch / "raw.sst"
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        writer = SstFileWriter(sst_options())
        writer.open(str(path))
        for key, value in pairs:
            writer[key] = value
        writer.finish()
        best = max(best, len(pairs) / (time.perf_counter() - started))
        path.unlink()
    return best, len(pairs)


def via_node_rate(rows: int, enterprises: int, scratch: Path) -> float:
    """rows/s of ``run_remote_import`` (``idnode import --via``) of the first ``rows`` generated CSV
    rows into a fresh node serving in a process of its own (bench/node_proc.py, one worker)."""
    import subprocess

    from resolver.bulk_remote import run_remote_import
    from resolver.client import IdnodeClient
    from resolver.datadir import DataDir

    source = ROOT / "bench" / "results" / f"gen-{rows}-{enterprises}-1.csv"
    if not source.exists():
        gen_data.write(str(source) + ".tmp", rows, enterprises, 1, "csv")
        os.replace(str(source) + ".tmp", source)
    layout = DataDir(scratch / "via-node")
    layout.init("88.118")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.node_proc", str(layout.root), "1", str(64 << 20), "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        with IdnodeClient(f"localhost:{info['management_port']}", credentials=layout.admin.directory) as c:
            for code in range(1, enterprises + 1):
                c.create_enterprise(str(code))
            summary = run_remote_import(c, source, reject_path=scratch / "via-node.rejects.csv")
        assert summary.imported == rows, summary
        return summary.rows_per_second
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", type=int)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--enterprises", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, help="default: one per core")
    parser.add_argument("--scratch", type=Path, help="where the node is built [a temporary directory]")
    parser.add_argument("--no-export", action="store_true", help="skip the export of the imported node")
    parser.add_argument(
        "--via-node-rows",
        type=int,
        default=50_000,
        help="also import this many rows through a running node (idnode import --via); 0: skip",
    )
    args = parser.parse_args()

    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    source = results / f"gen-{args.rows}-{args.enterprises}-{args.seed}.{args.format}"
    if not source.exists():
        started = time.perf_counter()
        gen_data.write(str(source) + ".tmp", args.rows, args.enterprises, args.seed, args.format)
        os.replace(str(source) + ".tmp", source)
        print(f"generated {source.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    scratch = Path(tempfile.mkdtemp(prefix="idnode-bench-", dir=args.scratch))
    try:
        db = scratch / "db"
        with RocksStore(db) as store:
            init_node(store, "88.118")
            registry = Registry(store)
            for code in range(1, args.enterprises + 1):
                registry.create_enterprise(Principal.admin(), str(code), "bench", "", lambda p: "fp")

        queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=_import_child, args=(str(db), str(source), args.workers, queue)
        )
        disk_at_start = tree_bytes(scratch)
        peak_disk = _DiskPeak(scratch)
        started = time.perf_counter()
        child.start()
        measured = queue.get()
        child.join()
        wall = time.perf_counter() - started
        peak_disk.stop()
        import_disk_peak = peak_disk.peak - disk_at_start
        summary = measured["summary"]

        # The compaction `idnode import --compact` runs: with the import's bulk-load settings (one
        # subcompaction per core).
        with RocksStore(db, bulk_load=True) as store:
            started = time.perf_counter()
            store.compact(Table.RECORDS)
            compact_s = time.perf_counter() - started
            disk = store.disk_bytes()
        raw_rate, raw_rows = raw_sst_rate(db, scratch)
        exported = scratch / f"export.{args.format}"
        export_rate, read_rate = (0.0, 0.0) if args.no_export else export_rates(db, exported)
        via_rate = via_node_rate(args.via_node_rows, args.enterprises, scratch) if args.via_node_rows else 0.0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rate = summary["rows_per_second"]
    report = {
        "rows": args.rows,
        "format": args.format,
        "input_bytes": source.stat().st_size,
        "cores": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "workers": args.workers if args.workers is not None else os.cpu_count(),
        "imported": summary["imported"],
        "rejected": summary["rejected"],
        "import_seconds": summary["seconds"],
        "merge_seconds": summary["merge_seconds"],
        "import_rows_per_second": rate,
        "wall_seconds_incl_spawn": round(wall, 2),
        "peak_rss_main_mib": round(measured["main_rss_mib"], 1),
        "peak_rss_worker_mib": round(measured["worker_rss_mib"], 1),
        "compaction_seconds": round(compact_s, 2),
        "disk_bytes_per_identifier": round(disk / max(summary["imported"], 1), 1),
        "import_peak_disk_bytes": import_disk_peak,
        "import_peak_disk_per_input_byte": round(import_disk_peak / source.stat().st_size, 3),
        "raw_sst_rows_per_second": round(raw_rate, 1),
        "raw_sst_sample_rows": raw_rows,
        "ratio_to_raw_sst": round(rate / raw_rate, 3),
        "export_rows_per_second": export_rate,
        "read_all_rows_per_second": round(read_rate, 1),
        "export_ratio_to_read_all": round(export_rate / read_rate, 3) if read_rate else 0.0,
        "via_node_rows": args.via_node_rows,
        "via_node_rows_per_second": via_rate,
    }
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value:,}" if isinstance(value, int | float) else f"{key:<{width}}  {value}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
