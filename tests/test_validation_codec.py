"""Record validation and the protobuf codec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import codec, limits
from registry.errors import FieldViolation, InvalidArgument
from registry.model import Enterprise, EnterpriseState, Record, Value
from registry.pb import record_pb2
from registry.validation import (
    UINT32_MAX,
    check_record_size,
    check_values,
    page_size,
    type_problem,
    value_violations,
)

PROPS = settings(max_examples=200, deadline=None)


def fields(values: list[Value]) -> list[str]:
    return [v.field for v in value_violations(values)]


def only(values: list[Value]) -> FieldViolation:
    found = value_violations(values)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------- validation
def test_valid_values_have_no_violations() -> None:
    values = [
        Value(1, "URL", "https://example.com"),
        Value(UINT32_MAX, "HS_ADMIN", b"\x00\x01", ttl=0),
        Value(2, "x" * limits.TYPE_MAX_CHARS, "a" * limits.VALUE_DATA_MAX_BYTES, ttl=UINT32_MAX),
        Value(3, "中文类型", "中" * (limits.VALUE_DATA_MAX_BYTES // 3)),
        Value(4, "EMPTY", ""),
        Value(5, "BIN", b"\xff" * limits.VALUE_DATA_MAX_BYTES),
    ]
    assert value_violations(values) == []
    check_values(values)
    assert value_violations([]) == []


@pytest.mark.parametrize("index", [0, -1, UINT32_MAX + 1, 2**40])
def test_index_out_of_range(index: int) -> None:
    v = only([Value(1, "URL"), Value(index, "URL")])
    assert v.field == "values[1].index"
    assert v.description == f"must be between 1 and {UINT32_MAX}"


def test_duplicate_index() -> None:
    v = only([Value(7, "A"), Value(8, "B"), Value(7, "C")])
    assert v.field == "values[2].index"
    assert "7" in v.description and "more than once" in v.description


@pytest.mark.parametrize(
    ("value_type", "description"),
    [
        ("", "must not be empty"),
        ("U RL", "must be printable characters without white space"),
        (" URL", "must be printable characters without white space"),
        ("URL\t", "must be printable characters without white space"),
        ("URL\n", "must be printable characters without white space"),
        ("a\u00a0b", "must be printable characters without white space"),
        ("a\u3000b", "must be printable characters without white space"),
        ("a\x00", "must be printable characters without white space"),
        ("a\u200b", "must be printable characters without white space"),
        ("x" * (limits.TYPE_MAX_CHARS + 1), f"must be at most {limits.TYPE_MAX_CHARS} characters"),
    ],
)
def test_bad_type(value_type: str, description: str) -> None:
    v = only([Value(1, value_type)])
    assert v.field == "values[0].type"
    assert v.description == description
    assert type_problem(value_type) == description


def test_type_length_counts_characters() -> None:
    assert type_problem("类" * limits.TYPE_MAX_CHARS) is None
    assert type_problem("类" * (limits.TYPE_MAX_CHARS + 1)) is not None


@pytest.mark.parametrize(
    "data",
    [
        "a" * (limits.VALUE_DATA_MAX_BYTES + 1),
        "中" * 6000,  # 6,000 characters but 18,000 UTF-8 bytes
        "é" * (limits.VALUE_DATA_MAX_BYTES // 2 + 1),
        "😀" * (limits.VALUE_DATA_MAX_BYTES // 4 + 1),
        b"\x00" * (limits.VALUE_DATA_MAX_BYTES + 1),
    ],
    ids=["ascii", "cjk-6000-chars", "latin1-2-bytes", "emoji-4-bytes", "binary"],
)
def test_data_too_large(data: str | bytes) -> None:
    v = only([Value(1, "A"), Value(2, "B"), Value(3, "C", data)])
    assert v.field == "values[2].data"
    assert v.description == f"must be at most {limits.VALUE_DATA_MAX_BYTES} bytes"


def test_data_limit_is_in_utf8_bytes() -> None:
    assert value_violations([Value(1, "A", "中" * 5461)]) == []  # 16,383 bytes
    assert fields([Value(1, "A", "中" * 5462)]) == ["values[0].data"]  # 16,386 bytes
    assert value_violations([Value(1, "A", "a" * limits.VALUE_DATA_MAX_BYTES)]) == []


@pytest.mark.parametrize("ttl", [-1, -86400, UINT32_MAX + 1])
def test_bad_ttl(ttl: int) -> None:
    v = only([Value(1, "A", ttl=ttl)])
    assert v.field == "values[0].ttl"
    assert v.description == f"must be between 0 and {UINT32_MAX} seconds"


def test_too_many_values() -> None:
    ok = [Value(i, "T") for i in range(1, limits.VALUES_MAX + 1)]
    assert value_violations(ok) == []
    too_many = [*ok, Value(limits.VALUES_MAX + 1, "T")]
    assert fields(too_many) == ["values"]


def test_every_violation_is_reported_at_once() -> None:
    values = [
        Value(1, "OK", "fine"),
        Value(0, "URL"),
        Value(2, "has space"),
        Value(1, "", "x" * (limits.VALUE_DATA_MAX_BYTES + 1), ttl=-5),
        Value(3, "OK", b"\x00" * (limits.VALUE_DATA_MAX_BYTES + 1)),
    ]
    assert fields(values) == [
        "values[1].index",
        "values[2].type",
        "values[3].index",
        "values[3].type",
        "values[3].data",
        "values[3].ttl",
        "values[4].data",
    ]
    with pytest.raises(InvalidArgument) as info:
        check_values(values)
    assert [v.field for v in info.value.violations] == fields(values)
    assert "(and 6 more)" in info.value.message
    nested = info.value.under("record")
    assert [v.field for v in nested.violations][:3] == [
        "record.values[1].index",
        "record.values[2].type",
        "record.values[3].index",
    ]


def test_check_record_size() -> None:
    check_record_size(b"x" * limits.RECORD_MAX_BYTES)
    with pytest.raises(InvalidArgument) as info:
        check_record_size(b"x" * (limits.RECORD_MAX_BYTES + 1))
    assert info.value.violations[0].field == "values"


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (0, limits.PAGE_SIZE_DEFAULT),
        (1, 1),
        (7, 7),
        (limits.PAGE_SIZE_MAX, limits.PAGE_SIZE_MAX),
        (10**9, limits.PAGE_SIZE_MAX),
    ],
)
def test_page_size(requested: int, expected: int) -> None:
    assert page_size(requested) == expected


def test_negative_page_size() -> None:
    with pytest.raises(InvalidArgument) as info:
        page_size(-1, "size")
    assert info.value.violations[0].field == "size"


# ---------------------------------------------------------------------------- codec
u32 = st.integers(min_value=0, max_value=UINT32_MAX)
# Timestamps from 1970 to 2200 in nanoseconds; 0 means "unset" and round-trips as 0.
times = st.one_of(st.just(0), st.integers(min_value=1, max_value=7_258_118_400 * 10**9))
texts = st.text(st.characters(codec="utf-8"), max_size=50)
values = st.builds(
    Value,
    index=u32,
    type=texts,
    data=st.one_of(texts, st.binary(max_size=50)),
    ttl=u32,
    timestamp_ns=times,
)
records = st.builds(
    Record,
    identifier=texts,
    values=st.lists(values, max_size=6).map(tuple),
    owner=texts,
    create_time_ns=times,
    update_time_ns=times,
    etag=texts,
)


@PROPS
@given(records)
def test_record_round_trip(record: Record) -> None:
    data = codec.encode_record(record)
    assert isinstance(data, bytes) and data == codec.encode_record_pb(record)
    back = codec.decode_record(data)
    assert back == record
    for before, after in zip(record.values, back.values, strict=True):
        assert type(after.data) is type(before.data)
    assert codec.encode_record(back) == data  # deterministic


def test_round_trip_examples() -> None:
    record = Record(
        identifier="88.118.8/设备-001",
        values=(
            Value(1, "URL", "https://example.com/中", ttl=0, timestamp_ns=1_700_000_000_123_456_789),
            Value(2, "BIN", b"", ttl=86400),
            Value(3, "TEXT", "", ttl=UINT32_MAX),
            Value(4, "HS_ADMIN", b"\x00\xff\x00"),
        ),
        owner="88.118.8",
        create_time_ns=1,
        update_time_ns=2,
        etag="0123456789abcdef",
    )
    back = codec.decode_record(codec.encode_record(record))
    assert back == record
    assert back.values[1].data == b"" and back.values[2].data == ""


def test_unset_ttl_decodes_as_default() -> None:
    pb = record_pb2.Record(identifier="88.118.8/x")
    pb.values.add(index=1, type="URL", text="u")
    (value,) = codec.decode_record(pb.SerializeToString()).values
    assert value.ttl == limits.DEFAULT_TTL_SECONDS
    assert value.timestamp_ns == 0


def test_enterprise_round_trip() -> None:
    enterprise = Enterprise(
        prefix="88.118.8",
        display_name="Demo 演示",
        contact="ops@example.com",
        state=EnterpriseState.SUSPENDED,
        create_time_ns=1_700_000_000_000_000_001,
        update_time_ns=1_700_000_000_000_000_002,
        fingerprints=("aa" * 32, "bb" * 32),
    )
    assert codec.decode_enterprise(codec.encode_enterprise(enterprise)) == enterprise


# ---------------------------------------------------------------------------- filtering
FILTER_RECORD = Record(
    identifier="88.118.8/f",
    values=(
        Value(1, "URL", "a", timestamp_ns=11),
        Value(2, "EMAIL", "b", timestamp_ns=12),
        Value(3, "URL", b"c", timestamp_ns=13),
        Value(4, "HS_ADMIN", "d", timestamp_ns=14),
    ),
    owner="88.118.8",
    create_time_ns=5,
    update_time_ns=6,
    etag="e",
)


def filtered(types: list[str], indexes: list[int]) -> Record:
    return codec.decode_record(codec.filter_record_bytes(codec.encode_record(FILTER_RECORD), types, indexes))


def test_filter_none_returns_the_same_bytes_object() -> None:
    data = codec.encode_record(FILTER_RECORD)
    assert codec.filter_record_bytes(data, [], []) is data
    assert codec.filter_record_bytes(data, (), ()) is data


@pytest.mark.parametrize(
    ("types", "indexes", "kept"),
    [
        (["URL"], [], [1, 3]),
        (["URL", "EMAIL"], [], [1, 2, 3]),
        (["NOPE"], [], []),
        (["url"], [], []),  # types are case-sensitive
        ([], [2, 3], [2, 3]),
        ([], [4, 99], [4]),
        ([], [99], []),
        (["URL"], [2, 3], [3]),
        (["EMAIL"], [1, 3], []),
        (["URL", "HS_ADMIN"], [1, 4], [1, 4]),
    ],
)
def test_filter(types: list[str], indexes: list[int], kept: list[int]) -> None:
    record = filtered(types, indexes)
    assert [v.index for v in record.values] == kept
    assert record.values == tuple(v for v in FILTER_RECORD.values if v.index in kept)
    # Everything but the values is kept.
    assert (record.identifier, record.owner, record.create_time_ns, record.update_time_ns, record.etag) == (
        FILTER_RECORD.identifier,
        FILTER_RECORD.owner,
        FILTER_RECORD.create_time_ns,
        FILTER_RECORD.update_time_ns,
        FILTER_RECORD.etag,
    )


@PROPS
@given(records, st.lists(texts, max_size=3), st.lists(u32, max_size=3))
def test_filter_property(record: Record, types: list[str], indexes: list[int]) -> None:
    data = codec.encode_record(record)
    out = codec.decode_record(codec.filter_record_bytes(data, types, indexes))
    expected = tuple(
        v for v in record.values if (not types or v.type in types) and (not indexes or v.index in indexes)
    )
    assert out.values == expected
    assert out.identifier == record.identifier


def test_lone_surrogate_in_text_data_is_a_field_violation_not_a_crash() -> None:
    violations = value_violations([Value(1, "URL", "ok"), Value(2, "note", "bad \udc80 text")])
    assert [(v.field, v.description) for v in violations] == [
        ("values[1].data", "text must be valid Unicode (no lone surrogates)")
    ]


def test_the_encoders_memos_stay_bounded_and_keep_memoising() -> None:
    """A node stamps each write with a new time: once the memo held 4,096 of them it must still
    memoise the time a batch (or an import) is stamping now, not only its first 4,096 times."""
    from registry import fastcodec

    for i in range(3 * fastcodec._MEMO_MAX):
        fastcodec._tail(86400, 1_700_000_000_000_000_000 + i)
        assert len(fastcodec._tail_memo) <= fastcodec._MEMO_MAX
        assert len(fastcodec._timestamp_memo) <= fastcodec._MEMO_MAX
    now = 1_800_000_000_123_456_789
    first = fastcodec._tail(86400, now)
    assert fastcodec._tail(86400, now) is first  # memoised: the same bytes object again
    assert fastcodec._timestamp(now) is fastcodec._timestamp(now)
    record = Record("88.118.8/A", (Value(1, "URL", "u", 86400, now),), "88.118.8", now, now, "e")
    assert fastcodec.encode_record(record) == codec.encode_record_pb(record)
