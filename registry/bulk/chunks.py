"""Turning one chunk of input into sorted, checked, encoded records (runs in worker processes).

A chunk's result holds its good records sorted by key, written to a run file (records of owners
whose key range held nothing when an offline import began: merged with the other runs at the end,
see :mod:`registry.bulk.runs`), to an SST file (other big chunks, when the target store can ingest)
or returned as bytes, plus its rejects. Duplicates inside the chunk are settled here by the
conflict policy; duplicates against the node (and against earlier chunks, which are committed by
then) are settled by the importer at commit time, or when the runs are merged.
"""

from __future__ import annotations

import base64
import binascii
import csv
import enum
import gc
import io
import json
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rocksdict import SstFileWriter

from registry import limits, native
from registry.bulk import malloc, runs
from registry.bulk.formats import (
    Chunk,
    Column,
    Format,
    bad_utf8,
    csv_rows,
    decode_row,
    decode_text,
    row_identifier,
    time_ns,
)
from registry.bulk.rows import RowChecker, RowRules, etag_for, reject_message
from registry.codec import decode_record
from registry.errors import IdnodeError, InvalidArgument
from registry.fastcodec import _tail, _timestamp, _type_field, _varint
from registry.identifier import fold, prefix_length
from registry.model import Enterprise, Value
from registry.rocks import sst_options
from registry.validation import value_violations
from registry.wire import SMALL_VARINTS, TAG1, TAG2, TAG3, TAG4, TAG6

_csvfast = native.load("registry.bulk._csvfast")
"""The C twin of the CSV fast path (``registry/bulk/_csvfast.c``), or None: pure Python."""
_LIMITS = (
    limits.VALUE_DATA_MAX_BYTES,
    limits.RECORD_MAX_BYTES,
    limits.IDENTIFIER_MAX_CHARS,
    limits.PREFIX_MAX_CHARS,
    limits.SEGMENT_MAX_CHARS,
)
"""The limits the C twin must have been built with (``_csvfast.LIMITS``) for it to be used."""

ALREADY_EXISTS = "ALREADY_EXISTS"
EXISTS_MESSAGE = "is already registered (in the node or earlier in the input)"


class Conflict(enum.Enum):
    """What to do with a row whose identifier is already in the node or earlier in the file."""

    FAIL = "fail"
    """Reject the row with reason ALREADY_EXISTS (the first occurrence wins)."""
    SKIP = "skip"
    """Leave the existing record; count the row as skipped."""
    REPLACE = "replace"
    """Write the row's record over the existing one (the last occurrence wins)."""


@dataclass(frozen=True, slots=True)
class Reject:
    row: int
    """1-based data row number (relative to the chunk inside a ChunkResult, absolute elsewhere)."""
    identifier: str
    reason: str
    message: str


def reject_text(lines: Iterable[list[str]]) -> str:
    """CSV lines ending in ``\n``; a line with a CR anywhere is quoted whole (the csv module leaves
    a field holding a lone CR unquoted with this line ending, and reading it back would split it)."""
    buf = io.StringIO()
    plain = csv.writer(buf, lineterminator="\n")
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for line in lines:
        (quoted if any("\r" in field for field in line) else plain).writerow(line)
    return buf.getvalue()


def reject_bytes(rejects: Iterable[Reject], base: int = 0) -> bytes:
    """The reject-file lines of ``rejects``, their rows counted from ``base``, as UTF-8."""
    lines = ([str(base + r.row), r.identifier, r.reason, r.message] for r in rejects)
    return reject_text(lines).encode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Settings:
    """What every worker needs; picklable. ``sst_dir`` None means never write SST or run files;
    ``runs`` says records of owners not in ``stale_owners`` go to run files there."""

    rules: RowRules
    fmt: Format
    columns: tuple[Column, ...]
    conflict: Conflict
    sst_dir: str | None
    sst_min_rows: int
    runs: bool = False
    stale_owners: frozenset[bytes] = frozenset()
    """Owners (folded, :func:`registry.identifier.fold`) whose key range held records when the import
    began: their records are looked up and written chunk by chunk, never through runs."""


