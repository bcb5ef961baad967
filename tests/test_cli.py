"""The ``idnode`` command line against a real node: the client commands through click's runner,
and ``idnode serve`` as a real process (demo seeding, SIGTERM, restart on the same data)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from resolver.cli import cli
from resolver.datadir import DataDir
from resolver.server import SERVING_GC_YOUNG_THRESHOLD, NodeServer
from tests.node_fixtures import management_target, public_target


def run(node: NodeServer, node_dir: DataDir, *args: str, credentials: Path | None = None) -> Result:
    base = [
        "--data-dir",
        str(node_dir.root),
        "--server",
        public_target(node),
        "--management",
        management_target(node),
    ]
    if credentials is not None:
        base += ["--credentials", str(credentials)]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """A failure is exactly one ``error:`` line on stderr, a non-zero status and no traceback."""
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_enterprise_register_resolve_list_update_delete_stats(node: NodeServer, node_dir: DataDir) -> None:
    added = run(node, node_dir, "enterprise", "add", "9", "--name", "Acme", "--contact", "ops@acme.example")
    assert added.exit_code == 0, added.stderr
    creds = node_dir.enterprise_credentials("88.118.9")
    assert creds.exists()
    assert (creds.key.stat().st_mode & 0o777) == 0o600
    key_body = creds.key.read_text().splitlines()[1]
    assert key_body not in added.output  # the key goes to the file, never to the terminal

    listed = run(node, node_dir, "enterprise", "list", "--json")
    assert [e["prefix"] for e in json.loads(listed.stdout)] == ["88.118.9"]

    reg = run(
        node,
        node_dir,
        "register",
        "88.118.9/P-1",
        "-v",
        "URL=https://a.example/1",
        "-v",
        "5:product.batch=B7",
        "--json",
        credentials=creds.directory,
    )
    assert reg.exit_code == 0, reg.stderr
    record = json.loads(reg.stdout)
    assert [(v["index"], v["type"]) for v in record["values"]] == [(1, "URL"), (5, "product.batch")]

    shown = run(node, node_dir, "resolve", "88.118.9/p-1")
    assert shown.exit_code == 0
    assert "88.118.9/P-1" in shown.output and "https://a.example/1" in shown.output

    filtered = run(node, node_dir, "resolve", "88.118.9/P-1", "--type", "product.batch", "--json")
    assert [v["type"] for v in json.loads(filtered.stdout)["values"]] == ["product.batch"]

    stale = run(
        node,
        node_dir,
        "update",
        "88.118.9/P-1",
        "-v",
        "URL=https://b",
        "--etag",
        "not-the-etag",
        credentials=creds.directory,
    )
    assert_one_line_error(stale, "ABORTED")
    updated = run(
        node,
        node_dir,
        "update",
        "88.118.9/P-1",
        "-v",
        "URL=https://b",
        "--etag",
        record["etag"],
        "--json",
        credentials=creds.directory,
    )
    assert updated.exit_code == 0, updated.stderr
    assert json.loads(updated.stdout)["values"][0]["text"] == "https://b"

    listing = run(node, node_dir, "list", "88.118.9", credentials=creds.directory)
    assert "88.118.9/P-1" in listing.output

    stats = json.loads(run(node, node_dir, "stats", "--json").stdout)
    assert stats["identifier_count"] == "1"  # int64 is a string in proto3 JSON
    assert stats["identifier_count_by_enterprise"] == {"88.118.9": "1"}

    assert run(node, node_dir, "delete", "88.118.9/P-1", credentials=creds.directory).exit_code == 0
    assert_one_line_error(run(node, node_dir, "resolve", "88.118.9/P-1"), "NOT_FOUND")


def test_suspend_and_resume(node: NodeServer, node_dir: DataDir) -> None:
    assert run(node, node_dir, "enterprise", "add", "9").exit_code == 0
    creds = node_dir.enterprise_credentials("88.118.9").directory
    assert "SUSPENDED" in run(node, node_dir, "enterprise", "suspend", "88.118.9").output
    refused = run(node, node_dir, "register", "88.118.9/X", "-v", "URL=u", credentials=creds)
    assert_one_line_error(refused, "PERMISSION_DENIED", "ENTERPRISE_SUSPENDED")
    assert "ACTIVE" in run(node, node_dir, "enterprise", "resume", "88.118.9").output
    assert run(node, node_dir, "register", "88.118.9/X", "-v", "URL=u", credentials=creds).exit_code == 0


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["resolve", "no-slash"], ["INVALID_ARGUMENT", "PREFIX/SUFFIX"]),
        (["register", "88.118.9/X", "-v", "=x"], ["bad --value"]),
        (["register", "88.118.9/X", "-v", "URL=u"], ["FAILED_PRECONDITION"]),  # admin: no such enterprise
        (["enterprise", "show", "88.118.77"], ["NOT_FOUND", "ENTERPRISE_NOT_FOUND"]),
        (["enterprise", "add", "bad-code!"], ["INVALID_ARGUMENT", "code"]),
        (["--credentials", "/nonexistent", "stats"], ["no credential"]),
    ],
)
def test_errors_are_one_line(
    node: NodeServer, node_dir: DataDir, args: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(run(node, node_dir, *args), *fragments)


def test_batch_resolve_reports_each_missing_identifier(node: NodeServer, node_dir: DataDir) -> None:
    assert run(node, node_dir, "enterprise", "add", "9").exit_code == 0
    creds = node_dir.enterprise_credentials("88.118.9").directory
    assert run(node, node_dir, "register", "88.118.9/A", "-v", "URL=u", credentials=creds).exit_code == 0
    result = run(node, node_dir, "resolve", "88.118.9/A", "88.118.9/B", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["identifier"] == "88.118.9/A"
    assert result.stderr.strip() == "error: 88.118.9/B: 88.118.9/B is not registered"


def _serve(
    data_dir: Path, workers: list[str] | None = None, cpus: set[int] | None = None
) -> subprocess.Popen[str]:
    """``idnode serve`` on ``data_dir`` (one worker unless ``workers`` gives other flags), limited to
    ``cpus`` if given."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "resolver.cli",
            "--data-dir",
            str(data_dir),
            "serve",
            *(["--workers", "1"] if workers is None else workers),
            "--public",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
            "--metrics",
            "",
            "--http",
            "",
            "--https",
            "",
            "--no-fsync",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )


