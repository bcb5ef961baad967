"""The import checkpoint: how far an import got, stored in the node itself.

It lives in Table.META under ``bulk_import:<hash of the reject file's path>`` and is written in the
same atomic commit as the records and counter changes of each chunk, so the node's data and the
checkpoint can never disagree. (For an SST chunk the commit also names the file still to ingest; see
:meth:`registry.rocks.RocksStore.ingest`.) The reject file is truncated back to the length recorded
here on resume, so it never repeats a line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

KEY_PREFIX = b"bulk_import:"


def checkpoint_key(reject_path: str | os.PathLike[str]) -> bytes:
    """One import (and its checkpoint) per reject file."""
    return KEY_PREFIX + hashlib.sha256(str(Path(reject_path).resolve()).encode()).hexdigest()[:32].encode()


@dataclass(slots=True)
class Checkpoint:
    """Totals are cumulative over every run of the same import."""

    fingerprint: str
    now_ns: int
    nonce: int
    state: str = "running"
    """``running`` or ``done``."""
    offset: int = 0
    """Decompressed input offset where the next run continues (0: from the first data row)."""
    rows: int = 0
    imported: int = 0
    rejected: int = 0
    skipped: int = 0
    replaced: int = 0
    reject_bytes: int = 0
    pending: list[str] = field(default_factory=list)
    """SST files committed for ingestion but possibly not ingested yet."""
    enterprises_created: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stale: list[str] | None = None
    """Folded owners whose key range held records when the import began (None: not yet known);
    the records of all others go through run files (:mod:`registry.bulk.runs`)."""
    runs: int = 0
    """Run files committed: ``run-000000000.run`` ... in the import's scratch directory."""
    run_bases: list[int] = field(default_factory=list)
    """Rows before each run's chunk (a run's rows count from its chunk's first row)."""
    splits: list[str] | None = None
    """The keys (UTF-8) that cut the runs into merge partitions; set when merging begins."""
    merged: int = 0
    """Merge partitions committed (their SST files ingested or named in ``pending``)."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint:
        return cls(**json.loads(data))