@dataclass(slots=True)
class ChunkResult:
    """The outcome of one chunk. ``keys`` ascending; ``owners[i]``, ``rows[i]`` (chunk-relative row)
    and ``values[i]`` (None when written to ``sst``) belong to ``keys[i]``."""

    seq: int
    start: int
    end: int
    row_count: int = 0
    keys: list[bytes] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    values: list[bytes] | None = None
    sst: str | None = None
    rejects: list[Reject] = field(default_factory=list)
    skipped: int = 0
    superseded: int = 0
    """Rows written and then overwritten by a later row of the same chunk (replace)."""
    missing: list[str] = field(default_factory=list)
    run: str | None = None
    """The run file holding this chunk's records of fresh owners (none of them in ``keys``)."""
    run_records: int = 0


class CsvPlan:
    """What a CSV header fixes for every row, worked out once per file: each column's index, type,
    TTL and timestamp are checked here and pre-encoded as the constant bytes around the cell's
    data, so a row only needs its identifier checked (:func:`registry.identifier.prefix_length`),
    each cell's size checked and its bytes spliced in.

    It takes only rows that are certainly good under the API's rules and makes exactly the bytes
    :meth:`RowChecker.check` makes; any row it is unsure of (:meth:`encode` returns None) goes to
    the full checker, which finds its exact reject reason. ``usable`` is False when some column
    breaks a value rule: then every row goes to the full checker.

    ``native`` is its C twin (``registry/bulk/_csvfast.c``), used by :func:`_build_chunk` on chunks
    of plain UTF-8 without quotes, CRs or NULs: it takes a subset of the rows :meth:`encode` takes
    (those whose prefix already has an owner entry in ``_owners``, which only :meth:`encode` fills)
    and makes the same bytes; tests/test_bulk_native.py compares the two paths."""

    def __init__(self, columns: Sequence[Column], checker: RowChecker, *, native: bool = True) -> None:
        self.checker = checker
        rules = checker.rules
        # Empty placeholders: the columns' rules, without any cell's data (checked per row).
        placeholders = [Value(c.index, c.type, b"" if c.binary else "", c.ttl) for c in columns]
        self.usable = not value_violations(placeholders)
        self.width = len(columns) + 1
        # Values are stored in index order: (cell position in the row, head bytes, tail bytes, binary).
        self.cells: list[tuple[int, dict[int, bytes], bytes, bytes, bool]] = []
        if self.usable:
            for position in sorted(range(len(columns)), key=lambda i: columns[i].index):
                c = columns[position]
                head = b"\x08" + _varint(c.index) + _type_field(c.type) + (TAG4 if c.binary else TAG3)
                tail = _tail(c.ttl, rules.now_ns)
                # {data length: the value's field tag, body length, head and data length}
                self.cells.append((position + 1, {}, head, tail, c.binary))
        times = (
            (TAG4 + _timestamp(rules.now_ns) + b"\x2a" + _timestamp(rules.now_ns)) if rules.now_ns else b""
        )
        self._times = times
        self._owners: dict[str, tuple[str, bytes] | None] = {}
        self.nonce = rules.nonce
        self.native: Any = None
        """The C encoder of these columns (:mod:`registry.bulk._csvfast`), sharing ``_owners``;
        None without the extension or when every row goes to the full checker."""
        if native and self.usable and _csvfast is not None and _csvfast.LIMITS == _LIMITS:
            cells = [(position, head, tail, binary) for position, _, head, tail, binary in self.cells]
            self.native = _csvfast.Encoder(self.width, cells, self.nonce, self._owners)

    def _owner(self, prefix: str, text: str) -> tuple[str, bytes] | None:
        """(owner prefix, encoded owner and times) for identifiers under ``prefix`` when rows under
        it can take the fast path; None sends them to the full checker."""
        checker = self.checker
        try:
            owner = checker._owner(prefix, text)
        except IdnodeError:
            return None
        memo = checker._owners.get(prefix.upper())
        if checker.template or (isinstance(memo, Enterprise) and memo.require_template):
            return None  # template checks: the full checker
        # Otherwise memo is the enterprise, or the prefix of one this import creates (already in
        # checker.missing): neither has a template policy, so the full checker would check the
        # values by the plain rules and store the same bytes.
        raw = owner.encode()
        return owner, TAG3 + _varint(len(raw)) + raw + self._times

    def encode(
        self, row: list[str], number: int, restored: Restored | None = None
    ) -> tuple[bytes, str, bytes] | None:
        """(key, owner, record bytes) of a good row; None when the full checker must look at it.
        ``restored``: the times and etag the row brings (a JSON Lines row of an export, restored),
        in place of the import's own."""
        if len(row) != self.width:
            return None
        text = row[0]
        end = prefix_length(text)
        if not end:
            return None
        prefix = text[:end]
        owned = self._owners.get(prefix)
        if owned is None:
            if prefix in self._owners:
                return None
            owned = self._owners[prefix] = self._owner(prefix, text)
            if owned is None:
                return None
        ident = text.encode()
        parts = [TAG1, SMALL_VARINTS[len(ident)], ident]
        append = parts.append
        max_data = limits.VALUE_DATA_MAX_BYTES
        for position, heads, head, tail, binary in self.cells:
            cell = row[position]
            if not cell:
                continue
            if binary:
                try:
                    data = base64.b64decode(cell, validate=True)
                except (binascii.Error, ValueError):
                    return None
            else:
                data = cell.encode()
            n = len(data)
            if restored is not None:  # this value's own timestamp: a tail of its own
                if n > max_data:
                    return None
                tail = restored.tails[position - 1]
                size = _varint(n)
                lead = TAG2 + _varint(len(head) + len(size) + n + len(tail)) + head + size
            else:
                lead = heads.get(n)
                if lead is None:
                    if n > max_data:
                        return None
                    size = _varint(n)
                    lead = heads[n] = TAG2 + _varint(len(head) + len(size) + n + len(tail)) + head + size
            append(lead)
            append(data)
            append(tail)
        if restored is None:
            parts += (owned[1], TAG6 + b"\x10", etag_for(self.nonce, number).encode())
        else:
            etag = restored.etag.encode() if restored.etag else etag_for(self.nonce, number).encode()
            owner_field = owned[1][: len(owned[1]) - len(self._times)]
            parts += (owner_field, restored.times, TAG6, _varint(len(etag)), etag)
        record = b"".join(parts)
        if len(record) > limits.RECORD_MAX_BYTES:
            return None
        return ident.upper(), owned[0], record


