"""The export's C loops (:mod:`registry.bulk._lines`) against their pure-Python twins, and the
CSV lines both write against Python's ``csv`` reader.

:mod:`registry.bulk._lines` is imported directly, so these tests fail when the build is missing.
"""

from __future__ import annotations

import base64
import csv
import io

import pytest
from google.protobuf.message import DecodeError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from registry.bulk import _lines, formats
from registry.bulk.formats import ColumnKey, csv_column_keys, csv_line, csv_lines, json_lines
from registry.pb import record_pb2

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
# Text that CSV must quote, or not, and that protobuf carries: commas, quotes, CR, LF, Chinese.
_cell_text = st.text(st.sampled_from('ab ,"\r\n螺栓x\t\\\x00\x1f\x7f'), max_size=12) | _text
# Times from the epoch itself (omitted, as unset) to the last nanosecond of year 9999, leap days
# and ends of months included.
_times = st.one_of(
    st.sampled_from([0, 1, 951_782_400_000_000_000, 4_107_542_399_999_999_999, 253_402_300_799_999_999_999]),
    st.integers(0, 253_402_300_799_999_999_999),
)


@st.composite
def _records(draw: st.DrawFn) -> bytes:
    """An encoded Record as a node stores it: values with text or binary data (or neither), a
    TTL or none, a timestamp or none; sometimes empty text; sometimes an unknown field."""
    record = record_pb2.Record(
        identifier=draw(_cell_text),
        owner=draw(_text),
        etag=draw(_text),
        template=draw(_text),
    )
    for stamp in (record.create_time, record.update_time):
        if draw(st.booleans()):
            stamp.FromNanoseconds(draw(_times))
    for index in draw(st.lists(st.integers(0, 2**32 - 1), max_size=6, unique=True)):
        value = record.values.add(index=index, type=draw(st.sampled_from(["URL", "note", "a,b", "标签"])))
        data = draw(st.one_of(st.none(), _cell_text, st.binary(max_size=20)))
        if isinstance(data, str):
            value.text = data
        elif isinstance(data, bytes):
            value.binary = data
        if draw(st.booleans()):
            value.ttl = draw(st.sampled_from([0, 60, 86400, 2**32 - 1]))
        if draw(st.booleans()):
            value.timestamp.FromNanoseconds(draw(_times))
    raw = record.SerializeToString()
    if draw(st.booleans()):
        raw += b"\xa0\x06\x2a"  # field 100, varint 42: unknown, skipped by both
    return raw


def _twin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "_lines", None)


def _outcome(call: object, *args: object) -> object:
    try:
        return call(*args)  # type: ignore[operator]
    except ValueError as exc:
        return ("ValueError", str(exc))


def test_the_export_uses_the_native_module() -> None:
    assert formats._lines is _lines


@settings(max_examples=400, deadline=None)
@given(page=st.lists(_records(), max_size=8), drop=st.integers(0, 3))
def test_c_loops_make_what_their_twins_make(page: list[bytes], drop: int) -> None:
    """Column keys, then the lines in those columns (or in too few: the same ValueError), as the
    twins make them through protobuf, byte for byte."""
    keys = _lines.column_keys(page)
    assert keys is not None
    with pytest.MonkeyPatch.context() as patch:
        _twin(patch)
        assert keys == csv_column_keys(page)
    columns = sorted(keys)
    for column_of in (
        {key: i for i, key in enumerate(columns)},
        {key: i for i, key in enumerate(columns[drop:])},  # a column written after the header
    ):
        native = _outcome(csv_lines, page, column_of, len(column_of))
        with pytest.MonkeyPatch.context() as patch:
            _twin(patch)
            assert native == _outcome(csv_lines, page, column_of, len(column_of))


@settings(max_examples=400, deadline=None)
@given(page=st.lists(_records(), max_size=8), metadata=st.booleans())
def test_json_lines_in_c_are_those_json_dumps_writes(page: list[bytes], metadata: bool) -> None:
    native = _lines.json_lines(page, metadata)
    assert native is not None
    with pytest.MonkeyPatch.context() as patch:
        _twin(patch)
        assert native == json_lines(page, metadata)


