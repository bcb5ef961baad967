"""Inputs in a text encoding other than UTF-8 (``idnode import --encoding``): GB 18030 and GBK are
what Chinese editions of Windows and Excel write. The input is transcoded to UTF-8 as it is read;
everything after that is the UTF-8 import."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.bulk import run_export, run_import
from registry.bulk.formats import Source, UnknownEncoding, text_encoding
from resolver.bulk_remote import run_remote_import
from resolver.cli import cli
from resolver.client import IdnodeClient
from resolver.datadir import DataDir
from resolver.server import NodeServer
from tests.bulk_support import content, gen_data, make_node, rejects
from tests.node_fixtures import management_target

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=200, deadline=None)
@given(TEXT, st.lists(st.integers(1, 40), min_size=1, max_size=20), st.booleans())
def test_a_transcoded_input_reads_as_its_utf8_bytes(text: str, sizes: list[int], packed: bool) -> None:
    """Whatever the read sizes (a character's bytes split across reads included), and through gzip."""
    data = text.encode("gb18030")
    src = Source(io.BytesIO(gzip.compress(data) if packed else data), "gb18030")
    got = b""
    for size in sizes * 20:
        piece = src.read(size)
        assert len(piece) <= size
        got += piece
    got += src.read(1 << 20)
    assert got == text.encode("utf-8")
    assert src.read(10) == b""


def test_bytes_the_encoding_cannot_decode_pass_through_as_not_utf8() -> None:
    src = Source(io.BytesIO(b"ok,\xd6\xd0\n\x81\x20bad\nok again\n"), "gb18030")
    assert src.read(100) == "ok,中\n".encode() + b"\x81 bad\nok again\n"


def test_encoding_names() -> None:
    assert text_encoding(None) is None
    assert text_encoding("UTF8") is None and text_encoding("utf-8") is None
    assert text_encoding("GBK") == "gbk" and text_encoding("gb18030") == "gb18030"
    with pytest.raises(UnknownEncoding):
        text_encoding("no-such-encoding")


def test_only_an_untranscoded_plain_file_is_read_by_reference(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("identifier,URL\n88.118.8/螺栓,u\n".encode("gb18030"))
    for encoding, shared in ((None, True), ("utf8", True), ("gb18030", False)):
        src = Source(str(path), encoding)
        try:
            assert (src.shared_path() is not None) is shared and src.transcoded is not shared
        finally:
            src.close()


def _files(tmp_path: Path, rows: int) -> tuple[Path, Path, Path]:
    """The same generated rows (~8% with Chinese product names in their identifiers) in UTF-8, in
    GB 18030, and in GB 18030 gzip'd."""
    utf8 = tmp_path / "utf8.csv"
    gen_data().write(str(utf8), rows, 2, 11)
    text = utf8.read_text(encoding="utf-8")
    assert any(ord(c) > 127 for c in text)
    gb = tmp_path / "gb.csv"
    gb.write_bytes(text.encode("gb18030"))
    packed = tmp_path / "gb.csv.gz"
    packed.write_bytes(gzip.compress(text.encode("gb18030")))
    return utf8, gb, packed


@pytest.mark.parametrize("workers", [0, 2])
def test_a_gb18030_file_imports_as_its_utf8_twin(tmp_path: Path, workers: int) -> None:
    utf8, gb, packed = _files(tmp_path, 3000)
    expected_db = make_node(tmp_path / "expected", ("1", "2"))
    assert run_import(expected_db, utf8, workers=workers).imported == 3000
    for source in (gb, packed):
        db = make_node(tmp_path / f"{source.name}.db", ("1", "2"))
        summary = run_import(
            db, source, workers=workers, encoding="gb18030", reject_path=tmp_path / f"{source.name}.rej"
        )
        assert (summary.imported, summary.rejected) == (3000, 0)
        assert content(db) == content(expected_db)
    # Read as UTF-8, the same file's rows with Chinese text are rejected, and only those.
    db = make_node(tmp_path / "as-utf8", ("1", "2"))
    wrong = run_import(db, gb, workers=workers, reject_path=tmp_path / "as-utf8.rej")
    got = rejects(Path(wrong.reject_path))
    assert wrong.rejected == len(got) > 0 and {r["reason"] for r in got} == {"MALFORMED_ROW"}
    assert set(content(db)) == {i for i in content(expected_db) if i.isascii()}


def test_a_row_the_encoding_cannot_decode_is_rejected_alone(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    source = tmp_path / "in.csv"
    source.write_bytes(
        "identifier,URL\n88.118.8/螺栓-1,https://a\n".encode("gbk")
        + b"88.118.8/bad-\x81\x20,https://b\n"
        + "88.118.8/螺母-2,https://c\n".encode("gbk")
    )
    summary = run_import(db, source, workers=0, encoding="gbk")
    assert (summary.rows, summary.imported, summary.rejected) == (3, 2, 1)
    assert [(r["row"], r["reason"]) for r in rejects(Path(summary.reject_path))] == [("2", "MALFORMED_ROW")]
    assert set(content(db)) == {"88.118.8/螺栓-1", "88.118.8/螺母-2"}


def test_the_cli_takes_an_encoding_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "in.csv"
    source.write_bytes("identifier,URL\n88.118.5/螺栓,https://a\n".encode("gbk"))
    base = ["--data-dir", str(layout.root), "import", str(source), "--create-enterprises", "--quiet"]
    unknown = CliRunner().invoke(cli, [*base, "--encoding", "klingon"])
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "error: unknown text encoding 'klingon' (try utf-8, gb18030 or gbk)"
    done = CliRunner().invoke(cli, [*base, "--encoding", "gbk"])
    assert done.exit_code == 0, done.output
    assert "imported 1 " in done.output and "rejected 0" in done.output
    with pytest.raises(UnknownEncoding, match="unknown text encoding"):
        run_import(layout.db, source, encoding="klingon")


def test_through_a_running_node(
    node: NodeServer, node_dir: DataDir, admin_client: IdnodeClient, tmp_path: Path
) -> None:
    admin_client.create_enterprise("8")
    source = tmp_path / "in.csv"
    source.write_bytes("identifier,URL\n88.118.8/螺栓,https://a\n88.118.8/螺母,https://b\n".encode("gb18030"))
    summary = run_remote_import(admin_client, source, encoding="gb18030")
    assert (summary.imported, summary.rejected) == (2, 0)
    assert admin_client.resolve("88.118.8/螺栓").values[0].text == "https://a"
    again = tmp_path / "again.csv"
    again.write_bytes("identifier,URL\n88.118.8/垫圈,https://c\n".encode("gbk"))
    result = CliRunner().invoke(
        cli,
        ["--credentials", str(node_dir.admin.directory), "import", "--via", management_target(node),
         str(again), "--encoding", "gbk", "--json", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"imported": 1' in result.output
    assert admin_client.resolve("88.118.8/垫圈").values[0].text == "https://c"


def test_an_export_in_gb18030_reads_back_as_the_node(tmp_path: Path) -> None:
    """The file is the UTF-8 export's text in GB 18030 (utf-8-sig: with the byte-order mark), and
    imports back into the same records."""
    utf8, _, _ = _files(tmp_path, 2000)
    db = make_node(tmp_path / "db", ("1", "2"))
    run_import(db, utf8, workers=0)
    plain = tmp_path / "out.csv"
    run_export(db, plain, workers=0)
    for encoding, codec in (("gb18030", "gb18030"), ("GBK", "gbk"), ("utf-8-sig", "utf-8-sig")):
        dest = tmp_path / f"out-{codec}.csv"
        run_export(db, dest, workers=0, encoding=encoding)
        assert dest.read_bytes() == plain.read_text(encoding="utf-8").encode(codec)
        again = make_node(tmp_path / f"again-{codec}", ("1", "2"))
        assert run_import(again, dest, workers=0, encoding=encoding).imported == 2000
        assert content(again) == content(db)


def test_a_record_the_export_encoding_cannot_hold_stops_it_in_one_line(tmp_path: Path) -> None:
    layout = DataDir(tmp_path / "node")
    layout.init("88.118")
    source = tmp_path / "in.csv"
    source.write_text("identifier,URL\n88.118.5/emoji-😀,https://a\n", encoding="utf-8")
    assert (
        run_import(
            layout.db, source, workers=0, create_enterprises=True, issue_fingerprint=lambda p: "0" * 64
        ).imported
        == 1
    )
    base = ["--data-dir", str(layout.root), "export", str(tmp_path / "out.csv"), "--quiet"]
    result = CliRunner().invoke(cli, [*base, "--encoding", "gbk"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: cannot export in gbk: a record holds '😀', which it cannot encode; export with "
        "--encoding gb18030 or utf-8"
    )
    assert (
        CliRunner()
        .invoke(cli, [*base, "--encoding", "klingon"])
        .output.startswith("error: unknown text encoding")
    )
    assert CliRunner().invoke(cli, [*base, "--encoding", "gb18030"]).exit_code == 0
