"""The Store conformance suite on RocksStore, plus RocksDB-specific behaviour."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.rocks import BOTTOMMOST_ZSTD_LEVEL, RocksStore
from registry.store import Add, Put, StoreUnavailable, Table, Txn
from tests.conformance.suite import StoreConformance


class TestRocksStoreConformance(StoreConformance):
    """The ``store`` fixture comes from tests/conftest.py."""

    @pytest.fixture
    def reopen(self) -> Iterator[Callable[[RocksStore], RocksStore]]:
        """Close a RocksStore and open a new handle on its directory; closes the new handles at teardown."""
        opened: list[RocksStore] = []

        def _reopen(old: RocksStore) -> RocksStore:
            old.close()
            new = RocksStore(old.path, block_cache_bytes=8 << 20)
            opened.append(new)
            return new

        yield _reopen
        for s in opened:
            s.close()


def test_second_handle_on_same_directory_is_unavailable(store: RocksStore) -> None:
    store.commit(Txn(writes=(Put(Table.RECORDS, b"k", b"v"),)))
    with pytest.raises(StoreUnavailable) as info:
        RocksStore(store.path, block_cache_bytes=1 << 20)
    assert str(store.path) in str(info.value)
    # The first handle is unaffected by the failed open.
    assert store.get(Table.RECORDS, b"k") == b"v"
    store.commit(Txn(writes=(Put(Table.RECORDS, b"k2", b"v2"),)))
    assert store.get(Table.RECORDS, b"k2") == b"v2"


def test_directory_is_free_again_after_close(tmp_path: Path) -> None:
    first = RocksStore(tmp_path / "db", block_cache_bytes=1 << 20)
    first.commit(Txn(writes=(Put(Table.META, b"k", b"v"),)))
    first.close()
    second = RocksStore(tmp_path / "db", block_cache_bytes=1 << 20)
    try:
        assert second.get(Table.META, b"k") == b"v"
    finally:
        second.close()


def test_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "db"
    with RocksStore(path, block_cache_bytes=1 << 20) as s:
        s.commit(Txn(adds=(Add(b"n", 1),)))
        assert s.counter(b"n") == 1
    assert path.is_dir()


def _block_cache_capacity(store: RocksStore) -> int:
    return store._cf[Table.RECORDS].property_int_value("rocksdb.block-cache-capacity")


@pytest.mark.parametrize("fsync", [True, False])
def test_block_cache_capacity_on_new_and_existing_db(tmp_path: Path, fsync: bool) -> None:
    """rocksdict drops database-level block-cache options when it reopens an existing database;
    the capacity passed must be the one in effect, on first open and on every reopen."""
    path = tmp_path / "db"
    first = RocksStore(path, block_cache_bytes=8 << 20, fsync=fsync)
    try:
        assert _block_cache_capacity(first) == 8 << 20
        first.commit(Txn(writes=(Put(Table.RECORDS, b"k", b"v"),)))
    finally:
        first.close()
    for capacity in (16 << 20, 3 << 20):
        again = RocksStore(path, block_cache_bytes=capacity, fsync=fsync)
        try:
            assert _block_cache_capacity(again) == capacity
            # (No local reference to a column family: it would keep the database open past close.)
            for table in Table:
                assert again._cf[table].property_int_value("rocksdb.block-cache-capacity") == capacity
            assert again.get(Table.RECORDS, b"k") == b"v"
        finally:
            again.close()


def test_context_manager_closes(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "db", block_cache_bytes=1 << 20) as s:
        s.commit(Txn(writes=(Put(Table.RECORDS, b"k", b"v"),)))
    with pytest.raises(StoreUnavailable):
        s.commit(Txn(writes=(Put(Table.RECORDS, b"k", b"w"),)))
    with RocksStore(tmp_path / "db", block_cache_bytes=1 << 20) as s2:
        assert s2.get(Table.RECORDS, b"k") == b"v"


def test_bottom_level_compression_holds_on_new_and_existing_db(tmp_path: Path) -> None:
    """Every column family's bottom level is ZSTD at :data:`BOTTOMMOST_ZSTD_LEVEL`, as RocksDB
    records the options in effect (its OPTIONS file), on creation and again on reopening (some
    rocksdict options are silently dropped on reopen)."""
    for _ in range(2):
        RocksStore(tmp_path / "db").close()
        latest = max((tmp_path / "db").glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
        sections = latest.read_text().split("[CFOptions ")[1:]
        assert len(sections) == len(Table) + 2  # the tables, "default" and the counters
        for section in sections:
            assert "bottommost_compression=kZSTD" in section
            assert f";level={BOTTOMMOST_ZSTD_LEVEL};" in section


@pytest.mark.parametrize("partitioned", [False, True])
def test_index_layout_holds_on_new_and_existing_db(tmp_path: Path, partitioned: bool) -> None:
    """Every column family's files are written with the index layout the store is opened with
    (:data:`registry.rocks.PARTITIONED_INDEX`), as RocksDB records it in its OPTIONS file, on
    creation and again on reopening."""
    expected = {
        "index_type": "kTwoLevelIndexSearch" if partitioned else "kBinarySearch",
        "partition_filters": str(partitioned).lower(),
        "cache_index_and_filter_blocks": str(partitioned).lower(),
    }
    for _ in range(2):
        RocksStore(tmp_path / "db", partitioned_index=partitioned).close()
        latest = max((tmp_path / "db").glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
        sections = latest.read_text().split("[TableOptions/BlockBasedTable ")[1:]
        assert len(sections) == len(Table) + 2  # the tables, "default" and the counters
        for section in sections:
            for name, value in expected.items():
                assert f"\n  {name}={value}\n" in section


def test_files_of_either_index_layout_are_read(tmp_path: Path) -> None:
    """A store reads files written in the other layout (a node upgraded from one to the other
    rewrites its files only as compactions reach them), and its own compactions write its own."""
    path = tmp_path / "db"
    keys = [f"88.118.1/K{i:06d}".encode() for i in range(50_000)]
    expected: list[bytes | None] = [None] * len(keys)
    for round_, partitioned in enumerate((True, False, True)):
        with RocksStore(path, fsync=False, partitioned_index=partitioned) as store:
            assert store.get_many(Table.RECORDS, keys) == expected  # the other layout's files
            expected = [key + b"#%d" % round_ for key in keys]
            store.commit(
                Txn(writes=tuple(Put(Table.RECORDS, k, v) for k, v in zip(keys, expected, strict=True)))
            )
            store.compact(Table.RECORDS)  # merges the old files and the new writes into new files
            records = store._cf[Table.RECORDS]
            # In memory, the files' index and filter blocks (~70 KB here) are held by the table
            # readers; partitioned, only their top levels.
            readers_bytes = records.property_int_value("rocksdb.estimate-table-readers-mem")
            del records  # (a column family left referenced keeps the database open past close)
            assert (readers_bytes > 32 << 10) is not partitioned, readers_bytes
            assert store.get_many(Table.RECORDS, keys) == expected