@contextlib.contextmanager
def _serving(data_dir: Path, **kw: Any) -> Iterator[subprocess.Popen[str]]:
    """:func:`_serve`, killed on the way out if the test did not stop it (see :func:`_stop`)."""
    proc = _serve(data_dir, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stop(proc: subprocess.Popen[str]) -> int:
    """SIGTERM, as a service manager stops the node; the exit status."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def _banner(proc: subprocess.Popen[str]) -> dict[str, str]:
    """Read ``idnode serve``'s banner up to the line naming the management listener."""
    assert proc.stdout is not None
    seen: dict[str, str] = {}
    for line in proc.stdout:
        if m := re.search(r"public \(resolution\):\s+(\S+)", line):
            seen["public"] = m.group(1)
        if m := re.search(r"management \(mutual TLS\):\s+(\S+)", line):
            seen["management"] = m.group(1)
            return seen
    raise AssertionError(
        f"idnode serve exited early: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}"
    )


def test_serve_seeds_demo_data_stops_on_sigterm_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with _serving(data_dir) as proc:
        ports = _banner(proc)
        public = ports["public"]
        shown = CliRunner().invoke(cli, ["--server", public, "resolve", "88.118.8/demo-0003", "--json"])
        assert shown.exit_code == 0, shown.stderr
        record = json.loads(shown.stdout)
        assert record["identifier"] == "88.118.8/DEMO-0003"
        assert any(v.get("text") == "液压阀 HV-12" for v in record["values"])
        assert record["etag"] and record["create_time"]
        assert _stop(proc) == 0
    assert (data_dir / "credentials" / "88.118.8" / "key.pem").exists()

    with _serving(data_dir) as again:  # not new any more: no second seeding, same data
        public = _banner(again)["public"]
        listing = CliRunner().invoke(
            cli, ["--server", public, "resolve", *(f"88.118.8/DEMO-000{i}" for i in range(1, 6)), "--json"]
        )
        assert listing.exit_code == 0, listing.stderr
        found = json.loads(listing.stdout)
        assert len(found) == 5
        # The very same record, not a re-seeded copy: a wiped and re-seeded data directory would
        # have given DEMO-0003 a new etag and creation time.
        after = next(r for r in found if r["identifier"] == "88.118.8/DEMO-0003")
        assert (after["etag"], after["create_time"]) == (record["etag"], record["create_time"])
        assert _stop(again) == 0


def test_the_readme_configuration_example_is_a_valid_server_config(tmp_path: Path) -> None:
    from resolver.cli import _load_config
    from resolver.server import ServerConfig

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "node.toml"
    path.write_text(example)
    doc = _load_config(path)  # refuses settings ServerConfig does not have
    config = ServerConfig(**{**doc, "data_dir": Path(doc["data_dir"])})
    assert config.pin_workers is True and config.threads == 32
    assert config.public_address == "0.0.0.0:8470"


@pytest.mark.parametrize("workers", [["--workers", "1"], ["--workers", "2"]], ids=["single", "two-workers"])
def test_every_serving_process_tunes_its_collector(tmp_path: Path, workers: list[str]) -> None:
    """Each process that serves (the single process, or every worker) freezes what it built while
    starting and raises its young-generation threshold
    (:func:`resolver.server.tune_gc_for_serving`), once."""
    with _serving(tmp_path / "data", workers=workers) as proc:
        _banner(proc)
        assert _stop(proc) == 0
        assert proc.stderr is not None
        tuned = re.findall(
            r"startup heap frozen: (\d+) objects.*young-generation threshold (\d+)", proc.stderr.read()
        )
    assert len(tuned) == int(workers[1]), tuned
    assert all(int(n) > 10_000 for n, _ in tuned), tuned  # the modules and the server, at least
    assert all(int(t) == SERVING_GC_YOUNG_THRESHOLD for _, t in tuned), tuned


def test_serve_runs_one_worker_per_cpu_it_may_use(tmp_path: Path) -> None:
    """Without ``--workers``: as many workers as CPUs in the process's affinity (here one), not as
    the machine has."""
    with _serving(tmp_path / "data", workers=[], cpus={min(os.sched_getaffinity(0))}) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "with 1 worker process(es)" in first, first
        _banner(proc)
        assert _stop(proc) == 0


def test_the_entry_point_imports_the_cli_only_when_run() -> None:
    """Bulk import's spawned workers re-import the ``idnode`` script: it must stay cheap."""
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["idnode"] == "resolver.entry:main"
    probe = (
        "import sys, resolver.entry; "
        "print(sorted(m for m in ('grpc', 'click', 'resolver.cli', 'registry.bulk') if m in sys.modules))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
    run_it = "import sys; sys.argv = ['idnode', '--version']; import resolver.entry as e; e.main()"
    ran = subprocess.run(
        [sys.executable, "-c", run_it],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0 and "idnode, version" in ran.stdout, ran.stderr
