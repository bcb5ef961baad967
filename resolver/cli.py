"""``idnode``: the node's one command-line entry point.

Every failure prints one line on stderr (``error: ...``) and exits non-zero; no tracebacks.
Connection defaults come from the data directory (admin credential) and the default ports, so on
the machine running the node the commands need no flags.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
from google.protobuf import json_format

from registry.errors import IdnodeError
from registry.pb import record_pb2
from registry.store import StoreFull, StoreUnavailable, is_out_of_space
from resolver.cli_audit import audit, enterprise_update, template, watch
from resolver.cli_bulk import export_command, import_command
from resolver.cli_output import utc
from resolver.client import IdnodeClient, IdnodeRpcError, all_pages, value
from resolver.datadir import DataDir
from resolver.logs import configure_logging
from resolver.server import NodeServer, ServerConfig, tune_gc_for_serving, with_port
from resolver.shutdown import stop_on_signals
from resolver.workers import WorkerPool

DEFAULT_NODE_PREFIX = "88.118"
DEFAULT_PUBLIC = "localhost:8470"
DEFAULT_MANAGEMENT = "localhost:8471"
DEFAULT_METRICS = "127.0.0.1:9470"
DEFAULT_HTTP = "127.0.0.1:8480"
DEFAULT_HTTPS = "127.0.0.1:8443"


class CliError(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, IdnodeRpcError):
        text = str(exc)
        if len(exc.violations) > 1:
            text += " — " + "; ".join(f"{f}: {d}" for f, d in exc.violations)
        return text
    if isinstance(exc, IdnodeError):
        return exc.message
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename}"
    if isinstance(exc, OSError) and is_out_of_space(exc):
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"the disk is full{where} ({exc.strerror or exc}); free some space and run the command again"
    if isinstance(exc, StoreFull):
        return f"{exc}; free some space and run the command again"
    if isinstance(exc, StoreUnavailable):
        if "cannot open RocksDB" in str(exc):  # the node holds the data directory's lock
            return f"{exc} (is the node running? stop it first)"
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class IdnodeGroup(click.Group):
    """Turns every exception into one ``error:`` line and exit status 1; a closed output pipe into
    exit status 1 alone."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # Whoever read the output went away (`idnode export - | head`): nothing to report. The
            # interpreter's last flush of stdout must not fail again on the way out.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None
        except Exception as exc:
            raise CliError(_describe(exc)) from None


class Settings:
    def __init__(self, data_dir: Path, server: str, management: str, credentials: Path | None) -> None:
        self.data_dir = DataDir(data_dir)
        self.server = server
        self.management = management
        self._credentials = credentials

    def public_client(self) -> IdnodeClient:
        return IdnodeClient(self.server)

    def management_client(self) -> IdnodeClient:
        return IdnodeClient(self.management, credentials=self.credentials_dir())

    def credentials_dir(self) -> Path:
        """The client credential to use: --credentials, else the data directory's admin one."""
        creds = Path(self._credentials or self.data_dir.admin.directory)
        if not (creds / "cert.pem").exists():
            raise CliError(
                f"no credential at {creds} (give --credentials DIR with cert.pem, key.pem, ca.pem)"
            )
        return creds


pass_settings = click.make_pass_decorator(Settings)


@click.group(cls=IdnodeGroup)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("data"),
    envvar="IDNODE_DATA_DIR",
    show_default=True,
    help="The node's data directory.",
)
@click.option(
    "--server",
    default=DEFAULT_PUBLIC,
    envvar="IDNODE_SERVER",
    show_default=True,
    help="Public (resolution) listener to talk to.",
)
@click.option(
    "--management",
    default=DEFAULT_MANAGEMENT,
    envvar="IDNODE_MANAGEMENT",
    show_default=True,
    help="Management (mutual TLS) listener to talk to.",
)
@click.option(
    "--credentials",
    type=click.Path(path_type=Path),
    envvar="IDNODE_CREDENTIALS",
    default=None,
    help="Credential directory (cert.pem, key.pem, ca.pem). Default: DATA_DIR/credentials/admin.",
)
@click.version_option(package_name="idnode")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path, server: str, management: str, credentials: Path | None) -> None:
    """idnode: a secondary node of the industrial internet identifier resolution system."""
    ctx.obj = Settings(data_dir, server, management, credentials)


