"""Export then import into an empty node gives the same node; the fast encoder matches the codec."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import codec
from registry.bulk import export, run_export, run_import
from registry.bulk.formats import csv_column_keys, csv_columns, rfc3339
from registry.errors import FailedPrecondition
from registry.model import Principal, Record, Value
from registry.rocks import RocksStore
from registry.service import Registry
from tests.bulk_support import assert_counts_match, content, counters, gen_data, make_node, raw_records


def _populated(tmp_path: Path) -> Path:
    """A node with generated records plus awkward ones: binary data, odd TTLs, Unicode, 8 types."""
    db = make_node(tmp_path / "src")
    data = tmp_path / "gen.jsonl"
    gen_data().write(str(data), 2000, 2, 3)
    data.write_text(data.read_text().replace("88.118.1/", "88.118.8/").replace("88.118.2/", "88.118.9/"))
    run_import(db, data, workers=0)
    with RocksStore(db) as store:
        registry = Registry(store)
        admin = Principal.admin()
        registry.create(
            admin, "88.118.8/BIN", [Value(1, "HS_PUBKEY", bytes(range(256)), 0), Value(7, "URL", "u")]
        )
        registry.create(
            admin,
            '88.118.9/产品 名称,"quoted"',
            # A lone CR: Python's csv writer leaves it unquoted, and the import cut the row there.
            [Value(2, "product.name", "螺栓\nM8", 4294967295), Value(3, "note", "M8\rbolt 10 pcs")],
        )
        registry.create(admin, "88.118.9/x", [Value(1, "URL", "https://x", 3600)])
    return db


@pytest.mark.parametrize("dest", ["out.jsonl", "out.jsonl.gz", "out.jsonl.zst"])
def test_jsonl_round_trip_is_byte_identical(tmp_path: Path, dest: str) -> None:
    src = _populated(tmp_path)
    exported = run_export(src, tmp_path / dest)
    assert exported.records == 2003
    copy = make_node(tmp_path / "copy")
    summary = run_import(copy, tmp_path / dest, workers=0)
    assert (summary.imported, summary.rejected) == (2003, 0)
    assert raw_records(copy) == raw_records(src)
    assert counters(copy) == counters(src)


@pytest.mark.parametrize("dest", ["out.csv", "out.csv.zst"])
def test_csv_round_trip_keeps_identifiers_values_and_owners(tmp_path: Path, dest: str) -> None:
    src = _populated(tmp_path)
    run_export(src, tmp_path / dest)
    copy = make_node(tmp_path / "copy")
    summary = run_import(copy, tmp_path / dest, workers=2, chunk_bytes=32 << 10, sst_min_rows=10)
    assert (summary.imported, summary.rejected) == (2003, 0)
    assert content(copy) == content(src)
    assert_counts_match(copy)


def test_export_under_a_prefix_and_csv_refuses_empty_text(tmp_path: Path) -> None:
    src = _populated(tmp_path)
    summary = run_export(src, tmp_path / "nine.jsonl", parent="88.118.9")
    lines = (tmp_path / "nine.jsonl").read_text().splitlines()
    assert summary.records == len(lines) and all('"owner":"88.118.9"' in line for line in lines)
    with RocksStore(src) as store:
        Registry(store).create(Principal.admin(), "88.118.8/EMPTY", [Value(1, "note", "")])
    with pytest.raises(FailedPrecondition, match="empty text value"):
        run_export(src, tmp_path / "all.csv")


@pytest.mark.parametrize("dest", ["out.csv", "out.jsonl"])
def test_export_by_workers_writes_the_file_one_process_writes(
    tmp_path: Path, dest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages turned into lines by two worker processes come back in key order: the same bytes as
    an export in this process, over many pages; a record CSV cannot hold fails the export."""
    src = _populated(tmp_path)
    monkeypatch.setattr(export, "_PAGE", 97)  # 21 pages (this process reads them)
    alone = run_export(src, tmp_path / ("alone." + dest), workers=0)
    shared = run_export(src, tmp_path / ("shared." + dest), workers=2)
    assert alone.records == shared.records == 2003
    assert (tmp_path / ("alone." + dest)).read_bytes() == (tmp_path / ("shared." + dest)).read_bytes()
    with RocksStore(src) as store:
        Registry(store).create(Principal.admin(), "88.118.9/zz-EMPTY", [Value(1, "note", "")])
    if dest.endswith(".csv"):
        with pytest.raises(FailedPrecondition, match="empty text value"):
            run_export(src, tmp_path / "again.csv", workers=2)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_values = st.lists(
    st.builds(
        Value,
        index=st.integers(0, 2**32 - 1),
        type=_text,
        data=st.one_of(_text, st.binary(max_size=40)),
        ttl=st.integers(0, 2**32 - 1),
        timestamp_ns=st.one_of(st.just(0), st.integers(1, 2**62)),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    identifier=_text,
    values=_values,
    owner=_text,
    times=st.tuples(st.integers(0, 2**62), st.integers(0, 2**62)),
    etag=_text,
    template=_text,
)
def test_fast_encoder_is_byte_identical_to_the_codec(
    identifier: str, values: list[Value], owner: str, times: tuple[int, int], etag: str, template: str
) -> None:
    record = Record(identifier, tuple(values), owner, times[0], times[1], etag, template)
    assert codec.encode_record(record) == codec.encode_record_pb(record)


@given(
    index=st.integers(),
    value_type=_text,
    data=st.one_of(_text, st.binary()),
    ttl=st.integers(),
    ts=st.integers(),
)
def test_fast_value_constructor_equals_value(
    index: int, value_type: str, data: str | bytes, ttl: int, ts: int
) -> None:
    from registry.bulk.formats import _value

    fast = _value(index, value_type, data, ttl, ts)
    assert fast == Value(index, value_type, data, ttl, ts) and hash(fast) == hash(
        Value(index, value_type, data, ttl, ts)
    )


def test_generator_is_deterministic_and_realistic() -> None:
    gen = gen_data()
    first = list(gen.generate(3000, 7, seed=5))
    assert first == list(gen.generate(3000, 7, seed=5))
    assert first != list(gen.generate(3000, 7, seed=6))
    assert len({ident.upper() for ident, _ in first}) == 3000  # unique under the case rule
    counts = [sum(1 for cell in cells if cell) for _, cells in first]
    assert min(counts) == 3 and max(counts) == 8
    assert {ident.split("/")[0] for ident, _ in first} == {f"88.118.{i}" for i in range(1, 8)}
    chinese = sum(1 for ident, _ in first if any("\u4e00" <= ch <= "\u9fff" for ch in ident))
    assert 0.03 < chinese / 3000 < 0.15


@settings(max_examples=200, deadline=None)
@given(records=st.lists(_values, max_size=5))
def test_csv_columns_read_from_the_encoded_records_are_those_of_their_values(
    records: list[list[Value]],
) -> None:
    """The export's column pass reads protobuf messages, not Records: it finds the same columns
    (index, type, TTL, whether binary) as the decoded values say, in order."""
    encoded = [
        codec.encode_record(Record(f"88.118.8/R{i}", tuple(values))) for i, values in enumerate(records)
    ]
    expected = {
        (v.index, v.type, v.ttl, isinstance(v.data, bytes))
        for data in encoded
        for v in codec.decode_record(data).values
    }
    columns = csv_columns(csv_column_keys(encoded))
    assert [(c.index, c.type, c.ttl, c.binary) for c in columns] == sorted(expected)


@settings(max_examples=300, deadline=None)
@given(ns=st.integers(0, 253_402_300_799_999_999_999))  # up to 9999-12-31T23:59:59.999999999Z
def test_rfc3339_reads_back_as_protobuf_parses_it(ns: int) -> None:
    """The export's times (seconds formatted once each, then kept) read back to the nanosecond,
    and as protobuf's own JSON form of the same Timestamp."""
    text = rfc3339(ns)
    ts = Timestamp()
    ts.FromJsonString(text)
    assert ts.seconds * 1_000_000_000 + ts.nanos == ns
    assert text.endswith("Z") and text[:19] == ts.ToJsonString()[:19]
