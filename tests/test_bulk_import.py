"""Bulk import: every reject reason, each conflict policy, compressed input, stdin, counters."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import zstandard

from registry.bulk import BulkImportError, run_import
from registry.bulk.formats import parse_header
from registry.errors import IdnodeError
from registry.model import EnterpriseState, Principal, Value
from registry.rocks import RocksStore
from registry.service import Registry
from registry.store import Table
from tests.bulk_support import ROOT, assert_counts_match, content, make_node, records, rejects

HEADER = "identifier,URL,2:product.batch,3:blob base64,4:note ttl=60\n"


def csv_file(tmp_path: Path, body: str, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes((HEADER + body).encode("utf-8", "surrogateescape"))
    return path


def api_reason(db: Path, principal: Principal, identifier: str, values: tuple[Value, ...]) -> str:
    """What Registry.create (the API's implementation) answers for the same row."""
    with RocksStore(db) as store:
        try:
            Registry(store).create(principal, identifier, values)
        except IdnodeError as exc:
            return exc.reason
    raise AssertionError(f"the API accepted {identifier}")


# --------------------------------------------------------------------------- reject reasons
BIG = "x" * (16 * 1024 + 1)
CSV_BAD_ROWS = [
    # (row text, reason, identifier, values the API would get, or None for a format-level problem)
    (
        "88.118.8 no slash,https://a,,,",
        "INVALID_ARGUMENT",
        "88.118.8 no slash",
        (Value(1, "URL", "https://a"),),
    ),
    ("88.118.8/ lead,https://a,,,", "INVALID_ARGUMENT", "88.118.8/ lead", (Value(1, "URL", "https://a"),)),
    ("88.118.77/X1,https://a,,,", "ENTERPRISE_NOT_FOUND", "88.118.77/X1", (Value(1, "URL", "https://a"),)),
    ("99.1/X1,https://a,,,", "ENTERPRISE_NOT_FOUND", "99.1/X1", (Value(1, "URL", "https://a"),)),
    (f"88.118.8/BIG,{BIG},,,", "INVALID_ARGUMENT", "88.118.8/BIG", (Value(1, "URL", BIG),)),
    ("88.118.8/COLS,https://a,,", "MALFORMED_ROW", "88.118.8/COLS", None),
    ("88.118.8/B64,https://a,,not base64!,", "MALFORMED_ROW", "88.118.8/B64", None),
    ("88.118.8/UTF\udcff8,https://a,,,", "MALFORMED_ROW", "88.118.8/UTF\udcff8", None),
]


def test_every_csv_reject_reason_matches_the_api(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    good = "88.118.8/OK-1,https://a,B1,AAEC,hello\n"
    body = good + "".join(row + "\n" for row, *_ in CSV_BAD_ROWS) + good.replace("OK-1", "ok-1")
    source = csv_file(tmp_path, body)
    summary = run_import(db, source, workers=0)
    assert (summary.rows, summary.imported, summary.rejected, summary.skipped) == (10, 1, 9, 0)
    got = rejects(Path(summary.reject_path))
    assert [int(r["row"]) for r in got] == list(range(2, 11))
    for reject, (_, reason, ident, values) in zip(got[:-1], CSV_BAD_ROWS, strict=True):
        assert reject["reason"] == reason, reject
        # the reject file writes what is not UTF-8 as backslash escapes (row 9: b"\xff")
        assert reject["identifier"] == ident.encode("utf-8", "backslashreplace").decode(), reject
        assert reject["message"]
        if values is not None:
            assert api_reason(db, Principal.admin(), ident, values) == reason
    # the case-insensitive twin of row 1 is a conflict (fail: ALREADY_EXISTS)
    assert got[-1]["reason"] == "ALREADY_EXISTS" and got[-1]["identifier"] == "88.118.8/ok-1"
    recs = records(db)
    assert list(recs) == ["88.118.8/OK-1"]
    values = recs["88.118.8/OK-1"].values
    assert [(v.index, v.type, v.data, v.ttl) for v in values] == [
        (1, "URL", "https://a", 86400),
        (2, "product.batch", "B1", 86400),
        (3, "blob", b"\x00\x01\x02", 86400),
        (4, "note", "hello", 60),
    ]
    assert_counts_match(db)


def _json(identifier: object, values: object) -> str:
    return json.dumps({"identifier": identifier, "values": values})


JSON_BAD_ROWS = [
    ("{not json", "MALFORMED_ROW", None),
    ("[1, 2]", "MALFORMED_ROW", None),
    (_json(5, []), "MALFORMED_ROW", None),
    (_json("88.118.8/A", [{"index": 1, "type": "URL", "data": {"binary": "**"}}]), "MALFORMED_ROW", None),
    (_json("88.118.8/A", [{"index": "1", "type": "URL", "data": "x"}]), "INVALID_ARGUMENT", None),
    (
        _json(
            "88.118.8/DUP",
            [{"index": 1, "type": "URL", "data": "a"}, {"index": 1, "type": "URL", "data": "b"}],
        ),
        "INVALID_ARGUMENT",
        (Value(1, "URL", "a"), Value(1, "URL", "b")),
    ),
    (_json("88.118.8/T", [{"index": 1, "type": "has space"}]), "INVALID_ARGUMENT", (Value(1, "has space"),)),
    (_json("88.118.8/Z", [{"index": 0, "type": "URL"}]), "INVALID_ARGUMENT", (Value(0, "URL"),)),
    (
        _json("88.118.8/TTL", [{"index": 1, "type": "URL", "ttl": -1}]),
        "INVALID_ARGUMENT",
        (Value(1, "URL", "", -1),),
    ),
    (
        _json("88.118.8/HUGE", [{"index": i, "type": "t", "data": "y" * 15000} for i in range(1, 6)]),
        "INVALID_ARGUMENT",
        tuple(Value(i, "t", "y" * 15000) for i in range(1, 6)),
    ),
    (_json("88.118.8/SUR", [{"index": 1, "type": "URL", "data": "\udc80"}]), "MALFORMED_ROW", None),
    (_json("88.118.8/\ud83d\ude00", [{"index": 1, "type": "URL", "data": "\ud83d"}]), "MALFORMED_ROW", None),
    (_json("88.118.66/NOENT", []), "ENTERPRISE_NOT_FOUND", ()),
    # Nested deeper than the JSON parser recurses: once stopped the whole import.
    ("[" * 100_000 + "]" * 100_000, "MALFORMED_ROW", None),
    ('{"identifier": "88.118.8/DEEP", "values": ' + "[" * 5_000 + "]" * 5_000 + "}", "MALFORMED_ROW", None),
]


def test_every_jsonl_reject_reason(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    good = _json("88.118.8/GOOD\ud83d\ude00", [{"index": 1, "type": "URL", "data": "https://g"}])
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([good, *(row for row, _, _ in JSON_BAD_ROWS), ""]) + "\n")
    summary = run_import(db, source, workers=0)
    assert (summary.rows, summary.imported, summary.rejected) == (
        1 + len(JSON_BAD_ROWS),
        1,
        len(JSON_BAD_ROWS),
    )
    got = rejects(Path(summary.reject_path))
    assert [r["reason"] for r in got] == [reason for _, reason, _ in JSON_BAD_ROWS]
    for reject, (row, reason, values) in zip(got, JSON_BAD_ROWS, strict=True):
        assert reject["message"]
        if values is not None:
            assert api_reason(db, Principal.admin(), json.loads(row)["identifier"], values) == reason
    assert "encoded record" in got[9]["message"]
    assert list(records(db)) == ["88.118.8/GOOD😀"]
    assert_counts_match(db)


def test_a_quoted_cell_past_the_csv_modules_field_limit_is_a_reject(tmp_path: Path) -> None:
    """csv.reader stops at 128 KiB a field by default, which used to stop the whole import."""
    db = make_node(tmp_path / "db")
    huge = "x" * 200_000
    body = f'88.118.8/A,https://a,,,\n88.118.8/HUGE,"{huge}",,,\n88.118.8/C,"https://c, quoted",,,\n'
    summary = run_import(db, csv_file(tmp_path, body), workers=0)
    assert (summary.rows, summary.imported, summary.rejected) == (3, 2, 1)
    got = rejects(Path(summary.reject_path))
    assert [(r["row"], r["identifier"], r["reason"]) for r in got] == [
        ("2", "88.118.8/HUGE", "INVALID_ARGUMENT")
    ]
    assert api_reason(db, Principal.admin(), "88.118.8/HUGE", (Value(1, "URL", huge),)) == "INVALID_ARGUMENT"
    assert records(db)["88.118.8/C"].values[0].data == "https://c, quoted"


def test_enterprise_principal_rejects_foreign_and_suspended(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    source = csv_file(
        tmp_path, "88.118.8/MINE,https://a,,,\n88.118.9/THEIRS,https://a,,,\n88.118.8.5/SUB,u,,,\n"
    )
    ent8 = Principal.enterprise("88.118.8")
    summary = run_import(db, source, principal=ent8, workers=0)
    got = rejects(Path(summary.reject_path))
    assert [(r["row"], r["reason"]) for r in got] == [("2", "PREFIX_NOT_OWNED")]
    assert api_reason(db, ent8, "88.118.9/THEIRS", (Value(1, "URL", "https://a"),)) == "PREFIX_NOT_OWNED"
    assert {r.owner for r in records(db).values()} == {"88.118.8"}

    with RocksStore(db) as store:
        Registry(store).set_enterprise_state(Principal.admin(), "88.118.8", EnterpriseState.SUSPENDED)
    again = csv_file(tmp_path, "88.118.8/LATER,https://a,,,\n", "later.csv")
    summary = run_import(db, again, principal=ent8, workers=0)
    assert (summary.imported, rejects(Path(summary.reject_path))[0]["reason"]) == (0, "ENTERPRISE_SUSPENDED")
    assert api_reason(db, ent8, "88.118.8/LATER", (Value(1, "URL", "u"),)) == "ENTERPRISE_SUSPENDED"
    assert_counts_match(db)


def test_create_enterprises(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    source = csv_file(tmp_path, "88.118.20/A,u,,,\n88.118.20.3/B,u,,,\n88.118.21/C,u,,,\n99.9/D,u,,,\n")
    issued: list[str] = []
    summary = run_import(
        db,
        source,
        create_enterprises=True,
        issue_fingerprint=lambda p: issued.append(p) or "f" * 64,
        workers=0,
    )
    assert sorted(summary.enterprises_created) == ["88.118.20", "88.118.21"] == sorted(issued)
    assert (summary.imported, summary.rejected) == (3, 1)
    assert {i: r.owner for i, r in records(db).items()} == {
        "88.118.20/A": "88.118.20",
        "88.118.20.3/B": "88.118.20",
        "88.118.21/C": "88.118.21",
    }
    assert_counts_match(db)
    with pytest.raises(IdnodeError) as info:
        run_import(db, source, create_enterprises=True, principal=Principal.enterprise("88.118.8"), workers=0)
    assert info.value.reason == "ADMIN_ONLY"


# --------------------------------------------------------------------------- conflict policies
CONFLICT_BODY = (
    "88.118.8/A,https://new-a,,,\n"  # exists in the node
    "88.118.8/B,https://b1,,,\n"
    "88.118.8/C,https://c,,,\n"
    "88.118.8/b,https://b2,,,\n"  # same identifier as row 2 (ASCII case-insensitive)
)


@pytest.mark.parametrize("chunk_bytes", [40, 8 << 20], ids=["row-per-chunk", "one-chunk"])
@pytest.mark.parametrize("sst_min_rows", [1, 10**9], ids=["sst", "batch"])
@pytest.mark.parametrize(
    ("policy", "expected", "totals"),
    [
        ("fail", {"88.118.8/A": "https://old-a", "88.118.8/B": "https://b1"}, (4, 2, 2, 0, 0)),
        ("skip", {"88.118.8/A": "https://old-a", "88.118.8/B": "https://b1"}, (4, 2, 0, 2, 0)),
        ("replace", {"88.118.8/A": "https://new-a", "88.118.8/b": "https://b2"}, (4, 4, 0, 0, 2)),
    ],
)
def test_conflict_policies(
    tmp_path: Path,
    policy: str,
    expected: dict[str, str],
    totals: tuple[int, ...],
    chunk_bytes: int,
    sst_min_rows: int,
) -> None:
    db = make_node(tmp_path / "db")
    with RocksStore(db) as store:
        Registry(store).create(Principal.admin(), "88.118.8/A", [Value(1, "URL", "https://old-a")])
    summary = run_import(
        db,
        csv_file(tmp_path, CONFLICT_BODY),
        on_conflict=policy,
        workers=0,
        chunk_bytes=chunk_bytes,
        sst_min_rows=sst_min_rows,
    )
    got = (summary.rows, summary.imported, summary.rejected, summary.skipped, summary.replaced)
    assert got == totals
    urls = {i: r.values[0].data for i, r in records(db).items()}
    assert urls == {**expected, "88.118.8/C": "https://c"}
    reasons = [(r["row"], r["reason"]) for r in rejects(Path(summary.reject_path))]
    assert reasons == ([("1", "ALREADY_EXISTS"), ("4", "ALREADY_EXISTS")] if policy == "fail" else [])
    assert_counts_match(db)


# --------------------------------------------------------------------------- inputs
def _generated(tmp_path: Path, rows: int = 3000) -> bytes:
    from tests.bulk_support import gen_data

    path = tmp_path / "gen.csv"
    gen_data().write(str(path), rows, 2, 7)
    text = path.read_text().replace("88.118.1/", "88.118.8/").replace("88.118.2/", "88.118.9/")
    return text.encode()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_input_gives_the_same_node(tmp_path: Path, compression: str) -> None:
    data = _generated(tmp_path)
    plain = tmp_path / "plain.csv"
    plain.write_bytes(data)
    packed = tmp_path / "packed.bin"  # the name says nothing: detection is by magic bytes
    packed.write_bytes(gzip.compress(data) if compression == "gzip" else zstandard.compress(data))
    a, b = make_node(tmp_path / "a"), make_node(tmp_path / "b")
    sa = run_import(a, plain, workers=0, chunk_bytes=64 << 10)
    sb = run_import(b, packed, fmt="csv", workers=2, chunk_bytes=64 << 10, sst_min_rows=50)
    assert (sa.rows, sa.imported) == (sb.rows, sb.imported) == (3000, 3000)
    assert content(a) == content(b)
    assert_counts_match(b)


def test_stdin(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    data = zstandard.compress(_generated(tmp_path, 500))
    script = (
        "import json, sys; from registry.bulk import run_import;"
        f"s = run_import({str(db)!r}, '-', fmt='csv', reject_path={str(tmp_path / 'r.csv')!r}, workers=0);"
        "print(json.dumps(s.to_dict()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, check=True, cwd=ROOT
    ).stdout
    summary = json.loads(out)
    assert (summary["rows"], summary["imported"], summary["rejected"]) == (500, 500, 0)
    assert len(records(db)) == 500
    assert_counts_match(db)


def test_csv_header_rules() -> None:
    cols = parse_header("identifier,URL,7:product.batch,EMAIL ttl=5,9:k base64")
    assert [(c.index, c.type, c.ttl, c.binary) for c in cols] == [
        (1, "URL", 86400, False),
        (7, "product.batch", 86400, False),
        (3, "EMAIL", 5, False),
        (9, "k", 86400, True),
    ]
    for bad in ("id,URL", "identifier,URL frob", "identifier,,URL"):
        with pytest.raises(ValueError):
            parse_header(bad)


def test_bad_header_stops_before_anything_is_written(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    source = tmp_path / "bad.csv"
    source.write_text("ident,URL\n88.118.8/A,u\n")
    with pytest.raises(BulkImportError):
        run_import(db, source, workers=0)
    assert records(db) == {}


def test_online_import_keeps_the_cache_coherent(tmp_path: Path) -> None:
    from cache import RecordCache

    make_node(tmp_path / "db")
    with RocksStore(tmp_path / "db") as store:
        registry = Registry(store, cache=RecordCache(1 << 20))
        registry.create(Principal.admin(), "88.118.8/A", [Value(1, "URL", "old")])
        assert registry.lookup(b"88.118.8/A") is not None  # now cached
        assert registry.lookup(b"88.118.8/NEW") is None  # cached as absent
        body = "88.118.8/A,new,,,\n88.118.8/NEW,fresh,,,\n"
        summary = run_import(
            registry, csv_file(tmp_path, body), on_conflict="replace", workers=0, sst_min_rows=1
        )
        assert summary.imported == 2
        assert b"new" in registry.resolve("88.118.8/A")
        assert b"fresh" in registry.resolve("88.118.8/NEW")


class RecordingListener:
    """A CommitListener that keeps every change it is told of (as ReplicaFanout forwards them)."""

    def __init__(self) -> None:
        self.changes: list[tuple[bytes, bytes | None]] = []

    def records_changed(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        self.changes.extend(changes)


def test_online_import_tells_commit_listeners_every_record(tmp_path: Path) -> None:
    make_node(tmp_path / "db")
    listener = RecordingListener()
    with RocksStore(tmp_path / "db") as store:
        registry = Registry(store, listeners=[listener])
        registry.create(Principal.admin(), "88.118.8/A", [Value(1, "URL", "old")])
        listener.changes.clear()
        body = "".join(f"88.118.8/R{i},https://r/{i},,,\n" for i in range(50)) + "88.118.8/A,new,,,\n"
        # sst_min_rows=1: offline this chunk would be ingested as an SST file, which no listener sees
        summary = run_import(
            registry, csv_file(tmp_path, body), on_conflict="replace", workers=0, sst_min_rows=1
        )
        assert summary.imported == 51
        told = dict(listener.changes)
        assert len(told) == len(listener.changes) == 51
        for key, value in told.items():
            assert value is not None and value == store.get(Table.RECORDS, key)
        assert set(told) == {f"88.118.8/R{i}".encode() for i in range(50)} | {b"88.118.8/A"}
        assert b"new" in told[b"88.118.8/A"]


def test_finished_import_is_not_repeated_and_another_cannot_clobber_an_unfinished_one(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    source = csv_file(tmp_path, "88.118.8/A,u,,,\n")
    first = run_import(db, source, workers=0)
    again = run_import(db, source, workers=0)
    assert again.already_done and (again.rows, again.imported) == (first.rows, first.imported) == (1, 1)
    assert len(records(db)) == 1
    other = run_import(db, source, workers=0, on_conflict="skip")  # new options: a new import
    assert (other.imported, other.skipped, other.already_done) == (0, 1, False)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("empty.csv", "identifier,URL\n", {}),
        ("header-only-no-newline.csv", "identifier,URL", {}),
        (
            "crlf.csv",
            'identifier,URL\r\n88.118.8/A,u\r\n88.118.8/B,"multi\r\nline"\r\n',
            {"A": "u", "B": "multi\r\nline"},
        ),
        ("bom.csv", "\ufeffidentifier,URL\n88.118.8/D,u\n", {"D": "u"}),
        (
            "no-final-newline.jsonl",
            '{"identifier":"88.118.8/C","values":[{"index":1,"type":"URL","data":"x"}]}',
            {"C": "x"},
        ),
        ("empty.jsonl", "", {}),
    ],
)
def test_input_edge_cases_with_tiny_chunks(
    tmp_path: Path, name: str, text: str, expected: dict[str, str]
) -> None:
    db = make_node(tmp_path / "db")
    (tmp_path / name).write_text(text, newline="")
    summary = run_import(db, tmp_path / name, workers=0, chunk_bytes=16)
    assert (summary.rows, summary.imported, summary.rejected) == (len(expected), len(expected), 0)
    assert {i.split("/")[1]: r.values[0].data for i, r in records(db).items()} == expected
