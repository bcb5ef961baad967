"""The resolution hot path: answers assembled from stored record bytes (:mod:`resolver.services.wire`)
must be byte for byte what protobuf would serialize, for every shape of record.

Calls go through ``channel.unary_unary`` / ``stream_stream`` without serializers, so the test sees
the exact bytes the node sent.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.internal import decoder, encoder
from hypothesis import example, given
from hypothesis import strategies as st

from cache import _sieve, record_cache
from cache.ttl import record_min_ttl
from registry import limits
from registry.errors import IdnodeError
from registry.identifier import fold
from registry.pb import record_pb2, resolution_pb2
from registry.store import Table
from resolver import _hotpath
from resolver.client import IdnodeClient, value
from resolver.errors import item_status
from resolver.server import NodeServer
from resolver.services import resolution, wire
from resolver.services.wire import TAG1, field, only_field1, varint
from tests.node_fixtures import public_target

SERVICE = "/idnode.v1.ResolutionService/"
ONLY_FIELD1_MAX = 16 * 1024
"""only_field1 reads payloads shorter than this (a 1- or 2-byte length); longer ones are parsed."""


@pytest.fixture(autouse=True, params=["native", "python"])
def hot_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs twice: with the native batch loops (:mod:`resolver._hotpath`,
    :mod:`cache._sieve`, which must be built) and with their pure-Python twins."""
    if request.param == "native":
        assert wire.batch_identifiers is _hotpath.batch_identifiers
        assert record_cache._SIEVE is _sieve
    else:
        monkeypatch.setattr(record_cache, "_SIEVE", None)
        for name in ("batch_identifiers", "fold_keys", "frame_results"):
            monkeypatch.setattr(resolution, name, getattr(wire, f"py_{name}"))
    return request.param


@pytest.fixture
def channel(node: NodeServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        public_target(node), options=[("grpc.max_receive_message_length", 128 << 20)]
    ) as c:
        yield c


def raw_unary(channel: grpc.Channel, method: str):
    return channel.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)


def long_suffix() -> str:
    """A suffix making the identifier 200+ bytes of UTF-8 (a 2-byte length), within 255 characters."""
    return "长标识符" * 20 + "-END"


def record_shapes(prefix: str) -> dict[str, list[record_pb2.Value]]:
    big = 16 * 1024
    return {
        f"{prefix}/TEXT-1": [value(1, "URL", "https://example.com/p/1")],
        f"{prefix}/BIN-1": [
            value(1, "URL", "https://example.com/bin"),
            value(7, "blob", b"\x00\x01\x02\xff\x80\x0a\x12binary", ttl=60),
            value(9, "empty.bin", b""),
        ],
        f"{prefix}/中文-标识": [
            value(1, "网址", "https://例子.中国/产品/1"),
            value(2, "描述", "工业互联网标识解析二级节点" * 10),
            value(3, "EMAIL", "联系@例子.中国", ttl=0),
        ],
        f"{prefix}/MANY": [
            value(i, f"type.{i % 7}", f"value {i}" if i % 2 else f"v{i}".encode())
            for i in range(1, limits.VALUES_MAX + 1)
        ],
        f"{prefix}/{long_suffix()}": [value(1, "URL", "https://example.com/long-id")],
        f"{prefix}/BIG": [
            value(1, "blob", b"\x01" * big),
            value(2, "blob", b"\x02" * big),
            value(3, "text", "x" * big),
            value(4, "text", "y" * (big - 4096)),
        ],
    }


@pytest.fixture
def records(node: NodeServer, ent: tuple[str, IdnodeClient]) -> dict[str, bytes]:
    """Every shape registered: identifier -> the record bytes the node stored."""
    prefix, c = ent
    stored = {}
    for text, values in record_shapes(prefix).items():
        c.create(text, values)
        data = node.store.get(Table.RECORDS, fold(text))
        assert data is not None
        stored[text] = data
    return stored


def test_the_shapes_exercise_every_length_size(records: dict[str, bytes]) -> None:
    long_id = next(t for t in records if t.endswith("-END"))
    assert 128 <= len(long_id.encode()) < ONLY_FIELD1_MAX  # 2-byte length, still read from the bytes
    big = next(d for t, d in records.items() if t.endswith("/BIG"))
    assert 1 << 14 <= len(big) <= limits.RECORD_MAX_BYTES  # 3-byte length
    many = next(d for t, d in records.items() if t.endswith("/MANY"))
    assert len(record_pb2.Record.FromString(many).values) == limits.VALUES_MAX


