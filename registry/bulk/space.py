"""The disk an offline import needs, checked before it starts; and telling a full disk apart.

An offline import (:mod:`registry.bulk.importer`) writes its sorted runs into a scratch directory
beside the store (``DATA_DIR/db.bulk/``), merges them into SST files there, and moves those into the
store; the runs go only when the import is done. So its peak use of disk is the runs, the files
being merged and the store's growth, together. Measured with the generated data (10^6 rows,
``bench/README.md``, "Session 10"), in bytes per byte of (uncompressed) input:

=========  ==============  =============  ===============
format     scratch, peak   store growth   together, peak
=========  ==============  =============  ===============
CSV        0.896           0.659          1.227
JSON Lines 0.263           0.196          0.370
=========  ==============  =============  ===============

(185-189 bytes a row in all, whatever the format: JSON Lines repeats its keys on every line; as
``idnode export`` writes it, with a time on every value, 0.218.) The estimate takes those with a
margin (:data:`PEAK_PER_INPUT_BYTE`, :data:`PEAK_PER_EXPORTED_JSONL_BYTE`, :data:`SCRATCH_SHARE`,
:data:`STORE_SHARE`) and adds :data:`FIXED_BYTES` for what does not grow with the input (memtable
flushes, the reject file, RocksDB's own files). Records much larger or smaller than the generated
ones (3-8 values, ~260 bytes of data) move the true figure; it is an estimate, and the check can be
skipped.

A compressed input's size is extrapolated from how much its first :data:`SAMPLE_BYTES` expand.
Standard input (or any input whose size is unknown) is not checked.

An export (:func:`check_export_space`) is weighed by its first page of lines, packed as its file
will be, times the records the node's counters hold; it is checked before the file is opened, which
would truncate it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from registry.bulk.formats import Format, Source, compressor
from registry.bulk.session import BulkImportError

PEAK_PER_INPUT_BYTE = {Format.CSV: 1.30, Format.JSONL: 0.40}
"""Peak disk bytes per uncompressed input byte, scratch and store together (measured 1.227 and
0.370, plus ~6-8%)."""
PEAK_PER_EXPORTED_JSONL_BYTE = 0.25
"""The same for JSON Lines as ``idnode export`` writes it, a time on every value (measured 0.218):
the same records in 851 bytes a row instead of 510."""
SCRATCH_SHARE = 0.75
"""The scratch directory's part of the peak (measured 0.73 for both formats), for when it lies
on another filesystem than the store."""
STORE_SHARE = 0.56
"""The store's part of the peak (measured 0.54 for both formats)."""
FIXED_BYTES = 64 << 20
SAMPLE_BYTES = 8 << 20
"""Decompressed bytes read from the start of a compressed input to estimate its whole size."""
HEAD_BYTES = 64 << 10
"""Bytes of the input's start kept to tell its shape (:func:`peak_per_input_byte`)."""


class NotEnoughDisk(BulkImportError):
    """The filesystem of the store or of the import's scratch files has not enough free space:
    before the import starts (the estimate), or because it filled up while it ran; or the
    filesystem an export writes to has not enough for it (:func:`check_export_space`)."""

    default_reason = "NOT_ENOUGH_DISK"


@dataclass(frozen=True, slots=True)
class DiskNeed:
    """Free bytes an import needs: on the scratch directory's filesystem and on the store's (the
    same filesystem, usually: then the peak counts, not the sum)."""

    peak: int
    scratch: int
    store: int
    input_bytes: int
    """The uncompressed input the figures were reckoned from."""


def estimate_need(input_bytes: int, per_input_byte: float, *, scratch_held: int = 0) -> DiskNeed:
    """What importing ``input_bytes`` of uncompressed input needs free, at ``per_input_byte``
    (:func:`peak_per_input_byte`), given that its scratch directory already holds ``scratch_held``
    bytes (a resumed import's runs: already on the disk, so not needed again). A resumed import in
    its merge phase is over-estimated by what it has already moved into the store."""
    peak = int(per_input_byte * input_bytes) + FIXED_BYTES
    return DiskNeed(
        peak=max(0, peak - scratch_held),
        scratch=max(0, int(SCRATCH_SHARE * peak) - scratch_held),
        store=int(STORE_SHARE * peak),
        input_bytes=input_bytes,
    )


def peak_per_input_byte(fmt: Format, head: bytes) -> float:
    """Peak disk bytes per input byte for ``fmt`` input that starts with ``head``."""
    if fmt is Format.JSONL and b'"timestamp"' in head.split(b"\n", 1)[0]:
        return PEAK_PER_EXPORTED_JSONL_BYTE
    return PEAK_PER_INPUT_BYTE[fmt]


@dataclass(frozen=True, slots=True)
class InputSize:
    size: int
    """Bytes once decompressed (extrapolated for gzip and zstd)."""
    head: bytes
    """Its first :data:`HEAD_BYTES`, decompressed."""


