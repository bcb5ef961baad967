"""What the bottom level's compression costs a bulk import: SST write rate against bytes on disk.

    .venv/bin/python -m bench.bench_sst_compression                  # the 1e6 dataset's records
    .venv/bin/python -m bench.bench_sst_compression --rows 200000 --rounds 5

A merged import partition is written by one rocksdict ``SstFileWriter`` with the store's options
(:func:`registry.rocks.sst_options`: ZSTD level 1, :data:`registry.rocks.BOTTOMMOST_ZSTD_LEVEL`,
for the bottom level that ingested files go to). This writes the first ``--rows`` records of the
dataset's node, pre-encoded, sorted and in memory, into one SST file per setting, in one process,
alternating the settings every round; it prints the best rows/s of the rounds and the file's bytes
per record. The store's own setting is measured twice (first and last in each round) to show the
drift of the machine within a round.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rocksdict import DBCompressionType, Options, SstFileWriter

from bench import dataset
from bench._proc import log
from registry.rocks import BOTTOMMOST_ZSTD_LEVEL, RocksStore, sst_options
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
    "store again": sst_options,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-root", default="/tmp/idnode-bench")
    args = p.parse_args()
    ds = dataset.build(Path(args.data_root) / "ids-1000000-seed1", 1_000_000, 1, log=log)
    with RocksStore(ds.data_dir / "db", fsync=False) as store:
        pairs = store.scan(Table.RECORDS, b"", b"\xff" * 8, args.rows)
    raw = sum(len(k) + len(v) for k, v in pairs) / len(pairs)
    print(f"{len(pairs):,} records, {raw:.0f} bytes each (key + value) before compression")
    best = dict.fromkeys(SETTINGS, 0.0)
    size: dict[str, float] = {}
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
    base = best["store (zstd level 1)"]
    print(f"{'setting':<28} {'rows/s':>10} {'x store':>8} {'bytes/record':>13}")
    for name in SETTINGS:
        print(f"{name:<28} {best[name]:>10,.0f} {best[name] / base:>8.2f} {size[name]:>13.1f}")


if __name__ == "__main__":
    main()
