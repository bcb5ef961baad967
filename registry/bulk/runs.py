"""Sorted run files and their k-way merge: the external sort of an offline bulk import.

An offline import into key ranges that held nothing when it started writes each chunk's checked,
sorted records to a *run* file instead of the node; at the end the runs are merged into SST files
whose key ranges do not overlap, so RocksDB ingests each straight into its bottom level and no
compaction ever rewrites them (``registry.bulk.importer``).

Run file layout (all integers little-endian)::

    records   count x (u32 key length, key, u32 value length, value, u64 row)   keys strictly ascending
    index     every INDEX_EVERY-th record from the first: (u64 offset, u32 key length, key)
    footer    u64 records_end, u64 count, u64 index_entries, u32 INDEX_EVERY, 4 bytes padding, MAGIC

``row`` is the record's row number within its chunk. The index lets a merge of one key range
start near its first key without reading the run from the beginning.

On disk a run is *packed* (:func:`write_run`): its records region is cut into blocks of
``BLOCK`` bytes, each compressed as an LZ4 block, so a run takes about a fifth of its size on disk
and in the page cache; the index and footer stay as they are (offsets into the unpacked
records)::

    blocks     LZ4 blocks (no header) of records[k * BLOCK : (k + 1) * BLOCK]
    table      (blocks + 1) x u64: each block's file offset, then the table's own
    checks     blocks x u32: the CRC-32 of each block's packed bytes
    index      as above
    footer     as above
    trailer    u64 table offset, u64 blocks, u32 BLOCK, 4 bytes padding, PACKED_MAGIC

Why LZ4 and not zstd (which packed runs until session 9): every record is packed once and unpacked
about once, so the codec's speed is what counts, not its ratio. On 64 KiB blocks of generated
records LZ4 packed ~1.6x and unpacked ~2x as fast as zstd at level 1, for 1.6x the bytes (5.1x
against 8.4x smaller than the records; bench/README.md, "Session 9"). The CRC of the packed bytes
stands in for zstd's frame checksum at a fifth of the cost of one over the unpacked bytes.

:func:`tail_bytes`, :func:`index_entries` and :class:`RangeReader` read packed files and answer in
the unpacked run's offsets, so :func:`ranges` and :class:`Merger` never see the packing.

:class:`Merger` merges runs given in input order (run 0 holds the earliest rows). Records with
equal keys are settled here: the earliest run's is kept (``keep_last`` False) or the latest's
(``keep_last`` True); each other one is reported as a duplicate. ``registry/bulk/_runs.c`` is the
C twin of :func:`frame` and :class:`Merger`, with the same results (tests/test_runs.py).
"""

from __future__ import annotations

import bisect
import heapq
import mmap
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

import lz4.block

from registry import native

MAGIC = b"IDNRUN01"
INDEX_EVERY = 64
_HEAD = struct.Struct("<I")
_ROW = struct.Struct("<Q")
_INDEX = struct.Struct("<QI")
FOOTER = struct.Struct("<QQQI4x8s")
PACKED_MAGIC = b"IDNRUNL1"
TRAILER = struct.Struct("<QQI4x8s")
BLOCK = 1 << 16
"""Unpacked bytes per block of a packed run: a merge partition unpacks every block its byte range
touches, so larger blocks compress a little better but make each partition unpack more than it
needs."""


class RunCorrupt(ValueError):
    """A run file that is not whole (a footer, index or record that does not fit)."""


