"""``idnode export``: every record (or those under one prefix) as CSV or JSON Lines.

JSON Lines is lossless (values, TTLs, binary data, template, owner, times, etag): exporting and
importing the file into an empty node (its templates published) as the administrator gives
byte-identical records. CSV carries identifiers
and values (index, type, data, TTL, binary); records read back get new times and etags. CSV cannot
hold an empty text value (an empty cell means "no value"), so such a record makes a CSV export fail.
The CSV header is the union of the records' columns, which takes a first pass over the records.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
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
    csv_column_keys,
    csv_columns,
    csv_line,
    csv_lines,
    guess_format,
    json_lines,
    lines_in_c,
    open_output,
    text_encoding,
)
from registry.bulk.progress import Progress, SilentProgress
from registry.bulk.session import stopped_node_store
from registry.bulk.space import check_export_space
from registry.errors import FailedPrecondition
from registry.identifier import parse_prefix, prefix_range
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


def format_page(page: list[bytes], fmt: Format, column_of: dict[ColumnKey, int], metadata: bool) -> bytes:
    """The UTF-8 lines of ``page``'s records in ``fmt`` (CSV: in the columns ``column_of``
    numbers). Raises ValueError for a record CSV cannot hold."""
    if fmt is Format.CSV:
        return csv_lines(page, column_of, len(column_of))
    return json_lines(page, metadata)


def _page_bytes(
    page: list[bytes], fmt: Format, column_of: dict[ColumnKey, int], metadata: bool, codec: str
) -> tuple[bytes, int, str]:
    """Worker task: (:func:`format_page` in the text encoding ``codec``, the page's record count,
    "") or (b"", 0, why the file cannot hold a record)."""
    try:
        lines = format_page(page, fmt, column_of, metadata)
    except ValueError as exc:
        return b"", 0, f"cannot export as CSV: {exc}"
    if codec != "utf-8":
        try:
            lines = lines.decode().encode(codec)
        except UnicodeEncodeError as exc:
            return b"", 0, _unencodable(codec, exc)
    return lines, len(page), ""


def _unencodable(codec: str, exc: UnicodeEncodeError) -> str:
    """Why an export in ``codec`` stops at the text ``exc`` could not encode."""
    return (
        f"cannot export in {codec}: a record holds {exc.object[exc.start : exc.end]!r}, "
        "which it cannot encode; export with --encoding gb18030 or utf-8"
    )


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
    pages; ``workers`` processes (0 or 1: none; default: none where the lines are made in C, else
    one per core) turn pages into lines, which this process writes in key order: the file is
    the same whatever ``workers`` is.

    Before it writes (or truncates) ``dest``, it checks that the filesystem has room, estimated
    from the first page's lines and the node's counters (:func:`registry.bulk.space.
    check_export_space`; ``check_space=False`` skips it; stdout is never checked).

    ``encoding``: the file's text encoding (default UTF-8; ``gb18030`` or ``gbk`` for Chinese
    editions of Excel, ``utf-8-sig`` for UTF-8 with the byte-order mark Excel looks for). A record
    it cannot encode stops the export with FailedPrecondition."""
    codec = text_encoding(encoding) or "utf-8"
    if fmt is None:
        try:
            fmt = guess_format(os.fspath(dest))
        except ValueError as exc:
            raise FailedPrecondition(str(exc)) from None
    fmt = Format(fmt)
    if workers is None:
        # C writes the lines faster than this process would pickle a page to a worker and the lines
        # back (bench/README.md, "Session 12").
        workers = 0 if lines_in_c() else len(os.sched_getaffinity(0))
    with contextlib.ExitStack() as stack:
        # Spawned, not forked: the caller may run other threads (a running node's RocksDB, grpc).
        pool = (
            stack.enter_context(multiprocessing.get_context("spawn").Pool(workers)) if workers > 1 else None
        )
        if isinstance(target, Registry):
            return _export(
                target.store, dest, fmt, parent, metadata, progress, pool, workers, check_space, codec
            )
        store = stack.enter_context(
            contextlib.closing(stopped_node_store(target, block_cache_bytes=EXPORT_BLOCK_CACHE_BYTES))
        )
        return _export(store, dest, fmt, parent, metadata, progress, pool, workers, check_space, codec)


def _export(
    store: Store,
    dest: str | os.PathLike[str],
    fmt: Format,
    parent: str | None,
    metadata: bool,
    progress: Progress | None,
    pool: Any,
    workers: int,
    check_space: bool,
    codec: str,
) -> ExportSummary:
    started = time.monotonic()
    window = workers + 1
    progress = progress or SilentProgress()
    column_of: dict[ColumnKey, int] = {}
    # The byte-order mark goes once at the start of the file; the pages are plain UTF-8.
    head, page_codec = (codecs.BOM_UTF8, "utf-8") if codec == "utf-8-sig" else (b"", codec)
    if fmt is Format.CSV:
        keys: set[ColumnKey] = set()
        for found in _in_order(pool, csv_column_keys, ((p,) for p in iter_pages(store, parent)), window):
            keys |= found
        columns = csv_columns(keys)
        column_of = {(c.index, c.type, c.ttl, c.binary): i for i, c in enumerate(columns)}
        try:
            head += csv_line(["identifier", *(c.header for c in columns)]).encode(page_codec)
        except UnicodeEncodeError as exc:
            raise FailedPrecondition(_unencodable(page_codec, exc)) from None
    jobs = ((page, fmt, column_of, metadata, page_codec) for page in iter_pages(store, parent))
    pages = _in_order(pool, _page_bytes, jobs, window)
    first = next(pages, None)
    if check_space and first is not None and os.fspath(dest) != "-":
        # Before the file is opened: opening it would already truncate what it held.
        records = records_under(store, parse_prefix(parent, "parent") if parent else None)
        if records is not None:
            check_export_space(Path(dest), records, first[0], first[1], head)
    out = open_output(dest)
    count = 0
    try:
        out.write(head)
        for lines, records, unfit in itertools.chain((first,) if first is not None else (), pages):
            if unfit:
                raise FailedPrecondition(unfit)
            out.write(lines)
            count += records
            progress.update(count, 0, 0, None)
        out.flush()
    finally:
        if os.fspath(dest) != "-":
            out.close()
    progress.update(count, 0, 0, None)
    progress.close()
    seconds = time.monotonic() - started
    return ExportSummary(
        count, round(seconds, 3), round(count / seconds, 1) if seconds else 0.0, str(Path(dest))
    )