# ------------------------------------------------------------------------------- init / serve
@cli.command()
@click.option(
    "--node-prefix", default=DEFAULT_NODE_PREFIX, show_default=True, help="This node's prefix, e.g. 88.118."
)
@click.option(
    "--host", "hosts", multiple=True, help="Extra host name or IP for the server certificate (repeatable)."
)
@pass_settings
def init(settings: Settings, node_prefix: str, hosts: tuple[str, ...]) -> None:
    """Create the data directory: store, node CA, server certificate, admin credential."""
    settings.data_dir.init(node_prefix, list(hosts))
    click.echo(f"initialised {settings.data_dir.root} for node prefix {node_prefix}")
    click.echo(f"admin credential: {settings.data_dir.admin.directory}")


def _load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    with path.open("rb") as f:
        doc = tomllib.load(f)
    known = {f.name for f in fields(ServerConfig)}
    unknown = set(doc) - known
    if unknown:
        raise CliError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    return doc


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file with ServerConfig settings; flags override it.",
)
@click.option("--public", "public_address", help="Public listener address [127.0.0.1:8470].")
@click.option(
    "--management-listen", "management_address", help="Management listener address [127.0.0.1:8471]."
)
@click.option("--public-tls/--no-public-tls", default=None, help="Serve the public listener over TLS.")
@click.option("--cache-mb", type=click.IntRange(min=0), help="Hot cache size in MiB [256].")
@click.option("--threads", type=click.IntRange(min=1), help="RPC worker threads [32].")
@click.option("--fsync/--no-fsync", default=None, help="fsync the WAL on every write [on].")
@click.option("--access-log/--no-access-log", default=None, help="Log one JSON line per call [off].")
@click.option(
    "--http",
    "http_address",
    default=None,
    help=f"Handle REST API over plain HTTP, reads only [{DEFAULT_HTTP}]; '' for none.",
)
@click.option(
    "--https",
    "https_address",
    default=None,
    help=f"Handle REST API over TLS, reads and writes [{DEFAULT_HTTPS}]; '' for none.",
)
@click.option(
    "--node-prefix",
    default=DEFAULT_NODE_PREFIX,
    show_default=True,
    help="Node prefix used when the data directory is new.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text or JSON [text].",
)
@click.option(
    "--metrics",
    "metrics_address",
    default=None,
    help="Prometheus endpoint host:port [127.0.0.1:9470; worker i uses port+i]; '' for none.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=lambda: len(os.sched_getaffinity(0)),
    show_default="the cores idnode may run on",
    help="Worker processes sharing the public port (1: a single process).",
)
@click.option(
    "--pin-workers/--no-pin-workers",
    default=None,
    help="Pin each worker process to a CPU of its own [pinned].",
)
@click.option(
    "--role",
    type=click.Choice(["secondary", "root"]),
    default=None,
    help="secondary: allocates enterprises [default]; root: holds prefix routes only.",
)
@click.option("--upstream", default=None, help="Secondary: the root's management listener, host:port.")
@click.option(
    "--upstream-credentials",
    default=None,
    help="Secondary: directory of the node credential the root issued (idnode route add --issue-credential).",
)
@click.option(
    "--advertise",
    "advertise_address",
    default=None,
    help="This node's public address for routes (default: the public listener).",
)
@click.option(
    "--demo/--no-demo",
    default=True,
    show_default=True,
    help="Seed a demo enterprise and identifiers when the data directory is new.",
)
@pass_settings
def serve(
    settings: Settings,
    config_path: Path | None,
    public_address: str | None,
    management_address: str | None,
    public_tls: bool | None,
    cache_mb: int | None,
    threads: int | None,
    fsync: bool | None,
    access_log: bool | None,
    http_address: str | None,
    https_address: str | None,
    log_format: str | None,
    metrics_address: str | None,
    workers: int,
    pin_workers: bool | None,
    node_prefix: str,
    demo: bool,
    role: str | None,
    upstream: str | None,
    upstream_credentials: str | None,
    advertise_address: str | None,
) -> None:
    """Run the node until SIGTERM or Ctrl-C (initialising the data directory if it is new)."""
    doc = _load_config(config_path)
    doc.setdefault("data_dir", str(settings.data_dir.root))
    doc.setdefault("metrics_address", DEFAULT_METRICS)
    doc.setdefault("http_address", DEFAULT_HTTP)
    doc.setdefault("https_address", DEFAULT_HTTPS)
    overrides = {
        "public_address": public_address,
        "management_address": management_address,
        "public_tls": public_tls,
        "cache_bytes": cache_mb << 20 if cache_mb is not None else None,
        "threads": threads,
        "fsync": fsync,
        "access_log": access_log,
        "metrics_address": metrics_address,
        "http_address": http_address,
        "https_address": https_address,
        "log_format": log_format,
        "role": role,
        "upstream": upstream,
        "upstream_credentials": upstream_credentials,
        "advertise_address": advertise_address,
        "pin_workers": pin_workers,
    }
    doc.update({k: v for k, v in overrides.items() if v is not None})
    config = ServerConfig(**{**doc, "data_dir": Path(doc["data_dir"])})
    configure_logging(config.log_format)
    data_dir = DataDir(config.data_dir)
    seeded: list[str] = []
    if not data_dir.initialised():
        data_dir.init(node_prefix)
        if demo and config.role != "root":  # a root allocates no enterprises
            from registry.rocks import RocksStore
            from registry.service import Registry
            from resolver.demo import seed

            with RocksStore(data_dir.db) as store:
                seeded = seed(data_dir, Registry(store))
    stop = stop_on_signals()
    if workers == 1 or config.store == "redis-cluster":  # a cluster front end: scale by running more
        server = NodeServer(config)
        server.start()
        tune_gc_for_serving()
        _banner(server.registry.node_prefix, config, server.public_port, server.management_port, 1, seeded)
        stop.wait()
        click.echo("shutting down", err=True)
        server.stop()
        return
    pool = WorkerPool(config, workers)
    pool.start()
    _banner(pool.node_prefix, config, pool.public_port, pool.management_port, workers, seeded)
    status = pool.supervise(stop)
    click.echo("shutting down", err=True)
    pool.stop()
    sys.exit(status)