@dataclass(frozen=True, slots=True)
class Restored:
    """What a JSON Lines row restores (an administrator's import of an export): each value's tail
    (TTL and timestamp fields, by the value's position in the row) and the record's time fields,
    already encoded, and its etag (empty: the import's own)."""

    tails: list[bytes]
    times: bytes
    etag: str


class JsonPlan:
    """The fast path for JSON Lines rows of the usual shape: an object with ``identifier`` and
    ``values`` and, as an export writes them, ``owner`` (ignored, as by the full checker),
    ``create_time``, ``update_time`` and ``etag``; each value only ``index``, ``type``, non-empty
    ``data`` (text, or ``{"binary": "<base64>"}``), ``ttl`` and ``timestamp``; and no ``\\u``
    escape of a surrogate. Each row names its own values, but an input repeats a few sequences of
    (index, type, TTL, binary): each gets a :class:`CsvPlan` of those columns, made on first sight
    (at most :data:`MAX_SHAPES`), which checks and encodes the row as if its values were the cells
    of a CSV row, with the row's own times and etag where the import restores them
    (:class:`Restored`). That makes exactly the bytes :meth:`RowChecker.check` makes for the row
    (the values are stamped and sorted by index the same way); any other row, and any row such a
    plan is unsure of, goes to the full checker (:meth:`encode` returns None).
    tests/test_bulk_fastpath.py compares the two paths."""

    MAX_SHAPES = 4096
    """Plans kept; rows of further shapes go to the full checker (a file where every row has a
    shape of its own gains nothing from plans)."""

    def __init__(self, checker: RowChecker) -> None:
        self.checker = checker
        self._plans: dict[tuple[tuple[int, str, int, bool], ...], CsvPlan | None] = {}

    def encode(self, line: str, number: int) -> tuple[bytes, str, bytes] | None:
        """(key, owner, record bytes) of a good row; None when the full checker must look at it."""
        if "\\u" in line and "\\ud" in line.lower():  # maybe a lone surrogate: json_row's check
            return None
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):  # the full checker says why
            return None
        if type(doc) is not dict or not _FAST_ROW_KEYS.issuperset(doc):
            return None
        identifier = doc.get("identifier")
        items = doc.get("values")
        if type(identifier) is not str or type(items) is not list:
            return None
        shape = []
        row = [identifier]
        stamps: list[int] = []
        for item in items:
            if type(item) is not dict or not _FAST_VALUE_KEYS.issuperset(item):
                return None
            index, value_type, data = item.get("index", 0), item.get("type", ""), item.get("data")
            ttl = item.get("ttl", limits.DEFAULT_TTL_SECONDS)
            if type(index) is not int or type(ttl) is not int or type(value_type) is not str:
                return None
            if type(data) is dict:  # {"binary": "<base64>"}: a base64 cell of a binary column
                data = data.get("binary") if len(data) == 1 else None
                binary = True
            else:
                binary = False
            if type(data) is not str or not data:  # missing, empty or malformed: the full checker
                return None
            shape.append((index, value_type, ttl, binary))
            row.append(data)
            stamp = item.get("timestamp")
            if stamp is None:
                stamps.append(0)
                continue
            try:
                stamps.append(time_ns(stamp, "timestamp"))
            except IdnodeError:  # the full checker says which value
                return None
        restored = None
        if len(doc) > 2 or any(stamps):
            try:
                restored = self._restored(doc, shape, stamps)
            except IdnodeError:  # a bad time or etag: the full checker says which
                return None
        key = tuple(shape)
        plan = self._plans.get(key)
        if plan is None:
            if key in self._plans or len(self._plans) >= self.MAX_SHAPES:
                return None
            made = CsvPlan([Column(*column) for column in key], self.checker, native=False)
            plan = self._plans[key] = made if made.usable else None
            if plan is None:
                return None
        return plan.encode(row, number, restored)

    def _restored(
        self, doc: dict[str, Any], shape: list[tuple[int, str, int, bool]], stamps: list[int]
    ) -> Restored | None:
        """The row's own times and etag when the import restores them (as :func:`json_row` and
        :meth:`RowChecker.check` decide), else None; raises IdnodeError for what the full checker
        rejects."""
        created = time_ns(doc["create_time"], "create_time") if "create_time" in doc else 0
        updated = time_ns(doc["update_time"], "update_time") if "update_time" in doc else 0
        etag = doc.get("etag", "")
        if type(etag) is not str:
            raise InvalidArgument.single("etag", "must be a string")
        if not (self.checker.restores and (created or updated or etag or any(stamps))):
            return None  # times and etag not restored: the row is stamped as a plain one
        now = self.checker.rules.now_ns
        tails = [_tail(ttl, stamp or now) for (_, _, ttl, _), stamp in zip(shape, stamps, strict=True)]
        times = TAG4 + _timestamp(created or now) + b"\x2a" + _timestamp(updated or now)
        return Restored(tails, times, etag)


