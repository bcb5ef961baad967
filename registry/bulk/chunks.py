"""Turning one chunk of input into sorted, checked, encoded records (runs in worker processes).

A chunk's result holds its good records sorted by key, either written to an SST file (big chunks,
when the target store can ingest) or returned as bytes, plus its rejects. Duplicates inside the
chunk are settled here by the conflict policy; duplicates against the node (and against earlier
chunks, which are committed by then) are settled by the importer at commit time.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rocksdict import SstFileWriter

from registry.bulk.formats import (
    Chunk,
    Column,
    Format,
    bad_utf8,
    csv_rows,
    csv_values,
    decode_text,
    json_row,
    malformed,
)
from registry.bulk.rows import RowChecker, RowRules, reject_message
from registry.codec import decode_record
from registry.errors import IdnodeError
from registry.rocks import sst_options

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


@dataclass(frozen=True, slots=True)
class Settings:
    """What every worker needs; picklable. ``sst_dir`` None means never write SST files."""

    rules: RowRules
    fmt: Format
    columns: tuple[Column, ...]
    conflict: Conflict
    sst_dir: str | None
    sst_min_rows: int


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


def _rows(text: str, fmt: Format) -> Iterator[list[str]] | Iterator[str]:
    """The chunk's rows, lazily (objects of one row are freed before the next is made, which keeps
    the process's memory small and warm)."""
    if fmt is Format.CSV:
        return csv_rows(text)
    return (line for line in text.split("\n") if line.strip())


def build_chunk(
    chunk: Chunk, settings: Settings, checker: RowChecker, *, want_values: bool = False
) -> ChunkResult:
    """Check every row of ``chunk``; see :class:`ChunkResult`. Deterministic: the same chunk and
    settings give the same bytes, so the importer may rebuild a chunk in-process (``want_values``)."""
    # A row's etag number is chunk.start + n: a chunk of L bytes has at most L rows, so the numbers
    # of different chunks never meet.
    text, dirty = decode_text(chunk.data)
    result = ChunkResult(chunk.seq, chunk.start, chunk.end)
    good: list[tuple[bytes, int, str, bytes]] = []
    rejects = result.rejects
    rows = _rows(text, settings.fmt)
    n = 0
    columns = settings.columns
    csv = settings.fmt is Format.CSV
    check = checker.check
    now = settings.rules.now_ns
    for n, row in enumerate(rows, start=1):
        identifier = ""
        try:
            if csv:
                identifier = row[0]  # type: ignore[assignment]
                if dirty and bad_utf8(row):
                    raise malformed("is not valid UTF-8")
                values = csv_values(row[1:], columns, now)
                checked = check(chunk.start + n, identifier, values, stamped=True)
            else:
                if dirty and bad_utf8(row):  # type: ignore[arg-type]
                    raise malformed("is not valid UTF-8")
                identifier, values, meta = json_row(row)  # type: ignore[arg-type]
                checked = check(chunk.start + n, identifier, values, meta)
        except IdnodeError as exc:
            rejects.append(Reject(n, identifier, exc.reason, reject_message(exc)))
            continue
        good.append((checked.key, n, checked.owner, checked.data))
    result.row_count = n
    result.missing = sorted(checker.missing)
    good.sort(key=_first)
    kept: list[tuple[bytes, int, str, bytes]] = []
    conflict = settings.conflict
    for item in good:
        if kept and kept[-1][0] == item[0]:
            if conflict is Conflict.REPLACE:
                kept[-1] = item
                result.superseded += 1
            elif conflict is Conflict.SKIP:
                result.skipped += 1
            else:
                rejects.append(Reject(item[1], _identifier(item[3]), ALREADY_EXISTS, EXISTS_MESSAGE))
            continue
        kept.append(item)
    rejects.sort(key=lambda r: r.row)
    result.keys = [k[0] for k in kept]
    result.rows = [k[1] for k in kept]
    result.owners = [k[2] for k in kept]
    if settings.sst_dir is not None and not want_values and len(kept) >= settings.sst_min_rows:
        path = Path(settings.sst_dir) / f"chunk-{chunk.seq:09d}-{os.getpid()}.sst"
        writer = SstFileWriter(sst_options())
        writer.open(str(path))
        for key, _, _, data in kept:
            writer[key] = data
        writer.finish()
        result.sst = str(path)
    else:
        result.values = [k[3] for k in kept]
    return result


def _first(item: tuple[bytes, int, str, bytes]) -> bytes:
    return item[0]


def _identifier(data: bytes) -> str:
    return decode_record(data).identifier


# -- worker process state -------------------------------------------------------------------
_settings: Settings | None = None
_checker: RowChecker | None = None


def init_worker(settings: Settings) -> None:
    """Pool initializer: keep the settings and a checker for this process."""
    global _settings, _checker
    _settings = settings
    _checker = RowChecker(settings.rules)


def work(chunk: Chunk) -> ChunkResult:
    """Pool task: :func:`build_chunk` with this process's settings."""
    assert _settings is not None and _checker is not None, "init_worker was not called"
    _checker.missing.clear()
    return build_chunk(chunk, _settings, _checker)