def _banner(
    node_prefix: str,
    config: ServerConfig,
    public_port: int,
    management_port: int,
    workers: int,
    seeded: list[str],
) -> None:
    click.echo(
        f"idnode serving node prefix {node_prefix} from {config.data_dir} with {workers} worker process(es)"
    )
    click.echo(f"  public (resolution):     {with_port(config.public_address, public_port)}")
    click.echo(f"  management (mutual TLS): {with_port(config.management_address, management_port)}")
    if config.http_address:
        click.echo(f"  Handle REST (HTTP):      http://{config.http_address}/api/handles/ (reads)")
    if config.https_address:
        click.echo(f"  Handle REST (HTTPS):     https://{config.https_address}/api/handles/")
    if config.metrics_address:
        click.echo(f"  metrics (Prometheus):    http://{config.metrics_address}/metrics (worker i: port + i)")
    if seeded:
        click.echo(f"seeded demo enterprise {seeded[0].split('/')[0]} with {len(seeded)} identifiers; try:")
        click.echo(f"  .venv/bin/idnode --data-dir {config.data_dir} resolve {seeded[0]}")


# ------------------------------------------------------------------------------- enterprises
@cli.group()
def enterprise() -> None:
    """Manage enterprises and their prefixes (administrator)."""


@enterprise.command("add")
@click.argument("code", required=False, default="")
@click.option("--name", "display_name", default="", help="Enterprise name.")
@click.option("--contact", default="", help="Contact (e-mail or phone).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where to write the credential [DATA_DIR/credentials/PREFIX].",
)
@pass_settings
def enterprise_add(settings: Settings, code: str, display_name: str, contact: str, out: Path | None) -> None:
    """Allocate an enterprise prefix (CODE, or the next free number) and write its credential."""
    with settings.management_client() as c:
        response = c.create_enterprise(code, display_name, contact)
    prefix = response.enterprise.prefix
    from resolver import pki
    from resolver.datadir import CredentialFiles

    target = CredentialFiles(out) if out else settings.data_dir.enterprise_credentials(prefix)
    cred = response.credential
    target.save(
        pki.KeyPair(cred.certificate_pem.encode(), cred.private_key_pem.encode()),
        cred.ca_certificate_pem.encode(),
    )
    click.echo(f"created enterprise {prefix}; credential written to {target.directory} (key mode 0600)")


def _state(e: Any) -> str:
    from registry.pb import admin_pb2

    return admin_pb2.Enterprise.State.Name(e.state)


