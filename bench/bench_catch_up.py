"""What a RocksDB secondary's catch-up costs (the reason reader workers get pushed changes and
catch up on a timer instead of once per write; see registry/replica.py).

A primary with 200,000 records and a secondary following it; after N writes on the primary the
secondary catches up, for several N, beside a catch-up with nothing new. Prints microseconds per
catch-up (median of repeats). Run:

    .venv/bin/python -m bench.bench_catch_up
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from registry.rocks import RocksStore
from registry.store import Put, Table, Txn

RECORD = b"v" * 250


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="idnode-catch-up-") as tmp:
        run(Path(tmp))


def run(root: Path) -> None:
    primary = RocksStore(root / "db", fsync=False)
    for start in range(0, 200_000, 10_000):
        primary.commit(
            Txn(writes=tuple(Put(Table.RECORDS, b"K%08d" % i, RECORD) for i in range(start, start + 10_000)))
        )
    secondary = RocksStore(root / "db", secondary_dir=root / "secondary")
    print(f"{'writes since the last catch-up':>32}{'catch-up us (median)':>24}")
    n = 0
    for writes in (0, 1, 10, 100, 1000):
        samples = []
        for _ in range(7):
            for _ in range(writes):
                primary.commit(Txn(writes=(Put(Table.RECORDS, b"N%08d" % n, RECORD),)))
                n += 1
            start = time.perf_counter()
            secondary.catch_up()
            samples.append((time.perf_counter() - start) * 1e6)
        print(f"{writes:>32}{statistics.median(samples):>24.0f}")
    secondary.close()
    primary.close()


if __name__ == "__main__":
    main()
