"""``idnode export``: every record (or those under one prefix) as CSV or JSON Lines.

JSON Lines is lossless (values, TTLs, binary data, owner, times, etag): exporting and importing the
file into an empty node as the administrator gives byte-identical records. CSV carries identifiers
and values (index, type, data, TTL, binary); records read back get new times and etags. CSV cannot
hold an empty text value (an empty cell means "no value"), so such a record makes a CSV export fail.
The CSV header is the union of the records' columns, which takes a first pass over the records.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from registry.bulk.formats import (
    ColumnKey,
    Format,
    csv_cells,
    csv_column_keys,
    csv_columns,
    guess_format,
    json_line,
    open_output,
    text_encoding,
)
from registry.bulk.progress import Progress, SilentProgress
from registry.bulk.session import stopped_node_store
from registry.bulk.space import check_export_space
from registry.errors import FailedPrecondition
from registry.identifier import parse_prefix, prefix_range
from registry.pb import record_pb2
from registry.service import Registry, records_under
from registry.store import Store, Table

_PAGE = 10_000
T = TypeVar("T")
EXPORT_BLOCK_CACHE_BYTES = 8 << 20
"""Block cache of a stopped node opened for export: a scan reads each block once, so a node-sized
cache (256 MiB) would only fill with blocks never read again."""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    records: int
    seconds: float
    records_per_second: float
    path: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def iter_pages(store: Store, parent: str | None = None) -> Iterator[list[bytes]]:
    """Encoded records in key order, all of them or those under ``parent``, in pages of up to
    :data:`_PAGE` (none empty)."""
    lower, upper = prefix_range(parse_prefix(parent, "parent")) if parent else (b"", b"\xff" * 8)
    while True:
        page = store.scan(Table.RECORDS, lower, upper, _PAGE)
        if page:
            yield [value for _, value in page]
        if len(page) < _PAGE:
            return
        lower = page[-1][0] + b"\0"


def format_page(page: list[bytes], fmt: Format, column_of: dict[ColumnKey, int], metadata: bool) -> str:
    """The lines of ``page``'s records in ``fmt`` (CSV: in the columns ``column_of`` numbers).
    Raises ValueError for a record CSV cannot hold."""
    if fmt is Format.CSV:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        width = len(column_of)
        for data in page:
            writer.writerow(csv_cells(record_pb2.Record.FromString(data), column_of, width))
        return buf.getvalue()
    return "".join(json_line(record_pb2.Record.FromString(data), metadata) + "\n" for data in page)


def _page_text(
    page: list[bytes], fmt: Format, column_of: dict[ColumnKey, int], metadata: bool
) -> tuple[str, int, str]:
    """Worker task: (:func:`format_page`, the page's record count, "") or ("", 0, why CSV cannot
    hold a record)."""
    try:
        return format_page(page, fmt, column_of, metadata), len(page), ""
    except ValueError as exc:
        return "", 0, str(exc)


def _in_order(pool: Any, task: Callable[..., T], args: Iterator[tuple[Any, ...]], window: int) -> Iterator[T]:
    """``task(*a)`` for each ``a`` of ``args`` in ``pool`` (in this process when it is None), in
    order, with at most ``window`` tasks in flight (``Pool.imap`` would read every page first)."""
    if pool is None:
        for a in args:
            yield task(*a)
        return
    pending: collections.deque = collections.deque()
    for a in args:
        pending.append(pool.apply_async(task, a))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def run_export(
    target: Registry | str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    fmt: Format | str | None = None,
    parent: str | None = None,
    metadata: bool = True,
    progress: Progress | None = None,
    workers: int | None = None,
    check_space: bool = True,
    encoding: str | None = None,
) -> ExportSummary:
    """Write the records of a node (a running node's Registry, or a stopped node's RocksDB path) to
    ``dest`` (``-`` is stdout; ``.gz`` / ``.zst`` compress). ``fmt`` defaults to what ``dest`` says.
    ``metadata`` adds owner, times and etag to JSON Lines rows. This process reads the records in
    pages; ``workers`` processes (default: one per core; 0 or 1: none) turn pages into lines, which
    this process writes in key order: the file is the same whatever ``workers`` is.

    Before it writes (or truncates) ``dest``, it checks that the filesystem has room, estimated
    from the first page's lines and the node's counters (:func:`registry.bulk.space.
    check_export_space`; ``check_space=False`` skips it; stdout is never checked).

    ``encoding``: the file's text encoding (default UTF-8; ``gb18030`` or ``gbk`` for Chinese
    editions of Excel, ``utf-8-sig`` for UTF-8 with the byte-order mark Excel looks for). A record
    it cannot encode stops the export with FailedPrecondition."""
    codec = text_encoding(encoding) or "utf-8"
    processes = len(os.sched_getaffinity(0)) if workers is None else workers
    with contextlib.ExitStack() as stack:
        # Spawned, not forked: the caller may run other threads (a running node's RocksDB, grpc).
        pool = (
            stack.enter_context(multiprocessing.get_context("spawn").Pool(processes))
            if processes > 1
            else None
        )
        if isinstance(target, Registry):
            return _export(
                target.store, dest, fmt, parent, metadata, progress, pool, processes, check_space, codec
            )
        store = stack.enter_context(
            contextlib.closing(stopped_node_store(target, block_cache_bytes=EXPORT_BLOCK_CACHE_BYTES))
        )
        return _export(store, dest, fmt, parent, metadata, progress, pool, processes, check_space, codec)


def _export(
    store: Store,
    dest: str | os.PathLike[str],
    fmt: Format | str | None,
    parent: str | None,
    metadata: bool,
    progress: Progress | None,
    pool: Any,
    processes: int,
    check_space: bool,
    codec: str,
) -> ExportSummary:
    started = time.monotonic()
    window = processes + 1
    progress = progress or SilentProgress()
    if fmt is None:
        try:
            fmt = guess_format(os.fspath(dest))
        except ValueError as exc:
            raise FailedPrecondition(str(exc)) from None
    fmt = Format(fmt)
    column_of: dict[ColumnKey, int] = {}
    header = ""
    if fmt is Format.CSV:
        keys: set[ColumnKey] = set()
        for found in _in_order(pool, csv_column_keys, ((p,) for p in iter_pages(store, parent)), window):
            keys |= found
        columns = csv_columns(keys)
        column_of = {(c.index, c.type, c.ttl, c.binary): i for i, c in enumerate(columns)}
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(["identifier", *(c.header for c in columns)])
        header = line.getvalue()
    jobs = ((page, fmt, column_of, metadata) for page in iter_pages(store, parent))
    pages = _in_order(pool, _page_text, jobs, window)
    first = next(pages, None)
    if check_space and first is not None and os.fspath(dest) != "-":
        # Before the file is opened: opening it would already truncate what it held.
        records = records_under(store, parse_prefix(parent, "parent") if parent else None)
        if records is not None:
            sample, head = first[0].encode(codec, "replace"), header.encode(codec, "replace")
            check_export_space(Path(dest), records, sample, first[1], head)
    out = open_output(dest)
    count = 0
    try:
        text = io.TextIOWrapper(out, encoding=codec, newline="", write_through=False)  # type: ignore[arg-type]
        text.write(header)
        for lines, records, unfit in itertools.chain((first,) if first is not None else (), pages):
            if unfit:
                raise FailedPrecondition(f"cannot export as CSV: {unfit}")
            try:
                text.write(lines)
            except UnicodeEncodeError as exc:
                raise FailedPrecondition(
                    f"cannot export in {codec}: a record holds {exc.object[exc.start : exc.end]!r}, "
                    "which it cannot encode; export with --encoding gb18030 or utf-8"
                ) from None
            count += records
            progress.update(count, 0, 0, None)
        text.flush()
        if os.fspath(dest) == "-":
            text.detach()
        else:
            text.close()
    finally:
        if os.fspath(dest) != "-" and not out.closed:
            out.close()
    progress.update(count, 0, 0, None)
    progress.close()
    seconds = time.monotonic() - started
    return ExportSummary(
        count, round(seconds, 3), round(count / seconds, 1) if seconds else 0.0, str(Path(dest))
    )