@enterprise.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def enterprise_list(settings: Settings, as_json: bool) -> None:
    """List enterprises."""
    with settings.management_client() as c:
        rows = list(all_pages(lambda token: c.list_enterprises(1000, token), "enterprises"))
    if as_json:
        click.echo(json.dumps([_enterprise_dict(e) for e in rows], ensure_ascii=False, indent=2))
        return
    _table(
        ["PREFIX", "STATE", "IDENTIFIERS", "NAME", "CONTACT"],
        [[e.prefix, _state(e), str(e.identifier_count), e.display_name, e.contact] for e in rows],
    )


def _enterprise_dict(e: Any) -> dict[str, Any]:
    d = json_format.MessageToDict(e, preserving_proto_field_name=True)
    d.pop("credential_fingerprints", None)
    return d


@enterprise.command("show")
@click.argument("prefix")
@pass_settings
def enterprise_show(settings: Settings, prefix: str) -> None:
    """Show one enterprise as JSON."""
    with settings.management_client() as c:
        click.echo(json.dumps(_enterprise_dict(c.get_enterprise(prefix)), ensure_ascii=False, indent=2))


@enterprise.command("suspend")
@click.argument("prefix")
@pass_settings
def enterprise_suspend(settings: Settings, prefix: str) -> None:
    """Stop an enterprise's writes (its identifiers keep resolving)."""
    with settings.management_client() as c:
        e = c.suspend_enterprise(prefix)
    click.echo(f"{e.prefix}: {_state(e)}")


