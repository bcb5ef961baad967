"""What the offline importer (:mod:`registry.bulk.importer`) and the import through a node
(:mod:`resolver.bulk_remote`) share: reading the input's format and header, the import's
fingerprint, the reject file, the summary and the crash-testing failpoint; and opening a stopped
node's store, which the offline import and export share."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from registry.bulk.chunks import Reject, reject_bytes, reject_text
from registry.bulk.formats import (
    ChunkReader,
    Column,
    Format,
    Source,
    guess_format,
    parse_header,
    text_encoding,
)
from registry.errors import FailedPrecondition
from registry.rocks import RocksStore
from registry.service import META_NODE_PREFIX
from registry.store import Table

REJECT_HEADER = "row,identifier,reason,message\n"

Input = str | os.PathLike[str] | BinaryIO


class BulkImportError(FailedPrecondition):
    """The import as a whole cannot run (unreadable header, a checkpoint of another import...)."""

    default_reason = "IMPORT_FAILED"


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """Totals of an import, cumulative over all runs of it (a resumed import counts the rows of the
    interrupted runs too); ``seconds`` and ``rows_per_second`` are for this run only.
    ``rows == imported + rejected + skipped`` always holds."""

    rows: int
    imported: int
    rejected: int
    skipped: int
    replaced: int
    """Imported rows that overwrote an identifier already in the node or earlier in the input."""
    enterprises_created: tuple[str, ...]
    seconds: float
    rows_per_second: float
    reject_path: str
    resumed: bool = False
    already_done: bool = False
    """The same import had already finished; nothing was done."""
    merge_seconds: float = 0.0
    """Of ``seconds``, those spent merging run files into the node (an offline import into empty
    key ranges; 0 otherwise): the rest read, checked and sorted the input."""

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["enterprises_created"] = list(self.enterprises_created)
        return out


def summary(
    *,
    rows: int,
    imported: int,
    rejected: int,
    skipped: int,
    replaced: int = 0,
    enterprises_created: Sequence[str] = (),
    started: float,
    rows_this_run: int,
    reject_path: Path,
    resumed: bool,
    already_done: bool = False,
    merge_seconds: float = 0.0,
) -> ImportSummary:
    """The summary of a run that began at ``time.monotonic()`` value ``started``."""
    seconds = time.monotonic() - started
    return ImportSummary(
        rows=rows,
        imported=imported,
        rejected=rejected,
        skipped=skipped,
        replaced=replaced,
        enterprises_created=tuple(enterprises_created),
        seconds=round(seconds, 3),
        rows_per_second=round(rows_this_run / seconds, 1) if seconds > 0 else 0.0,
        reject_path=str(reject_path),
        resumed=resumed,
        already_done=already_done,
        merge_seconds=round(merge_seconds, 3),
    )


def source_name(source: Input) -> str:
    """The input's path, the name of an open file, or ``-``."""
    return os.fspath(source) if isinstance(source, str | os.PathLike) else str(getattr(source, "name", "-"))


def default_reject_path(source: Input) -> Path:
    name = os.fspath(source) if isinstance(source, str | os.PathLike) else "-"
    return Path("idnode-import.rejects.csv") if name == "-" else Path(name + ".rejects.csv")


def import_format(source: Input, fmt: Format | str | None) -> Format:
    """``fmt``, or what the input's name says (BulkImportError when it says nothing)."""
    if fmt is None:
        try:
            return guess_format(source_name(source))
        except ValueError as exc:
            raise BulkImportError(str(exc)) from None
    return Format(fmt)


def open_reader(
    src: Source, fmt: Format, chunk_bytes: int, *, by_reference: bool = False
) -> tuple[ChunkReader, tuple[Column, ...]]:
    """A chunk reader of ``src`` and, for CSV, the header's columns (``by_reference``: see
    :class:`ChunkReader`)."""
    reader = ChunkReader(src, fmt, chunk_bytes, by_reference=by_reference)
    if fmt is not Format.CSV:
        return reader, ()
    try:
        return reader, tuple(parse_header(reader.header))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BulkImportError(f"bad CSV header: {exc}") from None


def encoding_option(encoding: str | None) -> tuple[str, ...]:
    """What :func:`fingerprint` takes of an import's ``encoding``: nothing for UTF-8, so that the
    fingerprint of an import of a UTF-8 input is what it was before encodings could be given."""
    name = text_encoding(encoding)
    return () if name is None else (name,)


def fingerprint(reader: ChunkReader, *options: object) -> str:
    """What tells one import from another: its input's header and ``options`` (JSON values)."""
    return hashlib.sha256(
        json.dumps([*options, reader.header.decode("utf-8", "replace")]).encode()
    ).hexdigest()


