"""CLI commands for templates, the audit trail and the change feed (attached to ``idnode`` in
:mod:`resolver.cli`): ``template add|list|show|deprecate``, ``enterprise update``, ``audit``,
``audit verify`` and ``watch``. They talk to a running node like the other commands; the
``Settings`` object of the ``idnode`` group is the click context object."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Any

import click
from google.protobuf import json_format

from registry.errors import FailedPrecondition, InvalidArgument
from registry.templates import template_from_dict
from resolver.cli_output import utc
from resolver.client import all_pages
from resolver.services.convert import template_to_pb


def _when(text: str, option: str) -> int:
    """ns since the epoch of an ISO date or date-time (naive: UTC)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date or date-time", param_hint=option) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


# ------------------------------------------------------------------------------- templates
@click.group()
def template() -> None:
    """Industry data templates (administrator; `show` is public)."""


@template.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def template_add(settings: Any, path: Path) -> None:
    """Publish the template defined in PATH (.json or .toml: name, version, fields)."""
    raw = path.read_bytes()
    doc = tomllib.loads(raw.decode()) if path.suffix.lower() == ".toml" else json.loads(raw)
    definition = template_from_dict(doc)
    with settings.management_client() as c:
        created = c.create_template(template_to_pb(definition))
    click.echo(f"published {created.name}@{created.version} ({len(created.fields)} fields)")