def test_json_lines_leave_times_c_cannot_write_to_the_twin() -> None:
    """Nanoseconds out of range, or a time before 1970: the twin writes them as it always did."""
    for seconds, nanos in ((5, -1), (5, 1_000_000_000), (-1, 0), (253_402_300_800, 0)):
        record = record_pb2.Record(identifier="88.118.8/t")
        record.create_time.seconds, record.create_time.nanos = seconds, nanos
        raw = [record.SerializeToString()]
        assert _lines.json_lines(raw, True) is None
        assert _lines.json_lines(raw, False) == b'{"identifier":"88.118.8/t","values":[]}\n'
        with pytest.MonkeyPatch.context() as patch:
            _twin(patch)
            assert json_lines(raw, False) == b'{"identifier":"88.118.8/t","values":[]}\n'


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(_cell_text, min_size=1, max_size=6).filter(lambda c: c != [""]))
@example(["88.118.8/ABC", "M8\rbolt", 'a "b"', "c,d", "e\nf", "", "螺栓"])
def test_a_csv_line_reads_back_as_its_cells(cells: list[str]) -> None:
    """Every line reads back through Python's csv reader (as the import reads it) as its cells,
    a lone CR included, which Python's csv writer (3.11) leaves unquoted."""
    line = csv_line(cells)
    assert line.endswith("\n")
    assert list(csv.reader(io.StringIO(line, newline=""))) == [cells]


def test_lines_quote_what_csv_must_and_write_binary_in_base64() -> None:
    record = record_pb2.Record(identifier='88.118.8/a,"b"')
    record.values.add(index=1, type="URL", text="M8\rbolt")
    record.values.add(index=2, type="HS_PUBKEY", binary=b"\xff\x00\x01\x02")
    record.values.add(index=3, type="note", binary=b"")
    column_of: dict[ColumnKey, int] = {(1, "URL", 86400, False): 0, (3, "note", 86400, True): 1}
    column_of[(2, "HS_PUBKEY", 86400, True)] = 2
    lines = csv_lines([record.SerializeToString()], column_of, 4)
    expected = '"88.118.8/a,""b""","M8\rbolt",,' + base64.b64encode(b"\xff\x00\x01\x02").decode() + ",\n"
    assert lines == expected.encode()


def test_a_record_the_parser_does_not_take_goes_to_the_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Invalid UTF-8 in a string, a group, a truncated value: the C loops answer None, and the
    export's functions then raise as protobuf does."""
    bad_utf8 = b"\x0a\x02\xc3\x28"  # identifier = C3 28
    group = b"\x0a\x01a\x0b\x0c"  # field 1, then a start-group/end-group pair
    truncated = b"\x12\x05\x08\x01"  # a Value of 5 bytes with 2 present
    column_of: dict[ColumnKey, int] = {}
    for raw in (bad_utf8, truncated):
        assert _lines.column_keys([raw]) is None
        assert _lines.csv_lines([raw], column_of, 0) is None
        assert _lines.json_lines([raw], True) is None
        with pytest.raises(DecodeError):
            csv_column_keys([raw])
    assert _lines.column_keys([group]) is None
    assert csv_column_keys([group]) == set()  # protobuf keeps a group as an unknown field


@settings(max_examples=1000, deadline=None)
@given(raw=_records(), cut=st.integers(0, 400), flip=st.integers(0, 255))
def test_damaged_records_never_crash_and_never_disagree(raw: bytes, cut: int, flip: int) -> None:
    """A record cut short or with one byte changed: the C loops answer None or what protobuf
    reads (never a different answer, never a crash)."""
    damaged = bytearray(raw[: cut or len(raw)])
    if damaged:
        damaged[flip % len(damaged)] ^= flip or 1
    page = [bytes(damaged)]
    native = _lines.column_keys(page)
    if native is None:
        return
    assert native == {
        (v.index, v.type, v.ttl if v.HasField("ttl") else 86400, v.WhichOneof("data") == "binary")
        for v in record_pb2.Record.FromString(page[0]).values
    }
    column_of = {key: i for i, key in enumerate(sorted(native))}
    lines = _outcome(_lines.csv_lines, page, column_of, len(column_of))
    jsonl = _lines.json_lines(page, True)
    with pytest.MonkeyPatch.context() as patch:
        _twin(patch)
        assert lines == _outcome(csv_lines, page, column_of, len(column_of))
        assert jsonl is None or jsonl == json_lines(page, True)