_FAST_ROW_KEYS = frozenset(("identifier", "values", "owner", "create_time", "update_time", "etag"))
_FAST_VALUE_KEYS = frozenset(("index", "type", "data", "ttl", "timestamp"))


def split_rows(text: str, fmt: Format) -> Iterator[list[str]] | Iterator[str]:
    """The chunk's rows, lazily (objects of one row are freed before the next is made, which keeps
    the process's memory small and warm)."""
    if fmt is Format.CSV:
        if '"' in text or "\r" in text or "\x00" in text:
            return csv_rows(text)
        # Without quotes, CRs or NULs the csv module splits exactly at newlines and commas.
        return (line.split(",") for line in text.split("\n") if line)
    return (line for line in text.split("\n") if line.strip())


def build_chunk(
    chunk: Chunk, settings: Settings, checker: RowChecker, *, want_values: bool = False
) -> ChunkResult:
    """See :func:`_build_chunk`; runs with the cyclic garbage collector paused: a chunk makes
    some 10^5 tuples that live until its end and no reference cycles, and the collector's repeated
    passes over them are wasted work (their memory is freed by reference counting)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_chunk(chunk, settings, checker, want_values=want_values)
    finally:
        if was_enabled:
            gc.enable()


def _build_chunk(
    chunk: Chunk, settings: Settings, checker: RowChecker, *, want_values: bool = False
) -> ChunkResult:
    """Check every row of ``chunk``; see :class:`ChunkResult`. Deterministic: the same chunk and
    settings give the same bytes, so the importer may rebuild a chunk in-process (``want_values``)."""
    # A row's etag number is chunk.start + n: a chunk of L bytes has at most L rows, so the numbers
    # of different chunks never meet.
    result = ChunkResult(chunk.seq, chunk.start, chunk.end)
    good: list[tuple[bytes, int, str, bytes]] = []
    rejects = result.rejects
    fmt = settings.fmt
    columns = settings.columns
    csv = settings.fmt is Format.CSV
    check = checker.check
    now = settings.rules.now_ns
    plan = None
    fast: Any = None
    if csv:
        if checker.plan is None:  # once per checker: the columns are the same for every chunk
            checker.plan = CsvPlan(columns, checker)
        plan = checker.plan if checker.plan.usable else None
        fast = plan.encode if plan is not None else None
    else:
        if checker.plan is None:  # once per checker: it learns the input's shapes as it goes
            checker.plan = JsonPlan(checker)
        fast = checker.plan.encode
    start = chunk.start
    data = chunk.read()
    dirty = False

    def full(row: list[str] | str, n: int) -> None:
        """The full checker's verdict on row ``n``: a good record or a reject."""
        identifier = row_identifier(row, fmt)
        try:
            identifier, values, meta = decode_row(row, fmt, columns, dirty, now)
            checked = check(start + n, identifier, values, meta, stamped=csv)
        except IdnodeError as exc:
            rejects.append(Reject(n, identifier, exc.reason, reject_message(exc)))
            return
        good.append((checked.key, n, checked.owner, checked.data))

    n = 0
    dups: list[tuple[int, bytes]] = []
    native = plan.native if plan is not None and _csvfast is not None else None
    if native is not None and type(data) is bytes and _csvfast.usable(data):  # type: ignore[union-attr]
        # Strict UTF-8 without NULs, CRs only in "\r\n" line ends, quotes only around whole cells
        # with no line end inside (csv.reader splits such a chunk at its line ends, as str.split
        # does one without quotes or CRs; a row comes back without its "\r\n"): the C encoder
        # takes the rows it is sure of and hands back, in order, each one it is not sure of
        # (a row with an escaped "" quote among them), which goes through the very steps of the
        # loop below; so the owner memos fill in the same order, and every result is the same.
        # See registry/bulk/_csvfast.c.
        batch = native.rows(data, start)
        got = batch.next()
        while got is not None:
            n, line = got
            row = next(csv_rows(line.decode()), [""]) if b'"' in line else line.decode().split(",")
            done = fast(row, start + n)  # type: ignore[misc]
            if done is not None:
                good.append((done[0], n, done[1], done[2]))
            else:
                full(row, n)
            got = batch.next()
        n = batch.count
        if settings.runs and not want_values and not settings.stale_owners:
            # Every record goes to the run: encoded straight into its bytes, no object per row.
            run, count, dups, result.superseded, result.skipped = batch.settle_run(
                good, _CONFLICT_CODES[settings.conflict]
            )
            keys, numbers, owners, values = [], [], [], []
            if count:
                _write_run(chunk, settings, result, run, count)
        else:
            keys, numbers, owners, values, dups, result.superseded, result.skipped = batch.settle(
                good, _CONFLICT_CODES[settings.conflict]
            )
    else:
        text, dirty = decode_text(data)
        for n, row in enumerate(split_rows(text, fmt), start=1):
            if fast is not None and not (dirty and bad_utf8(row)):
                done = fast(row, start + n)  # type: ignore[arg-type]
                if done is not None:
                    good.append((done[0], n, done[1], done[2]))
                    continue
            full(row, n)
        keys, numbers, owners, values = _settle(good, settings.conflict, result, dups)
    for number, record in dups:
        rejects.append(Reject(number, _identifier(record), ALREADY_EXISTS, EXISTS_MESSAGE))
    result.row_count = n
    result.missing = sorted(checker.missing)
    rejects.sort(key=lambda r: r.row)
    if settings.runs and not want_values and keys:
        keys, numbers, owners, values = _spill(chunk, settings, result, keys, numbers, owners, values)
    result.keys = keys
    result.rows = numbers
    result.owners = owners
    if settings.sst_dir is not None and not want_values and len(keys) >= settings.sst_min_rows:
        path = Path(settings.sst_dir) / f"chunk-{chunk.seq:09d}-{os.getpid()}.sst"
        writer = SstFileWriter(sst_options())
        writer.open(str(path))
        for key, data in zip(keys, values, strict=True):
            writer[key] = data
        writer.finish()
        result.sst = str(path)
    else:
        result.values = values
    return result