def py_frame(keys: Sequence[bytes], values: Sequence[bytes], rows: Sequence[int]) -> bytes:
    """The bytes of a run file holding ``keys[i] -> values[i]`` from chunk row ``rows[i]``
    (``frame`` is this or its C twin).

    Raises ValueError unless ``keys`` ascend strictly and the three sequences have one length."""
    if not len(keys) == len(values) == len(rows):
        raise ValueError("keys, values and rows differ in length")
    out = bytearray()
    index = bytearray()
    previous = None
    for i, (key, value, row) in enumerate(zip(keys, values, rows, strict=True)):
        if previous is not None and key <= previous:
            raise ValueError("run keys must ascend strictly")
        previous = key
        if i % INDEX_EVERY == 0:
            index += _INDEX.pack(len(out), len(key))
            index += key
        out += _HEAD.pack(len(key))
        out += key
        out += _HEAD.pack(len(value))
        out += value
        out += _ROW.pack(row)
    records_end = len(out)
    entries = -(-len(keys) // INDEX_EVERY)
    out += index
    out += FOOTER.pack(records_end, len(keys), entries, INDEX_EVERY, MAGIC)
    return bytes(out)


def read_index(buf: Any, base: int = 0) -> tuple[int, int, list[bytes], list[int]]:
    """(records_end, count, index keys, their offsets) of the run in ``buf`` (bytes, mmap); with
    ``base``, ``buf`` holds only the run's bytes from offset ``base`` on (at least its index and
    footer, as :func:`tail_bytes` reads them).

    Raises :class:`RunCorrupt` when ``buf`` is not a whole run file."""
    size = base + len(buf)
    if len(buf) < FOOTER.size:
        raise RunCorrupt("run file shorter than its footer")
    records_end, count, entries, every, magic = FOOTER.unpack_from(buf, size - FOOTER.size - base)
    if magic != MAGIC or every != INDEX_EVERY or records_end > size - FOOTER.size:
        raise RunCorrupt("not a run file (footer)")
    if entries != -(-count // INDEX_EVERY):
        raise RunCorrupt("run index size does not match its count")
    if records_end < base:
        raise ValueError("the bytes given start after the run's index")
    keys: list[bytes] = []
    offsets: list[int] = []
    pos = records_end - base
    end = size - FOOTER.size - base
    for _ in range(entries):
        if pos + _INDEX.size > end:
            raise RunCorrupt("run index cut short")
        offset, length = _INDEX.unpack_from(buf, pos)
        pos += _INDEX.size
        if pos + length > end or offset >= records_end:
            raise RunCorrupt("run index entry out of bounds")
        keys.append(bytes(buf[pos : pos + length]))
        offsets.append(offset)
        pos += length
    if pos != end:
        raise RunCorrupt("run index size does not match its footer")
    return records_end, count, keys, offsets


def ranges(buf: Any, cuts: Sequence[bytes], size: int) -> list[tuple[int, int]]:
    """For the run whose footer and index are in ``buf`` (the run's last bytes; the run is ``size``
    bytes long), the byte range of its records holding every key of each partition that ``cuts``
    (ascending) makes: [None, cuts[0]), [cuts[0], cuts[1]) ... [cuts[-1], None). A range may also hold
    fewer than INDEX_EVERY records of the partition before and of the one after (it starts and ends
    on index entries); read each with :meth:`RangeReader.read` and the partition's bounds, which
    cuts them off."""
    records_end, _, keys, offsets = read_index(buf, size - len(buf))
    bounds = [0]
    for cut in cuts:
        bounds.append(bisect.bisect_left(keys, cut))
    out = []
    for p in range(len(cuts) + 1):
        at = bisect.bisect_right(keys, cuts[p - 1]) - 1 if p > 0 else 0
        start = offsets[at] if at > 0 else 0
        end_at = bounds[p + 1] if p < len(cuts) else len(keys)
        end = offsets[end_at] if end_at < len(keys) else records_end
        out.append((start, max(start, end)))
    return out


def write_run(path: str, run: bytes) -> None:
    """Write the run file bytes ``run`` (:func:`frame`) to a new file at ``path``, packed (see the
    module docstring). Not made durable here."""
    records_end = FOOTER.unpack_from(run, len(run) - FOOTER.size)[0]
    view = memoryview(run)
    offsets = [0]
    checks = array("I")
    with open(path, "wb") as f:
        for at in range(0, records_end, BLOCK):
            block = lz4.block.compress(view[at : min(at + BLOCK, records_end)], store_size=False)
            checks.append(zlib.crc32(block))
            offsets.append(offsets[-1] + f.write(block))
        blocks = len(offsets) - 1
        f.write(struct.pack(f"<{blocks + 1}Q", *offsets))
        if sys.byteorder != "little":
            checks.byteswap()
        f.write(checks)
        f.write(view[records_end:])
        f.write(TRAILER.pack(offsets[-1], blocks, BLOCK, PACKED_MAGIC))


class _Packed:
    """The layout of a packed run file ``size`` bytes long, open as ``fd``: its block table and
    where its index starts, read from the trailer. Holds no file descriptor: the methods take one."""

    def __init__(self, fd: int, size: int) -> None:
        if size < TRAILER.size + FOOTER.size + 8:
            raise RunCorrupt("run file shorter than its trailer")
        tail = os.pread(fd, TRAILER.size + FOOTER.size, size - TRAILER.size - FOOTER.size)
        self.footer = tail[: FOOTER.size]
        table_at, blocks, block, magic = TRAILER.unpack_from(tail, FOOTER.size)
        records_end = FOOTER.unpack(self.footer)[0]
        if magic != PACKED_MAGIC or block != BLOCK or blocks != -(-records_end // BLOCK):
            raise RunCorrupt("not a packed run file (trailer)")
        self.size = size
        self.records_end = records_end
        self.end = size - TRAILER.size  # the index and footer end here
        table_size = 8 * (blocks + 1) + 4 * blocks
        raw = os.pread(fd, table_size, table_at) if table_at + table_size <= self.end else b""
        if len(raw) != table_size:
            raise RunCorrupt("run block table out of bounds")
        # Arrays, not tuples of ints: a merge worker keeps every run's layout (RangeReader), at
        # 10^8 rows ~1,800 tables of ~314 blocks: ~7 MB so (offsets and checks); the offsets alone
        # took 22 MB as Python ints.
        offsets = self.offsets = array("Q", raw[: 8 * (blocks + 1)])
        checks = self.checks = array("I", raw[8 * (blocks + 1) :])
        if sys.byteorder != "little":
            offsets.byteswap()
            checks.byteswap()
        if offsets[0] != 0 or offsets[-1] != table_at or offsets.tolist() != sorted(offsets):
            raise RunCorrupt("run block table out of order")
        self.index_at = table_at + table_size

    @classmethod
    def of(cls, fd: int) -> _Packed:
        """The layout of the file open as ``fd``."""
        return cls(fd, os.fstat(fd).st_size)

    def tail(self, fd: int) -> bytes:
        """The unpacked run's index and footer."""
        return os.pread(fd, self.end - self.index_at, self.index_at)

    def unpack_into(self, fd: int, start: int, end: int, out: memoryview) -> None:
        """Write unpacked records bytes ``start:end`` into ``out`` (``end - start`` bytes)."""
        if not 0 <= start <= end <= self.records_end:
            raise RunCorrupt("run range out of bounds")
        if start == end:
            return
        first, last = start // BLOCK, (end - 1) // BLOCK
        offsets = self.offsets
        base = offsets[first]
        packed = memoryview(os.pread(fd, offsets[last + 1] - base, base))
        if len(packed) != offsets[last + 1] - base:
            raise RunCorrupt("run file shorter than its block table says")
        for k in range(first, last + 1):
            block = packed[offsets[k] - base : offsets[k + 1] - base]
            if zlib.crc32(block) != self.checks[k]:
                raise RunCorrupt(f"run block {k} does not match its checksum")
            size = min(BLOCK, self.records_end - k * BLOCK)
            try:
                data = lz4.block.decompress(block, uncompressed_size=size)
            except lz4.block.LZ4BlockError as exc:
                raise RunCorrupt(f"run block {k} does not decompress: {exc}") from None
            if len(data) != size:
                raise RunCorrupt(f"run block {k} unpacks to {len(data)} bytes, not {size}")
            at = k * BLOCK
            lo, hi = max(start, at), min(end, at + size)
            out[lo - start : hi - start] = memoryview(data)[lo - at : hi - at]


def index_entries(path: str) -> int:
    """How many index entries the run file at ``path`` has."""
    with open(path, "rb") as f:
        return FOOTER.unpack(_Packed.of(f.fileno()).footer)[2]


def tail_bytes(path: str) -> tuple[bytes, int]:
    """(the index and footer of the run file at ``path``, the unpacked run's size), for
    :func:`ranges`."""
    with open(path, "rb") as f:
        packed = _Packed.of(f.fileno())
        tail = packed.tail(f.fileno())
    return tail, packed.records_end + len(tail)


class RangeReader:
    """Reads byte ranges of run files' unpacked records (:meth:`read`), keeping each file's layout
    (trailer, block table and checks) from one read to the next.

    A merge reads one range of every run per partition: at 10^8 rows 1,837 runs x 400 partitions,
    each range ~56 KB, where reading the layout again cost about a quarter of a read
    (bench/README.md, "Session 8"). A kept layout is used only while its file keeps its size; run
    files are not rewritten during a merge. Not thread-safe.
    """

    def __init__(self) -> None:
        self._layouts: dict[str, _Packed] = {}
        self._scratch = bytearray()
        """Where a range is unpacked before it is cut."""
        self._area: mmap.mmap | None = None
        """Where :meth:`read_partition` puts a partition's cuts (see there)."""

    @property
    def merging(self) -> bool:
        """Whether :meth:`read_partition` has been called."""
        return self._area is not None

    def read(
        self, path: str, start: int, end: int, lo: bytes | None = None, hi: bytes | None = None
    ) -> bytearray:
        """Bytes ``start:end`` of the unpacked records of the run file at ``path`` (a range of
        :func:`ranges`), cut down to the records with keys in ``[lo, hi)`` (:func:`span`): whole
        records, for ``Merger(plain=True)``, in memory of this process's own.

        The cut is what keeps a merging worker's memory from growing with the number of runs:
        a range starts and ends on index entries, so without it each run's range also holds up to
        ``INDEX_EVERY`` records of the neighbouring partitions at either end.

        Raises :class:`RunCorrupt` for a damaged file or a range outside its records."""
        with self._cut(path, start, end, lo, hi) as kept:
            return bytearray(kept)

    def read_partition(
        self, ranges: Sequence[tuple[str, int, int]], lo: bytes | None, hi: bytes | None
    ) -> list[memoryview]:
        """:meth:`read` of each ``(path, start, end)`` with the same bounds, as views into one
        anonymous memory mapping this reader keeps: the next call writes over it, so the views
        hold their records until then.

        The mapping is sized for the ranges as given (the cuts fill only its first part, and
        untouched pages take no memory) and replaced only when a partition needs more. So a
        merging worker holds its partition's records in memory it reuses from one partition to
        the next, outside the heap: at 10^8 rows a partition is ~1,800 cuts of ~57 KB, and holding
        them in heap blocks of their own fragmented the heap partition after partition
        (bench/README.md, "Session 9")."""
        total = sum(end - start for _, start, end in ranges)
        area = self._area
        if area is None or len(area) < total:
            area = self._area = mmap.mmap(-1, max(total, mmap.PAGESIZE), flags=mmap.MAP_PRIVATE)
        views: list[memoryview] = []
        at = 0
        with memoryview(area) as whole:
            for path, start, end in ranges:
                with self._cut(path, start, end, lo, hi) as kept:
                    size = len(kept)
                    whole[at : at + size] = kept
                views.append(whole[at : at + size])
                at += size
        return views

    def _cut(self, path: str, start: int, end: int, lo: bytes | None, hi: bytes | None) -> memoryview:
        """A view of the scratch buffer holding :meth:`read`'s answer (release it before the next
        call)."""
        fd = os.open(path, os.O_RDONLY)  # not open(): a file object costs 2 us more a range
        try:
            size = os.fstat(fd).st_size
            layout = self._layouts.get(path)
            if layout is None or layout.size != size:
                layout = self._layouts[path] = _Packed(fd, size)
            size = end - start
            if len(self._scratch) < size:
                self._scratch = bytearray(size)
            with memoryview(self._scratch) as scratch, scratch[:size] as records:
                layout.unpack_into(fd, start, end, records)
                first, last = (0, size) if lo is None and hi is None else span(records, lo, hi)
                return records[first:last]
        finally:
            os.close(fd)


def py_span(records: Any, lo: bytes | None, hi: bytes | None) -> tuple[int, int]:
    """(``span`` is this or its C twin.) The byte range ``[start, end)`` of ``records`` (whole
    records, no index or footer: :meth:`RangeReader.read`; keys ascending) whose keys lie in
    ``[lo, hi)`` (None: unbounded): ``start`` is the offset of the first record with a key >= ``lo``
    and ``end`` that of the first with a key >= ``hi``, ``len(records)`` where there is none.

    Walks only as far as the answer needs (nowhere when both bounds are None). Raises
    :class:`RunCorrupt` for a record cut short on the way."""
    size = len(records)
    start = 0 if lo is None else size
    started = lo is None
    pos = 0
    while pos < size and not (started and hi is None):
        key_at, klen, value_at, vlen = _record_at(records, pos, size)
        key = bytes(records[key_at : key_at + klen])
        if not started and key >= lo:  # type: ignore[operator]
            started, start = True, pos
        if started and hi is not None and key >= hi:
            return start, pos
        pos = value_at + vlen + 8
    return start, size


def _record_at(buf: Any, pos: int, end: int) -> tuple[int, int, int, int]:
    """(key offset, key length, value offset, value length) of the record at ``pos`` of the
    records ending at ``end``; raises :class:`RunCorrupt` if it does not fit."""
    if pos + 4 > end:
        raise RunCorrupt("run record cut short")
    (klen,) = _HEAD.unpack_from(buf, pos)
    key_at = pos + 4
    if key_at + klen + 4 > end:
        raise RunCorrupt("run record cut short")
    (vlen,) = _HEAD.unpack_from(buf, key_at + klen)
    value_at = key_at + klen + 4
    if value_at + vlen + 8 > end:
        raise RunCorrupt("run record cut short")
    return key_at, klen, value_at, vlen


def _records(
    buf: Any, lo: bytes | None, hi: bytes | None, plain: bool = False
) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, value, row) of the run in ``buf`` with lo <= key < hi (None: unbounded), ascending;
    ``plain``: ``buf`` holds records only (:meth:`RangeReader.read`)."""
    if plain:
        records_end, index_keys, offsets = len(buf), [], []
    else:
        records_end, _, index_keys, offsets = read_index(buf)
    pos = 0
    if lo is not None and index_keys:
        at = bisect.bisect_right(index_keys, lo) - 1
        if at > 0:
            pos = offsets[at]
    while pos < records_end:
        key_at, klen, value_at, vlen = _record_at(buf, pos, records_end)
        key = bytes(buf[key_at : key_at + klen])
        pos = value_at + vlen + 8
        if lo is not None and key < lo:
            continue
        if hi is not None and key >= hi:
            return
        yield key, bytes(buf[value_at : value_at + vlen]), _ROW.unpack_from(buf, value_at + vlen)[0]


def _tagged(
    run: int, buf: Any, lo: bytes | None, hi: bytes | None, plain: bool
) -> Iterator[tuple[bytes, int, bytes, int]]:
    """(key, run, value, row): the sort order of a merge (equal keys: the earlier run first)."""
    for key, value, row in _records(buf, lo, hi, plain):
        yield key, run, value, row


class PyMerger:
    """(``Merger`` is this or its C twin.) The records of ``runs`` (buffers of run files, in input
    order) with lo <= key < hi, merged into ascending distinct keys; see the module docstring for
    equal keys.

    :meth:`next` hands them out in batches. ``counts`` counts the kept records by key prefix (the
    bytes before the first ``/``)."""

    def __init__(
        self, runs: Sequence[Any], lo: bytes | None, hi: bytes | None, keep_last: bool, *, plain: bool = False
    ) -> None:
        if not plain:
            for buf in runs:
                read_index(buf)  # every run is checked before anything is merged
        self._merged = heapq.merge(*(_tagged(i, buf, lo, hi, plain) for i, buf in enumerate(runs)))
        self._peek: tuple[bytes, int, bytes, int] | None = next(self._merged, None)
        self._keep_last = keep_last
        self._broken: RunCorrupt | None = None
        self.counts: dict[bytes, int] = {}

    def next(self, limit: int) -> tuple[list[bytes], list[bytes], list[tuple[int, int, bytes]]] | None:
        """Up to ``limit`` (>= 1) kept records as (keys, values) and the duplicates met on the way as
        (run, row, value), ascending by key then run; None once every record has been handed out."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._next(limit)
        except RunCorrupt as exc:
            self._broken = exc  # as the C twin: every later call raises too
            raise

    def _next(self, limit: int) -> tuple[list[bytes], list[bytes], list[tuple[int, int, bytes]]] | None:
        if self._peek is None:
            return None
        keys: list[bytes] = []
        values: list[bytes] = []
        dups: list[tuple[int, int, bytes]] = []
        counts = self.counts
        while self._peek is not None and len(keys) < max(limit, 1):
            group = [self._peek]
            self._peek = next(self._merged, None)
            while self._peek is not None and self._peek[0] == group[0][0]:
                group.append(self._peek)
                self._peek = next(self._merged, None)
            kept = len(group) - 1 if self._keep_last else 0
            key, _, value, _ = group[kept]
            keys.append(key)
            values.append(value)
            dups.extend((run, row, data) for j, (_, run, data, row) in enumerate(group) if j != kept)
            prefix = key.split(b"/", 1)[0]
            counts[prefix] = counts.get(prefix, 0) + 1
        return keys, values, dups


_native = native.load("registry.bulk._runs")
"""The C twin (``registry/bulk/_runs.c``), or None."""
frame = _native.frame if _native is not None else py_frame
span = _native.span if _native is not None else py_span
Merger: Any = _native.Merger if _native is not None else PyMerger


__all__ = [
    "BLOCK",
    "FOOTER",
    "INDEX_EVERY",
    "MAGIC",
    "PACKED_MAGIC",
    "Merger",
    "PyMerger",
    "RangeReader",
    "RunCorrupt",
    "frame",
    "index_entries",
    "py_frame",
    "py_span",
    "ranges",
    "read_index",
    "span",
    "tail_bytes",
    "write_run",
]