@enterprise.command("set-password")
@click.argument("prefix")
@click.option(
    "--rest",
    "rest_url",
    default=f"https://localhost:{DEFAULT_HTTPS.rsplit(':', 1)[1]}",
    envvar="IDNODE_REST",
    show_default=True,
    help="The node's Handle REST HTTPS listener.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_settings
def enterprise_set_password(settings: Settings, prefix: str, rest_url: str, password_stdin: bool) -> None:
    """Set the Handle REST (HTTP Basic) password of PREFIX; its user is 300:PREFIX/admin.

    The node keeps only a salted scrypt hash. Authenticates with the admin credential (or
    --credentials of the enterprise itself).
    """
    from resolver.handle_rest.client import set_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    creds = settings.credentials_dir()
    username = set_password(rest_url, prefix, password, creds)
    click.echo(f"password set; Handle REST user: {username}")


@enterprise.command("remove")
@click.argument("prefix")
@pass_settings
def enterprise_remove(settings: Settings, prefix: str) -> None:
    """Remove a suspended enterprise that has no identifiers (withdrawn from the upstream too)."""
    with settings.management_client() as c:
        c.remove_enterprise(prefix)
    click.echo(f"removed enterprise {prefix}")


# ------------------------------------------------------------------------------- routes
@cli.group()
def route() -> None:
    """Prefix routes of a root node (administrator; `lookup` is public)."""


@route.command("add")
@click.argument("prefix")
@click.option("--node", "node_address", required=True, help="The serving node's public listener, host:port.")
@click.option("--node-id", default="", help="The serving node's id [PREFIX].")
@click.option(
    "--issue-credential",
    type=click.Path(path_type=Path),
    default=None,
    help="Also issue the node's credential (for its --upstream-credentials) into this directory.",
)
@pass_settings
def route_add(
    settings: Settings, prefix: str, node_address: str, node_id: str, issue_credential: Path | None
) -> None:
    """Route PREFIX (typically a secondary node's node prefix) to a node."""
    with settings.management_client() as c:
        response = c.add_node_route(prefix, node_address, node_id, issue_credential is not None)
    click.echo(f"route {response.route.prefix} -> {response.route.node_address}")
    if issue_credential is not None:
        from resolver import pki
        from resolver.datadir import CredentialFiles

        cred = response.credential
        target = CredentialFiles(issue_credential)
        target.save(
            pki.KeyPair(cred.certificate_pem.encode(), cred.private_key_pem.encode()),
            cred.ca_certificate_pem.encode(),
        )
        click.echo(f"node credential for {prefix} written to {target.directory} (key mode 0600)")


@route.command("remove")
@click.argument("prefix")
@pass_settings
def route_remove(settings: Settings, prefix: str) -> None:
    """Remove the route of exactly PREFIX."""
    with settings.management_client() as c:
        c.remove_route(prefix)
    click.echo(f"removed route {prefix}")


@route.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def route_list(settings: Settings, as_json: bool) -> None:
    """Every route of the root."""
    with settings.management_client() as c:
        rows = list(all_pages(lambda token: c.list_routes(1000, token), "routes"))
    if as_json:
        docs = [json_format.MessageToDict(r, preserving_proto_field_name=True) for r in rows]
        click.echo(json.dumps(docs, indent=2))
        return
    _table(
        ["PREFIX", "NODE", "NODE ID", "BY", "REGISTERED"],
        [[r.prefix, r.node_address, r.node_id, r.registered_by, utc(r.register_time)] for r in rows],
    )


@route.command("lookup")
@click.argument("prefix")
@pass_settings
def route_lookup(settings: Settings, prefix: str) -> None:
    """The node serving PREFIX (longest-prefix match), asked of --server (public)."""
    with settings.public_client() as c:
        r = c.lookup_route(prefix)
    click.echo(f"{r.prefix} -> {r.node_address} (node {r.node_id}, registered by {r.registered_by})")


@enterprise.command("resume")
@click.argument("prefix")
@pass_settings
def enterprise_resume(settings: Settings, prefix: str) -> None:
    """Allow a suspended enterprise to write again."""
    with settings.management_client() as c:
        e = c.resume_enterprise(prefix)
    click.echo(f"{e.prefix}: {_state(e)}")


# ------------------------------------------------------------------------------- identifiers
def _parse_values(specs: Sequence[str], ttl: int | None) -> list[record_pb2.Value]:
    """``TYPE=DATA`` or ``INDEX:TYPE=DATA``; unnumbered values take the next free index from 1."""
    out: list[record_pb2.Value] = []
    explicit: list[tuple[int, str, str]] = []
    implicit: list[tuple[str, str]] = []
    for spec in specs:
        head, eq, data = spec.partition("=")
        if not eq or not head:
            raise CliError(f"bad --value {spec!r}: expected TYPE=DATA or INDEX:TYPE=DATA")
        index, colon, type_ = head.partition(":")
        if colon and index.isdigit():
            explicit.append((int(index), type_, data))
        else:
            implicit.append((head, data))
    used = {i for i, _, _ in explicit}
    next_index = 1
    for type_, data in implicit:
        while next_index in used:
            next_index += 1
        explicit.append((next_index, type_, data))
        used.add(next_index)
    for index, type_, data in sorted(explicit):
        out.append(value(index, type_, data, ttl))
    return out


_value_option = click.option(
    "--value",
    "-v",
    "values",
    multiple=True,
    metavar="[INDEX:]TYPE=DATA",
    help="A value, e.g. -v URL=https://example.com/p/1 -v 2:product.batch=B7 (repeatable).",
)
_ttl_option = click.option(
    "--ttl", type=click.IntRange(min=0), default=None, help="TTL in seconds for all values [86400]."
)


@cli.command()
@click.argument("identifier")
@_value_option
@_ttl_option
@click.option("--template", default="", help="Register against this template (NAME@VERSION).")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def register(
    settings: Settings,
    identifier: str,
    values: tuple[str, ...],
    ttl: int | None,
    template: str,
    as_json: bool,
) -> None:
    """Register IDENTIFIER with the given values."""
    with settings.management_client() as c:
        record = c.create(identifier, _parse_values(values, ttl), template=template)
    _print_records([record], as_json)


@cli.command()
@click.argument("identifier")
@_value_option
@_ttl_option
@click.option("--etag", default="", help="Only update if the record still has this etag.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def update(
    settings: Settings, identifier: str, values: tuple[str, ...], ttl: int | None, etag: str, as_json: bool
) -> None:
    """Replace the values of IDENTIFIER."""
    with settings.management_client() as c:
        record = c.update(identifier, _parse_values(values, ttl), etag)
    _print_records([record], as_json)


@cli.command()
@click.argument("identifiers", nargs=-1, required=True)
@click.option("--type", "types", multiple=True, help="Only values of this type (repeatable).")
@click.option(
    "--index", "indexes", multiple=True, type=click.IntRange(min=1), help="Only this index (repeatable)."
)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--recursive",
    is_flag=True,
    help="For an identifier another node serves, have the node fetch the record (default: a referral).",
)
@pass_settings
def resolve(
    settings: Settings,
    identifiers: tuple[str, ...],
    types: tuple[str, ...],
    indexes: tuple[int, ...],
    as_json: bool,
    recursive: bool,
) -> None:
    """Resolve one or more identifiers (public listener, no credential needed)."""
    referrals: list[tuple[str, Any]] = []
    with settings.public_client() as c:
        if len(identifiers) == 1:
            response = c.resolve_response(identifiers[0], types, indexes, recursive=recursive)
            if response.HasField("referral"):
                referrals.append((identifiers[0], response.referral))
            records = [response.record] if response.HasField("record") else []
            missing: list[str] = []
        else:
            results = c.batch_resolve(identifiers, types, indexes, recursive=recursive)
            records = [r.record for r in results if r.HasField("record")]
            referrals = [(r.identifier, r.referral) for r in results if r.HasField("referral")]
            missing = [f"{r.identifier}: {r.error.message}" for r in results if r.HasField("error")]
    if records or not referrals:
        _print_records(records, as_json)
    for identifier, ref in referrals:
        if as_json:
            referral = json_format.MessageToDict(ref, preserving_proto_field_name=True)
            doc = {"identifier": identifier, "referral": referral}
            click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        else:
            click.echo(
                f"{identifier}: referral to node {ref.node_id} at {ref.node_address} (serves {ref.prefix}); "
                "ask it, or resolve with --recursive"
            )
    for line in missing:
        click.echo(f"error: {line}", err=True)
    if missing:
        sys.exit(1)