def _spill(
    chunk: Chunk,
    settings: Settings,
    result: ChunkResult,
    keys: list[bytes],
    numbers: list[int],
    owners: list[str],
    values: list[bytes],
) -> tuple[list[bytes], list[int], list[str], list[bytes]]:
    """Write the records of owners not in ``settings.stale_owners`` to a run file (made durable by
    the importer before a checkpoint names it); return the other records."""
    stale = settings.stale_owners
    if stale and any(fold(o) in stale for o in set(owners)):
        direct = [i for i, o in enumerate(owners) if fold(o) in stale]
        spill = [i for i, o in enumerate(owners) if fold(o) not in stale]
        rest = ([keys[i] for i in direct], [numbers[i] for i in direct], [owners[i] for i in direct])
        rest_values = [values[i] for i in direct]
        keys, numbers, values = (
            [keys[i] for i in spill],
            [numbers[i] for i in spill],
            [values[i] for i in spill],
        )
    else:
        rest, rest_values = ([], [], []), []
    if keys:
        _write_run(chunk, settings, result, runs.frame(keys, values, numbers), len(keys))
    return rest[0], rest[1], rest[2], rest_values


def _write_run(chunk: Chunk, settings: Settings, result: ChunkResult, run: bytes, count: int) -> None:
    """Write ``run`` (the bytes of a run file of ``count`` records) as this chunk's run file."""
    assert settings.sst_dir is not None
    path = Path(settings.sst_dir) / f"chunk-{chunk.seq:09d}-{os.getpid()}.run"
    runs.write_run(str(path), run)
    result.run = str(path)
    result.run_records = count


