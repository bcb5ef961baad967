"""Bulk import through a running node: ``idnode import --via HOST:PORT``.

The input is read and cut exactly as by the offline importer (:mod:`registry.bulk`), each row
decoded locally (a row that cannot be decoded is rejected here as MALFORMED_ROW), and the rows
sent as pipelined BatchCreateIdentifiers calls of up to 2,000 rows. The node applies every rule
(identifier grammar, ownership, templates, ALREADY_EXISTS) and its caches, on every worker, stay
coherent because every write is an ordinary API write. Slower than offline, but the node keeps
serving.

Resuming: each batch's ``request_id`` is a hash of (input identity, chunk offset, batch number),
so a batch re-sent after a kill is answered by the node with its first answer (no duplicate
ALREADY_EXISTS). Progress is kept in a small journal file beside the reject file
(``REJECTS.journal``), replaced atomically after every chunk; the reject file is cut back to the
length the journal records, so a resumed run ends with the same node state, totals and reject file
as an uninterrupted one.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from google.rpc import status_pb2

from registry import codec, limits
from registry.bulk.chunks import ALREADY_EXISTS, Reject, split_rows
from registry.bulk.formats import (
    MALFORMED,
    Chunk,
    Format,
    Source,
    decode_row,
    decode_text,
    row_identifier,
    source_identity,
    text_encoding,
)
from registry.bulk.progress import Progress, SilentProgress
from registry.bulk.rows import reject_message
from registry.bulk.session import (
    ImportSummary,
    default_reject_path,
    encoding_option,
    failpoint,
    fingerprint,
    import_format,
    open_reader,
    start_rejects,
    summary,
    unfinished,
    write_rejects,
)
from registry.errors import IdnodeError
from registry.pb import record_pb2
from resolver.client import IdnodeClient, status_details

BATCH_ROWS = limits.BATCH_CREATE_MAX


@dataclass(slots=True)
class RemoteJournal:
    """Progress of an import through a node (cumulative over runs)."""

    fingerprint: str
    state: str = "running"
    offset: int = 0
    rows: int = 0
    imported: int = 0
    rejected: int = 0
    skipped: int = 0
    reject_bytes: int = 0
    seconds: float = 0.0

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> RemoteJournal | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None


def journal_path(reject_path: Path) -> Path:
    return reject_path.with_name(reject_path.name + ".journal")


def status_reason(status: status_pb2.Status) -> tuple[str, str]:
    """(reason, one-line message) of a per-item error status, as the offline reject file words them."""
    reason, violations = status_details(status)
    return reason or str(status.code), "; ".join(f"{f}: {d}" for f, d in violations) or status.message


Row = tuple[int, str, list[record_pb2.Value], str]
"""(chunk-relative row, identifier, values, the template the row names or "")."""


def _decode_rows(
    chunk: Chunk, fmt: Format, columns: Sequence, rejects: list[Reject]
) -> tuple[list[Row], int]:
    """The chunk's decodable rows (:data:`Row`); undecodable rows go to ``rejects``. Returns the
    rows and the chunk's row count."""
    text, dirty = decode_text(chunk.read())
    out: list[Row] = []
    n = 0
    for n, row in enumerate(split_rows(text, fmt), start=1):
        identifier = row_identifier(row, fmt)
        try:
            identifier, values, meta = decode_row(row, fmt, columns, dirty)
            out.append((n, identifier, [codec.value_to_pb(v) for v in values], meta.template))
        except IdnodeError as exc:
            rejects.append(Reject(n, identifier, exc.reason or MALFORMED, reject_message(exc)))
        except (UnicodeEncodeError, ValueError) as exc:  # lone surrogates that protobuf refuses
            rejects.append(Reject(n, identifier, MALFORMED, f"row: {exc}"))
    return out, n


