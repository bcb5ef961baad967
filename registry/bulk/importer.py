"""The bulk import engine: :func:`run_import`.

Pipeline: the calling process cuts the input into chunks of whole rows (:class:`ChunkReader`; an
uncompressed file is cut by reference, and each worker reads its chunks' bytes from the file
itself); worker processes (one per core, started first: :mod:`registry.bulk.workers`) check and
encode each chunk's rows and, for big chunks, write
them as a sorted SST file; the calling process then commits the chunks strictly in input order.
A commit looks the chunk's keys up in the node (earlier chunks are committed by then, so duplicates
within the file are found the same way as records already in the node; offline, only keys that may
exist are read, see :meth:`_Importer._lookup`), settles conflicts by the policy, and writes, in one
atomic step, the records (WriteBatch) or the pending SST file name, the counter changes, one
IMPORT_BATCH audit entry and the checkpoint; then ingests the SST file. See :mod:`registry.bulk.journal` for
how a killed import resumes.

Offline, records of owners whose key range held nothing when the import began never meet the node
chunk by chunk: each chunk's are written as a sorted run file, and once the input is read the runs
are merged (an external merge sort, :mod:`registry.bulk.runs`), one key range per worker, into SST
files that do not overlap; each goes straight to RocksDB's bottom level, so no compaction rewrites
what was imported. Duplicates across chunks are settled in that merge.

Reading and checking, memory is bounded by the number of chunks in flight (workers + 2) times the
chunk size, whatever the input's size. Merging, a worker holds one partition's records of every
run, about :attr:`_Importer.PARTITION_RECORDS` records (~100 MiB of generated ~250-byte rows)
however many runs there are: each run's range is cut to the partition's keys as it is read, into
one mapping the worker reuses from partition to partition (:meth:`runs.RangeReader.read_partition`).
What does grow with the number of runs is small: each run's kept layout (~4 KB) and its place in
the merge. Workers peaked at ~164 MiB at 10^6 rows and 176 MiB at 10^8 (bench/README.md,
"Session 9").
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import queue
import secrets
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from registry import codec
from registry.audit import Draft, Operation
from registry.bulk import runs
from registry.bulk.chunks import (
    ALREADY_EXISTS,
    EXISTS_MESSAGE,
    ChunkResult,
    Conflict,
    Merged,
    Partition,
    Reject,
    Settings,
    _csvfast,
    build_chunk,
    init_worker,
    merge,
    work,
)
from registry.bulk.formats import Chunk, ChunkReader, Format, Source, source_identity, text_encoding
from registry.bulk.journal import Checkpoint, checkpoint_key
from registry.bulk.progress import Progress, SilentProgress
from registry.bulk.rows import RowChecker, RowRules
from registry.bulk.session import (
    BulkImportError,
    ImportSummary,
    append_rejects,
    default_reject_path,
    encoding_option,
    failpoint,
    failpoint_armed,
    fingerprint,
    import_format,
    open_reader,
    sort_rejects,
    source_name,
    start_rejects,
    stopped_node_store,
    summary,
    sync_path,
    unfinished,
    write_rejects,
)
from registry.bulk.space import (
    NotEnoughDisk,
    check_free_space,
    estimate_need,
    measure_input,
    out_of_space,
    peak_per_input_byte,
    tree_bytes,
)
from registry.bulk.workers import WorkerPool
from registry.errors import AlreadyExists, PermissionDenied
from registry.identifier import fold, prefix_range
from registry.model import Principal, Role
from registry.pb import record_pb2
from registry.rocks import RocksStore
from registry.service import COUNT_TOTAL, Registry, count_key
from registry.store import Add, ConditionFailed, Expect, Put, Table, Txn, is_out_of_space


def run_import(
    target: Registry | str | os.PathLike[str],
    source: str | os.PathLike[str] | BinaryIO,
    *,
    fmt: Format | str | None = None,
    on_conflict: Conflict | str = Conflict.FAIL,
    reject_path: str | os.PathLike[str] | None = None,
    principal: Principal | None = None,
    create_enterprises: bool = False,
    issue_fingerprint: Callable[[str], str] | None = None,
    restore: bool = True,
    workers: int | None = None,
    chunk_bytes: int = 8 << 20,
    sst_min_rows: int = 2000,
    progress: Progress | None = None,
    restart: bool = False,
    compact: bool = False,
    clock: Callable[[], int] = time.time_ns,
    template: str = "",
    check_space: bool = True,
    encoding: str | None = None,
) -> ImportSummary:
    """Import every row of ``source`` into a node; return the totals.

    ``target`` is a running node's :class:`Registry` (writes go through its store and its record
    commit listeners and record cache are told of every written record, so readers never see
    stale records) or the path of a
    stopped node's RocksDB directory (``DATA_DIR/db``), opened exclusively for the import.

    ``source`` is a path, ``-`` (stdin) or a binary file; gzip and zstd are detected; ``encoding``
    names its text encoding when it is not UTF-8 (``gb18030``...: transcoded as it is read). ``fmt``
    (``csv``/``jsonl``) defaults to what the file name says. Each row is checked exactly as the API
    checks a create by ``principal`` (default: the administrator); a bad row is written to the
    reject file (``row,identifier,reason,message``; default ``SOURCE.rejects.csv``) and never
    half-applied. ``row`` counts data rows from 1 (not the CSV header, not blank lines; a quoted CSV
    field may span lines). ``on_conflict`` settles rows whose identifier exists in the node or earlier in the
    input (:class:`Conflict`). ``create_enterprises`` (administrator only) creates the missing
    enterprise of a row under the node prefix, calling ``issue_fingerprint(prefix)`` for its
    credential. ``restore`` keeps the times and etags of JSON Lines rows exported by
    ``idnode export`` (administrator only). ``template`` (``name@version``) checks every row against
    that published template and stores it in the records; without it, rows of an enterprise that
    requires a template are rejected (reason INVALID_ARGUMENT, field ``template``), as by the API.

    Every committed chunk adds one audit entry (IMPORT_BATCH, with the chunk's counts) in the same
    atomic write as its records.

    Resumable: the checkpoint is keyed by the reject file's path. Running the same import again after
    a kill continues where the last committed chunk ended and ends in the same node state, counts
    and reject file as an uninterrupted run; running it again after it finished does nothing
    (``already_done``). A different import with the same reject file while one is unfinished raises
    :class:`BulkImportError` unless ``restart``.

    ``workers`` processes check rows (default: one per core; 0: in this process). ``compact``
    compacts the records table at the end.

    Disk: offline, the import first estimates the free space it needs beside the store (its runs
    and the store's new files, :mod:`registry.bulk.space`) and raises :class:`NotEnoughDisk` before
    reading a row if that is not free (``check_space=False`` skips the estimate; stdin is never
    checked). A disk that fills up anyway ends the import with :class:`NotEnoughDisk` (reason
    ``DISK_FULL``): what it committed stays, and running it again resumes it.
    """
    text_encoding(encoding)  # an unknown one fails before anything is opened
    processes = len(os.sched_getaffinity(0)) if workers is None else workers  # the cores it may use
    with contextlib.ExitStack() as stack:
        # First, while this process may still run a single thread, so the workers can be forked.
        pool = stack.enter_context(WorkerPool(processes)) if processes > 0 else None
        if isinstance(target, Registry):
            registry, exclusive = target, False
        else:
            # The existence checks need the filter and index blocks of every file in the block cache
            # (~12 MiB per 10^7 keys); a cache too small for them turns each check into disk reads.
            # Bulk-load settings: overlapping chunk files are compacted in fewer, larger batches.
            store = stack.enter_context(
                contextlib.closing(stopped_node_store(target, block_cache_bytes=256 << 20, bulk_load=True))
            )
            registry, exclusive = Registry(store, clock=clock), True
        return _Importer(registry, exclusive=exclusive, clock=clock).run(
            source=source,
            fmt=fmt,
            conflict=Conflict(on_conflict),
            reject_path=reject_path,
            principal=principal,
            create_enterprises=create_enterprises,
            issue_fingerprint=issue_fingerprint,
            restore=restore,
            pool=pool,
            chunk_bytes=chunk_bytes,
            sst_min_rows=sst_min_rows,
            progress=progress,
            restart=restart,
            compact=compact,
            template=template,
            check_space=check_space,
            encoding=encoding,
        )


class _Importer:
    def __init__(self, registry: Registry, *, exclusive: bool, clock: Callable[[], int]) -> None:
        self.registry = registry
        self.store = registry.store
        self.exclusive = exclusive
        self.clock = clock
        self.seen: KeyFilter | None = None
        """Keys this run committed (offline only, made on first use: an import that writes run
        files never needs it; see :meth:`_lookup`)."""
        self.fresh: dict[str, bool] = {}
        """Owner prefix -> its key range held no record when this run first met it."""
        self.syncer: _RunSyncer | None = None
        self.sst_dir: Path | None = None
        """This import's run and SST files (offline into RocksDB only)."""
        self.merge_seconds = 0.0
        """Seconds this run spent merging run files (:class:`ImportSummary`)."""

    def run(
        self,
        *,
        source: str | os.PathLike[str] | BinaryIO,
        fmt: Format | str | None,
        conflict: Conflict,
        reject_path: str | os.PathLike[str] | None,
        principal: Principal | None,
        create_enterprises: bool,
        issue_fingerprint: Callable[[str], str] | None,
        restore: bool,
        pool: WorkerPool | None,
        chunk_bytes: int,
        sst_min_rows: int,
        progress: Progress | None,
        restart: bool,
        compact: bool,
        template: str,
        check_space: bool,
        encoding: str | None,
    ) -> ImportSummary:
        started = time.monotonic()
        principal = principal or Principal.admin()
        if create_enterprises and principal.role is not Role.ADMIN:
            raise PermissionDenied("only the administrator may create enterprises", reason="ADMIN_ONLY")
        if create_enterprises and issue_fingerprint is None:
            raise ValueError("create_enterprises needs issue_fingerprint")
        self.principal = principal
        self.issue_fingerprint = issue_fingerprint
        self.source_name = source_name(source)
        fmt = import_format(source, fmt)
        reject = Path(reject_path) if reject_path is not None else default_reject_path(source)
        self.reject_path = reject
        self.ckpt_key = checkpoint_key(reject)
        self.progress = progress or SilentProgress()

        src = Source(source, encoding)
        try:
            # With workers, each reads its own chunks' bytes from the file where it can: handing
            # them over through a pipe cost this process more CPU than cutting them.
            reader, columns = open_reader(src, fmt, chunk_bytes, by_reference=pool is not None)
            ck, resumed = self._open_checkpoint(
                fingerprint(
                    reader, source_identity(source), fmt.value, conflict.value, principal.role.value,
                    principal.prefix, create_enterprises, restore, template, *encoding_option(encoding),
                ),
                restart,
            )  # fmt: skip
            if ck.state == "done":
                scratch = self._scratch_path()
                if scratch is not None and scratch.exists():  # killed between "done" and cleaning up
                    _remove_tree(scratch)
                return self._summary(ck, started, 0, resumed=True, already_done=True)
            if check_space and self.exclusive:
                self._check_space(source, fmt, resumed, encoding)
            # Into a running node, records go through WriteBatches: its commit listeners (the
            # reader workers' caches) must be told every written record's value.
            self.sst_dir = self._sst_dir() if self.exclusive else None
            self._clear_scratch(ck if resumed else None)
            if resumed:
                self._finish_pending(ck)
                if ck.offset:
                    reader.skip_to(ck.offset)
            ck.reject_bytes = start_rejects(reject, resumed=resumed, reject_bytes=ck.reject_bytes)
            rows_at_start = ck.rows
            enterprises = {k: v for k, v in self.store.scan(Table.ENTERPRISES, b"", b"\xff" * 8, 1 << 62)}
            if self.sst_dir is not None and ck.stale is None:
                ck.stale = sorted(
                    k.decode("utf-8", "surrogatepass")
                    for k in enterprises
                    if self.store.scan(Table.RECORDS, k + b".", k + b"0", 1)
                )
            elif self.sst_dir is not None:
                self._check_fresh(ck, enterprises)
            rules = RowRules(
                self.registry.node_prefix,
                enterprises,
                principal,
                ck.now_ns,
                ck.nonce,
                create_enterprises,
                restore,
                template,
                {k: v for k, v in self.store.scan(Table.TEMPLATES, b"", b"\xff" * 8, 1 << 62)},
            )
            self.settings = Settings(
                rules,
                fmt,
                columns,
                conflict,
                str(self.sst_dir) if self.sst_dir else None,
                max(sst_min_rows, 1),
                runs=self.sst_dir is not None,
                stale_owners=frozenset(o.encode("utf-8", "surrogatepass") for o in ck.stale or ()),
            )
            self.checker = RowChecker(rules)
            self.conflict = conflict
            self.ck = ck
            self.rejects = open(reject, "ab")  # noqa: SIM115 - closed below
            self.progress.update(ck.rows, ck.rejected, reader.position(), src.size)
            gc_was_enabled = gc.isenabled()
            gc.disable()  # chunk results are big and acyclic: the collector's passes are wasted
            try:
                self._pipeline(reader, src, pool)
            finally:
                self.rejects.close()
                if gc_was_enabled:
                    gc.enable()
            ck = self.ck
            if ck.runs:  # the merge's rejects were appended last
                sort_rejects(reject)
            ck.state = "done"
            ck.seconds += time.monotonic() - started
            self.store.commit(Txn(writes=(Put(Table.META, self.ckpt_key, ck.encode()),)))
            if self.sst_dir is not None:
                _remove_tree(self.sst_dir)
            if compact and isinstance(self.store, RocksStore):
                self.store.compact(Table.RECORDS)
            self.progress.update(ck.rows, ck.rejected, src.size or 0, src.size)
            self.progress.close()
            return self._summary(ck, started, ck.rows - rows_at_start, resumed=resumed)
        except Exception as exc:
            if self.sst_dir is None or isinstance(exc, NotEnoughDisk) or not is_out_of_space(exc):
                raise
            raise out_of_space(exc, Path(self.store.path), self.sst_dir) from exc
        finally:
            src.close()

    def _check_space(
        self, source: str | os.PathLike[str] | BinaryIO, fmt: Format, resumed: bool, encoding: str | None
    ) -> None:
        """Raise :class:`NotEnoughDisk` if the estimate of what importing ``source`` needs is not
        free. A resumed import's scratch files count as had; an abandoned one's are about to go."""
        scratch = self._scratch_path()
        measured = measure_input(source, encoding)
        if scratch is None or measured is None:
            return
        need = estimate_need(
            measured.size,
            peak_per_input_byte(fmt, measured.head),
            scratch_held=tree_bytes(scratch) if resumed else 0,
        )
        check_free_space(need, Path(self.store.path), scratch, fmt)

    # -- checkpoint ----------------------------------------------------------------------------
    def _open_checkpoint(self, fingerprint: str, restart: bool) -> tuple[Checkpoint, bool]:
        raw = self.store.get(Table.META, self.ckpt_key)
        fresh = Checkpoint(fingerprint, now_ns=self.clock(), nonce=secrets.randbits(63))
        if raw is None:
            return fresh, False
        ck = Checkpoint.decode(raw)
        if restart:
            # The abandoned import's last commit may name files not yet ingested; that commit
            # already counted their records, so they go in before its scratch files are dropped.
            self._finish_pending(ck)
            return fresh, False
        if ck.fingerprint == fingerprint:
            return ck, True
        if ck.state == "done":
            return fresh, False
        raise unfinished(self.reject_path)

    def _scratch_path(self) -> Path | None:
        """Where this import keeps its run and SST files (None: a store that cannot ingest)."""
        store = self.store
        if not isinstance(store, RocksStore):
            return None
        return Path(str(store.path) + ".bulk") / self.ckpt_key.decode().split(":")[1]

    def _sst_dir(self) -> Path | None:
        path = self._scratch_path()
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            sync_path(str(path.parent))
        return path

    def _check_fresh(self, ck: Checkpoint, enterprises: dict[bytes, bytes]) -> None:
        """On resume: the owners this import found empty must still hold nothing where the merge has
        yet to write (from the first unmerged partition on), or merged records would silently
        replace records written while the import was stopped (by the node, or another import)."""
        stale = set(ck.stale or ())
        lowest = b""
        if ck.splits is not None and ck.merged > len(ck.splits):
            return  # every partition is merged
        if ck.splits is not None and ck.merged > 0:
            lowest = ck.splits[ck.merged - 1].encode("utf-8", "surrogatepass")
        for key in enterprises:
            if key.decode("utf-8", "surrogatepass") in stale:
                continue
            lower, upper = key + b".", key + b"0"
            found = self.store.scan(Table.RECORDS, max(lower, lowest), upper, 1)
            if found:
                raise BulkImportError(
                    f"records were written under {key.decode('utf-8', 'replace')} while this import "
                    f"was interrupted (e.g. {found[0][0].decode('utf-8', 'replace')}); its merge would "
                    "overwrite them, so it cannot resume. Run it again with --restart: the records it "
                    "already merged then count as records the node holds (--on-conflict decides)"
                )

    def _finish_pending(self, ck: Checkpoint) -> None:
        """Ingest the SST files the last run committed but may not have ingested."""
        there = [p for p in ck.pending if os.path.exists(p)]
        if there and isinstance(self.store, RocksStore):
            self.store.ingest(Table.RECORDS, there)
        ck.pending = []

    def _clear_scratch(self, ck: Checkpoint | None) -> None:
        """Delete what the scratch directory holds beyond ``ck`` (None: a new import): SST and run
        files of chunks and partitions not committed. Pending SST files and committed runs stay."""
        if self.sst_dir is None:
            return
        keep = set(ck.pending) if ck is not None else set()
        keep.update(str(self._run_path(i)) for i in range(ck.runs if ck is not None else 0))
        for leftover in [*self.sst_dir.glob("*.sst"), *self.sst_dir.glob("*.run")]:
            if str(leftover) not in keep:
                leftover.unlink()

    # -- the pipeline --------------------------------------------------------------------------
    def _pipeline(self, reader: ChunkReader, src: Source, pool: WorkerPool | None) -> None:
        if self.sst_dir is not None:
            self.syncer = _RunSyncer(self.registry, self.sst_dir)
        try:
            self._read_and_merge(reader, src, pool)
        except runs.RunCorrupt as exc:  # damaged, or written by a version of another run format
            raise BulkImportError(
                f"a run file of this import cannot be read ({exc}); rerun with --restart to import "
                "the input afresh"
            ) from exc
        finally:
            if self.syncer is not None:
                self.syncer.close()
                self.syncer = None

    def _read_and_merge(self, reader: ChunkReader, src: Source, pool: WorkerPool | None) -> None:
        """Check and write every chunk, then merge the runs: in ``pool``'s workers, or in this
        process when it is None."""
        if pool is None:
            init_worker(self.settings)
            for chunk in reader:
                self._commit(chunk, work(chunk))
                self.progress.update(self.ck.rows, self.ck.rejected, reader.position(), src.size)
            self._drain()
            merge_began = time.monotonic()
            for part in self._partitions(0):
                self._commit_merged(merge(part))
            self._merged_for(merge_began)
            return
        pool.configure(self.settings)
        window: collections.deque = collections.deque()
        for chunk in reader:
            window.append((chunk, pool.apply_async(work, chunk)))
            while len(window) > pool.processes + 1:
                done_chunk, pending = window.popleft()
                self._commit(done_chunk, pending.get())
                self.progress.update(self.ck.rows, self.ck.rejected, reader.position(), src.size)
        while window:
            done_chunk, pending = window.popleft()
            self._commit(done_chunk, pending.get())
            self.progress.update(self.ck.rows, self.ck.rejected, reader.position(), src.size)
        self._drain()
        merge_began = time.monotonic()
        for merged in pool.imap(merge, self._partitions(pool.processes)):
            self._commit_merged(merged)
        self._merged_for(merge_began)

    def _merged_for(self, began: float) -> None:
        """Note that this run's merge, if it had anything to merge, began at ``began``."""
        if self.ck.runs:
            self.merge_seconds = time.monotonic() - began

    # -- merging the runs ----------------------------------------------------------------------
    PARTITION_RECORDS = 250_000
    """About this many run records per merge partition (one SST file each): a merging worker holds
    about this many records of the runs in memory at a time."""

    SAMPLES = 200_000
    """At most about this many run index keys are held to cut the partitions."""

    def _partitions(self, workers: int) -> list[Partition]:
        """The merge partitions still to commit; the first call of an import cuts the runs' key
        space at quantiles of their index keys and checkpoints the cuts (a resumed merge must cut
        the same way)."""
        ck = self.ck
        if not ck.runs:
            return []
        assert self.sst_dir is not None
        paths = tuple(str(self._run_path(i)) for i in range(ck.runs))
        if ck.splits is None:
            # Index keys sample each run evenly; at most ~SAMPLES of them are kept, each run's from
            # its own offset: runs of one input are alike, so taking the same positions in every
            # run would stack the samples at a few points of the key space.
            entries = sum(runs.index_entries(path) for path in paths)
            step = max(1, entries // self.SAMPLES)
            samples: list[bytes] = []
            total = 0
            for i, path in enumerate(paths):
                tail, size = runs.tail_bytes(path)
                _, count, keys, _ = runs.read_index(tail, size - len(tail))
                total += count
                samples += keys[i % step :: step]
            samples.sort()
            parts = max(1, -(-total // self.PARTITION_RECORDS))
            if total >= 2 * self.PARTITION_RECORDS // 5:  # enough to keep every worker busy
                parts = max(parts, workers)
            parts = min(parts, len(samples))
            cuts = sorted({samples[len(samples) * p // parts] for p in range(1, parts)})
            ck.splits = [c.decode("utf-8", "surrogatepass") for c in cuts]
            self.store.commit(Txn(writes=(Put(Table.META, self.ckpt_key, ck.encode()),)))
        cuts = [c.encode("utf-8", "surrogatepass") for c in ck.splits]
        # Each partition's byte range in each run, from the runs' indexes (read once more here, so
        # that a resumed merge needs nothing but the cuts).
        starts = [array("Q") for _ in range(len(cuts) + 1)]
        ends = [array("Q") for _ in range(len(cuts) + 1)]
        for path in paths:
            tail, size = runs.tail_bytes(path)
            for p, (start, end) in enumerate(runs.ranges(tail, cuts, size)):
                starts[p].append(start)
                ends[p].append(end)
        bounds: list[bytes | None] = [None, *cuts, None]
        self.progress.merging(ck.merged, len(cuts) + 1)
        return [
            Partition(p, paths, tuple(ck.run_bases), bounds[p], bounds[p + 1], starts[p], ends[p])
            for p in range(ck.merged, len(cuts) + 1)
        ]

    def _commit_merged(self, merged: Merged) -> None:
        """Commit one merged partition: its counts, rejects and checkpoint, then ingest its file."""
        ck = self.ck
        rejected = skipped = replaced = 0
        if self.conflict is Conflict.FAIL:
            rejected = merged.duplicates
        elif self.conflict is Conflict.SKIP:
            skipped = merged.duplicates
        else:
            replaced = merged.duplicates
        reject_bytes = ck.reject_bytes + (
            append_rejects(self.rejects, merged.rejects) if merged.rejects else 0
        )
        dropped = rejected + skipped
        updated = replace(
            ck,
            imported=ck.imported - dropped,
            rejected=ck.rejected + rejected,
            skipped=ck.skipped + skipped,
            replaced=ck.replaced + replaced,
            reject_bytes=reject_bytes,
            merged=ck.merged + 1,
            pending=[merged.sst] if merged.sst else [],
        )
        adds = [Add(count_key(owner), n) for owner, n in merged.owners.items()]
        adds.append(Add(COUNT_TOTAL, merged.records))
        draft = self._draft(
            merge_partition=merged.number,
            rows=0,
            imported=merged.records + replaced,
            replaced=replaced,
            rejected=rejected,
            skipped=skipped,
        )
        txn = Txn((), (Put(Table.META, self.ckpt_key, updated.encode()),), tuple(adds))
        failpoint("before-merge-commit", merged.number)
        self._commit_and_ingest(txn, draft, updated.pending, "before-merge-ingest", merged.number)
        if merged.rejects:
            os.unlink(merged.rejects)
        updated.pending = []
        self.ck = updated
        self.progress.merging(updated.merged, len(ck.splits or ()) + 1)

    def _commit_and_ingest(self, txn: Txn, draft: Draft, paths: list[str], point: str, n: int) -> None:
        """Commit ``txn`` (which names ``paths`` as pending) with its audit entry, then ingest."""
        store = self.store
        audit = self.registry.audit
        if paths:  # the files' names must survive a power loss once a checkpoint names them
            sync_path(str(Path(paths[0]).parent))
        if failpoint_armed(point, n):  # the state a crash inside ingest() leaves
            audit.commit(txn, [draft], apply=lambda t: store.ingest(Table.RECORDS, [], t))  # type: ignore[attr-defined]
            failpoint(point, n)
        audit.commit(txn, [draft], apply=lambda t: store.ingest(Table.RECORDS, paths, t))  # type: ignore[attr-defined]

    def _draft(self, **counts: int) -> Draft:
        """The IMPORT_BATCH audit entry of one commit (a chunk's or a merged partition's)."""
        detail = {"source": self.source_name} | {name: str(n) for name, n in counts.items()}
        return Draft(Operation.IMPORT_BATCH, self.principal, "bulk-import", detail=detail)

    def _run_path(self, i: int) -> Path:
        assert self.sst_dir is not None
        return self.sst_dir / f"run-{i:09d}.run"

    def _drain(self) -> None:
        if self.syncer is not None:
            self.syncer.drain()

    def _ensure_enterprises(self, prefixes: list[str]) -> None:
        registry = self.registry
        created = []
        for prefix in prefixes:
            if registry.enterprise(prefix) is not None:
                continue
            code = prefix[len(registry.node_prefix) + 1 :]
            assert self.issue_fingerprint is not None
            try:
                registry.create_enterprise(self.principal, code, "", "", self.issue_fingerprint)
            except AlreadyExists:
                continue
            created.append(prefix)
        if created:
            self.ck.enterprises_created.extend(created)
            self._drain()
            self.store.commit(Txn(writes=(Put(Table.META, self.ckpt_key, self.ck.encode()),)))

    def _commit(self, chunk: Chunk, res: ChunkResult) -> None:
        """Settle conflicts of one chunk against the node and commit it with the checkpoint."""
        if res.missing:
            self._ensure_enterprises(res.missing)
        while True:
            try:
                self._try_commit(chunk, res)
                return
            except ConditionFailed:
                # Another writer (a running node's API) got in between: forget this attempt's
                # rejects and look again.
                self.rejects.truncate(self.ck.reject_bytes)
                self.rejects.seek(0, os.SEEK_END)

    def _try_commit(self, chunk: Chunk, res: ChunkResult) -> None:
        ck = self.ck
        base = ck.rows
        keys = res.keys
        olds = self._lookup(res) if keys else []
        conflicts = [i for i, old in enumerate(olds) if old is not None]
        rejects = [replace(r, row=base + r.row) for r in res.rejects]
        skipped = res.skipped
        values = res.values
        sst = res.sst
        kept: range | list[int] = range(len(keys))
        if conflicts and self.conflict is not Conflict.REPLACE:
            if values is None:  # rare: rebuild the chunk here, with its values, instead of the SST
                rebuilt = build_chunk(chunk, self.settings, self.checker, want_values=True)
                assert rebuilt.values is not None
                by_key = dict(zip(rebuilt.keys, rebuilt.values, strict=True))  # it holds run records too
                values = [by_key[k] for k in keys]
                if sst:
                    os.unlink(sst)
                    sst = res.sst = None
                res.values = values
            for i in conflicts:
                if self.conflict is Conflict.FAIL:
                    ident = codec.decode_record(values[i]).identifier
                    rejects.append(Reject(base + res.rows[i], ident, ALREADY_EXISTS, EXISTS_MESSAGE))
                else:
                    skipped += 1
            dropped = set(conflicts)
            kept = [i for i in range(len(keys)) if i not in dropped]
            rejects.sort(key=lambda r: r.row)
        deltas: dict[bytes, int] = collections.Counter()
        replaced = res.superseded
        owners = res.owners
        new = 0
        if not conflicts and isinstance(kept, range):  # all new: count per owner in C
            for owner, n in collections.Counter(owners).items():
                deltas[count_key(owner)] += n
            new = len(keys)
            kept_iter: range | list[int] = range(0)
        else:
            kept_iter = kept
        for i in kept_iter:
            old = olds[i]
            if old is None:
                deltas[count_key(owners[i])] += 1
                new += 1
            else:
                replaced += 1
                old_owner = record_pb2.Record.FromString(old).owner
                if fold(old_owner) != fold(owners[i]):
                    deltas[count_key(old_owner)] -= 1
                    deltas[count_key(owners[i])] += 1
        deltas[COUNT_TOTAL] += new
        reject_bytes = ck.reject_bytes
        if rejects:
            reject_bytes += write_rejects(self.rejects, rejects)
        run_bases = ck.run_bases
        if res.run is not None:
            # Named by its place among the committed runs (the checkpoint below commits it); a
            # crash before that commit leaves a file the resumed import deletes or overwrites.
            os.replace(res.run, self._run_path(ck.runs))
            run_bases = [*run_bases, base]
        updated = replace(
            ck,
            offset=res.end,
            rows=ck.rows + res.row_count,
            runs=ck.runs + (res.run is not None),
            run_bases=run_bases,
            imported=ck.imported + len(kept) + res.superseded + res.run_records,
            rejected=ck.rejected + len(rejects),
            skipped=ck.skipped + skipped,
            replaced=ck.replaced + replaced,
            reject_bytes=reject_bytes,
            pending=[sst] if sst else [],
            enterprises_created=list(ck.enterprises_created),
        )
        expects = () if self.exclusive else tuple(Expect(Table.RECORDS, keys[i], olds[i]) for i in kept)
        adds = tuple(Add(name, delta) for name, delta in deltas.items() if delta)
        checkpoint = Put(Table.META, self.ckpt_key, updated.encode())
        draft = self._draft(
            chunk=res.seq,
            offset=res.start,
            rows=res.row_count,
            imported=len(kept) + res.superseded,
            sorted=res.run_records,
            replaced=replaced,
            rejected=len(rejects),
            skipped=skipped,
        )
        run = str(self._run_path(ck.runs)) if res.run is not None else None
        if run is not None and not keys and self.syncer is not None:
            # Nothing for the node yet: the run's durability and this checkpoint go to the background.
            assert not adds
            self.syncer.submit(run, Txn(writes=(checkpoint,)), draft, res.seq)
        else:
            self._drain()  # a checkpoint committed now must not be overtaken by an older one
            failpoint("before-commit", res.seq)
            if run is not None:  # this commit names the run, which must be durable first
                sync_path(run)
                sync_path(str(self.sst_dir))
            if sst:
                txn = Txn(expects, (checkpoint,), adds)
                self._commit_and_ingest(txn, draft, [sst], "before-ingest", res.seq)
            else:
                assert values is not None
                puts = [Put(Table.RECORDS, keys[i], values[i]) for i in kept]
                self.registry.audit.commit(Txn(expects, (*puts, checkpoint), adds), [draft])
        updated.pending = []
        self.ck = updated
        if not self.exclusive:  # an offline store has no readers whose cache could be stale
            assert values is not None  # no SST files into a running node
            self.registry._records_changed([(keys[i], values[i]) for i in kept])

    def _lookup(self, res: ChunkResult) -> list[bytes | None]:
        """The stored record of each key of ``res`` (None: absent).

        Offline (exclusive), reading is skipped where absence is proven: a key whose owner's whole
        key range held no record when this run first met the owner can only have been written by
        this run since, and every key this run wrote is in :attr:`seen` (a Bloom filter: no false
        negatives; a false positive only costs a real read)."""
        keys = res.keys
        if not self.exclusive:
            return self.store.get_many(Table.RECORDS, keys)
        if self.seen is None:
            self.seen = KeyFilter()
        fresh = self.fresh
        for owner in set(res.owners):
            if owner not in fresh:
                lower, upper = prefix_range(owner)
                fresh[owner] = not self.store.scan(Table.RECORDS, lower, upper, 1)
        owners = res.owners
        # The chunk's keys are distinct (the worker settled duplicates within it), so they can
        # enter the filter now: a later retry of this chunk is not possible offline.
        if all(fresh[o] for o in set(owners)):
            suspects = self.seen.test_and_add(keys)
        else:
            hits = set(self.seen.test_and_add(keys))
            suspects = [i for i, o in enumerate(owners) if not fresh[o] or i in hits]
        olds: list[bytes | None] = [None] * len(keys)
        if suspects:
            found = self.store.get_many(Table.RECORDS, [keys[i] for i in suspects])
            for i, old in zip(suspects, found, strict=True):
                olds[i] = old
        return olds

    def _summary(
        self, ck: Checkpoint, started: float, rows_this_run: int, *, resumed: bool, already_done: bool = False
    ) -> ImportSummary:
        return summary(
            rows=ck.rows,
            imported=ck.imported,
            rejected=ck.rejected,
            skipped=ck.skipped,
            replaced=ck.replaced,
            enterprises_created=ck.enterprises_created,
            started=started,
            rows_this_run=rows_this_run,
            reject_path=self.reject_path,
            resumed=resumed,
            already_done=already_done,
            merge_seconds=self.merge_seconds,
        )


class _RunSyncer:
    """Commits run-only chunks in the background: makes each chunk's run file (and its name) durable,
    then commits the chunk's checkpoint and audit entry, in submission order, so workers never wait
    on the disk and the checkpoint never names a run a power loss could take back.

    The queue is bounded (the import waits when the disk falls behind); the first error is raised
    by the next :meth:`submit` or :meth:`drain`."""

    def __init__(self, registry: Registry, directory: Path, depth: int = 4) -> None:
        self._audit = registry.audit
        self._directory = directory
        self._queue: queue.Queue[tuple[str, Txn, Draft, int] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="bulk-run-sync", daemon=True)
        self._thread.start()

    def submit(self, run: str, txn: Txn, draft: Draft, chunk: int) -> None:
        """Commit ``txn`` (chunk number ``chunk``'s checkpoint) once ``run`` is durable."""
        self._raise()
        self._queue.put((run, txn, draft, chunk))

    def drain(self) -> None:
        """Wait until everything submitted is committed."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None:
                    run, txn, draft, chunk = item
                    sync_path(run)
                    sync_path(str(self._directory))  # the run's new name
                    failpoint("before-commit", chunk)  # here: every earlier chunk is committed
                    self._audit.commit(txn, [draft])
            except BaseException as exc:  # handed to the importing thread
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()


class KeyFilter:
    """A Bloom filter of keys in a fixed 32 MiB (two probes from the key's 64-bit hash, so memory
    does not grow with the input; false positives rise slowly past ~10^7 keys and only cost reads).
    Process-local: Python's hash of bytes is salted per process and not stored anywhere."""

    BITS = 1 << 28

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS >> 3)

    def test_and_add(self, keys: list[bytes]) -> list[int]:
        """Add ``keys`` (distinct); return the positions of those that may have been added before."""
        if _csvfast is not None:  # the same probes in C
            return _csvfast.filter_test_and_add(self._bits, keys)
        bits = self._bits
        mask = self.BITS - 1
        out = []
        for i, key in enumerate(keys):
            h = hash(key)
            a = h & mask
            b = (h >> 28) & mask
            ma = 1 << (a & 7)
            mb = 1 << (b & 7)
            a >>= 3
            b >>= 3
            if bits[a] & ma and bits[b] & mb:
                out.append(i)
            else:
                bits[a] |= ma
                bits[b] |= mb
        return out


def _remove_tree(path: Path) -> None:
    for child in path.glob("*"):
        child.unlink()
    path.rmdir()
    with contextlib.suppress(OSError):  # other imports' directories may remain
        path.parent.rmdir()


__all__ = ["BulkImportError", "Conflict", "ImportSummary", "run_import"]