_CONFLICT_CODES = {Conflict.FAIL: 0, Conflict.SKIP: 1, Conflict.REPLACE: 2}
"""``_csvfast.Rows.settle``'s numbers for the policies."""


def _settle(
    good: list[tuple[bytes, int, str, bytes]],
    conflict: Conflict,
    result: ChunkResult,
    dups: list[tuple[int, bytes]],
) -> tuple[list[bytes], list[int], list[str], list[bytes]]:
    """The keys, rows, owners and records of ``good`` (in row order) ascending by key, duplicates
    settled by ``conflict`` (counted in ``result``; with FAIL each later duplicate's row and record
    is added to ``dups``). ``_csvfast.Rows.settle`` is its C twin."""
    good.sort(key=_first)
    kept: list[tuple[bytes, int, str, bytes]] = []
    for item in good:
        if kept and kept[-1][0] == item[0]:
            if conflict is Conflict.REPLACE:
                kept[-1] = item
                result.superseded += 1
            elif conflict is Conflict.SKIP:
                result.skipped += 1
            else:
                dups.append((item[1], item[3]))
            continue
        kept.append(item)
    return [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept], [k[3] for k in kept]


def _first(item: tuple[bytes, int, str, bytes]) -> bytes:
    return item[0]


def _identifier(data: bytes) -> str:
    return decode_record(data).identifier


@dataclass(frozen=True, slots=True)
class Partition:
    """One merge task: the records of ``runs`` (paths, in input order) with lo <= key < hi, which
    lie in bytes ``starts[i]:ends[i]`` of run ``i`` (:func:`registry.bulk.runs.ranges`); a record's
    row in the input is ``bases[i]`` plus its row in run ``i``'s chunk."""

    number: int
    runs: tuple[str, ...]
    bases: tuple[int, ...]
    lo: bytes | None
    hi: bytes | None
    starts: array
    ends: array


