"""``idnode import`` and ``idnode export`` (click commands; resolver.cli adds them to its group).

Both work offline on a stopped node's data directory, the main group's ``--data-dir`` (RocksDB
allows one process at a time; a running node makes them fail with a clear message). Errors reach
the main group, which prints them as one ``error:`` line. The engine,
:mod:`registry.bulk`, also takes a running node's Registry for in-process use.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from registry.bulk import Conflict, Format, ImportSummary, TextProgress, run_export, run_import
from registry.model import Principal
from resolver.bulk_remote import run_remote_import
from resolver.client import IdnodeClient

if TYPE_CHECKING:
    from resolver.cli import Settings


@click.command("import")
@click.pass_obj
@click.argument("source", type=str)
@click.option(
    "--format", "fmt", type=click.Choice([f.value for f in Format]), help="Default: from the file name."
)
@click.option(
    "--on-conflict",
    type=click.Choice([c.value for c in Conflict]),
    default="fail",
    show_default=True,
    help="A row whose identifier exists (in the node or earlier in the file): reject it "
    "(ALREADY_EXISTS), skip it, or replace the record.",
)
@click.option("--reject-file", type=click.Path(dir_okay=False, path_type=Path), help="[SOURCE.rejects.csv]")
@click.option("--create-enterprises", is_flag=True, help="Create missing enterprises (issuing credentials).")
@click.option(
    "--as-enterprise", metavar="PREFIX", help="Import with this enterprise's rights, not the admin's."
)
@click.option(
    "--template",
    "template_ref",
    metavar="NAME@VERSION",
    default="",
    help="Check every row that names no template (JSON Lines 'template') against this published "
    "template and store it with the records.",
)
@click.option(
    "--encoding",
    metavar="NAME",
    help="The input's text encoding [utf-8], e.g. gb18030 (or gbk) for files from Chinese editions "
    "of Windows and Excel; transcoded as it is read.",
)
@click.option("--workers", type=click.IntRange(min=0), help="Worker processes [one per core; 0: none].")
@click.option("--restart", is_flag=True, help="Discard an unfinished import's checkpoint and start afresh.")
@click.option("--compact", is_flag=True, help="Compact the records table afterwards.")
@click.option(
    "--no-space-check",
    is_flag=True,
    help="Start even if the free disk looks too small (the estimate: ~1.3x a CSV's bytes, 0.25-0.4x a "
    "JSON Lines file's, beside the data dir).",
)
@click.option(
    "--via",
    metavar="HOST:PORT",
    help="Import through this running node's management listener (the node keeps serving) with the "
    "group's --credentials, instead of offline into --data-dir.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def import_command(
    settings: Settings,
    source: str,
    fmt: str | None,
    on_conflict: str,
    reject_file: Path | None,
    create_enterprises: bool,
    as_enterprise: str | None,
    template_ref: str,
    encoding: str | None,
    workers: int | None,
    restart: bool,
    compact: bool,
    no_space_check: bool,
    via: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Import identifiers from SOURCE (CSV or JSON Lines, optionally gzip/zstd; - is stdin).

    Bad rows go to the reject file; the import never stops for them. Killed, it resumes when run
    again with the same arguments. See registry/bulk/formats.py for the file formats.
    """
    layout = settings.data_dir
    principal = Principal.enterprise(as_enterprise) if as_enterprise else Principal.admin()
    if via:
        summary = _import_via(
            settings, via, source, fmt, on_conflict, reject_file, template_ref, restart, quiet, encoding,
            create_enterprises or as_enterprise or workers is not None or compact or no_space_check,
        )  # fmt: skip
        _report(summary, as_json)
        return
    summary = run_import(
        layout.db,
        source,
        fmt=fmt,
        on_conflict=on_conflict,
        reject_path=reject_file,
        principal=principal,
        create_enterprises=create_enterprises,
        issue_fingerprint=layout.issue_enterprise_credential if create_enterprises else None,
        workers=workers,
        progress=None if quiet else TextProgress(sys.stderr),
        restart=restart,
        compact=compact,
        template=template_ref,
        check_space=not no_space_check,
        encoding=encoding,
    )
    _report(summary, as_json)


def _import_via(
    settings: Settings,
    via: str,
    source: str,
    fmt: str | None,
    on_conflict: str,
    reject_file: Path | None,
    template_ref: str,
    restart: bool,
    quiet: bool,
    encoding: str | None,
    offline_only: object,
) -> ImportSummary:
    if offline_only:
        raise click.UsageError(
            "--create-enterprises, --as-enterprise, --workers, --compact and --no-space-check are for "
            "offline imports; through a node the credential decides who imports"
        )
    if on_conflict == "replace":
        raise click.UsageError("--on-conflict replace is for offline imports (the API never overwrites)")
    with IdnodeClient(via, credentials=settings.credentials_dir()) as client:
        return run_remote_import(
            client,
            source,
            fmt=fmt,
            skip_existing=on_conflict == "skip",
            reject_path=reject_file,
            template=template_ref,
            progress=None if quiet else TextProgress(sys.stderr),
            restart=restart,
            encoding=encoding,
        )


def _report(summary: ImportSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
        return
    if summary.already_done:
        click.echo("this import had already finished; nothing to do")
    click.echo(
        f"rows read {summary.rows}, imported {summary.imported} ({summary.replaced} replaced), "
        f"rejected {summary.rejected}, skipped {summary.skipped}, "
        f"{summary.seconds:.1f} s, {summary.rows_per_second:,.0f} rows/s"
        + (f" ({summary.merge_seconds:.1f} s of it merging)" if summary.merge_seconds else "")
    )
    if summary.enterprises_created:
        click.echo(f"enterprises created: {', '.join(summary.enterprises_created)}")
    if summary.rejected:
        click.echo(f"rejects: {summary.reject_path}")


@click.command("export")
@click.pass_obj
@click.argument("dest", type=str)
@click.option(
    "--format", "fmt", type=click.Choice([f.value for f in Format]), help="Default: from the file name."
)
@click.option("--parent", metavar="PREFIX", help="Only identifiers under this prefix.")
@click.option("--no-metadata", is_flag=True, help="JSON Lines without owner, times and etags.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Processes that format the records [one per core; 0: none]. The file is the same.",
)
@click.option(
    "--encoding",
    metavar="NAME",
    help="The file's text encoding [utf-8]: gb18030 (or gbk) for Chinese editions of Excel, "
    "utf-8-sig for UTF-8 with the byte-order mark Excel looks for.",
)
@click.option(
    "--no-space-check",
    is_flag=True,
    help="Start even if DEST's filesystem looks too small (estimated from the first page of records).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def export_command(
    settings: Settings,
    dest: str,
    fmt: str | None,
    parent: str | None,
    no_metadata: bool,
    workers: int | None,
    encoding: str | None,
    no_space_check: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Export records to DEST (.csv/.jsonl, optionally .gz/.zst; - is stdout), in the formats
    `idnode import` reads: exporting and importing into an empty node gives the same records."""
    summary = run_export(
        settings.data_dir.db,
        dest,
        fmt=fmt,
        parent=parent,
        metadata=not no_metadata,
        progress=None if quiet else TextProgress(sys.stderr, label="export"),
        workers=workers,
        check_space=not no_space_check,
        encoding=encoding,
    )
    if as_json:
        click.echo(json.dumps(summary.to_dict()), err=dest == "-")
    else:
        click.echo(f"exported {summary.records} records in {summary.seconds:.1f} s", err=True)
