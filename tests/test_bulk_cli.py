"""``idnode import`` / ``idnode export`` click commands on a real data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from registry.rocks import RocksStore
from resolver.cli import cli
from resolver.datadir import DataDir
from tests.bulk_support import assert_counts_match, content, gen_data


def test_import_then_export_through_the_commands(tmp_path: Path) -> None:
    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "in.csv"
    source.write_text(
        "identifier,URL,2:product.batch\n88.118.5/A,https://a,B1\n88.118.6/B,https://b,\nbad,x,\n"
    )
    runner = CliRunner()
    args = [
        "--data-dir",
        str(layout.root),
        "import",
        str(source),
        "--create-enterprises",
        "--json",
        "--quiet",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["rows"], summary["imported"], summary["rejected"]) == (3, 2, 1)
    assert sorted(summary["enterprises_created"]) == ["88.118.5", "88.118.6"]
    assert layout.enterprise_credentials("88.118.5").exists()  # a credential was issued
    assert_counts_match(layout.db)

    again = runner.invoke(cli, args[:-2])
    assert again.exit_code == 0 and "already finished" in again.output

    out = tmp_path / "out.jsonl.zst"
    exported = runner.invoke(cli, ["--data-dir", str(layout.root), "export", str(out), "--quiet"])
    assert exported.exit_code == 0, exported.output
    other = DataDir(tmp_path / "other")
    other.init("88.118")
    back = runner.invoke(
        cli, ["--data-dir", str(other.root), "import", str(out), "--create-enterprises", "--quiet"]
    )
    assert back.exit_code == 0, back.output
    assert "imported 2" in back.output
    assert content(other.db) == content(layout.db)


def test_import_reports_a_bad_header_as_an_error(tmp_path: Path) -> None:
    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "in.csv"
    source.write_text("id,URL\n88.118.5/A,u\n")
    result = CliRunner().invoke(cli, ["--data-dir", str(layout.root), "import", str(source), "--quiet"])
    assert result.exit_code == 1
    assert result.output == "error: bad CSV header: the first CSV column must be named 'identifier'\n"


def test_import_into_a_running_node_says_to_stop_it(tmp_path: Path) -> None:
    from registry.rocks import RocksStore

    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "in.csv"
    source.write_text("identifier,URL\n88.118.5/A,u\n")
    with RocksStore(layout.db):  # holds the lock, as a running node does
        result = CliRunner().invoke(cli, ["--data-dir", str(layout.root), "import", str(source), "--quiet"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open RocksDB at ")
    assert lines[0].endswith(" (is the node running? stop it first)")


def test_export_to_a_pipe_its_reader_closes_ends_without_an_error(tmp_path: Path) -> None:
    """``idnode export - | head``: the reader goes away mid-export; the command stops with status 1
    and says nothing (no ``error:`` line, no traceback)."""
    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "gen.csv"
    gen_data().write(str(source), 3000, 2, 7)
    imported = CliRunner().invoke(
        cli, ["--data-dir", str(layout.root), "import", str(source), "--create-enterprises", "--quiet"]
    )
    assert imported.exit_code == 0, imported.output
    args = ["--data-dir", str(layout.root), "export", "-", "--format", "jsonl", "--quiet", "--workers", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "resolver.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100).startswith(b'{"identifier":')
    proc.stdout.close()  # ~1.5 MB of lines were still to come
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "error" not in stderr and "Traceback" not in stderr, stderr


def test_export_onto_a_full_disk_says_so_in_one_line(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC: a full disk, for real, without mounting one."""
    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "in.csv"
    source.write_text("identifier,URL\n88.118.5/A,https://a\n")
    runner = CliRunner()
    imported = runner.invoke(
        cli, ["--data-dir", str(layout.root), "import", str(source), "--create-enterprises", "--quiet"]
    )
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(cli, ["--data-dir", str(layout.root), "export", "/dev/full", "--format", "csv"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: the disk is full (No space left on device); free some space and run the command again"
    ), result.output


def test_import_and_export_refuse_a_data_dir_that_holds_no_node(tmp_path: Path) -> None:
    """A mistyped --data-dir: one line, exit 1, and nothing created; an export must not report an
    empty node as a success."""
    source = tmp_path / "in.csv"
    source.write_text("identifier,URL\n88.118.5/A,https://a\n")
    runner = CliRunner()
    missing = tmp_path / "typo"
    for command in (["import", str(source), "--quiet"], ["export", str(tmp_path / "out.csv"), "--quiet"]):
        result = runner.invoke(cli, ["--data-dir", str(missing), *command])
        assert result.exit_code == 1
        assert result.output.strip() == (
            f"error: there is no node at {missing}: the data directory is not initialised; "
            "run `idnode init` first, or give the node's --data-dir"
        ), result.output
        assert not missing.exists()
    assert not (tmp_path / "out.csv").exists()
    # A database without a node in it (left by an older version's failed import): the same answer.
    RocksStore(missing / "db").close()
    result = runner.invoke(cli, ["--data-dir", str(missing), "export", str(tmp_path / "out.csv"), "--quiet"])
    assert result.exit_code == 1 and "the data directory is not initialised" in result.output
