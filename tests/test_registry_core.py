"""The core service, in process, on a real RocksDB store."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest

from cache.record_cache import RecordCache
from registry import codec, limits
from registry.errors import (
    AlreadyExists,
    EnterpriseSuspended,
    EtagMismatch,
    FailedPrecondition,
    IdnodeError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from registry.identifier import fold
from registry.model import EnterpriseState, Principal, Record, Role, Value
from registry.rocks import RocksStore
from registry.service import CreateOutcome, Registry, set_admin_fingerprints
from registry.store import Table
from registry.validation import decode_page_token, encode_page_token
from tests.helpers import NODE_PREFIX, url
from tests.node_fixtures import run_together

E = "88.118.8"  # the ``enterprise`` fixture's prefix


def ident(suffix: str, prefix: str = E) -> str:
    return f"{prefix}/{suffix}"


def decoded(data: bytes) -> Record:
    return codec.decode_record(data)


def summary(outcomes: list[CreateOutcome]) -> list[tuple[object, ...]]:
    """An outcome list in comparable form (exceptions compare by identity)."""
    out: list[tuple[object, ...]] = []
    for o in outcomes:
        if o.error is None:
            out.append((o.identifier, o.etag))
        else:
            err = o.error
            violations = tuple((v.field, v.description) for v in getattr(err, "violations", ()))
            out.append((o.identifier, type(err).__name__, err.reason, err.message, violations, err.metadata))
    return out


@pytest.fixture
def other(registry: Registry, admin: Principal, enterprise: Principal) -> Principal:
    """A second enterprise, 88.118.9 (created after 88.118.8)."""
    registry.create_enterprise(admin, "9", "Other", "other@example.com", lambda prefix: "fp-9")
    return registry.authenticate_enterprise("88.118.9", "fp-9")


@pytest.fixture
def sibling(registry: Registry, admin: Principal, enterprise: Principal) -> Principal:
    """Enterprise 88.118.80, whose prefix starts with the characters of 88.118.8."""
    registry.create_enterprise(admin, "80", "Sibling", "s@example.com", lambda prefix: "fp-80")
    return registry.authenticate_enterprise("88.118.80", "fp-80")


class TickingClock:
    """A deterministic clock: each call is one microsecond later than the previous."""

    def __init__(self, start: int = 1_700_000_000_000_000_000) -> None:
        self._next = itertools.count(start, 1_000)

    def __call__(self) -> int:
        return next(self._next)


def test_value_stamped_changes_only_the_timestamp() -> None:
    value = Value(7, "T", b"\x00", ttl=9, timestamp_ns=1)
    assert value.stamped(5) == dataclasses.replace(value, timestamp_ns=5)
    # Value.stamped names every field: a field added to Value must be added there too
    assert [f.name for f in dataclasses.fields(Value)] == ["index", "type", "data", "ttl", "timestamp_ns"]


# ============================================================================ create / get / resolve
def test_create_returns_stamped_record(registry: Registry, enterprise: Principal) -> None:
    values = [
        Value(3, "EMAIL", "a@example.com"),
        Value(1, "URL", "https://x"),
        Value(2, "BIN", b"\x00\x01", ttl=0),
    ]
    record = registry.create(enterprise, ident("Abc-001"), values)
    assert record.identifier == "88.118.8/Abc-001"
    assert record.owner == E
    assert [v.index for v in record.values] == [1, 2, 3]  # sorted by index
    assert record.create_time_ns > 0 and record.update_time_ns == record.create_time_ns
    assert all(v.timestamp_ns == record.create_time_ns for v in record.values)
    assert [(v.index, v.type, v.data, v.ttl) for v in record.values] == sorted(
        (v.index, v.type, v.data, v.ttl) for v in values
    )
    assert record.etag
    assert registry.get(enterprise, ident("Abc-001")) == record
    assert decoded(registry.resolve(ident("Abc-001"))) == record
    assert registry.identifier_count(E) == 1


def test_etags_differ_between_records(registry: Registry, enterprise: Principal) -> None:
    etags = {registry.create(enterprise, ident(f"e{i}"), url(i)).etag for i in range(20)}
    assert len(etags) == 20


def test_a_restarted_node_never_draws_a_records_old_etags_again(
    registry: Registry, enterprise: Principal
) -> None:
    """Each registry seeds its etags from the OS: a second registry over the same store (the node
    restarted) must not repeat the first one's draws, or a client's stale etag could match again."""
    seen = [registry.create(enterprise, ident("R"), url(0)).etag]
    seen += [registry.update(enterprise, ident("R"), url(i)).etag for i in range(1, 30)]
    again = Registry(registry.store)
    seen += [again.update(enterprise, ident("R"), url(i)).etag for i in range(30, 60)]
    assert len(set(seen)) == 60
    assert all(len(e) == 16 and int(e, 16) >= 0 for e in seen)


def test_create_in_other_ascii_case_already_exists(registry: Registry, enterprise: Principal) -> None:
    first = registry.create(enterprise, ident("Abc"), url(1))
    for spelling in ("88.118.8/abc", "88.118.8/ABC", "88.118.8/aBc", "88.118.8/Abc"):
        with pytest.raises(AlreadyExists) as info:
            registry.create(enterprise, spelling, url(2))
        assert info.value.reason == "ALREADY_EXISTS"
        assert info.value.metadata == {"identifier": spelling}
    stored = registry.get(enterprise, "88.118.8/ABC")
    assert stored == first
    assert stored.identifier == "88.118.8/Abc"
    assert registry.identifier_count(E) == 1


def test_non_ascii_case_variants_are_different_identifiers(registry: Registry, enterprise: Principal) -> None:
    registry.create(enterprise, ident("é"), url(1))
    registry.create(enterprise, ident("É"), url(2))
    assert decoded(registry.resolve(ident("é"))).values[0].data == "https://example.com/1"
    assert decoded(registry.resolve(ident("É"))).values[0].data == "https://example.com/2"
    assert registry.identifier_count(E) == 2


def test_resolve_answers_the_registered_spelling(registry: Registry, enterprise: Principal) -> None:
    registry.create(enterprise, ident("MiXed/设备.01"), url())
    for asked in ("88.118.8/mixed/设备.01", "88.118.8/MIXED/设备.01", "88.118.8/MiXed/设备.01"):
        record = decoded(registry.resolve(asked))
        assert record.identifier == "88.118.8/MiXed/设备.01"
    assert registry.resolve("88.118.8/mixed/设备.01") == registry.store.get(
        Table.RECORDS, fold("88.118.8/MiXed/设备.01")
    )
    assert registry.lookup(fold("88.118.8/mixed/设备.01")) is not None
    assert registry.lookup(fold("88.118.8/missing")) is None


def test_resolve_filters(registry: Registry, enterprise: Principal) -> None:
    registry.create(
        enterprise,
        ident("f"),
        [Value(1, "URL", "a"), Value(2, "EMAIL", "b"), Value(3, "URL", "c")],
    )
    assert [v.index for v in decoded(registry.resolve(ident("f"), types=["URL"])).values] == [1, 3]
    assert [v.index for v in decoded(registry.resolve(ident("f"), indexes=[2, 3])).values] == [2, 3]
    assert [v.index for v in decoded(registry.resolve(ident("f"), ["URL"], [2, 3])).values] == [3]
    assert decoded(registry.resolve(ident("f"), types=["NONE"])).values == ()


def test_resolve_not_found_vs_invalid_argument(registry: Registry, enterprise: Principal) -> None:
    with pytest.raises(NotFound) as info:
        registry.resolve("88.118.8/missing")
    assert info.value.reason == "NOT_FOUND"
    assert info.value.metadata == {"identifier": "88.118.8/missing"}
    with pytest.raises(NotFound):
        registry.resolve("99.99/anything")  # well formed, just not here
    for bad in ("", "no-slash", "88.118.8/", "88..8/x", "88.118.8/a\x00", "88.118.8/" + "x" * 300):
        with pytest.raises(InvalidArgument) as bad_info:
            registry.resolve(bad, field="requests[4].identifier")
        assert [v.field for v in bad_info.value.violations] == ["requests[4].identifier"]


def test_resolve_lone_surrogate_is_invalid_argument(registry: Registry) -> None:
    """A str that cannot be UTF-8 encoded is a malformed identifier, not a crash."""
    with pytest.raises(InvalidArgument) as info:
        registry.resolve("88.118.8/a\ud800")
    assert info.value.violations[0].field == "identifier"
    assert "U+D800" in info.value.violations[0].description


def test_create_rejects_malformed_identifier_and_values(registry: Registry, enterprise: Principal) -> None:
    with pytest.raises(InvalidArgument) as info:
        registry.create(enterprise, "88.118.8/ bad", url())
    assert [v.field for v in info.value.violations] == ["record.identifier"]
    with pytest.raises(InvalidArgument) as info:
        registry.create(
            enterprise, ident("v"), [Value(0, "URL"), Value(2, "has space"), Value(3, "T", ttl=-1)]
        )
    assert [v.field for v in info.value.violations] == [
        "record.values[0].index",
        "record.values[1].type",
        "record.values[2].ttl",
    ]
    big = [Value(i, "T", "x" * limits.VALUE_DATA_MAX_BYTES) for i in range(1, 6)]  # ~80 KiB encoded
    with pytest.raises(InvalidArgument) as info:
        registry.create(enterprise, ident("big"), big)
    assert [v.field for v in info.value.violations] == ["record.values"]
    assert registry.identifier_count(E) == 0
    assert registry.stats(Principal.admin()).identifier_count == 0


def test_get_not_found_and_invalid(registry: Registry, enterprise: Principal) -> None:
    with pytest.raises(NotFound):
        registry.get(enterprise, ident("missing"))
    with pytest.raises(InvalidArgument) as info:
        registry.get(enterprise, "bad", field="name")
    assert info.value.violations[0].field == "name"


# ============================================================================ update / delete
def test_update_with_etag(registry: Registry, enterprise: Principal) -> None:
    created = registry.create(enterprise, ident("u"), url(1))
    updated = registry.update(enterprise, ident("U"), url(2), etag=created.etag)
    assert updated.etag and updated.etag != created.etag
    assert updated.identifier == created.identifier == "88.118.8/u"
    assert updated.owner == E
    assert updated.create_time_ns == created.create_time_ns
    assert updated.update_time_ns >= created.update_time_ns
    assert registry.get(enterprise, ident("u")) == updated
    # An empty etag updates unconditionally.
    again = registry.update(enterprise, ident("u"), url(3))
    assert registry.get(enterprise, ident("u")) == again
    assert registry.identifier_count(E) == 1


def test_update_etag_mismatch_changes_nothing(registry: Registry, enterprise: Principal) -> None:
    created = registry.create(enterprise, ident("u"), url(1))
    current = registry.update(enterprise, ident("u"), url(2), etag=created.etag)
    before = registry.store.get(Table.RECORDS, fold(ident("u")))
    for stale in (created.etag, "not-an-etag"):
        with pytest.raises(EtagMismatch) as info:
            registry.update(enterprise, ident("u"), url(99), etag=stale)
        assert info.value.reason == "ETAG_MISMATCH"
        assert info.value.metadata == {"identifier": "88.118.8/u"}
    assert registry.store.get(Table.RECORDS, fold(ident("u"))) == before
    assert registry.get(enterprise, ident("u")) == current
    assert decoded(registry.resolve(ident("u"))) == current


def test_update_missing_is_not_found(registry: Registry, enterprise: Principal) -> None:
    with pytest.raises(NotFound):
        registry.update(enterprise, ident("missing"), url())
    with pytest.raises(InvalidArgument) as info:
        registry.update(enterprise, ident("missing"), [Value(1, "")])
    assert info.value.violations[0].field == "record.values[0].type"


def test_update_keeps_timestamps_of_unchanged_values(
    store: RocksStore, registry: Registry, enterprise: Principal
) -> None:
    reg = Registry(store, cache=RecordCache(1 << 20), clock=TickingClock())
    v1, v2, v3 = Value(1, "URL", "a"), Value(2, "EMAIL", "b"), Value(3, "BIN", b"c", ttl=10)
    created = reg.create(enterprise, ident("t"), [v1, v2, v3])
    t0 = created.create_time_ns
    assert [v.timestamp_ns for v in created.values] == [t0, t0, t0]

    # Value 1 unchanged, value 2 new data, value 3 new ttl only, value 4 added.
    updated = reg.update(
        enterprise,
        ident("t"),
        [Value(4, "NEW", "d"), v1, Value(2, "EMAIL", "B"), Value(3, "BIN", b"c", ttl=11)],
    )
    t1 = updated.update_time_ns
    assert t1 > t0
    assert [(v.index, v.timestamp_ns) for v in updated.values] == [(1, t0), (2, t1), (3, t1), (4, t1)]
    assert updated.create_time_ns == t0

    # Changing the type counts as a change; a value passed with a stale timestamp is still unchanged.
    again = reg.update(
        enterprise, ident("t"), [Value(1, "URL", "a", timestamp_ns=12345), Value(2, "MAIL", "B")]
    )
    t2 = again.update_time_ns
    assert [(v.index, v.timestamp_ns) for v in again.values] == [(1, t0), (2, t2)]
    assert reg.get(enterprise, ident("t")) == again


def test_delete(registry: Registry, enterprise: Principal) -> None:
    created = registry.create(enterprise, ident("d"), url())
    registry.create(enterprise, ident("keep"), url())
    registry.delete(enterprise, ident("D"), etag=created.etag)
    with pytest.raises(NotFound):
        registry.get(enterprise, ident("d"))
    with pytest.raises(NotFound):
        registry.resolve(ident("d"))
    with pytest.raises(NotFound):
        registry.delete(enterprise, ident("d"))
    assert registry.identifier_count(E) == 1
    # The identifier can be registered again afterwards.
    registry.create(enterprise, ident("d"), url(2))
    assert registry.identifier_count(E) == 2


def test_delete_with_stale_etag_fails(registry: Registry, enterprise: Principal) -> None:
    created = registry.create(enterprise, ident("d"), url(1))
    current = registry.update(enterprise, ident("d"), url(2))
    with pytest.raises(EtagMismatch):
        registry.delete(enterprise, ident("d"), etag=created.etag)
    assert registry.get(enterprise, ident("d")) == current
    assert registry.identifier_count(E) == 1
    registry.delete(enterprise, ident("d"), etag=current.etag)
    assert registry.identifier_count(E) == 0


# ============================================================================ list
@pytest.fixture
def listed(registry: Registry, enterprise: Principal, sibling: Principal) -> list[str]:
    """Identifiers under 88.118.8 (including sub-prefixes), in case-folded key order; plus some
    under the sibling enterprise 88.118.80 that no listing of 88.118.8 may show."""
    names = [f"88.118.8/item-{i:02d}" for i in range(17)]
    names += [
        "88.118.8/a",
        "88.118.8/B",
        "88.118.8/中文",
        "88.118.8/x/y.z",
        "88.118.8.1/x",
        "88.118.8.1.2/deep",
    ]
    names += ["88.118.8.ABC/sub"]
    for n in names:
        registry.create(enterprise, n, url(n))
    for n in ("88.118.80/x", "88.118.80/a", "88.118.80.1/y"):
        registry.create(sibling, n, url(n))
    return sorted(names, key=fold)


def all_pages(registry: Registry, principal: Principal, parent: str, size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page, token = registry.list(principal, parent, size, token)
        pages.append([decoded(d).identifier for d in page])
        if not token:
            return pages
        assert len(pages) < 1000


@pytest.mark.parametrize("size", [1, 2, 7, 0, 1000])
def test_list_pagination_covers_everything_once_in_order(
    registry: Registry, enterprise: Principal, listed: list[str], size: int
) -> None:
    pages = all_pages(registry, enterprise, E, size)
    flat = [n for page in pages for n in page]
    assert flat == listed
    limit = size or limits.PAGE_SIZE_DEFAULT
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit
    assert len(pages) == -(-len(listed) // limit)
    assert "88.118.8.1/x" in flat and "88.118.8.1.2/deep" in flat
    assert not any(n.startswith("88.118.80") for n in flat)


def test_list_is_stable_across_calls_and_writes(
    registry: Registry, enterprise: Principal, listed: list[str]
) -> None:
    page1, token = registry.list(enterprise, E, 5)
    assert registry.list(enterprise, E, 5) == (page1, token)
    # A record added before the token's position does not shift the following pages.
    registry.create(enterprise, "88.118.8/0-first", url())
    rest = [decoded(d).identifier for d in registry.list(Principal.admin(), E, 1000, token)[0]]
    assert rest == listed[5:]


def test_list_sub_prefix_and_sibling(
    registry: Registry, enterprise: Principal, listed: list[str], sibling: Principal
) -> None:
    sub = [n for page in all_pages(registry, enterprise, "88.118.8.1", 2) for n in page]
    assert sub == ["88.118.8.1.2/deep", "88.118.8.1/x"] == sorted(sub, key=fold)
    sib = [n for page in all_pages(registry, sibling, "88.118.80", 2) for n in page]
    assert sib == ["88.118.80.1/y", "88.118.80/a", "88.118.80/x"]
    node = [n for page in all_pages(registry, Principal.admin(), NODE_PREFIX, 10) for n in page]
    assert node == sorted([*listed, *sib], key=fold)
    assert registry.list(enterprise, "88.118.8.7", 10) == ([], "")


def test_list_bad_page_token(registry: Registry, enterprise: Principal, listed: list[str]) -> None:
    for token in (
        "garbage!",
        "AQ",
        "Zm9v",
        "é",
        encode_page_token(b"88.118.7/X"),
        encode_page_token(b"88.118.80/X"),
    ):
        with pytest.raises(InvalidArgument) as info:
            registry.list(enterprise, E, 2, token)
        assert [v.field for v in info.value.violations] == ["page_token"]


def test_list_token_from_another_parent_is_rejected(
    registry: Registry, admin: Principal, enterprise: Principal, listed: list[str], sibling: Principal
) -> None:
    _, token = registry.list(enterprise, E, 2)
    assert token
    with pytest.raises(InvalidArgument) as info:
        registry.list(sibling, "88.118.80", 2, token)
    assert info.value.violations[0].field == "page_token"
    _, sibling_token = registry.list(sibling, "88.118.80", 1)
    with pytest.raises(InvalidArgument):
        registry.list(enterprise, E, 2, sibling_token)
    with pytest.raises(InvalidArgument):
        registry.list(admin, "88.118.9", 2, token)


def test_page_token_codec() -> None:
    lower, upper = b"88.118.8.", b"88.118.80"
    for key in (b"88.118.8/X", b"88.118.8.1/\xff\x00"):
        assert decode_page_token(encode_page_token(key), lower, upper) == key


def test_list_bad_arguments(registry: Registry, enterprise: Principal) -> None:
    with pytest.raises(InvalidArgument) as info:
        registry.list(enterprise, E, -1)
    assert info.value.violations[0].field == "page_size"
    with pytest.raises(InvalidArgument) as info:
        registry.list(enterprise, "88..8", 1)
    assert info.value.violations[0].field == "parent"


# ============================================================================ batch create
def test_batch_create_partial_success(registry: Registry, enterprise: Principal, other: Principal) -> None:
    registry.create(enterprise, ident("exists"), url())
    items = [
        (ident("ok-1"), url(1)),
        (ident("bad-values"), [Value(1, "has space")]),
        (ident("dup"), url(2)),
        (ident("DUP"), url(3)),  # same identifier in another case, later in the batch
        (ident("EXISTS"), url(4)),
        ("88.118.9/not-mine", url(5)),
        ("not an identifier", url(6)),
        (ident("ok-2"), url(7)),
    ]
    out = registry.batch_create(enterprise, items)
    assert [o.identifier for o in out] == [
        "88.118.8/ok-1",
        "88.118.8/bad-values",
        "88.118.8/dup",
        "88.118.8/DUP",
        "88.118.8/EXISTS",
        "88.118.9/not-mine",
        "not an identifier",
        "88.118.8/ok-2",
    ]
    ok = [0, 2, 7]
    for i in ok:
        assert out[i].error is None and out[i].etag
        assert registry.get(enterprise, out[i].identifier).etag == out[i].etag
    assert isinstance(out[1].error, InvalidArgument)
    assert [v.field for v in out[1].error.violations] == ["requests[1].record.values[0].type"]
    assert isinstance(out[3].error, AlreadyExists)
    assert isinstance(out[4].error, AlreadyExists)
    assert isinstance(out[5].error, PermissionDenied) and out[5].error.reason == "PREFIX_NOT_OWNED"
    assert isinstance(out[6].error, InvalidArgument)
    assert [v.field for v in out[6].error.violations] == ["requests[6].record.identifier"]
    assert registry.get(enterprise, ident("dup")).values == tuple(
        registry.get(enterprise, ident("DUP")).values
    )
    assert registry.get(enterprise, ident("dup")).identifier == "88.118.8/dup"
    assert registry.get(enterprise, ident("dup")).values[0].data == "https://example.com/2"
    assert registry.identifier_count(E) == 4
    assert registry.identifier_count("88.118.9") == 0
    assert registry.stats(Principal.admin()).identifier_count == 4


def test_a_batch_creates_its_records_at_one_time(
    store: RocksStore, registry: Registry, enterprise: Principal
) -> None:
    """One atomic write, one creation time: every record of a batch, and each of its values, carries
    the same clock reading (the next batch a later one)."""
    reg = Registry(store, clock=TickingClock())
    first = reg.batch_create(enterprise, [(ident(f"b{i}"), [*url(i), Value(9, "X", "x")]) for i in range(3)])
    records = [reg.get(enterprise, o.identifier) for o in first]
    times = {r.create_time_ns for r in records} | {v.timestamp_ns for r in records for v in r.values}
    assert len(times) == 1 and {r.update_time_ns for r in records} == times
    later = reg.batch_create(enterprise, [(ident("b9"), url(9))])
    assert reg.get(enterprise, later[0].identifier).create_time_ns > times.pop()


def test_batch_create_empty(registry: Registry, enterprise: Principal) -> None:
    assert registry.batch_create(enterprise, []) == []
    assert registry.identifier_count(E) == 0


def test_batch_create_idempotent_retry(registry: Registry, admin: Principal, enterprise: Principal) -> None:
    registry.create(enterprise, ident("exists"), url())
    items = [(ident(f"r{i}"), url(i)) for i in range(5)] + [
        (ident("exists"), url()),
        (ident("x"), [Value(0, "T")]),
    ]
    first = registry.batch_create(enterprise, items, request_id="req-1")
    assert [o.error is None for o in first] == [True] * 5 + [False, False]
    stats_before = registry.stats(admin)
    records_before = registry.store.scan(Table.RECORDS, b"", b"\xff", 1000)

    for _ in range(2):
        retry = registry.batch_create(enterprise, items, request_id="req-1")
        assert summary(retry) == summary(first)
        assert [type(o.error) for o in retry] == [type(o.error) for o in first]
    stats_after = registry.stats(admin)
    assert stats_after.identifier_count == stats_before.identifier_count == 6
    assert stats_after.identifier_count_by_enterprise == stats_before.identifier_count_by_enterprise
    assert registry.store.scan(Table.RECORDS, b"", b"\xff", 1000) == records_before

    # Even after the records are deleted, the retry answers what the first call answered.
    registry.delete(enterprise, ident("r0"))
    assert summary(registry.batch_create(enterprise, items, request_id="req-1")) == summary(first)
    with pytest.raises(NotFound):
        registry.get(enterprise, ident("r0"))


def test_batch_create_request_id_reused_for_different_items(
    registry: Registry, enterprise: Principal
) -> None:
    registry.batch_create(enterprise, [(ident("a"), url())], request_id="req-1")
    for different in (
        [(ident("b"), url())],
        [(ident("a"), url(2))],
        [(ident("a"), [Value(1, "URL", "https://example.com/1", ttl=5)])],
        [(ident("a"), url()), (ident("b"), url())],
    ):
        with pytest.raises(InvalidArgument) as info:
            registry.batch_create(enterprise, different, request_id="req-1")
        assert info.value.reason == "REQUEST_ID_REUSED"
        assert [v.field for v in info.value.violations] == ["request_id"]
    with pytest.raises(NotFound):
        registry.get(enterprise, ident("b"))
    assert registry.identifier_count(E) == 1


def test_batch_request_ids_are_per_principal(
    registry: Registry, admin: Principal, enterprise: Principal, other: Principal
) -> None:
    a = registry.batch_create(enterprise, [(ident("a"), url())], request_id="same")
    b = registry.batch_create(other, [("88.118.9/b", url())], request_id="same")
    c = registry.batch_create(admin, [(ident("c"), url())], request_id="same")
    assert all(o.error is None for o in a + b + c)
    assert registry.stats(admin).identifier_count == 3


def test_batch_create_limits(registry: Registry, admin: Principal, enterprise: Principal) -> None:
    too_many = [(ident(f"n{i}"), url()) for i in range(limits.BATCH_CREATE_MAX + 1)]
    with pytest.raises(InvalidArgument) as info:
        registry.batch_create(enterprise, too_many)
    assert [v.field for v in info.value.violations] == ["requests"]
    with pytest.raises(InvalidArgument) as info:
        registry.batch_create(
            enterprise, [(ident("a"), url())], request_id="r" * (limits.REQUEST_ID_MAX_CHARS + 1)
        )
    assert [v.field for v in info.value.violations] == ["request_id"]
    assert registry.stats(admin).identifier_count == 0

    out = registry.batch_create(enterprise, too_many[:-1])
    assert len(out) == limits.BATCH_CREATE_MAX and all(o.error is None for o in out)
    assert registry.identifier_count(E) == limits.BATCH_CREATE_MAX


# ============================================================================ counters and stats
def test_counters_after_creates_deletes_and_batches(
    registry: Registry, admin: Principal, enterprise: Principal, other: Principal
) -> None:
    stats = registry.stats(admin)
    assert stats.node_prefix == NODE_PREFIX
    assert stats.identifier_count == 0
    assert stats.identifier_count_by_enterprise == {E: 0, "88.118.9": 0}
    assert stats.enterprise_count == 2
    assert stats.uptime_seconds >= 0

    for i in range(3):
        registry.create(enterprise, ident(f"c{i}"), url())
    registry.create(other, "88.118.9/c", url())
    registry.create(admin, "88.118.9.5/by-admin", url())
    registry.batch_create(enterprise, [(ident(f"b{i}"), url()) for i in range(4)] + [(ident("c0"), url())])
    registry.delete(enterprise, ident("c1"))
    registry.delete(other, "88.118.9/c")
    with pytest.raises(NotFound):
        registry.delete(other, "88.118.9/c")

    stats = registry.stats(admin)
    assert stats.identifier_count == 7
    assert stats.identifier_count_by_enterprise == {E: 6, "88.118.9": 1}
    assert registry.identifier_count(E) == 6
    assert registry.identifier_count("88.118.9") == 1
    assert stats.identifier_count == sum(stats.identifier_count_by_enterprise.values())
    assert stats.identifier_count == len(registry.store.scan(Table.RECORDS, b"", b"\xff", 1000))


# ============================================================================ authorization
def test_enterprise_cannot_touch_another_enterprises_prefix(
    registry: Registry, enterprise: Principal, other: Principal, sibling: Principal
) -> None:
    theirs = registry.create(other, "88.118.9/theirs", url())
    sib = registry.create(sibling, "88.118.80/theirs", url())
    for target in ("88.118.9/theirs", "88.118.9.1/theirs", "88.118.80/theirs", "88.118/top", "99.1/x"):
        attempts: list[Callable[[], object]] = [
            lambda t=target: registry.create(enterprise, t, url()),
            lambda t=target: registry.update(enterprise, t, url(2)),
            lambda t=target: registry.delete(enterprise, t),
            lambda t=target: registry.get(enterprise, t),
        ]
        for attempt in attempts:
            with pytest.raises(PermissionDenied) as info:
                attempt()
            assert info.value.reason == "PREFIX_NOT_OWNED"
            assert info.value.metadata["prefix"] == E
    with pytest.raises(PermissionDenied):
        registry.list(enterprise, "88.118.9", 10)
    with pytest.raises(PermissionDenied):
        registry.list(enterprise, NODE_PREFIX, 10)
    assert registry.get(other, "88.118.9/theirs") == theirs
    assert registry.get(sibling, "88.118.80/theirs") == sib
    # Resolution is public.
    assert decoded(registry.resolve("88.118.9/theirs")) == theirs


def test_enterprise_may_use_its_sub_prefixes(registry: Registry, enterprise: Principal) -> None:
    record = registry.create(enterprise, "88.118.8.1.2/deep", url())
    assert record.owner == E
    assert registry.identifier_count(E) == 1


def test_suspended_enterprise_cannot_write_but_resolves(
    registry: Registry, admin: Principal, enterprise: Principal
) -> None:
    created = registry.create(enterprise, ident("s"), url())
    registry.set_enterprise_state(admin, E, EnterpriseState.SUSPENDED)
    assert registry.get_enterprise(admin, E).state is EnterpriseState.SUSPENDED
    attempts: list[Callable[[], object]] = [
        lambda: registry.create(enterprise, ident("new"), url()),
        lambda: registry.update(enterprise, ident("s"), url(2)),
        lambda: registry.delete(enterprise, ident("s")),
        lambda: registry.batch_create(enterprise, [(ident("b"), url())], request_id="r"),
    ]
    for attempt in attempts:
        with pytest.raises(EnterpriseSuspended) as info:
            attempt()
        assert info.value.reason == "ENTERPRISE_SUSPENDED"
        assert isinstance(info.value, PermissionDenied)
    batch = registry.batch_create(enterprise, [(ident("b"), url())])
    assert isinstance(batch[0].error, EnterpriseSuspended)
    # Its identifiers still resolve, and it may still read them.
    assert decoded(registry.resolve(ident("s"))) == created
    assert registry.get(enterprise, ident("s")) == created
    assert registry.identifier_count(E) == 1

    registry.set_enterprise_state(admin, E, EnterpriseState.ACTIVE)
    registry.create(enterprise, ident("new"), url())
    registry.update(enterprise, ident("s"), url(2))
    assert registry.identifier_count(E) == 2


def test_enterprise_principal_cannot_administer(registry: Registry, enterprise: Principal) -> None:
    attempts: list[Callable[[], object]] = [
        lambda: registry.create_enterprise(enterprise, "10", "x", "y", lambda p: "fp"),
        lambda: registry.stats(enterprise),
        lambda: registry.get_enterprise(enterprise, E),
        lambda: registry.list_enterprises(enterprise),
        lambda: registry.set_enterprise_state(enterprise, E, EnterpriseState.SUSPENDED),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied) as info:
            attempt()
        assert info.value.reason == "ADMIN_ONLY"
    assert registry.enterprise("88.118.10") is None
    assert registry.get_enterprise(Principal.admin(), E).state is EnterpriseState.ACTIVE


def test_admin_writes_under_an_existing_enterprise(
    registry: Registry, admin: Principal, enterprise: Principal
) -> None:
    record = registry.create(admin, ident("by-admin"), url())
    assert record.owner == E
    deep = registry.create(admin, "88.118.8.3/by-admin", url())
    assert deep.owner == E
    assert registry.identifier_count(E) == 2
    registry.update(admin, ident("by-admin"), url(2))
    registry.delete(admin, "88.118.8.3/by-admin")
    assert registry.identifier_count(E) == 1


@pytest.mark.parametrize("target", ["88.118.77/x", "88.118/x", "99.1/x", "88.1188/x"])
def test_admin_gets_failed_precondition_where_no_enterprise_owns(
    registry: Registry, admin: Principal, enterprise: Principal, target: str
) -> None:
    with pytest.raises(FailedPrecondition) as info:
        registry.create(admin, target, url())
    assert info.value.reason == "ENTERPRISE_NOT_FOUND"
    out = registry.batch_create(admin, [(target, url())])
    assert isinstance(out[0].error, FailedPrecondition)
    assert registry.stats(admin).identifier_count == 0


def test_authenticate_enterprise(registry: Registry, enterprise: Principal) -> None:
    assert enterprise == Principal.enterprise(E, "fp-8")
    assert enterprise.role is Role.ENTERPRISE
    for prefix, fingerprint in ((E, "wrong"), (E, ""), ("88.118.9", "fp-8"), ("88.118", "fp-8")):
        with pytest.raises(Unauthenticated) as info:
            registry.authenticate_enterprise(prefix, fingerprint)
        assert info.value.reason == "UNAUTHENTICATED"


def test_authenticate_admin(store: RocksStore, registry: Registry) -> None:
    with pytest.raises(Unauthenticated):
        registry.authenticate_admin("aa")  # no administrator fingerprints yet
    set_admin_fingerprints(store, ["aa" * 32, "bb" * 32])
    principal = registry.authenticate_admin("bb" * 32)
    assert principal.role is Role.ADMIN and principal.prefix == ""
    assert principal == Principal.admin("bb" * 32)
    for wrong in ("", "cc" * 32, "aa", f"{'aa' * 32},{'bb' * 32}", "AA" * 32):
        with pytest.raises(Unauthenticated):
            registry.authenticate_admin(wrong)
    set_admin_fingerprints(store, ["cc" * 32])  # replaces the set: the old ones are revoked
    registry.authenticate_admin("cc" * 32)
    with pytest.raises(Unauthenticated):
        registry.authenticate_admin("aa" * 32)


def test_create_enterprise_allocates_free_codes(registry: Registry, admin: Principal) -> None:
    fingerprints: list[str] = []

    def issue(prefix: str) -> str:
        fingerprints.append(prefix)
        return "fp-" + prefix

    registry.create_enterprise(admin, "2", "Two", "", issue)
    registry.create_enterprise(admin, "4", "Four", "", issue)
    made = [registry.create_enterprise(admin, "", f"auto{i}", "c", issue) for i in range(4)]
    assert [e.prefix for e in made] == ["88.118.1", "88.118.3", "88.118.5", "88.118.6"]
    assert fingerprints == ["88.118.2", "88.118.4", "88.118.1", "88.118.3", "88.118.5", "88.118.6"]
    assert made[0].fingerprints == ("fp-88.118.1",)
    assert made[0].display_name == "auto0" and made[0].contact == "c"
    assert made[0].state is EnterpriseState.ACTIVE
    assert registry.stats(admin).enterprise_count == 6
    listed, token = registry.list_enterprises(admin, 4)
    assert [e.prefix for e in listed] == ["88.118.1", "88.118.2", "88.118.3", "88.118.4"]
    rest, last = registry.list_enterprises(admin, 4, token)
    assert [e.prefix for e in rest] == ["88.118.5", "88.118.6"] and last == ""
    assert registry.authenticate_enterprise("88.118.3", "fp-88.118.3").prefix == "88.118.3"


def test_create_enterprise_duplicate_and_invalid(
    registry: Registry, admin: Principal, enterprise: Principal
) -> None:
    with pytest.raises(AlreadyExists) as info:
        registry.create_enterprise(admin, "8", "Again", "", lambda p: "fp")
    assert info.value.metadata == {"prefix": E}
    assert registry.get_enterprise(admin, E).display_name == "Demo"  # the first one is untouched
    registry.create_enterprise(admin, "abc", "Letters", "", lambda p: "fp")
    with pytest.raises(AlreadyExists):
        registry.create_enterprise(admin, "ABC", "Letters", "", lambda p: "fp")
    with pytest.raises(InvalidArgument) as info:
        registry.create_enterprise(
            admin, "a.b", "x" * (limits.DISPLAY_NAME_MAX_CHARS + 1), "", lambda p: "fp"
        )
    assert [v.field for v in info.value.violations] == ["code", "display_name"]
    assert registry.stats(admin).enterprise_count == 2


# ============================================================================ cache coherence
def test_update_is_visible_through_the_cache(registry: Registry, enterprise: Principal) -> None:
    registry.create(enterprise, ident("c"), url(1))
    first = registry.resolve(ident("c"))
    assert registry.resolve(ident("C")) == first  # served from the cache
    stats = registry.cache.stats()  # type: ignore[attr-defined]
    assert stats.entries == 1 and stats.hits >= 1
    updated = registry.update(enterprise, ident("c"), url(2))
    after = registry.resolve(ident("c"))
    assert after != first
    assert decoded(after) == updated
    assert after == registry.store.get(Table.RECORDS, fold(ident("c")))


def test_negative_cache_is_invalidated_by_create(registry: Registry, enterprise: Principal) -> None:
    with pytest.raises(NotFound):
        registry.resolve(ident("later"))
    assert registry.cache.stats().negative_entries == 1  # type: ignore[attr-defined]
    with pytest.raises(NotFound):
        registry.resolve(ident("LATER"))
    assert registry.cache.stats().negative_hits == 1  # type: ignore[attr-defined]
    created = registry.create(enterprise, ident("Later"), url())
    assert decoded(registry.resolve(ident("later"))) == created

    with pytest.raises(NotFound):
        registry.resolve(ident("batched"))
    registry.batch_create(enterprise, [(ident("batched"), url())])
    assert decoded(registry.resolve(ident("batched"))).identifier == "88.118.8/batched"


def test_delete_is_visible_through_the_cache(registry: Registry, enterprise: Principal) -> None:
    registry.create(enterprise, ident("gone"), url())
    registry.resolve(ident("gone"))
    hits = registry.cache.stats().hits
    registry.resolve(ident("gone"))
    assert registry.cache.stats().hits == hits + 1  # the record is in the cache
    registry.delete(enterprise, ident("gone"))
    with pytest.raises(NotFound):
        registry.resolve(ident("gone"))


# ============================================================================ concurrency
def run_concurrently(n: int, fn: Callable[[int], object]) -> tuple[list[object], list[BaseException]]:
    """:func:`tests.node_fixtures.run_together`, its outcomes split into (results, exceptions)."""
    outcomes = run_together(n, fn)
    return (
        [o for o in outcomes if not isinstance(o, BaseException)],
        [o for o in outcomes if isinstance(o, BaseException)],
    )


def test_concurrent_create_of_one_identifier(
    registry: Registry, admin: Principal, enterprise: Principal
) -> None:
    results, errors = run_concurrently(8, lambda i: registry.create(enterprise, ident("race"), url(i)))
    assert len(results) == 1
    assert len(errors) == 7 and all(isinstance(e, AlreadyExists) for e in errors)
    assert registry.get(enterprise, ident("race")) == results[0]
    assert registry.identifier_count(E) == 1
    assert registry.stats(admin).identifier_count == 1


def test_concurrent_updates_with_one_etag(registry: Registry, enterprise: Principal) -> None:
    created = registry.create(enterprise, ident("u"), url())
    results, errors = run_concurrently(
        8, lambda i: registry.update(enterprise, ident("u"), url(f"v{i}"), etag=created.etag)
    )
    assert len(results) == 1
    assert len(errors) == 7 and all(isinstance(e, EtagMismatch) for e in errors)
    assert registry.get(enterprise, ident("u")) == results[0]


def test_concurrent_batches_overlapping(registry: Registry, admin: Principal, enterprise: Principal) -> None:
    items = [(ident(f"o{i}"), url(i)) for i in range(30)]
    results, errors = run_concurrently(
        4, lambda i: registry.batch_create(enterprise, items[i * 5 : i * 5 + 15])
    )
    assert errors == []
    winners: dict[str, int] = {}
    for outcomes in results:
        assert isinstance(outcomes, list)
        for o in outcomes:
            assert o.error is None or isinstance(o.error, AlreadyExists)
            if o.error is None:
                winners[o.identifier] = winners.get(o.identifier, 0) + 1
    assert set(winners) == {f"88.118.8/o{i}" for i in range(30)}
    assert set(winners.values()) == {1}
    assert registry.identifier_count(E) == 30
    assert registry.stats(admin).identifier_count == 30


# ============================================================================ races (known bugs)
class InterleavingStore:
    """A real store that runs a hook once, right after its next read of a given table: a way to
    reproduce a race between two calls deterministically. Everything else goes to the store."""

    def __init__(self, inner: RocksStore) -> None:
        self._inner = inner
        self._hooks: dict[Table, Callable[[], None]] = {}

    def after_next_get(self, table: Table, hook: Callable[[], None]) -> None:
        self._hooks[table] = hook

    def get(self, table: Table, key: bytes) -> bytes | None:
        value = self._inner.get(table, key)
        hook = self._hooks.pop(table, None)
        if hook is not None:
            hook()
        return value

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_batch_retry_racing_the_original_gets_the_same_answer(
    store: RocksStore, registry: Registry, enterprise: Principal
) -> None:
    """A client's retry (same request_id) arrives while the original call is still running."""
    hooked = InterleavingStore(store)
    reg = Registry(hooked, cache=RecordCache(1 << 20))  # type: ignore[arg-type]
    items = [(ident("r1"), url(1)), (ident("r2"), url(2))]
    retry: list[list[CreateOutcome]] = []
    hooked.after_next_get(Table.REQUESTS, lambda: retry.append(reg.batch_create(enterprise, items, "req")))
    original = reg.batch_create(enterprise, items, "req")
    later = reg.batch_create(enterprise, items, "req")

    stored = [reg.get(enterprise, i).etag for i, _ in items]
    assert [o.etag for o in retry[0]] == stored  # the retry did the work
    assert summary(later) == summary(retry[0])  # a third call replays the answer that was acted on ...
    assert summary(original) == summary(retry[0])  # ... and so does the original


def test_suspension_racing_an_enterprise_cache_fill_is_not_lost(
    store: RocksStore, registry: Registry, admin: Principal, enterprise: Principal
) -> None:
    hooked = InterleavingStore(store)
    reg = Registry(hooked, cache=RecordCache(1 << 20))  # type: ignore[arg-type]
    hooked.after_next_get(
        Table.ENTERPRISES, lambda: reg.set_enterprise_state(admin, E, EnterpriseState.SUSPENDED)
    )
    reg.create(enterprise, ident("raced"), url())  # read ACTIVE just before the suspension: fine
    assert reg.get_enterprise(admin, E).state is EnterpriseState.SUSPENDED
    try:
        reg.create(enterprise, ident("after"), url())
    except EnterpriseSuspended:
        suspended = True
    else:
        suspended = False
    assert suspended, "a suspended enterprise could still write"


def test_error_summary_helper_distinguishes_errors() -> None:
    a = CreateOutcome("x", error=AlreadyExists("m", metadata={"identifier": "x"}))
    b = CreateOutcome("x", error=IdnodeError("m"))
    assert summary([a]) != summary([b])