@dataclass(slots=True)
class Merged:
    """A merged partition: ``sst`` (None when it holds no record) with ``records`` records,
    ``owners`` {owner: records}; ``duplicates`` records were not kept. Under ``fail``, which
    rejects each, ``rejects`` is a file of their reject lines (None when there are none), written
    as the merge goes: however many duplicates a partition meets, the merge holds at most a batch
    of them."""

    number: int
    sst: str | None
    records: int
    owners: dict[str, int]
    duplicates: int
    rejects: str | None


MERGE_BATCH = 1 << 14


def merge_partition(
    part: Partition, settings: Settings, checker: RowChecker, reader: runs.RangeReader
) -> Merged:
    """Merge one key range of the runs, read through ``reader``, into an SST file (see
    :mod:`registry.bulk.runs`): equal keys keep the latest run's record under ``replace``, else the
    earliest's. Deterministic."""
    assert settings.sst_dir is not None
    # The pid: a worker of a killed import may still be writing its file when a rerun starts.
    path = Path(settings.sst_dir) / f"part-{part.number:06d}-{os.getpid()}.sst"
    ranges = list(zip(part.runs, part.starts, part.ends, strict=True))
    bufs = reader.read_partition(ranges, part.lo, part.hi)  # views: the next partition reuses them
    rejects = path.with_suffix(".rejects")
    spills = settings.conflict is Conflict.FAIL  # which rejects each duplicate; the others count them
    duplicates = records = 0
    merger = runs.Merger(bufs, part.lo, part.hi, settings.conflict is Conflict.REPLACE, plain=True)
    writer = None
    with open(rejects, "wb") if spills else nullcontext() as spill:
        while (batch := merger.next(MERGE_BATCH)) is not None:
            keys, values, found = batch
            if writer is None and keys:
                writer = SstFileWriter(sst_options())
                writer.open(str(path))
            for key, data in zip(keys, values, strict=True):
                writer[key] = data  # type: ignore[index]
            records += len(keys)
            duplicates += len(found)
            if spill is not None and found:
                spill.write(
                    reject_bytes(
                        Reject(part.bases[run] + row, _identifier(data), ALREADY_EXISTS, EXISTS_MESSAGE)
                        for run, row, data in found
                    )
                )
    if spills and not duplicates:
        rejects.unlink()
    counts = merger.counts
    if writer is not None:
        writer.finish()
    owners: dict[str, int] = {}
    for prefix, n in counts.items():
        text = prefix.decode()
        owner = checker._owner(text, text + "/x")  # memoised; every run record's prefix had one
        owners[owner] = owners.get(owner, 0) + n
    spilled = str(rejects) if spills and duplicates else None
    return Merged(part.number, str(path) if records else None, records, owners, duplicates, spilled)


# -- worker process state -------------------------------------------------------------------
_settings: Settings | None = None
_checker: RowChecker | None = None
_ranges: runs.RangeReader | None = None


def init_worker(settings: Settings) -> None:
    """Ready this process for :func:`work` and :func:`merge` (a worker, configured by
    :mod:`registry.bulk.workers`, or the importing process itself): keep the settings, a checker
    and a run range reader."""
    global _settings, _checker, _ranges
    _settings = settings
    _checker = RowChecker(settings.rules)
    _ranges = runs.RangeReader()


def merge(part: Partition) -> Merged:
    """Pool task: :func:`merge_partition` with this process's settings and reader (before the
    first, the chunk phase's free heap goes back to the kernel: :mod:`registry.bulk.malloc`)."""
    assert _settings is not None and _checker is not None, "init_worker was not called"
    assert _ranges is not None
    if not _ranges.merging:
        malloc.hand_back_freed_memory()
    return merge_partition(part, _settings, _checker, _ranges)


def work(chunk: Chunk) -> ChunkResult:
    """Pool task: :func:`build_chunk` with this process's settings."""
    assert _settings is not None and _checker is not None, "init_worker was not called"
    _checker.missing.clear()
    return build_chunk(chunk, _settings, _checker)