def run_remote_import(
    client: IdnodeClient,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    fmt: Format | str | None = None,
    skip_existing: bool = False,
    reject_path: str | os.PathLike[str] | None = None,
    template: str = "",
    progress: Progress | None = None,
    restart: bool = False,
    pipeline: int = 4,
    chunk_bytes: int = 4 << 20,
    batch_rows: int = BATCH_ROWS,
    encoding: str | None = None,
) -> ImportSummary:
    """Import ``source`` through the node ``client`` talks to (the management listener, with a
    credential: the administrator's or an enterprise's). Rows the node refuses go to the reject
    file with the node's reason; with ``skip_existing`` an ALREADY_EXISTS answer counts the row as
    skipped instead. ``pipeline`` batches are in flight at once. ``encoding``: the input's text
    encoding when not UTF-8 (as :func:`registry.bulk.run_import`). See the module docstring."""
    text_encoding(encoding)  # an unknown one fails before anything is opened
    started = time.monotonic()
    fmt = import_format(source, fmt)
    reject = Path(reject_path) if reject_path is not None else default_reject_path(source)
    jpath = journal_path(reject)
    progress = progress or SilentProgress()
    identity = source_identity(source)
    src = Source(source, encoding)
    try:
        reader, columns = open_reader(src, fmt, chunk_bytes)
        prints = fingerprint(reader, identity, fmt.value, skip_existing, template, *encoding_option(encoding))
        journal = None if restart else RemoteJournal.load(jpath)
        resumed = journal is not None and journal.fingerprint == prints
        if journal is not None and not resumed and journal.state != "done":
            raise unfinished(reject)
        if journal is None or not resumed:
            journal = RemoteJournal(prints)
        if journal.state == "done":
            return _summary(journal, reject, started, 0, resumed=True, already_done=True)
        rows_at_start = journal.rows
        if resumed and journal.offset:
            reader.skip_to(journal.offset)
        journal.reject_bytes = start_rejects(reject, resumed=resumed, reject_bytes=journal.reject_bytes)
        if not resumed:
            journal.save(jpath)
        with open(reject, "ab") as rejects_file, ThreadPoolExecutor(pipeline) as pool:
            # Chunks whose batches are in flight, oldest first; a chunk is settled (journal, rejects)
            # once all its batches are answered, strictly in input order.
            window: collections.deque[tuple[Chunk, int, list[Reject], list[tuple[list[Row], Future]]]]
            window = collections.deque()
            sent = 0

            def settle() -> None:
                chunk, count, rejects, batches = window.popleft()
                imported = skipped = 0
                for rows, future in batches:
                    for (n, identifier, *_), result in zip(rows, future.result(), strict=True):
                        if result.WhichOneof("result") == "etag":
                            imported += 1
                            continue
                        reason, message = status_reason(result.error)
                        if reason == ALREADY_EXISTS and skip_existing:
                            skipped += 1
                        else:
                            rejects.append(Reject(n, identifier, reason, message))
                rejects.sort(key=lambda r: r.row)
                written = write_rejects(rejects_file, rejects, base=journal.rows)
                journal.offset = chunk.end
                journal.rows += count
                journal.imported += imported
                journal.rejected += len(rejects)
                journal.skipped += skipped
                journal.reject_bytes += written
                journal.save(jpath)
                progress.update(journal.rows, journal.rejected, src.position(), src.size)

            for chunk in reader:
                rejects: list[Reject] = []
                rows, count = _decode_rows(chunk, fmt, columns, rejects)
                batches = []
                for b in range(0, len(rows), batch_rows):
                    part = rows[b : b + batch_rows]
                    request_id = hashlib.sha256(f"{identity}\0{chunk.start}\0{b}".encode()).hexdigest()[:32]
                    items = [(ident, values) for _, ident, values, _ in part]
                    own = [row_template for *_, row_template in part]
                    future = pool.submit(
                        client.batch_create, items, request_id, template=template, templates=own
                    )
                    batches.append((part, future))
                    sent += 1
                    failpoint("after-batch", sent, delay=0.2)  # some in-flight batches reach the node
                window.append((chunk, count, rejects, batches))
                while sum(len(w[3]) for w in window) > pipeline * 2:
                    settle()
            while window:
                settle()
        journal.state = "done"
        journal.seconds += time.monotonic() - started
        journal.save(jpath)
        progress.update(journal.rows, journal.rejected, src.size or 0, src.size)
        progress.close()
        return _summary(journal, reject, started, journal.rows - rows_at_start, resumed=resumed)
    finally:
        src.close()


def _summary(
    journal: RemoteJournal,
    reject: Path,
    started: float,
    rows: int,
    *,
    resumed: bool,
    already_done: bool = False,
) -> ImportSummary:
    return summary(
        rows=journal.rows,
        imported=journal.imported,
        rejected=journal.rejected,
        skipped=journal.skipped,
        started=started,
        rows_this_run=rows,
        reject_path=reject,
        resumed=resumed,
        already_done=already_done,
    )
