"""Bulk import and export of identifier records (``idnode import`` / ``idnode export``).

Public API::

    run_import(target, source, *, fmt=None, on_conflict="fail", reject_path=None, principal=None,
               create_enterprises=False, issue_fingerprint=None, restore=True, workers=None,
               chunk_bytes=8 MiB, sst_min_rows=2000, progress=None, restart=False,
               compact=False, template="", check_space=True) -> ImportSummary
    run_export(target, dest, *, fmt=None, parent=None, metadata=True, progress=None,
               workers=None) -> ExportSummary

``target`` is a running node's :class:`registry.service.Registry` or a stopped node's RocksDB path.
Importing through a node over gRPC (the node keeps serving): :mod:`resolver.bulk_remote`.
File formats: :mod:`registry.bulk.formats`. Resuming: :mod:`registry.bulk.journal`.
"""

from registry.bulk.chunks import Conflict
from registry.bulk.export import ExportSummary, run_export
from registry.bulk.formats import Format
from registry.bulk.importer import BulkImportError, ImportSummary, run_import
from registry.bulk.progress import Progress, SilentProgress, TextProgress
from registry.bulk.space import NotEnoughDisk

__all__ = [
    "BulkImportError",
    "Conflict",
    "ExportSummary",
    "Format",
    "ImportSummary",
    "NotEnoughDisk",
    "Progress",
    "SilentProgress",
    "TextProgress",
    "run_export",
    "run_import",
]
