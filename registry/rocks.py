"""The embedded RocksDB backend (through rocksdict).

One column family per :class:`~registry.store.Table`, plus one for counters. Commits are
serialized by a lock (this process is the only writer of its data directory) and written as one
WriteBatch through the WAL, so a commit is atomic and survives kill -9 once it returns; with
``fsync=True`` (the default) it also survives power loss.

rocksdict drops block-cache and bloom-filter options given only at the database level when it
reopens an existing database, so the options are passed per column family.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

from rocksdict import (
    AccessType,
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    IngestExternalFileOptions,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from registry.store import (
    ConditionFailed,
    Delete,
    Put,
    StoreFull,
    StoreUnavailable,
    Table,
    Txn,
    is_out_of_space,
)

_COUNTERS = "counters"
_COUNTER = struct.Struct("<q")


BOTTOMMOST_ZSTD_LEVEL = 1
"""ZSTD level of the bottom level, which holds nearly every record (the bulk import writes its files
there). On 4 KiB blocks RocksDB's default level (3) saves under 1% of the bytes of level 1 and
writes 6-10% slower: a 10^6 import ran 380,000 rows/s at level 1 against 361,000 (medians of 4
alternating pairs), at 98.8 bytes per identifier against 98.5 (bench/README.md, "Bulk import",
session 6). Reads do not notice: uniform random gets from a 10^6-record file with an 8 MiB block
cache cost 14.0 us at level 1 and 14.2 at level 3 (a throwaway script, medians of 5 alternating
rounds)."""


DATA_BLOCK_BYTES = 4096
"""Uncompressed bytes per data block (RocksDB's default, set explicitly). Larger blocks make the
import faster and the store smaller, and every read slower: a point read decompresses a whole
block on a block-cache miss and searches a longer one on a hit. Measured on 10^6-record benchmark
nodes built alike (bench/README.md, "Session 12"): 16 KiB made the bulk import 13-21% faster and
the store 34% smaller (65.8 against 99.1 bytes per identifier), and cut BatchResolve(1000) with
the node's cache off by 41-46% (uniform keys) and 16-25% (Zipf); 8 KiB: disk -21%, BatchResolve
-16-22% (uniform), -6-22% (Zipf). Resolution is the node's critical path, so 4 KiB stays."""


BULK_SCAN_ROWS = 10_000
"""Scans asking for at least this many rows (an export's pages) read the files ahead
:data:`BULK_SCAN_READAHEAD` bytes at a time, not a block per read, and do not fill the block cache
with blocks read once. Smaller scans (listings, audit and change-feed pages) keep the defaults."""
BULK_SCAN_READAHEAD = 2 << 20


PARTITIONED_INDEX = False
"""How each file's index and Bloom filter are kept. ``False`` (the default): one index block and
one filter block per file, loaded when the file is opened and held by RocksDB's table readers,
outside the block cache. ``True``: both cut into 4 KiB partitions that live in the block cache
under a pinned top level, so memory stays bounded by the block cache.

In memory, a point read looks up one block in the block cache (its data block) and at most one
read from the device; partitioned, up to three of each (index partition, filter partition, data
block). Raw gets on the benchmark datasets, the two layouts alternating
(``bench/bench_index_layout.py``; bench/README.md, "Session 13"): 11-26% less CPU per read in
memory at 10^6 identifiers, 25-34% at 10^7. The price is memory that grows with the data, outside
the block cache's bound: ~4.7 bytes per identifier in every process that reads the store (measured
4.3 MiB at 10^6, 44 MiB at 10^7, 448 MiB at 10^8; each serving worker holds its own), and
reading those blocks when the store opens (106 ms against 29 at 10^7; 1.6 s at 10^8). A node whose
processes cannot spare that (10^9 identifiers and up) should write its files partitioned: set this
constant to ``True`` (it is not a configuration field; the server, the bulk import and the CLI all
take it from here). The layout is written into each file (by the bulk import and by compactions)
and RocksDB reads files of either layout, so a node changes over file by file.

Whole index blocks must never live in the block cache: at 10^7 identifiers their ~1 MB blocks
thrashed the cache's 4 MiB shards and every get re-read one (~300 us against ~5 us;
bench/README.md, "1e7 identifiers")."""


def _options(
    block_cache: Cache,
    data_block_bytes: int = DATA_BLOCK_BYTES,
    partitioned_index: bool = PARTITIONED_INDEX,
) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_compression_type(DBCompressionType.lz4())
    opts.set_bottommost_compression_type(DBCompressionType.zstd())
    # (window bits, level, strategy, max dictionary bytes, enabled): RocksDB's defaults but the level
    opts.set_bottommost_compression_options(-14, BOTTOMMOST_ZSTD_LEVEL, 0, 0, True)
    table = BlockBasedOptions()
    table.set_block_cache(block_cache)
    table.set_block_size(data_block_bytes)
    table.set_bloom_filter(10, False)
    if partitioned_index:
        table.set_index_type(BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_metadata_block_size(4096)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    else:
        table.set_index_type(BlockBasedIndexType.binary_search())
        table.set_cache_index_and_filter_blocks(False)
    opts.set_block_based_table_factory(table)
    return opts


class RocksStore:
    """:class:`~registry.store.Store` on RocksDB in ``path``; creates it if missing.

    Holds RocksDB's own lock on the directory: a second process opening it fails with
    :class:`StoreUnavailable`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        block_cache_bytes: int = 256 << 20,
        fsync: bool = True,
        secondary_dir: str | Path | None = None,
        bulk_load: bool = False,
        partitioned_index: bool = PARTITIONED_INDEX,
    ) -> None:
        """With ``secondary_dir``, open a read-only *secondary* instance that follows the primary
        process owning ``path`` through :meth:`catch_up` (several may run beside the primary);
        :meth:`commit` then raises :class:`StoreUnavailable`.

        ``bulk_load``: for a session that ingests many overlapping files (an offline import):
        level 0 may hold up to 32 files before compaction starts (default 4) and stalls writes
        only far later, so overlapping files are merged in larger, fewer compactions, split over
        one thread per core. Level 0 stays bounded (open files, lookups, pinned index blocks). Up
        to a few dozen level-0 files may remain when the session ends without a final compaction
        (or is killed): the next normal open compacts them in the background, and slows writes
        (RocksDB's level-0 triggers, 20 and 36 files) until it has.

        ``partitioned_index``: the layout of the files this instance writes (compactions); see
        :data:`PARTITIONED_INDEX`. Files of either layout are read."""
        self.path = Path(path)
        self.secondary = secondary_dir is not None
        opts = _options(Cache(block_cache_bytes), partitioned_index=partitioned_index)
        if bulk_load:
            if secondary_dir is not None:
                raise ValueError("bulk_load is for the primary instance")
            cores = len(os.sched_getaffinity(0))
            opts.set_level_zero_file_num_compaction_trigger(32)
            opts.set_level_zero_slowdown_writes_trigger(96)
            opts.set_level_zero_stop_writes_trigger(160)
            opts.set_max_subcompactions(cores)
            opts.set_max_background_jobs(max(2, cores))
        families = {t.value: opts for t in Table} | {_COUNTERS: opts}
        extra: dict[str, object] = {}
        if secondary_dir is not None:
            opts.set_max_open_files(-1)  # required of a secondary instance
            Path(secondary_dir).mkdir(parents=True, exist_ok=True)
            extra["access_type"] = AccessType.secondary(str(secondary_dir))
        else:
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = Rdict(str(self.path), opts, column_families=families, **extra)
        except Exception as exc:  # rocksdict raises plain Exception for a locked or corrupt DB
            if is_out_of_space(exc):  # opening replays the log into a new file
                raise StoreFull(f"cannot open RocksDB at {self.path}: its disk is full ({exc})") from exc
            raise StoreUnavailable(f"cannot open RocksDB at {self.path}: {exc}") from exc
        self._cf = {t: self._db.get_column_family(t.value) for t in Table}
        self._handle = {t: self._db.get_column_family_handle(t.value) for t in Table}
        self._counters_cf = self._db.get_column_family(_COUNTERS)
        self._counters_handle = self._db.get_column_family_handle(_COUNTERS)
        self._write_opts = WriteOptions()
        self._write_opts.sync = fsync
        self._lock = threading.Lock()
        self._committed = threading.local()
        self._closed = False

    # -- reads -------------------------------------------------------------------------------
    def get(self, table: Table, key: bytes) -> bytes | None:
        try:
            return self._cf[table].get(key)
        except KeyError:  # the column-family map is emptied by close()
            raise StoreUnavailable("store is closed") from None

    def get_many(self, table: Table, keys: Sequence[bytes]) -> list[bytes | None]:
        self._check_open()
        # rocksdict's list get, one call for the batch: cheaper per key than a loop of gets (1.19x
        # the node's cache-off BatchResolve rate at 10^6; bench/README.md, "session 5").
        return self._cf[table].get(keys if isinstance(keys, list) else list(keys))

    def scan(self, table: Table, lower: bytes, upper: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """See :class:`~registry.store.Store`. A scan of at least :data:`BULK_SCAN_ROWS` rows reads
        ahead and leaves the block cache as it was."""
        self._check_open()
        if limit <= 0 or lower >= upper:
            return []
        opts = ReadOptions()
        opts.set_iterate_upper_bound(upper)
        if limit >= BULK_SCAN_ROWS:
            opts.set_readahead_size(BULK_SCAN_READAHEAD)
            opts.fill_cache(False)
        # One call per row through rocksdict's own iterator: a loop of valid/key/value/next costs 4.
        return list(itertools.islice(self._cf[table].items(from_key=lower, read_opt=opts), limit))

    def counter(self, name: bytes) -> int:
        self._check_open()
        raw = self._counters_cf.get(name)
        return _COUNTER.unpack(raw)[0] if raw is not None else 0

    def counters(self, prefix: bytes) -> dict[bytes, int]:
        self._check_open()
        it = self._counters_cf.iter(ReadOptions())
        it.seek(prefix)
        out: dict[bytes, int] = {}
        while it.valid() and it.key().startswith(prefix):
            out[it.key()] = _COUNTER.unpack(it.value())[0]
            it.next()
        return out

    def catch_up(self) -> int:
        """(Secondary only) apply what the primary has written since; returns :meth:`sequence`."""
        self._check_open()
        self._db.try_catch_up_with_primary()
        return self._db.latest_sequence_number()

    def sequence(self) -> int:
        """RocksDB's latest sequence number: after a commit returns, at least that commit's."""
        self._check_open()
        return self._db.latest_sequence_number()

    def committed_sequence(self) -> int:
        """The sequence number of the calling thread's last :meth:`commit` (:meth:`sequence` if it
        has not committed). Unlike :meth:`sequence` read after a commit returns, a later commit by
        another thread cannot slip in, so changes published with it can be ordered by it."""
        seq = getattr(self._committed, "sequence", None)
        return self.sequence() if seq is None else seq

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("store is closed")

    # -- writes ------------------------------------------------------------------------------
    def commit(self, txn: Txn) -> None:
        with self._lock:
            self._check_writable()
            self._apply_locked(txn)

    def _check_writable(self) -> None:
        if self._closed:
            raise StoreUnavailable("store is closed")
        if self.secondary:
            raise StoreUnavailable("this is a read-only secondary of the store")

    def _apply_locked(self, txn: Txn) -> None:
        """Check ``txn``'s conditions and write it as one durable WriteBatch. Holds ``_lock``."""
        for i, expect in enumerate(txn.expects):
            if self._cf[expect.table].get(expect.key) != expect.value:
                raise ConditionFailed(i, expect)
        batch = WriteBatch(raw_mode=True)
        for w in txn.writes:
            if isinstance(w, Put):
                batch.put(w.key, w.value, self._handle[w.table])
            elif isinstance(w, Delete):
                batch.delete(w.key, self._handle[w.table])
        totals: dict[bytes, int] = {}
        for add in txn.adds:
            totals[add.counter] = totals.get(add.counter, 0) + add.delta
        for name, delta in totals.items():
            if delta:
                batch.put(name, _COUNTER.pack(self.counter(name) + delta), self._counters_handle)
        if not batch.is_empty():
            try:
                self._db.write(batch, self._write_opts)
            except Exception as exc:
                if not is_out_of_space(exc):
                    raise
                raise _store_full(exc) from exc
        # Under the commit lock: exactly this commit's sequence, not a later commit's.
        self._committed.sequence = self._db.latest_sequence_number()

    # -- bulk loading (registry.bulk) --------------------------------------------------------
    def ingest(self, table: Table, sst_paths: Sequence[str], txn: Txn | None = None) -> None:
        """Commit ``txn``, then ingest SST files into ``table``, atomically with respect to
        :meth:`commit` (both run under the commit lock).

        Contract: ``txn.expects`` are checked first (ConditionFailed: nothing changes); then ``txn``'s
        writes and counter adds are written durably as one WriteBatch; then the files are ingested
        with ``move_files`` (each file is atomic: all its keys appear or none; once ingested a file is
        gone from its path). Files hold keys in ascending order, written with :func:`sst_options`.
        Ingested keys overwrite older versions of the same keys. A crash between the batch and the
        ingestion leaves the batch applied and the files in place, so a caller that records the
        pending paths in ``txn`` can finish the ingestion after a restart.
        """
        with self._lock:
            self._check_writable()
            if txn is not None:
                self._apply_locked(txn)
            if sst_paths:
                opts = IngestExternalFileOptions()
                opts.set_move_files(True)
                try:
                    self._cf[table].ingest_external_file([str(p) for p in sst_paths], opts)
                except Exception as exc:
                    if not is_out_of_space(exc):
                        raise
                    raise _store_full(exc) from exc

    def compact(self, table: Table) -> None:
        """Compact the whole of ``table`` (after a bulk load: merges ingested files, drops
        overwritten versions)."""
        with self._lock:
            if self._closed:
                raise StoreUnavailable("store is closed")
            self._cf[table].compact_range(None, None)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes RocksDB holds in this process, by part: ``block_cache`` (at most the
        ``block_cache_bytes`` it was opened with), ``table_readers`` (the files' index and filter
        blocks, outside the block cache's bound: see :data:`PARTITIONED_INDEX`) and ``memtables``
        (writes not yet in files), over every column family."""
        self._check_open()
        families = [*self._cf.values(), self._counters_cf]
        return {
            "block_cache": families[0].property_int_value("rocksdb.block-cache-usage"),  # one shared cache
            "table_readers": sum(
                f.property_int_value("rocksdb.estimate-table-readers-mem") for f in families
            ),
            "memtables": sum(f.property_int_value("rocksdb.cur-size-all-mem-tables") for f in families),
        }

    def disk_bytes(self) -> int:
        """Bytes of the live SST files of the whole database."""
        return sum(int(f["size"]) for f in self._db.live_files())

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Column-family handles keep the database open; drop them before closing it.
            self._cf.clear()
            self._handle.clear()
            del self._counters_cf, self._counters_handle
            try:
                self._db.close()
            except Exception as exc:
                # After a write failed on a full disk, RocksDB reports that error again on closing;
                # the database closes all the same, and what was acknowledged is in its log.
                if not is_out_of_space(exc):
                    raise

    def __enter__(self) -> RocksStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sst_options(
    data_block_bytes: int = DATA_BLOCK_BYTES, partitioned_index: bool = PARTITIONED_INDEX
) -> Options:
    """Options for :class:`rocksdict.SstFileWriter` building files that :meth:`RocksStore.ingest`
    takes: the store's own table format and compression, raw (bytes) mode. ``data_block_bytes``
    other than the store's serves benchmarks only (``bench/bench_sst_compression.py``);
    ``partitioned_index``: see :data:`PARTITIONED_INDEX`."""
    return _options(Cache(8 << 20), data_block_bytes, partitioned_index)


def _store_full(exc: Exception) -> StoreFull:
    """The :class:`StoreFull` a write ends with when RocksDB reports a full disk (``exc``)."""
    return StoreFull(f"the store's disk is full ({exc})")
