"""``idnode import`` and ``idnode export`` (click commands; resolver.cli adds them to its group).

Both work offline on a stopped node's data directory (RocksDB allows one process at a time; a
running node makes them fail with a clear message). The engine, :mod:`registry.bulk`, also takes a
running node's Registry for in-process use.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from registry.bulk import Conflict, Format, TextProgress, run_export, run_import
from registry.errors import IdnodeError
from registry.model import Principal, Role
from registry.store import StoreUnavailable
from resolver import pki
from resolver.datadir import DataDir

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./data"),
    show_default=True,
    help="The node's data directory (the node must be stopped).",
)


def _fail(exc: BaseException) -> click.ClickException:
    if isinstance(exc, StoreUnavailable):
        return click.ClickException(f"{exc} (is the node running? stop it first)")
    if isinstance(exc, IdnodeError):
        return click.ClickException(f"{exc.reason}: {exc.message}")
    return click.ClickException(str(exc))


@click.command("import")
@_DATA_DIR
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
@click.option("--workers", type=click.IntRange(min=0), help="Worker processes [one per core; 0: none].")
@click.option("--restart", is_flag=True, help="Discard an unfinished import's checkpoint and start afresh.")
@click.option("--compact", is_flag=True, help="Compact the records table afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def import_command(
    data_dir: Path,
    source: str,
    fmt: str | None,
    on_conflict: str,
    reject_file: Path | None,
    create_enterprises: bool,
    as_enterprise: str | None,
    workers: int | None,
    restart: bool,
    compact: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Import identifiers from SOURCE (CSV or JSON Lines, optionally gzip/zstd; - is stdin).

    Bad rows go to the reject file; the import never stops for them. Killed, it resumes when run
    again with the same arguments. See registry/bulk/formats.py for the file formats.
    """
    layout = DataDir(data_dir)
    principal = Principal.enterprise(as_enterprise) if as_enterprise else Principal.admin()

    def issue(prefix: str) -> str:
        ca = layout.ca()
        pair = pki.issue_client_cert(ca, Role.ENTERPRISE, prefix)
        layout.enterprise_credentials(prefix).save(pair, ca.cert_pem)
        return pki.fingerprint(pair.cert_pem)

    try:
        summary = run_import(
            layout.db,
            source,
            fmt=fmt,
            on_conflict=on_conflict,
            reject_path=reject_file,
            principal=principal,
            create_enterprises=create_enterprises,
            issue_fingerprint=issue if create_enterprises else None,
            workers=workers,
            progress=None if quiet else TextProgress(sys.stderr),
            restart=restart,
            compact=compact,
        )
    except (IdnodeError, StoreUnavailable, OSError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
        return
    if summary.already_done:
        click.echo("this import had already finished; nothing to do")
    click.echo(
        f"rows read {summary.rows}, imported {summary.imported} ({summary.replaced} replaced), "
        f"rejected {summary.rejected}, skipped {summary.skipped}, "
        f"{summary.seconds:.1f} s, {summary.rows_per_second:,.0f} rows/s"
    )
    if summary.enterprises_created:
        click.echo(f"enterprises created: {', '.join(summary.enterprises_created)}")
    if summary.rejected:
        click.echo(f"rejects: {summary.reject_path}")


@click.command("export")
@_DATA_DIR
@click.argument("dest", type=str)
@click.option(
    "--format", "fmt", type=click.Choice([f.value for f in Format]), help="Default: from the file name."
)
@click.option("--parent", metavar="PREFIX", help="Only identifiers under this prefix.")
@click.option("--no-metadata", is_flag=True, help="JSON Lines without owner, times and etags.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def export_command(
    data_dir: Path,
    dest: str,
    fmt: str | None,
    parent: str | None,
    no_metadata: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Export records to DEST (.csv/.jsonl, optionally .gz/.zst; - is stdout), in the formats
    `idnode import` reads: exporting and importing into an empty node gives the same records."""
    try:
        summary = run_export(
            DataDir(data_dir).db,
            dest,
            fmt=fmt,
            parent=parent,
            metadata=not no_metadata,
            progress=None if quiet else TextProgress(sys.stderr, label="export"),
        )
    except (IdnodeError, StoreUnavailable, OSError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(summary.to_dict()), err=dest == "-")
    else:
        click.echo(f"exported {summary.records} records in {summary.seconds:.1f} s", err=True)