@pytest.fixture
def slow_path_calls(node: NodeServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Identifiers the core's decoding ``resolve`` was asked for (the slow path)."""
    calls: list[str] = []
    original = node.registry.resolve

    def spy(text: str, *args: object, **kwargs: object) -> bytes:
        calls.append(text)
        return original(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(node.registry, "resolve", spy)
    return calls


def test_resolve_bytes_equal_protobuf_serialization(
    node: NodeServer, records: dict[str, bytes], channel: grpc.Channel, slow_path_calls: list[str]
) -> None:
    resolve = raw_unary(channel, "Resolve")
    cache = node.registry.cache
    for text, stored in records.items():
        expected = resolution_pb2.ResolveResponse(record=record_pb2.Record.FromString(stored))
        cached = record_min_ttl(stored) > 0  # a record with a ttl=0 value is never cached
        first = True
        for spelling in (text, text.lower(), text.upper()):
            request = resolution_pb2.ResolveRequest(identifier=spelling).SerializeToString()
            for _ in range(2):
                before = cache.stats()
                raw = resolve(request, timeout=10)
                after = cache.stats()
                assert raw == expected.SerializeToString(), text
                # The first answer comes from the store, every later one (any spelling) from the cache.
                from_cache = cached and not first
                assert (after.hits - before.hits, after.misses - before.misses) == (
                    (1, 0) if from_cache else (0, 1)
                ), text
                first = False
    assert slow_path_calls == []  # all answered from the stored bytes


def test_filtered_resolve_returns_exactly_the_filtered_values(
    records: dict[str, bytes], channel: grpc.Channel, slow_path_calls: list[str]
) -> None:
    resolve = raw_unary(channel, "Resolve")
    for text, stored in records.items():
        full = record_pb2.Record.FromString(stored)
        cases = [
            (["URL"], []),
            (["blob", "text"], []),
            ([], [1, 3, 9]),
            (["type.3"], [3, 10, 17, 24]),
            (["no-such-type"], []),
        ]
        for types, indexes in cases:
            request = resolution_pb2.ResolveRequest(identifier=text, types=types, indexes=indexes)
            answer = resolution_pb2.ResolveResponse.FromString(
                resolve(request.SerializeToString(), timeout=10)
            )
            kept = [
                v
                for v in full.values
                if (not types or v.type in types) and (not indexes or v.index in indexes)
            ]
            assert list(answer.record.values) == kept, (text, types, indexes)
            expected = record_pb2.Record()
            expected.CopyFrom(full)
            del expected.values[:]
            expected.values.extend(kept)
            assert answer.record == expected
    assert len(slow_path_calls) == 5 * len(records)


def test_resolve_misses_and_bad_identifiers_take_the_full_path(
    records: dict[str, bytes], channel: grpc.Channel
) -> None:
    resolve = raw_unary(channel, "Resolve")
    prefix = next(iter(records)).split("/")[0]
    for text, code in (
        (f"{prefix}/NOPE", grpc.StatusCode.NOT_FOUND),
        ("no slash", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as info:
            resolve(resolution_pb2.ResolveRequest(identifier=text).SerializeToString(), timeout=10)
        assert info.value.code() is code, text  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as info:
        resolve(b"\x0a\x05ab", timeout=10)  # truncated
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as info:
        resolve(b"\x0a\x02\xff\xfe", timeout=10)  # identifier not UTF-8
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def found(text: str, stored: bytes) -> resolution_pb2.ResolveResult:
    return resolution_pb2.ResolveResult(identifier=text, record=record_pb2.Record.FromString(stored))


def test_batch_resolve_found_bytes_equal_protobuf_serialization(
    records: dict[str, bytes], channel: grpc.Channel, slow_path_calls: list[str]
) -> None:
    batch = raw_unary(channel, "BatchResolve")
    texts = list(records)
    spellings = texts + [t.lower() for t in texts] + texts  # the last ones from the cache
    request = resolution_pb2.BatchResolveRequest(identifiers=spellings)
    raw = batch(request.SerializeToString(), timeout=10)
    expected = resolution_pb2.BatchResolveResponse(
        results=[found(t, records[texts[i % len(texts)]]) for i, t in enumerate(spellings)]
    )
    assert raw == expected.SerializeToString()
    assert slow_path_calls == []


def test_batch_resolve_mixed_items(
    node: NodeServer, records: dict[str, bytes], channel: grpc.Channel
) -> None:
    batch = raw_unary(channel, "BatchResolve")
    prefix = next(iter(records)).split("/")[0]
    texts = list(records)
    identifiers = [
        texts[0],
        f"{prefix}/NOPE-1",
        "not an identifier",
        texts[3],
        "",
        f"{prefix}/未注册",
        texts[5],
        f"{prefix}/ends with space ",
    ]
    raw = batch(resolution_pb2.BatchResolveRequest(identifiers=identifiers).SerializeToString(), timeout=10)
    answer = resolution_pb2.BatchResolveResponse.FromString(raw)
    assert [r.identifier for r in answer.results] == identifiers
    expected_codes = [0, 5, 3, 0, 3, 5, 0, 3]  # OK, NOT_FOUND, INVALID_ARGUMENT
    for i, (text, result, code) in enumerate(zip(identifiers, answer.results, expected_codes, strict=True)):
        if code == 0:
            assert result.WhichOneof("result") == "record"
            assert result.record.SerializeToString() == records[text]
            continue
        # the item the slow, protobuf path makes of the core's error
        try:
            node.registry.resolve(text, field=f"identifiers[{i}]")
        except IdnodeError as exc:
            expected = resolution_pb2.ResolveResult(identifier=text, error=item_status(exc))
        else:
            raise AssertionError(f"{text!r} resolved")
        assert result == expected, text
        assert result.error.code == code
        assert result.error.message
    # byte for byte the answer protobuf would build (found items and error statuses alike)
    assert raw == answer.SerializeToString()
    for text in (texts[0], texts[3], texts[5]):
        assert found(text, records[text]).SerializeToString() in raw


def test_stream_resolve_bytes_equal_protobuf_serialization(
    records: dict[str, bytes], channel: grpc.Channel
) -> None:
    stream = channel.stream_stream(
        SERVICE + "StreamResolve", request_serializer=None, response_deserializer=None
    )
    texts = list(records)
    by_key = {fold(t): data for t, data in records.items()}
    batches = [texts[:2], texts[2:], [t.lower() for t in texts], texts[::-1]]
    requests = (resolution_pb2.StreamResolveRequest(identifiers=b).SerializeToString() for b in batches)
    answers = list(stream(requests, timeout=30))
    assert len(answers) == len(batches)
    for batch, raw in zip(batches, answers, strict=True):
        expected = resolution_pb2.StreamResolveResponse(results=[found(t, by_key[fold(t)]) for t in batch])
        assert raw == expected.SerializeToString()


# ------------------------------------------------------------------------------ wire properties


@given(st.integers(min_value=0, max_value=2**64 - 1))
@example(0)
@example(127)
@example(128)
@example(16383)
@example(16384)
@example(2**64 - 1)
def test_varint_round_trips(n: int) -> None:
    encoded = varint(n)
    assert encoded == encoder._VarintBytes(n)
    assert decoder._DecodeVarint(encoded, 0) == (n, len(encoded))


@given(st.binary(max_size=20_000))
@example(b"x" * 127)
@example(b"x" * 128)
@example(b"x" * (ONLY_FIELD1_MAX - 1))
@example(b"x" * ONLY_FIELD1_MAX)
def test_field_is_what_protobuf_writes(payload: bytes) -> None:
    raw = field(TAG1, payload)
    parsed = resolution_pb2.ResolveResponse.FromString(
        field(TAG1, record_pb2.Record(etag=payload.hex()).SerializeToString())
    )
    assert parsed.record.etag == payload.hex()
    assert raw == b"\x0a" + encoder._VarintBytes(len(payload)) + payload


identifier_text = st.text(min_size=1, max_size=300)


@given(identifier_text)
@example("88.118.8/" + "长" * 246)
@example("a" * (ONLY_FIELD1_MAX - 1))
@example("a" * ONLY_FIELD1_MAX)
def test_only_field1_reads_a_plain_resolve_request(text: str) -> None:
    raw = resolution_pb2.ResolveRequest(identifier=text).SerializeToString()
    encoded = text.encode()
    assert only_field1(raw) == (encoded if len(encoded) < ONLY_FIELD1_MAX else None)


@given(
    identifier_text,
    st.lists(st.text(max_size=20), max_size=3),
    st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=3),
)
def test_only_field1_refuses_anything_more(text: str, types: list[str], indexes: list[int]) -> None:
    request = resolution_pb2.ResolveRequest(identifier=text, types=types, indexes=indexes)
    raw = request.SerializeToString()
    if types or indexes:
        assert only_field1(raw) is None
    assert only_field1(raw + raw) is None  # field 1 twice
    assert only_field1(raw + b"\x00") is None  # trailing bytes
    assert only_field1(raw + b"\x10\x01") is None  # an unknown field
    assert only_field1(raw[:-1]) is None  # truncated


def test_only_field1_empty_and_other_fields() -> None:
    assert only_field1(b"") is None  # ResolveRequest() serializes to nothing
    assert only_field1(b"\x0a\x00") == b""  # an explicitly empty field 1
    assert only_field1(b"\x12\x01A") is None  # field 2
    assert only_field1(b"\x08\x01") is None  # field 1 as a varint
    assert only_field1(b"\x0a") is None


@given(st.binary(max_size=300))
def test_only_field1_is_consistent_with_protobuf_framing(raw: bytes) -> None:
    """On any bytes, a payload is returned only when the whole input is exactly one field 1."""
    payload = only_field1(raw)
    if payload is None:
        return
    assert raw[0] == 0x0A
    assert raw.endswith(payload)
    assert decoder._DecodeVarint(raw, 1) == (len(payload), len(raw) - len(payload))