@cli.command("list")
@click.argument("prefix")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many identifiers.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_(settings: Settings, prefix: str, limit: int | None, as_json: bool) -> None:
    """List identifiers under PREFIX in stable order."""
    with settings.management_client() as c:
        records = []
        for record in c.list_all(prefix):
            records.append(record)
            if limit and len(records) >= limit:
                break
    if as_json:
        _print_records(records, True)
    else:
        _table(
            ["IDENTIFIER", "VALUES", "UPDATED", "ETAG"],
            [[r.identifier, str(len(r.values)), utc(r.update_time), r.etag] for r in records],
        )


@cli.command()
@click.argument("identifier")
@click.option("--etag", default="", help="Only delete if the record still has this etag.")
@pass_settings
def delete(settings: Settings, identifier: str, etag: str) -> None:
    """Delete IDENTIFIER."""
    with settings.management_client() as c:
        c.delete(identifier, etag)
    click.echo(f"deleted {identifier}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def stats(settings: Settings, as_json: bool) -> None:
    """Node statistics: identifier counts, enterprises, uptime."""
    with settings.management_client() as c:
        s = c.stats()
    if as_json:
        click.echo(json.dumps(json_format.MessageToDict(s, preserving_proto_field_name=True), indent=2))
        return
    click.echo(f"node prefix:  {s.node_prefix}")
    click.echo(f"identifiers:  {s.identifier_count}")
    click.echo(f"enterprises:  {s.enterprise_count}")
    click.echo(f"uptime:       {s.uptime.ToTimedelta()}")
    for prefix, count in sorted(s.identifier_count_by_enterprise.items()):
        click.echo(f"  {prefix:<24} {count}")


# ------------------------------------------------------------------------------- output
def _value_data(v: record_pb2.Value) -> str:
    return v.text if v.WhichOneof("data") != "binary" else "0x" + v.binary.hex()


def _print_records(records: Iterable[record_pb2.Record], as_json: bool) -> None:
    records = list(records)
    if as_json:
        docs = [json_format.MessageToDict(r, preserving_proto_field_name=True) for r in records]
        click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, ensure_ascii=False, indent=2))
        return
    for n, r in enumerate(records):
        if n:
            click.echo()
        click.echo(
            f"{r.identifier}  (owner {r.owner or '-'}, updated {utc(r.update_time)}, etag {r.etag or '-'})"
        )
        _table(
            ["INDEX", "TYPE", "TTL", "DATA"],
            [[str(v.index), v.type, str(v.ttl), _value_data(v)] for v in r.values],
        )


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


cli.add_command(template)
cli.add_command(audit)
cli.add_command(watch)
cli.add_command(import_command)
cli.add_command(export_command)
enterprise.add_command(enterprise_update)


def main() -> None:
    cli(prog_name="idnode")


if __name__ == "__main__":
    main()
