"""What the bottom level's compression and the data block size cost: SST write rate (a bulk
import's merge) against bytes on disk and point-read cost (resolution with the node's cache off).

    .venv/bin/python -m bench.bench_sst_compression                  # the 1e6 dataset's records
    .venv/bin/python -m bench.bench_sst_compression --rows 200000 --rounds 5 --reads 0

A merged import partition is written by one rocksdict ``SstFileWriter`` with the store's options
(:func:`registry.rocks.sst_options`: ZSTD level 1, :data:`registry.rocks.BOTTOMMOST_ZSTD_LEVEL`,
for the bottom level that ingested files go to). This writes the first ``--rows`` records of the
dataset's node, pre-encoded, sorted and in memory, into one SST file per setting, in one process,
alternating the settings every round; it prints the best rows/s of the rounds and the file's bytes
per record. The store's own setting is measured twice (first and last in each round) to show the
drift of the machine within a round.

Reads (``--reads N``, default 200,000; 0 skips them): the file is ingested into an empty store
(:class:`registry.rocks.RocksStore`, its 256 MiB block cache, as a node opens it) and ``N`` point
reads are timed, keys drawn uniformly and by Zipf(1.0) from the file's records, after ``N / 4``
unmeasured reads of each; it prints the best microseconds per read of the rounds.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rocksdict import DBCompressionType, Options, SstFileWriter

from bench import dataset
from bench._proc import log
from bench.bench_cache import zipf_ranks
from registry.rocks import BOTTOMMOST_ZSTD_LEVEL, DATA_BLOCK_BYTES, RocksStore, sst_options
from registry.store import Table


def _with(kind: str, level: int | None, dictionary: int = 0) -> Callable[[], Options]:
    """The store's SST options with the bottom level's compression replaced; ``dictionary``: the
    bytes of a ZSTD dictionary trained per file on up to 100 times as many bytes of its data."""

    def make() -> Options:
        opts = sst_options()
        if kind == "none":
            opts.set_compression_type(DBCompressionType.none())
            opts.set_bottommost_compression_type(DBCompressionType.none())
        elif kind == "lz4":
            opts.set_bottommost_compression_type(DBCompressionType.lz4())
        else:
            opts.set_bottommost_compression_type(DBCompressionType.zstd())
            # (window bits, level, strategy, max dictionary bytes, enabled): RocksDB's defaults but the level
            opts.set_bottommost_compression_options(-14, level, 0, dictionary, True)
            if dictionary:
                opts.set_bottommost_zstd_max_train_bytes(100 * dictionary, True)
        return opts

    return make


ZSTD_DEFAULT_LEVEL = 32767  # RocksDB's CompressionOptions::kDefaultCompressionLevel

SETTINGS: dict[str, Callable[[], Options]] = {
    "store (zstd level 1)": sst_options,
    "zstd + 16 KiB dictionary": _with("zstd", BOTTOMMOST_ZSTD_LEVEL, 16 << 10),
    "zstd, default level (3)": _with("zstd", ZSTD_DEFAULT_LEVEL),
    "zstd level -1": _with("zstd", -1),
    "zstd level -3": _with("zstd", -3),
    "lz4": _with("lz4", None),
    "none": _with("none", None),
    "store, 8 KiB blocks": lambda: sst_options(8 << 10),
    "store, 16 KiB blocks": lambda: sst_options(16 << 10),
    "store again": sst_options,
}
assert DATA_BLOCK_BYTES == 4 << 10, "the block-size rows above name the store's size as 4 KiB"


def read_us(sst: str, scratch: str, probes: dict[str, list[bytes]]) -> dict[str, float]:
    """Microseconds per point read of each key list in ``probes`` from a store holding only the
    SST file ``sst`` (which the ingestion moves away)."""
    shutil.rmtree(scratch, ignore_errors=True)
    out = {}
    with RocksStore(scratch, fsync=False) as store:
        store.ingest(Table.RECORDS, [sst])
        get = store.get
        for name, keys in probes.items():
            for key in keys[: len(keys) // 4]:
                get(Table.RECORDS, key)
            started = time.perf_counter()
            for key in keys:
                get(Table.RECORDS, key)
            out[name] = (time.perf_counter() - started) / len(keys) * 1e6
    shutil.rmtree(scratch)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reads", type=int, default=200_000, help="point reads per distribution; 0: none")
    p.add_argument("--data-root", default="/tmp/idnode-bench")
    args = p.parse_args()
    ds = dataset.build(Path(args.data_root) / "ids-1000000-seed1", 1_000_000, 1, log=log)
    with RocksStore(ds.data_dir / "db", fsync=False) as store:
        pairs = store.scan(Table.RECORDS, b"", b"\xff" * 8, args.rows)
    raw = sum(len(k) + len(v) for k, v in pairs) / len(pairs)
    print(f"{len(pairs):,} records, {raw:.0f} bytes each (key + value) before compression")
    keys = [key for key, _ in pairs]
    rng = random.Random(1)
    order = rng.sample(keys, len(keys))  # popularity rank -> key
    probes = {
        "uniform": [rng.choice(keys) for _ in range(args.reads)],
        "zipf": [order[r] for r in zipf_ranks(len(keys), 1.0, args.reads, rng)] if args.reads else [],
    }
    best = dict.fromkeys(SETTINGS, 0.0)
    size: dict[str, float] = {}
    reads: dict[str, dict[str, float]] = {name: {} for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "part.sst")
        for _ in range(args.rounds):
            for name, make in SETTINGS.items():
                started = time.perf_counter()
                writer = SstFileWriter(make())
                writer.open(path)
                for key, value in pairs:
                    writer[key] = value
                writer.finish()
                best[name] = max(best[name], len(pairs) / (time.perf_counter() - started))
                size[name] = os.path.getsize(path) / len(pairs)
                if args.reads:
                    for dist, us in read_us(path, os.path.join(tmp, "store"), probes).items():
                        reads[name][dist] = min(reads[name].get(dist, us), us)
    base = best["store (zstd level 1)"]
    head = ("setting", "rows/s", "x store", "bytes/record", "us/read uniform", "us/read zipf")
    print("{:<28} {:>10} {:>8} {:>13} {:>16} {:>13}".format(*head))
    for name in SETTINGS:
        uniform, zipf = (f"{reads[name][d]:.2f}" if d in reads[name] else "-" for d in ("uniform", "zipf"))
        rate = f"{best[name]:,.0f}"
        print(f"{name:<28} {rate:>10} {best[name] / base:>8.2f} {size[name]:>13.1f} {uniform:>16} {zipf:>13}")


if __name__ == "__main__":
    main()