def measure_input(source: str | os.PathLike[str] | BinaryIO, encoding: str | None = None) -> InputSize | None:
    """How many bytes ``source`` holds once decompressed (and transcoded from ``encoding``): its
    size if it is a plain UTF-8 file, an extrapolation from its first :data:`SAMPLE_BYTES`
    otherwise; None for standard input, an open stream or an empty file."""
    if not isinstance(source, str | os.PathLike) or os.fspath(source) == "-":
        return None
    src = Source(source, encoding)
    try:
        if not src.size:
            return None
        if not src.compressed and not src.transcoded:
            return InputSize(src.size, src.read(HEAD_BYTES))
        sample = src.read(SAMPLE_BYTES)
        head = sample[:HEAD_BYTES]
        if len(sample) < SAMPLE_BYTES:  # the whole input
            return InputSize(len(sample), head)
        return InputSize(int(src.size * len(sample) / max(src.position(), 1)), head)
    finally:
        src.close()


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem (``path`` or its nearest
    existing parent)."""
    st = os.statvfs(_nearest_existing(path))
    return st.f_bavail * st.f_frsize


def check_free_space(need: DiskNeed, store_dir: Path, scratch_dir: Path, fmt: Format) -> None:
    """Raise :class:`NotEnoughDisk` if ``need`` does not fit in what the filesystems of
    ``store_dir`` and ``scratch_dir`` have free."""
    if _device(store_dir) == _device(scratch_dir):
        places = [(store_dir, need.peak)]
    else:
        places = [(scratch_dir, need.scratch), (store_dir, need.store)]
    for place, wanted in places:
        free = free_bytes(place)
        if wanted > free:
            raise NotEnoughDisk(
                f"not enough free disk: this import needs about {size_text(wanted)} on the filesystem "
                f"of {place} (its runs and the store's new files, reckoned from "
                f"{size_text(need.input_bytes)} of {fmt.value.upper()} input), and "
                f"{size_text(free)} is free; free some space, or skip this estimate with "
                "--no-space-check (an import that fills the disk stops at its last checkpoint and "
                "resumes when run again)",
                metadata={"needed_bytes": str(wanted), "free_bytes": str(free), "path": str(place)},
            )


def out_of_space(exc: BaseException, store_dir: Path, scratch_dir: Path | None) -> NotEnoughDisk:
    """The error an import that filled the disk ends with: what is free now, and how to go on."""
    held = ""
    if scratch_dir is not None and scratch_dir.exists():
        held = (
            f"; its scratch files ({size_text(tree_bytes(scratch_dir))} under {scratch_dir}) are "
            "part of that progress"
        )
    return NotEnoughDisk(
        f"the disk filled up during the import ({_first_line(exc)}; {size_text(free_bytes(store_dir))} "
        f"free now on the filesystem of {store_dir}); nothing it committed is lost: free some space "
        f"and run the same command again to resume{held}",
        reason="DISK_FULL",
    )


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (allocated blocks, as ``du`` counts them)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def size_text(n: int) -> str:
    """``18.4 GB``, ``734 MB``, ``12 kB`` (decimal units, as ``df -H``)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 100 * scale else f"{n / scale:,.0f} {unit}"
    return f"{n} B"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _device(path: Path) -> int:
    return os.stat(_nearest_existing(path)).st_dev


def _nearest_existing(path: Path) -> Path:
    """``path``, or its nearest parent that exists (the scratch directory is made later)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


EXPORT_MARGIN = 1.10
"""An export's estimate: its first page's bytes per record times the records to export, plus
this share (records differ from page to page) and :data:`EXPORT_FIXED_BYTES`."""
EXPORT_FIXED_BYTES = 16 << 20


def export_need(dest: Path, records: int, sample: bytes, sample_records: int, header: bytes) -> int:
    """Bytes exporting ``records`` records to ``dest`` is estimated to write: ``sample``, the
    lines of the first ``sample_records`` of them, packed as ``dest``'s name says
    (:func:`registry.bulk.formats.compressor`), gives the bytes a record; plus the ``header``,
    :data:`EXPORT_MARGIN` and :data:`EXPORT_FIXED_BYTES`."""
    pack = compressor(dest)
    per_record = len(pack(sample) if pack is not None else sample) / max(sample_records, 1)
    return int((len(header) + per_record * records) * EXPORT_MARGIN) + EXPORT_FIXED_BYTES


def check_export_space(dest: Path, records: int, sample: bytes, sample_records: int, header: bytes) -> None:
    """Raise :class:`NotEnoughDisk` if :func:`export_need` is more than ``dest``'s filesystem has
    free. What ``dest`` itself holds there counts as free: the export replaces it."""
    if sample_records <= 0 or records <= 0:
        return
    need = export_need(dest, records, sample, sample_records, header)
    free = free_bytes(dest.parent)
    with contextlib.suppress(OSError):
        held = dest.stat()
        if held.st_dev == os.stat(_nearest_existing(dest.parent)).st_dev:
            free += held.st_blocks * 512
    if need > free:
        raise NotEnoughDisk(
            f"not enough free disk: this export needs about {size_text(need)} on the filesystem of "
            f"{dest.parent} ({records:,} records, reckoned from the first {sample_records:,}), and "
            f"{size_text(free)} is free; free some space, write elsewhere or compressed (.gz, "
            ".zst), or skip this estimate with --no-space-check",
            metadata={"needed_bytes": str(need), "free_bytes": str(free), "path": str(dest.parent)},
        )
