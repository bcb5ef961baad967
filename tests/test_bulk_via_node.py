"""``idnode import --via``: bulk import through a running node's API (real NodeServer, real gRPC)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from resolver.bulk_remote import journal_path, run_remote_import
from resolver.cli import cli
from resolver.client import IdnodeClient
from resolver.datadir import DataDir
from resolver.server import NodeServer
from tests.bulk_support import ROOT
from tests.node_fixtures import management_target, node_config

HEADER = "identifier,URL,2:product.batch\n"


def source(tmp_path: Path, n: int = 600) -> Path:
    lines = [f"88.118.8/V{i:05d},https://example.com/p/{i},B{i % 7}\n" for i in range(n)]
    lines[10] = "not an identifier,https://x,\n"  # rejected by the node (INVALID_ARGUMENT)
    lines[20] = "88.118.77/X1,https://x,\n"  # no such enterprise
    lines[30] = "88.118.8/V00001,https://dup,\n"  # already registered by row 2
    lines[40] = "88.118.8/V99999,only,two,many\n"  # malformed locally
    path = tmp_path / "in.csv"
    path.write_text(HEADER + "".join(lines))
    return path


def listing(client: IdnodeClient) -> dict[str, list[tuple[int, str, str]]]:
    return {r.identifier: [(v.index, v.type, v.text) for v in r.values] for r in client.list_all("88.118.8")}


def test_import_through_a_running_node_then_resolve_publicly(
    node: NodeServer, admin_client: IdnodeClient, anon_client: IdnodeClient, tmp_path: Path
) -> None:
    admin_client.create_enterprise("8")
    src = source(tmp_path)
    summary = run_remote_import(admin_client, src, batch_rows=100, chunk_bytes=8000)
    assert (summary.rows, summary.imported, summary.rejected) == (600, 596, 4)
    reasons = sorted(line.split(",")[2] for line in Path(summary.reject_path).read_text().splitlines()[1:])
    assert reasons == ["ALREADY_EXISTS", "ENTERPRISE_NOT_FOUND", "INVALID_ARGUMENT", "MALFORMED_ROW"]
    for i in (0, 123, 599):
        record = anon_client.resolve(f"88.118.8/v{i:05d}")  # ASCII case-insensitive
        assert record.identifier == f"88.118.8/V{i:05d}"
        assert [v.text for v in record.values] == [f"https://example.com/p/{i}", f"B{i % 7}"]
    assert len(listing(admin_client)) == 596
    again = run_remote_import(admin_client, src)
    assert again.already_done


def test_kill_mid_import_then_rerun_gives_the_same_state(
    node: NodeServer, node_dir: DataDir, admin_client: IdnodeClient, tmp_path: Path
) -> None:
    admin_client.create_enterprise("8")
    src = source(tmp_path)
    rejects = tmp_path / "killed.rejects.csv"
    script = (
        "import sys; from resolver.bulk_remote import run_remote_import; "
        "from resolver.client import IdnodeClient; "
        "run_remote_import(IdnodeClient(sys.argv[1], credentials=sys.argv[2]), sys.argv[3], "
        "reject_path=sys.argv[4], batch_rows=50, chunk_bytes=6000)"
    )
    env = {**os.environ, "IDNODE_BULK_FAILPOINT": "after-batch:5", "PYTHONPATH": str(ROOT)}
    args = [management_target(node), str(node_dir.admin.directory), str(src), str(rejects)]
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert journal_path(rejects).exists()
    partial = len(listing(admin_client))
    assert 0 < partial < 596  # it was stopped part-way

    resumed = run_remote_import(admin_client, src, reject_path=rejects, batch_rows=50, chunk_bytes=6000)
    assert resumed.resumed
    assert (resumed.rows, resumed.imported, resumed.rejected) == (600, 596, 4)

    # The same input through another node, uninterrupted: same records, same reject file.
    other_dir = DataDir(tmp_path / "other")
    other_dir.init("88.118")
    other = NodeServer(node_config(other_dir.root))
    other.start()
    try:
        with IdnodeClient(management_target(other), credentials=other_dir.admin.directory) as c:
            c.create_enterprise("8")
            clean = run_remote_import(
                c, src, reject_path=tmp_path / "clean.rejects.csv", batch_rows=50, chunk_bytes=6000
            )
            assert (clean.rows, clean.imported, clean.rejected) == (600, 596, 4)
            assert listing(c) == listing(admin_client)
    finally:
        other.stop(0)
    assert rejects.read_text() == (tmp_path / "clean.rejects.csv").read_text()


def test_cli_via_uses_the_groups_credentials(
    node: NodeServer, node_dir: DataDir, admin_client: IdnodeClient, tmp_path: Path
) -> None:
    admin_client.create_enterprise("8")
    src = source(tmp_path, 50)
    result = CliRunner().invoke(
        cli,
        ["--credentials", str(node_dir.admin.directory), "import", "--via", management_target(node),
         str(src), "--json", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"imported": 46' in result.output
    assert len(listing(admin_client)) == 46


def test_json_lines_rows_naming_their_template_through_a_running_node(
    node: NodeServer, admin_client: IdnodeClient, tmp_path: Path
) -> None:
    """A row's own template goes with it to the node, which checks it (a row naming none takes
    the import's ``template``), as the offline import does."""
    from registry.pb import admin_pb2

    template = admin_pb2.Template(name="gs1.product", version="1", display_name="Product")
    template.fields.add(type="product.gtin", index=2, data_type=admin_pb2.TemplateField.GTIN, required=True)
    admin_client.create_template(template)
    admin_client.create_enterprise("8")
    gtin = '{"index":2,"type":"product.gtin","data":"4006381333931"}'
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"identifier":"88.118.8/OWN","values":[' + gtin + '],"template":"gs1.product@1"}\n'
        '{"identifier":"88.118.8/UNKNOWN","values":[' + gtin + '],"template":"gs1.product@9"}\n'
        '{"identifier":"88.118.8/NONE","values":[{"index":1,"type":"URL","data":"https://x"}]}\n'
    )
    summary = run_remote_import(admin_client, src)
    assert (summary.imported, summary.rejected) == (2, 1)
    assert "gs1.product@9" in Path(summary.reject_path).read_text()
    assert admin_client.resolve("88.118.8/OWN").template == "gs1.product@1"
    assert admin_client.resolve("88.118.8/NONE").template == ""