def unfinished(reject: Path) -> BulkImportError:
    return BulkImportError(
        f"an unfinished import of another input or with other options uses the reject file "
        f"{reject}; run that import again to finish it, or restart"
    )


def start_rejects(reject: Path, *, resumed: bool, reject_bytes: int) -> int:
    """Cut a resumed import's reject file back to ``reject_bytes``, or start a new one; return its
    length."""
    if resumed:
        with open(reject, "r+b") as f:
            f.truncate(reject_bytes)
        return reject_bytes
    reject.parent.mkdir(parents=True, exist_ok=True)
    reject.write_text(REJECT_HEADER)
    return len(REJECT_HEADER)


SORT_REJECTS_MAX_BYTES = 256 << 20
"""A reject file up to this size is put in row order once the runs are merged (their duplicates
are found last); a bigger one keeps the merge's rejects after the others."""


def sort_rejects(reject: Path) -> None:
    """Put the lines of the reject file in row order (atomically: a kill leaves either order; the
    length never changes, so a resumed import's checkpoint still fits it). A file it cannot read
    back as reject lines is left as it is: sorting is a courtesy, never a reason to fail."""
    if reject.stat().st_size > SORT_REJECTS_MAX_BYTES:
        return
    try:
        with open(reject, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
        body = sorted(lines[1:], key=lambda line: int(line[0]))
    except (ValueError, IndexError, csv.Error):
        return
    if body == lines[1:]:
        return
    tmp = reject.with_name(reject.name + ".sorting")
    with open(tmp, "wb") as f:
        f.write((REJECT_HEADER + reject_text(body)).encode("utf-8", "backslashreplace"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, reject)
    sync_path(reject.parent)


def sync_path(path: str | os.PathLike[str]) -> None:
    """Make a file's data, or a directory's entries (new and renamed names), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def write_rejects(file: BinaryIO, rejects: Iterable[Reject], base: int = 0) -> int:
    """Append the lines of ``rejects`` (their rows counted from ``base``) to the reject file
    durably; return the number of bytes written."""
    data = reject_bytes(rejects, base)
    file.write(data)
    file.flush()
    os.fsync(file.fileno())
    return len(data)


def append_rejects(file: BinaryIO, path: str) -> int:
    """Append the reject lines of the file at ``path`` (a merge worker's, see
    :attr:`~registry.bulk.chunks.Merged.rejects`) to the reject file durably; return the number of
    bytes appended. Copies 1 MiB at a time."""
    with open(path, "rb") as src:
        shutil.copyfileobj(src, file, 1 << 20)
        size = src.tell()
    file.flush()
    os.fsync(file.fileno())
    return size


_FAILPOINT = os.environ.get("IDNODE_BULK_FAILPOINT", "")
"""Crash-testing hook: ``NAME:N`` makes the import SIGKILL itself at point NAME for the N-th
chunk or batch (offline ``before-commit``: rejects written, nothing committed; ``before-ingest``:
the chunk's batch committed, its SST file not ingested; through a node ``after-batch``: batch N
sent). Empty in normal use."""


def failpoint_armed(name: str, n: int) -> bool:
    return bool(_FAILPOINT) and f"{name}:{n}" == _FAILPOINT


def failpoint(name: str, n: int, *, delay: float = 0.0) -> None:
    """SIGKILL this process (after ``delay`` seconds) if the failpoint ``name:n`` is armed."""
    if failpoint_armed(name, n):
        time.sleep(delay)
        os.kill(os.getpid(), signal.SIGKILL)


def stopped_node_store(path: str | os.PathLike[str], **options: int | bool) -> RocksStore:
    """The store of a stopped node at ``path`` (``DATA_DIR/db``), opened with ``options``, for an
    offline import or export. Raises FailedPrecondition (reason NOT_INITIALISED), creating nothing,
    when no node was initialised there: a mistyped ``--data-dir`` must not export an empty node
    with success, or leave an empty database behind."""
    db = Path(path)
    problem = FailedPrecondition(
        f"there is no node at {db.parent}: the data directory is not initialised; run `idnode init` "
        "first, or give the node's --data-dir",
        reason="NOT_INITIALISED",
    )
    if not (db / "CURRENT").is_file():  # RocksDB's pointer to its manifest: a database is there
        raise problem
    store = RocksStore(db, **options)  # type: ignore[arg-type]
    if store.get(Table.META, META_NODE_PREFIX) is None:
        store.close()
        raise problem
    return store
