"""ResolutionService against a real node: Resolve, BatchResolve, StreamResolve."""

from __future__ import annotations

import queue

import grpc
import pytest

from registry import limits
from registry.pb import resolution_pb2
from resolver.client import IdnodeClient, value
from resolver.services.wire import varint
from tests.node_fixtures import assert_invalid, raw_rpc_error, rpc_error, status_details


def three_values() -> list:
    return [
        value(1, "URL", "https://example.com/p/1"),
        value(2, "product.batch", "B1"),
        value(3, "URL", "https://mirror.example.com/p/1"),
        value(100, "EMAIL", b"\x00\x01binary", ttl=60),
    ]


def test_resolve_returns_the_registered_record(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    created = c.create(f"{prefix}/ABC-1", three_values())
    record = anon_client.resolve(f"{prefix}/ABC-1")
    assert record == created
    assert record.owner == prefix
    assert [v.index for v in record.values] == [1, 2, 3, 100]
    assert record.values[3].binary == b"\x00\x01binary"
    assert record.values[3].ttl == 60
    assert record.values[0].ttl == limits.DEFAULT_TTL_SECONDS
    assert record.values[0].HasField("timestamp")


def test_resolve_other_ascii_case_keeps_registered_spelling(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/AbC-Mixed", [value(1, "URL", "https://x")])
    for spelling in (f"{prefix}/abc-mixed", f"{prefix}/ABC-MIXED", f"{prefix}/aBc-mIxEd"):
        assert anon_client.resolve(spelling).identifier == f"{prefix}/AbC-Mixed"
        # the filtered (decoding) path keeps it too
        assert anon_client.resolve(spelling, types=["URL"]).identifier == f"{prefix}/AbC-Mixed"


def test_resolve_non_ascii_letters_do_not_fold(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/café", [value(1, "URL", "https://x")])
    assert anon_client.resolve(f"{prefix}/CAFé").identifier == f"{prefix}/café"
    err = rpc_error(lambda: anon_client.resolve(f"{prefix}/CAFÉ"))
    assert err.code is grpc.StatusCode.NOT_FOUND


def test_resolve_filters_by_type(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/F-1", three_values())
    record = anon_client.resolve(f"{prefix}/F-1", types=["URL"])
    assert [v.index for v in record.values] == [1, 3]
    assert record.identifier == f"{prefix}/F-1"
    assert record.etag
    # exact, case-sensitive types
    assert list(anon_client.resolve(f"{prefix}/F-1", types=["url"]).values) == []
    both = anon_client.resolve(f"{prefix}/F-1", types=["URL", "EMAIL"])
    assert [v.index for v in both.values] == [1, 3, 100]


def test_resolve_filters_by_index_and_by_both(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/F-2", three_values())
    assert [v.index for v in anon_client.resolve(f"{prefix}/F-2", indexes=[2, 100]).values] == [2, 100]
    assert [v.index for v in anon_client.resolve(f"{prefix}/F-2", indexes=[999]).values] == []
    # with both, a value must match both
    record = anon_client.resolve(f"{prefix}/F-2", types=["URL"], indexes=[2, 3])
    assert [v.index for v in record.values] == [3]


def test_resolve_unregistered_is_not_found(ent, anon_client: IdnodeClient) -> None:
    prefix, _ = ent
    err = rpc_error(lambda: anon_client.resolve(f"{prefix}/NOPE"))
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert err.reason == "NOT_FOUND"
    filtered = rpc_error(lambda: anon_client.resolve(f"{prefix}/NOPE", types=["URL"]))
    assert filtered.code is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "bad", ["", "no-slash", "88.118.8/", "88..118/x", "88.118.8/ x", "88.118.8/a\nb", "a/" + "x" * 300]
)
def test_resolve_malformed_is_invalid_argument(anon_client: IdnodeClient, bad: str) -> None:
    err = rpc_error(lambda: anon_client.resolve(bad))
    assert_invalid(err, "identifier")


def test_resolve_after_miss_then_create_finds_it(ent, anon_client: IdnodeClient) -> None:
    """Neither the cached negative answer nor the memoised NotFound status (the second miss of
    the same bytes is answered from it) may outlive the creation."""
    prefix, c = ent
    ident = f"{prefix}/LATE-1"
    first, memoised = (rpc_error(lambda: anon_client.resolve(ident)) for _ in range(2))
    assert first.code is grpc.StatusCode.NOT_FOUND
    assert (memoised.code, memoised.message, memoised.reason) == (first.code, first.message, "NOT_FOUND")
    assert ident in first.message
    c.create(ident, [value(1, "URL", "https://late")])
    assert anon_client.resolve(ident).values[0].text == "https://late"
    assert anon_client.resolve(ident.lower()).values[0].text == "https://late"
    c.delete(ident)
    assert rpc_error(lambda: anon_client.resolve(ident)).code is grpc.StatusCode.NOT_FOUND


def test_resolve_sees_updates_and_deletes(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    ident = f"{prefix}/CHANGING"
    c.create(ident, [value(1, "URL", "https://v1")])
    assert anon_client.resolve(ident).values[0].text == "https://v1"
    c.update(ident, [value(1, "URL", "https://v2")])
    assert anon_client.resolve(ident).values[0].text == "https://v2"
    c.delete(ident)
    assert rpc_error(lambda: anon_client.resolve(ident)).code is grpc.StatusCode.NOT_FOUND


def test_resolution_also_served_on_management_listener(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/BOTH", [value(1, "URL", "https://x")])
    assert c.resolve(f"{prefix}/both") == anon_client.resolve(f"{prefix}/BOTH")


# ------------------------------------------------------------------------------ BatchResolve


def test_batch_resolve_in_request_order_with_per_item_status(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    a = c.create(f"{prefix}/A-1", [value(1, "URL", "https://a")])
    b = c.create(f"{prefix}/B-1", [value(1, "URL", "https://b")])
    requested = [f"{prefix}/b-1", f"{prefix}/missing", "not an identifier", f"{prefix}/A-1", f"{prefix}/b-1"]
    results = anon_client.batch_resolve(requested)
    assert [r.identifier for r in results] == requested
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["record", "error", "error", "record", "record"]
    assert results[0].record == b
    assert results[0].record.identifier == f"{prefix}/B-1"
    assert results[3].record == a
    assert results[4].record == b

    not_found = results[1].error
    assert not_found.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert not_found.message
    domain, reason, _ = status_details(not_found)
    assert (domain, reason) == ("idnode", "NOT_FOUND")

    invalid = results[2].error
    assert invalid.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    domain, reason, violations = status_details(invalid)
    assert domain == "idnode"
    assert reason
    assert [f for f, _ in violations] == ["identifiers[2]"]


def test_batch_resolve_with_filters(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/F-1", three_values())
    c.create(f"{prefix}/F-2", [value(7, "URL", "https://f2"), value(8, "EMAIL", "a@b")])
    results = anon_client.batch_resolve([f"{prefix}/F-1", f"{prefix}/f-2", f"{prefix}/none"], types=["URL"])
    assert [v.index for v in results[0].record.values] == [1, 3]
    assert [v.index for v in results[1].record.values] == [7]
    assert results[2].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    by_index = anon_client.batch_resolve([f"{prefix}/F-1", f"{prefix}/F-2"], indexes=[2, 8])
    assert [[v.index for v in r.record.values] for r in by_index] == [[2], [8]]


def test_batch_resolve_empty(anon_client: IdnodeClient) -> None:
    assert anon_client.batch_resolve([]) == []


def test_batch_resolve_at_the_limit(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/X-0", [value(1, "URL", "https://x")])
    ids = [f"{prefix}/X-{i}" for i in range(limits.BATCH_RESOLVE_MAX)]
    results = anon_client.batch_resolve(ids)
    assert len(results) == limits.BATCH_RESOLVE_MAX
    assert results[0].WhichOneof("result") == "record"
    assert all(r.error.code == grpc.StatusCode.NOT_FOUND.value[0] for r in results[1:])


def test_batch_resolve_over_the_limit_is_invalid(anon_client: IdnodeClient) -> None:
    ids = [f"88.118.8/X-{i}" for i in range(limits.BATCH_RESOLVE_MAX + 1)]
    err = rpc_error(lambda: anon_client.batch_resolve(ids))
    assert_invalid(err, "identifiers")


# ------------------------------------------------------------------------------ StreamResolve


def test_stream_resolve_answers_each_message_in_order(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/S-1", [value(1, "URL", "https://s1")])
    c.create(f"{prefix}/S-2", [value(1, "URL", "https://s2")])
    batches = [
        [f"{prefix}/s-1"],
        [f"{prefix}/missing", f"{prefix}/S-2", "bad"],
        [],
        [f"{prefix}/S-2", f"{prefix}/S-1"],
    ]
    answers = list(anon_client.stream_resolve(batches))
    assert len(answers) == len(batches)
    for batch, answer in zip(batches, answers, strict=True):
        assert [r.identifier for r in answer] == batch
    assert answers[0][0].record.identifier == f"{prefix}/S-1"
    assert answers[1][0].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers[1][1].record.values[0].text == "https://s2"
    bad = answers[1][2].error
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    _, reason, violations = status_details(bad)
    assert reason
    assert [f for f, _ in violations] == ["identifiers[2]"]
    assert [r.record.identifier for r in answers[3]] == [f"{prefix}/S-2", f"{prefix}/S-1"]


def test_stream_resolve_is_interactive(ent, anon_client: IdnodeClient) -> None:
    """Each request message is answered on its own: the next request is sent only after the
    previous answer arrived, so a server that waited for more input would hang the call."""
    prefix, c = ent
    c.create(f"{prefix}/I-1", [value(1, "URL", "https://i1"), value(2, "EMAIL", "a@b")])
    outbox: queue.Queue[resolution_pb2.StreamResolveRequest | None] = queue.Queue()

    def requests():
        while (req := outbox.get()) is not None:
            yield req

    def request(i: int) -> resolution_pb2.StreamResolveRequest:
        req = resolution_pb2.StreamResolveRequest(identifiers=[f"{prefix}/I-1", f"{prefix}/I-{i + 2}"])
        if i == 1:
            req.types.append("EMAIL")
        return req

    call = anon_client.resolution.StreamResolve(requests(), timeout=10)
    for i in range(3):
        outbox.put(request(i))
        response = next(call)
        assert response.results[0].record.identifier == f"{prefix}/I-1"
        expected = [2] if i == 1 else [1, 2]
        assert [v.index for v in response.results[0].record.values] == expected
        assert response.results[1].identifier == f"{prefix}/I-{i + 2}"
        assert response.results[1].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    outbox.put(None)
    assert list(call) == []
    assert call.code() is grpc.StatusCode.OK


def test_stream_resolve_message_over_the_limit_fails_the_stream(anon_client: IdnodeClient) -> None:
    too_many = [f"88.118.8/X-{i}" for i in range(limits.BATCH_RESOLVE_MAX + 1)]
    requests = iter(
        [
            resolution_pb2.StreamResolveRequest(identifiers=["88.118.8/X"]),
            resolution_pb2.StreamResolveRequest(identifiers=too_many),
        ]
    )
    answers = []

    def consume() -> None:
        for response in anon_client.resolution.StreamResolve(requests, timeout=10):
            answers.append(response)

    err = raw_rpc_error(consume)
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(answers) == 1


# ------------------------------------------------------------------------------ Resolve on the wire


def _raw_resolve(client: IdnodeClient) -> grpc.UnaryUnaryMultiCallable:
    """Resolve taking the serialized request as given: for encodings a stub would not produce."""
    return client.channel.unary_unary(
        "/idnode.v1.ResolutionService/Resolve",
        request_serializer=None,
        response_deserializer=resolution_pb2.ResolveResponse.FromString,
    )


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2]) + varint(len(payload)) + payload


def test_resolve_long_identifier_hot_path(ent, anon_client: IdnodeClient) -> None:
    """Identifiers of 128+ bytes take a two-byte length on the wire."""
    prefix, c = ent
    for length in (127, 128, 200, limits.IDENTIFIER_MAX_CHARS):
        ident = f"{prefix}/" + "L" * (length - len(prefix) - 1)
        assert len(ident.encode()) == length
        created = c.create(ident, [value(1, "URL", f"https://{length}")])
        assert anon_client.resolve(ident.lower()) == created
    multibyte = f"{prefix}/" + "é" * 100  # 100 characters, 200 bytes
    created = c.create(multibyte, [])
    assert anon_client.resolve(multibyte) == created


def test_resolve_unusual_encodings(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    ident = f"{prefix}/WIRE-1"
    created = c.create(ident, [value(1, "URL", "https://w"), value(2, "EMAIL", "a@b")])
    resolve = _raw_resolve(anon_client)
    id_field = _field(1, ident.lower().encode())

    assert resolve(id_field, timeout=10).record == created
    # repeated field 1: the last one wins, as for any protobuf parser
    assert resolve(_field(1, b"88.118.8/NOPE") + id_field, timeout=10).record == created
    # unknown fields are ignored
    assert resolve(id_field + _field(15, b"future"), timeout=10).record == created
    # a filter before the identifier
    filtered = resolve(_field(2, b"EMAIL") + id_field, timeout=10).record
    assert [v.index for v in filtered.values] == [2]
    # an identifier that is not UTF-8, and bytes that are no message at all
    for garbage in (_field(1, b"88.118.8/\xff\xfe"), b"\x0a\x05ab", b"\xff\xff\xff"):
        err = raw_rpc_error(lambda g=garbage: resolve(g, timeout=10))
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    # the empty request names the identifier
    empty = raw_rpc_error(lambda: resolve(b"", timeout=10))
    assert empty.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert anon_client.resolve(ident) == created


def test_a_failing_store_answers_unavailable_not_unknown(node, anon_client: IdnodeClient) -> None:
    """A store error on the hot path leaves as UNAVAILABLE (retryable), for unary and batch calls."""
    node.store.close()  # every store read now raises StoreUnavailable
    err = rpc_error(lambda: anon_client.resolve("88.118.8/never-cached"))
    assert err.code is grpc.StatusCode.UNAVAILABLE
    assert err.reason == "STORE_UNAVAILABLE"
    err = rpc_error(lambda: anon_client.batch_resolve(["88.118.8/never-cached-either"]))
    assert err.code is grpc.StatusCode.UNAVAILABLE
