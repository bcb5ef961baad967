"""RegistrationService against a real node: create, get, update, delete, list, batch create,
validation with field paths, and the size limits."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from registry import limits
from registry.pb import record_pb2, registration_pb2
from resolver.client import IdnodeClient, value
from tests.node_fixtures import MakeEnterprise, assert_invalid, fields, rpc_error, status_details, url

# ------------------------------------------------------------------------------ Create / Get


def test_create_returns_the_stored_record(ent) -> None:
    prefix, c = ent
    record = c.create(f"{prefix}/ABC-1", [value(2, "product.batch", "B1"), value(1, "URL", "https://x")])
    assert record.identifier == f"{prefix}/ABC-1"
    assert record.owner == prefix
    assert record.etag
    assert record.create_time == record.update_time
    assert record.create_time.seconds > 0
    assert [v.index for v in record.values] == [1, 2]  # sorted by index
    assert all(v.timestamp == record.create_time for v in record.values)
    assert c.get(f"{prefix}/abc-1") == record


def test_create_ignores_output_only_fields(ent) -> None:
    prefix, c = ent
    req = registration_pb2.CreateIdentifierRequest(
        record=record_pb2.Record(
            identifier=f"{prefix}/OUT-1", values=url(1), owner="88.118.9", etag="chosen-by-client"
        )
    )
    req.record.create_time.seconds = 1
    record = c.registration.CreateIdentifier(req, timeout=10)
    assert record.owner == prefix
    assert record.etag != "chosen-by-client"
    assert record.create_time.seconds > 1


def test_create_in_a_sub_prefix_of_own_prefix(ent) -> None:
    prefix, c = ent
    record = c.create(f"{prefix}.5.1/DEEP", url("deep"))
    assert record.owner == prefix
    assert c.get(f"{prefix}.5.1/deep").identifier == f"{prefix}.5.1/DEEP"


def test_create_with_no_values(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/EMPTY", [])
    assert list(anon_client.resolve(f"{prefix}/EMPTY").values) == []


def test_create_already_exists_in_other_case(ent) -> None:
    prefix, c = ent
    first = c.create(f"{prefix}/Dup-1", url(1))
    for spelling in (f"{prefix}/Dup-1", f"{prefix}/DUP-1", f"{prefix}/dup-1"):
        err = rpc_error(lambda s=spelling: c.create(s, url(2)))
        assert err.code is grpc.StatusCode.ALREADY_EXISTS
        assert err.reason == "ALREADY_EXISTS"
    assert c.get(f"{prefix}/Dup-1") == first


def test_get_unregistered_is_not_found(ent) -> None:
    prefix, c = ent
    err = rpc_error(lambda: c.get(f"{prefix}/NOPE"))
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert err.reason == "NOT_FOUND"


def test_get_malformed_names_identifier(ent) -> None:
    _, c = ent
    assert_invalid(rpc_error(lambda: c.get("no slash")), "identifier")


# ------------------------------------------------------------------------------ Update


def test_update_with_current_etag(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    created = c.create(f"{prefix}/UPD-1", [value(1, "URL", "https://v1"), value(2, "EMAIL", "a@b")])
    updated = c.update(
        f"{prefix}/upd-1", [value(1, "URL", "https://v2"), value(2, "EMAIL", "a@b")], etag=created.etag
    )
    assert updated.identifier == f"{prefix}/UPD-1"  # registered spelling kept
    assert updated.etag != created.etag
    assert updated.create_time == created.create_time
    assert updated.values[0].text == "https://v2"
    # an unchanged value keeps its timestamp
    assert updated.values[1].timestamp == created.values[1].timestamp
    assert c.get(f"{prefix}/UPD-1") == updated
    assert anon_client.resolve(f"{prefix}/UPD-1").values[0].text == "https://v2"


def test_update_with_stale_etag_is_aborted_and_changes_nothing(ent) -> None:
    prefix, c = ent
    created = c.create(f"{prefix}/UPD-2", url("v1"))
    current = c.update(f"{prefix}/UPD-2", url("v2"), etag=created.etag)
    err = rpc_error(lambda: c.update(f"{prefix}/UPD-2", url("v3"), etag=created.etag))
    assert err.code is grpc.StatusCode.ABORTED
    assert err.reason == "ETAG_MISMATCH"
    assert c.get(f"{prefix}/UPD-2") == current


def test_unconditional_update_with_empty_etag(ent) -> None:
    prefix, c = ent
    created = c.create(f"{prefix}/UPD-3", url("v1"))
    c.update(f"{prefix}/UPD-3", url("v2"))
    third = c.update(f"{prefix}/UPD-3", url("v3"), etag="")
    assert third.values[0].text == "https://example.com/v3"
    assert third.etag not in ("", created.etag)
    assert c.get(f"{prefix}/UPD-3").etag == third.etag


def test_update_unregistered_is_not_found(ent) -> None:
    prefix, c = ent
    err = rpc_error(lambda: c.update(f"{prefix}/NOPE", url(1)))
    assert err.code is grpc.StatusCode.NOT_FOUND


def test_update_invalid_values_names_field(ent) -> None:
    prefix, c = ent
    created = c.create(f"{prefix}/UPD-4", url(1))
    err = rpc_error(lambda: c.update(f"{prefix}/UPD-4", [value(1, "URL", "x"), value(1, "URL", "y")]))
    assert_invalid(err, "record.values[1].index")
    assert_invalid(rpc_error(lambda: c.update("bad", url(1))), "record.identifier")
    assert c.get(f"{prefix}/UPD-4") == created


# ------------------------------------------------------------------------------ Delete


def test_delete_then_not_found(ent, anon_client: IdnodeClient) -> None:
    prefix, c = ent
    c.create(f"{prefix}/DEL-1", url(1))
    anon_client.resolve(f"{prefix}/DEL-1")  # warm the cache
    c.delete(f"{prefix}/del-1")
    assert rpc_error(lambda: c.get(f"{prefix}/DEL-1")).code is grpc.StatusCode.NOT_FOUND
    assert rpc_error(lambda: anon_client.resolve(f"{prefix}/DEL-1")).code is grpc.StatusCode.NOT_FOUND
    assert rpc_error(lambda: c.delete(f"{prefix}/DEL-1")).code is grpc.StatusCode.NOT_FOUND
    # the identifier can be registered again
    assert c.create(f"{prefix}/del-1", url(2)).identifier == f"{prefix}/del-1"


def test_delete_returns_empty(ent) -> None:
    prefix, c = ent
    c.create(f"{prefix}/DEL-E", url(1))
    answer = c.registration.DeleteIdentifier(
        registration_pb2.DeleteIdentifierRequest(identifier=f"{prefix}/DEL-E"), timeout=10
    )
    assert answer == empty_pb2.Empty()


def test_delete_with_etag(ent) -> None:
    prefix, c = ent
    created = c.create(f"{prefix}/DEL-2", url(1))
    updated = c.update(f"{prefix}/DEL-2", url(2))
    err = rpc_error(lambda: c.delete(f"{prefix}/DEL-2", etag=created.etag))
    assert err.code is grpc.StatusCode.ABORTED
    assert err.reason == "ETAG_MISMATCH"
    assert c.get(f"{prefix}/DEL-2") == updated
    c.delete(f"{prefix}/DEL-2", etag=updated.etag)
    assert rpc_error(lambda: c.get(f"{prefix}/DEL-2")).code is grpc.StatusCode.NOT_FOUND


def test_delete_malformed_names_identifier(ent) -> None:
    _, c = ent
    assert_invalid(rpc_error(lambda: c.delete("88.118.8")), "identifier")


# ------------------------------------------------------------------------------ List


def test_list_pagination_is_stable_and_complete(ent) -> None:
    prefix, c = ent
    suffixes = [f"item-{i:02d}" for i in range(23)] + ["Zeta", "alpha", "MIXed", "b.dot/slash"]
    for s in suffixes:
        c.create(f"{prefix}/{s}", url(s))
    c.create(f"{prefix}.3/sub", url("sub"))  # sub-prefixes are listed too

    expected = sorted([f"{prefix}/{s}" for s in suffixes] + [f"{prefix}.3/sub"], key=lambda t: t.upper())
    pages, token = [], ""
    while True:
        page = c.list(prefix, page_size=5, page_token=token)
        assert len(page.records) <= 5
        pages.append([r.identifier for r in page.records])
        token = page.next_page_token
        if not token:
            break
    listed = [i for p in pages for i in p]
    assert listed == expected  # complete, no duplicates, case-folded byte order
    assert all(len(p) == 5 for p in pages[:-1])
    # stable: the same walk again gives the same pages
    assert [r.identifier for r in c.list_all(prefix, page_size=5)] == listed
    # full records, as registered
    first = c.list(prefix, page_size=1).records[0]
    assert first == c.get(first.identifier)


def test_list_exact_page_boundary_and_default_size(ent) -> None:
    prefix, c = ent
    for i in range(10):
        c.create(f"{prefix}/P-{i}", url(i))
    page = c.list(prefix, page_size=10)
    assert len(page.records) == 10
    assert page.next_page_token == ""
    assert len(c.list(prefix).records) == 10  # 0 means the default (100)
    huge = c.list(prefix, page_size=1_000_000)  # clamped, not an error
    assert len(huge.records) == 10


def test_list_empty_prefix_and_siblings_excluded(ent, make_enterprise: MakeEnterprise) -> None:
    prefix, c = ent
    other_prefix, other = make_enterprise("80")  # 88.118.80: a sibling, not a sub-prefix of 88.118.8
    other.create(f"{other_prefix}/X", url(1))
    assert list(c.list(prefix).records) == []
    c.create(f"{prefix}/Y", url(1))
    assert [r.identifier for r in c.list(prefix).records] == [f"{prefix}/Y"]


def test_list_negative_page_size_is_invalid(ent) -> None:
    prefix, c = ent
    assert_invalid(rpc_error(lambda: c.list(prefix, page_size=-1)), "page_size")


def test_list_bad_parent_and_bad_token(ent) -> None:
    prefix, c = ent
    assert_invalid(rpc_error(lambda: c.list("")), "parent")
    assert_invalid(rpc_error(lambda: c.list("88.118.8/x")), "parent")
    assert_invalid(rpc_error(lambda: c.list(prefix, page_token="garbage!")), "page_token")


def test_list_token_cannot_be_replayed_on_another_parent(ent, admin_client: IdnodeClient) -> None:
    prefix, c = ent
    for i in range(3):
        c.create(f"{prefix}/T-{i}", url(i))
    token = c.list(prefix, page_size=1).next_page_token
    assert token
    assert_invalid(rpc_error(lambda: c.list(f"{prefix}.1", page_token=token)), "page_token")
    assert_invalid(rpc_error(lambda: admin_client.list("88.118.9", page_token=token)), "page_token")


# ------------------------------------------------------------------------------ validation


def test_invalid_values_name_every_field(ent) -> None:
    prefix, c = ent
    values = [value(1, "URL", "ok"), value(0, "", ""), value(1, "has space", "x"), value(2, "t" * 129, "")]
    err = rpc_error(lambda: c.create(f"{prefix}/V-1", values))
    assert_invalid(err, "record.values[1].type")
    assert set(fields(err)) >= {
        "record.values[1].index",
        "record.values[1].type",
        "record.values[2].index",
        "record.values[2].type",
        "record.values[3].type",
    }
    assert "record.values[0].type" not in fields(err)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "no-slash",
        "88.118.8/",
        "88.118.8/ lead",
        "88.118.8/trail ",
        "88.118.8/tab\there",
        "88.1_18/x",
        "/x",
    ],
)
def test_malformed_identifier_names_record_identifier(ent, bad: str) -> None:
    _, c = ent
    assert_invalid(rpc_error(lambda: c.create(bad, url(1))), "record.identifier")


def test_identifier_length_limit(ent) -> None:
    prefix, c = ent
    head = f"{prefix}/"
    longest = head + "x" * (limits.IDENTIFIER_MAX_CHARS - len(head))
    assert c.create(longest, url(1)).identifier == longest
    err = rpc_error(lambda: c.create(longest + "y", url(1)))
    assert_invalid(err, "record.identifier")


def test_values_count_limit(ent) -> None:
    prefix, c = ent
    at_limit = [value(i, "T", "") for i in range(1, limits.VALUES_MAX + 1)]
    assert len(c.create(f"{prefix}/V-256", at_limit).values) == limits.VALUES_MAX
    over = [value(i, "T", "") for i in range(1, limits.VALUES_MAX + 2)]
    assert_invalid(rpc_error(lambda: c.create(f"{prefix}/V-257", over)), "record.values")
    assert rpc_error(lambda: c.get(f"{prefix}/V-257")).code is grpc.StatusCode.NOT_FOUND
    assert_invalid(rpc_error(lambda: c.update(f"{prefix}/V-256", over)), "record.values")
    assert len(c.get(f"{prefix}/V-256").values) == limits.VALUES_MAX


def test_value_data_size_limit(ent) -> None:
    prefix, c = ent
    c.create(f"{prefix}/D-OK", [value(1, "BLOB", b"\xff" * limits.VALUE_DATA_MAX_BYTES)])
    too_big_bytes = [value(1, "URL", "x"), value(2, "BLOB", b"\xff" * (limits.VALUE_DATA_MAX_BYTES + 1))]
    assert_invalid(rpc_error(lambda: c.create(f"{prefix}/D-1", too_big_bytes)), "record.values[1].data")
    # text is measured in UTF-8 bytes, not characters
    too_big_text = [value(1, "TXT", "é" * (limits.VALUE_DATA_MAX_BYTES // 2 + 1))]
    assert_invalid(rpc_error(lambda: c.create(f"{prefix}/D-2", too_big_text)), "record.values[0].data")


def test_record_size_limit(ent) -> None:
    prefix, c = ent
    five_of_15k = [value(i, "BLOB", b"x" * (15 * 1024)) for i in range(1, 6)]
    err = rpc_error(lambda: c.create(f"{prefix}/R-1", five_of_15k))
    assert_invalid(err, "record.values")
    assert rpc_error(lambda: c.get(f"{prefix}/R-1")).code is grpc.StatusCode.NOT_FOUND
    four_of_15k = five_of_15k[:4]
    c.create(f"{prefix}/R-1", four_of_15k)
    # growing a record past the limit by update is refused as well, and leaves it as it was
    before = c.get(f"{prefix}/R-1")
    assert_invalid(rpc_error(lambda: c.update(f"{prefix}/R-1", five_of_15k)), "record.values")
    assert c.get(f"{prefix}/R-1") == before


# ------------------------------------------------------------------------------ BatchCreate


def test_batch_create_per_item_results(ent, make_enterprise: MakeEnterprise) -> None:
    prefix, c = ent
    other_prefix, _ = make_enterprise("9")
    c.create(f"{prefix}/EXISTS", url(0))
    items = [
        (f"{prefix}/B-0", url(0)),
        (f"{prefix}/exists", url(1)),  # taken, in another case
        ("not valid", url(2)),
        (f"{prefix}/B-3", [value(1, "bad type", "x")]),
        (f"{other_prefix}/B-4", url(4)),  # not ours
        (f"{prefix}/b-0", url(5)),  # duplicate of item 0 inside the batch
        (f"{prefix}/B-6", url(6)),
        (f"{prefix}/B-7", [value(i, "BLOB", b"x" * (15 * 1024)) for i in range(1, 6)]),  # > 64 KiB
    ]
    results = c.batch_create(items)
    assert [r.identifier for r in results] == [i for i, _ in items]
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["etag", "error", "error", "error", "error", "error", "etag", "error"]

    def check(i: int, code: grpc.StatusCode, reason: str | None = None) -> list[str]:
        status = results[i].error
        assert status.code == code.value[0]
        assert status.message
        domain, got_reason, violations = status_details(status)
        assert domain == "idnode"
        assert got_reason
        if reason is not None:
            assert got_reason == reason
        return [f for f, _ in violations]

    check(1, grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    assert check(2, grpc.StatusCode.INVALID_ARGUMENT) == ["requests[2].record.identifier"]
    assert check(3, grpc.StatusCode.INVALID_ARGUMENT) == ["requests[3].record.values[0].type"]
    check(4, grpc.StatusCode.PERMISSION_DENIED, "PREFIX_NOT_OWNED")
    check(5, grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS")
    assert check(7, grpc.StatusCode.INVALID_ARGUMENT) == ["requests[7].record.values"]
    assert c.get(f"{prefix}/B-0").etag == results[0].etag
    assert c.get(f"{prefix}/B-6").etag == results[6].etag
    assert c.get(f"{prefix}/B-0").values[0].text == "https://example.com/0"
    assert rpc_error(lambda: c.get(f"{prefix}/B-3")).code is grpc.StatusCode.NOT_FOUND


def test_batch_create_retry_with_same_request_id_is_idempotent(
    ent, admin_client: IdnodeClient, make_enterprise: MakeEnterprise
) -> None:
    prefix, c = ent
    other_prefix, _ = make_enterprise("9")
    c.create(f"{prefix}/TAKEN", url(0))
    items = [(f"{prefix}/R-{i}", url(i)) for i in range(5)] + [
        (f"{prefix}/taken", url(9)),
        ("bad", url(9)),
        (f"{other_prefix}/R", url(9)),
    ]
    first = c.batch_create(items, request_id="req-0001")
    assert sum(r.WhichOneof("result") == "etag" for r in first) == 5
    count = admin_client.stats().identifier_count
    assert count == 6

    retry = c.batch_create(items, request_id="req-0001")
    assert retry == first  # identical, etags and error details included
    assert admin_client.stats().identifier_count == count
    assert c.get(f"{prefix}/R-0").etag == first[0].etag

    # the same id for a different request is refused
    changed = [*items[:-1], (f"{prefix}/R-new", url(1))]
    err = rpc_error(lambda: c.batch_create(changed, request_id="req-0001"))
    assert_invalid(err, "request_id")
    assert err.reason == "REQUEST_ID_REUSED"
    assert rpc_error(lambda: c.get(f"{prefix}/R-new")).code is grpc.StatusCode.NOT_FOUND

    # without a request id there is no deduplication: a resend fails per item
    again = c.batch_create(items[:2])
    assert [r.error.code for r in again] == [grpc.StatusCode.ALREADY_EXISTS.value[0]] * 2


def test_batch_create_request_ids_are_per_enterprise(ent, make_enterprise: MakeEnterprise) -> None:
    prefix, c = ent
    other_prefix, other = make_enterprise("9")
    mine = c.batch_create([(f"{prefix}/Q-1", url(1))], request_id="shared-id")
    theirs = other.batch_create([(f"{other_prefix}/Q-1", url(1))], request_id="shared-id")
    assert mine[0].WhichOneof("result") == "etag"
    assert theirs[0].WhichOneof("result") == "etag"
    assert other.get(f"{other_prefix}/Q-1").etag == theirs[0].etag


def test_batch_create_request_id_too_long(ent) -> None:
    prefix, c = ent
    long_id = "r" * (limits.REQUEST_ID_MAX_CHARS + 1)
    assert_invalid(
        rpc_error(lambda: c.batch_create([(f"{prefix}/L", url(1))], request_id=long_id)), "request_id"
    )


def test_batch_create_at_and_over_the_limit(
    ent, admin_client: IdnodeClient, anon_client: IdnodeClient
) -> None:
    prefix, c = ent
    over = [(f"{prefix}/N-{i}", url(i)) for i in range(limits.BATCH_CREATE_MAX + 1)]
    err = rpc_error(lambda: c.batch_create(over))
    assert_invalid(err, "requests")
    assert admin_client.stats().identifier_count == 0

    results = c.batch_create(over[: limits.BATCH_CREATE_MAX], request_id="full-batch")
    assert len(results) == limits.BATCH_CREATE_MAX
    assert all(r.WhichOneof("result") == "etag" for r in results)
    assert admin_client.stats().identifier_count == limits.BATCH_CREATE_MAX
    sample = anon_client.batch_resolve([f"{prefix}/n-{i}" for i in range(0, limits.BATCH_CREATE_MAX, 7)])
    assert all(r.WhichOneof("result") == "record" for r in sample)


def test_batch_create_empty(ent) -> None:
    _, c = ent
    assert c.batch_create([]) == []


# ------------------------------------------------------------------------------ error details on the wire


def test_errors_carry_google_rpc_status_details(ent) -> None:
    prefix, c = ent
    c.create(f"{prefix}/Taken", url(1))

    def status_of(request: object, method: str) -> status_pb2.Status:
        with pytest.raises(grpc.RpcError) as info:
            getattr(c.registration, method)(request, timeout=10)
        status = rpc_status.from_call(info.value)
        assert status is not None
        assert status.code == info.value.code().value[0]
        assert status.message == info.value.details()
        return status

    exists = status_of(
        registration_pb2.CreateIdentifierRequest(record=record_pb2.Record(identifier=f"{prefix}/TAKEN")),
        "CreateIdentifier",
    )
    assert exists.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert status_details(exists)[:2] == ("idnode", "ALREADY_EXISTS")
    info = error_details_pb2.ErrorInfo()
    assert exists.details[0].Unpack(info)
    assert info.metadata["identifier"].upper() == f"{prefix}/TAKEN"

    invalid = status_of(
        registration_pb2.CreateIdentifierRequest(
            record=record_pb2.Record(
                identifier=f"{prefix}/NEW", values=[value(1, "URL", ""), value(2, "", "")]
            )
        ),
        "CreateIdentifier",
    )
    domain, reason, violations = status_details(invalid)
    assert (domain, reason) == ("idnode", "INVALID_ARGUMENT")
    assert [f for f, _ in violations] == ["record.values[1].type"]

    denied = status_of(registration_pb2.GetIdentifierRequest(identifier="88.118.9/X"), "GetIdentifier")
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert status_details(denied) == ("idnode", "PREFIX_NOT_OWNED", [])