@template.command("list")
@click.option("--name", default="", help="Only the versions of this template.")
@click.option("--active-only", is_flag=True, help="Leave out deprecated versions.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def template_list(settings: Any, name: str, active_only: bool, as_json: bool) -> None:
    """List published templates."""
    with settings.management_client() as c:
        pages = all_pages(
            lambda token: c.list_templates(1000, token, name=name, active_only=active_only), "templates"
        )
        for t in pages:
            if as_json:
                click.echo(json.dumps(json_format.MessageToDict(t, preserving_proto_field_name=True)))
            else:
                state = "deprecated" if t.state == t.DEPRECATED else "active"
                click.echo(f"{t.name}@{t.version}  {state}  {len(t.fields)} fields  {t.display_name}")


@template.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def template_show(settings: Any, ref: str, as_json: bool) -> None:
    """Show template REF (NAME@VERSION); public, over the resolution listener."""
    with settings.public_client() as c:
        t = c.get_template(ref)
    if as_json:
        click.echo(json.dumps(json_format.MessageToDict(t, preserving_proto_field_name=True), indent=2))
        return
    state = "deprecated" if t.state == t.DEPRECATED else "active"
    click.echo(f"{t.name}@{t.version} ({state}) {t.display_name}")
    for f in t.fields:
        kind = t.fields[0].DataType.Name(f.data_type).lower()
        bounds = []
        if f.min_length or f.max_length:
            bounds.append(f"length {f.min_length}..{f.max_length or '*'}")
        if f.minimum or f.maximum:
            bounds.append(f"range {f.minimum or '*'}..{f.maximum or '*'}")
        if f.pattern:
            bounds.append(f"pattern {f.pattern}")
        if f.enum_values:
            bounds.append("one of " + "|".join(f.enum_values))
        need = "required" if f.required else "optional"
        click.echo(
            f"  {f.index:>4}  {f.type}  {kind}  {need}  {'  '.join(bounds)}  {f.display_name}".rstrip()
        )


@template.command("deprecate")
@click.argument("ref")
@click.pass_obj
def template_deprecate(settings: Any, ref: str) -> None:
    """Deprecate REF: no new registrations against it (existing records keep it)."""
    with settings.management_client() as c:
        t = c.deprecate_template(ref)
    click.echo(f"{t.name}@{t.version}: deprecated")


# ------------------------------------------------------------------------------- enterprise policy
@click.command("update")
@click.argument("prefix")
@click.option("--name", "display_name", default=None, help="New display name.")
@click.option("--contact", default=None, help="New contact.")
@click.option(
    "--require-template/--no-require-template",
    default=None,
    help="Whether every identifier the enterprise registers must name a template.",
)
@click.pass_obj
def enterprise_update(
    settings: Any, prefix: str, display_name: str | None, contact: str | None, require_template: bool | None
) -> None:
    """Change an enterprise's display name, contact or template policy."""
    if display_name is None and contact is None and require_template is None:
        raise InvalidArgument.single("options", "give --name, --contact or --(no-)require-template")
    with settings.management_client() as c:
        e = c.update_enterprise(
            prefix, display_name=display_name, contact=contact, require_template=require_template
        )
    click.echo(f"{e.prefix}: require_template={'yes' if e.require_template else 'no'}")


# ------------------------------------------------------------------------------- audit trail
@click.group(invoke_without_command=True)
@click.option("--enterprise", default="", help="Entries of this enterprise (owner or actor).")
@click.option("--identifier", default="", help="Entries of this identifier.")
@click.option("--since", default="", help="From this ISO date/date-time (UTC if no offset).")
@click.option("--until", default="", help="Before this ISO date/date-time.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many entries.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def audit(
    ctx: click.Context,
    enterprise: str,
    identifier: str,
    since: str,
    until: str,
    limit: int | None,
    as_json: bool,
) -> None:
    """The audit trail, oldest first (administrator). `audit verify` checks its hash chain."""
    if ctx.invoked_subcommand is not None:
        return
    settings = ctx.obj
    since_ns = _when(since, "--since") if since else 0
    until_ns = _when(until, "--until") if until else 0
    shown = 0
    with settings.management_client() as c:
        entries = all_pages(
            lambda token: c.list_audit(
                enterprise=enterprise,
                identifier=identifier,
                since_ns=since_ns,
                until_ns=until_ns,
                page_size=1000,
                page_token=token,
            ),
            "entries",
        )
        for e in entries:
            if limit is not None and shown >= limit:
                return
            shown += 1
            if as_json:
                click.echo(json.dumps(json_format.MessageToDict(e, preserving_proto_field_name=True)))
                continue
            who = e.actor_role + (f" {e.actor_prefix}" if e.actor_prefix else "")
            what = e.identifier or e.enterprise or ",".join(f"{k}={v}" for k, v in e.detail.items())
            etags = f"{e.etag_before or '-'} -> {e.etag_after or '-'}"
            click.echo(
                f"{e.sequence:>8}  {utc(e.time)}  {e.operation:<18} {what}  by {who} "
                f"[{e.actor_fingerprint[:12]}] from {e.origin or '-'}  {etags}"
            )


@audit.command("verify")
@click.pass_obj
def audit_verify(settings: Any) -> None:
    """Check the whole hash chain; exit status 1 if any entry was altered or removed."""
    with settings.management_client() as c:
        report = c.verify_audit(timeout=600)
    if not report.ok:
        raise FailedPrecondition(
            f"audit trail verification FAILED at sequence {report.problem_sequence}: {report.problem}"
        )
    click.echo(
        f"ok: {report.entry_count} entries, head sequence {report.head_sequence}, hash {report.head_hash}"
    )


# ------------------------------------------------------------------------------- change feed
@click.command()
@click.option("--prefix", default="", help="Only changes under this prefix.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Resume after this sequence.")
@click.option("--from-now", is_flag=True, help="Only changes committed from now on.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many changes.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def watch(settings: Any, prefix: str, after: int, from_now: bool, limit: int | None, as_json: bool) -> None:
    """Print every change as it commits (Ctrl-C to stop); resume with --after LAST_SEQUENCE."""
    seen = 0
    with settings.management_client() as c:
        for change in c.watch_changes(after, prefix, from_now):
            if as_json:
                click.echo(json.dumps(json_format.MessageToDict(change, preserving_proto_field_name=True)))
            else:
                subject = change.identifier or change.enterprise or change.detail.get("template", "")
                click.echo(
                    f"{change.sequence:>8}  {utc(change.commit_time)}  {change.operation:<18} {subject}"
                )
            seen += 1
            if limit is not None and seen >= limit:
                return
