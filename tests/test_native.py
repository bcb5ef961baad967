"""The native accelerators of the resolve hot path against their pure-Python twins and protobuf.

:mod:`resolver._hotpath` and :mod:`cache._sieve` are imported directly, so these tests fail when
the build is missing (scripts/test.sh also sets IDNODE_REQUIRE_NATIVE=1).
"""

from __future__ import annotations

import random
import sys

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import example, given
from hypothesis import strategies as st

from cache import _sieve, record_cache
from cache.policy_sieve import SievePolicy
from cache.record_cache import RecordCache
from registry import native
from registry.errors import AlreadyExists, EtagMismatch, InvalidArgument, NotFound, PermissionDenied
from registry.pb import resolution_pb2 as pb
from registry.service import Registry
from resolver import _hotpath
from resolver.errors import item_status, item_status_bytes
from resolver.services import resolution, wire
from resolver.services.wire import TAG1, field

identifier_texts = st.text(max_size=40)
raw_items = st.lists(st.binary(max_size=300), max_size=30)


def test_native_modules_are_what_the_hot_path_uses() -> None:
    assert native.load("resolver._hotpath") is _hotpath
    assert wire.frame_results is _hotpath.frame_results
    assert wire.fold_keys is _hotpath.fold_keys
    assert wire.batch_identifiers is _hotpath.batch_identifiers


def test_native_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDNODE_NATIVE", "0")
    assert native.load("resolver._hotpath") is None
    monkeypatch.setenv("IDNODE_NATIVE", "1")
    monkeypatch.setenv("IDNODE_REQUIRE_NATIVE", "1")
    with pytest.raises(ImportError):
        native.load("resolver._no_such_extension")
    monkeypatch.delenv("IDNODE_REQUIRE_NATIVE")
    assert native.load("resolver._no_such_extension") is None


# ------------------------------------------------------------------------------ fold_keys
@given(raw_items)
@example([b"88.118.8/abc-z", b"ABC", b"", "标识-a".encode()])
def test_fold_keys_equals_bytes_upper(raws: list[bytes]) -> None:
    folded = _hotpath.fold_keys(raws)
    assert folded == wire.py_fold_keys(raws) == [r.upper() for r in raws]


def test_fold_keys_never_changes_a_shared_bytes_object() -> None:
    """One-byte bytes objects are CPython singletons: folding b"h" must not turn every b"h" into
    b"H" (it did, and protobuf's own varint encoder then produced wrong bytes)."""
    one = bytes((0x68,))
    assert _hotpath.fold_keys([one]) == [b"H"]
    assert one == b"h" and bytes((0x68,)) == b"h"


def test_fold_keys_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        _hotpath.fold_keys(["text"])  # type: ignore[list-item]


# ------------------------------------------------------------------------------ frame_results
@st.composite
def framing_cases(draw: st.DrawFn) -> tuple[list[bytes], list[bytes | None], dict[int, bytes]]:
    raws = draw(st.lists(st.binary(min_size=1, max_size=200), max_size=20))
    found: list[bytes | None] = []
    slow: dict[int, bytes] = {}
    for i in range(len(raws)):
        kind = draw(st.sampled_from(["record", "none", "negative", "big"]))
        if kind == "record":
            found.append(draw(st.binary(min_size=1, max_size=300)))
        elif kind == "big":
            found.append(b"\x01" * draw(st.sampled_from([127, 128, 16383, 16384, 70_000])))
        else:
            found.append(None if kind == "none" else b"")
            slow[i] = draw(st.binary(max_size=50))
    return raws, found, slow


@given(framing_cases())
def test_frame_results_equals_the_python_twin(
    case: tuple[list[bytes], list[bytes | None], dict[int, bytes]],
) -> None:
    raws, found, slow = case
    framed = _hotpath.frame_results(raws, found, slow)
    assert framed == wire.py_frame_results(raws, found, slow)
    if not slow:  # all found: field 1 items of ResolveResult{identifier = 1, record = 2}
        assert framed == b"".join(
            wire.field(wire.TAG1, wire.field(wire.TAG1, r) + wire.field(wire.TAG2, d or b""))
            for r, d in zip(raws, found, strict=True)
        )


def test_frame_results_reports_a_missing_slow_item_and_bad_arguments() -> None:
    with pytest.raises(KeyError):
        _hotpath.frame_results([b"a"], [None], {})
    with pytest.raises(ValueError):
        _hotpath.frame_results([b"a"], [], {})
    with pytest.raises(TypeError):
        _hotpath.frame_results(["a"], [b"x"], {})  # type: ignore[list-item]


# ------------------------------------------------------------------------------ batch_identifiers
@given(st.lists(identifier_texts, max_size=20))
def test_batch_identifiers_of_a_plain_request(texts: list[str]) -> None:
    for message in (pb.BatchResolveRequest, pb.StreamResolveRequest):
        raw = message(identifiers=texts).SerializeToString()
        assert _hotpath.batch_identifiers(raw) == [t.encode("utf-8", "surrogatepass") for t in texts]


@given(
    st.lists(identifier_texts, max_size=5),
    st.lists(st.text(max_size=5), max_size=2),
    st.lists(st.integers(0, 2**32 - 1), max_size=2),
    st.booleans(),
)
def test_batch_identifiers_leaves_other_requests_to_protobuf(
    texts: list[str], types: list[str], indexes: list[int], recursive: bool
) -> None:
    request = pb.BatchResolveRequest(identifiers=texts, types=types, indexes=indexes, recursive=recursive)
    got = _hotpath.batch_identifiers(request.SerializeToString())
    if types or indexes or recursive:
        assert got is None
    else:
        assert got == [t.encode("utf-8", "surrogatepass") for t in texts]


@given(st.binary(max_size=200))
@example(b"\x0a\x02\xc3\x28")  # invalid UTF-8
@example(b"\x0a\x03\xed\xa0\x80")  # a surrogate
@example(b"\x0a\x02\xc0\xaf")  # overlong
@example(b"\x0a\x04\xf4\x90\x80\x80")  # above U+10FFFF
@example(b"\x0a\x05ab")  # truncated
@example(b"\x8a\x00\x00")  # field 1 with a two-byte tag
@example(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f")  # absurd length
@example(b"\x8a\x80\x80\x80\x80\x00\x01a")  # a tag varint of 6 bytes (zero-padded)
@example(b"\x0a\x81\x80\x80\x80\x80\x00a")  # a length varint of 6 bytes
def test_batch_identifiers_never_accepts_what_protobuf_rejects(raw: bytes) -> None:
    """Anything it reads, protobuf reads as the same identifiers and nothing else."""
    got = _hotpath.batch_identifiers(raw)
    try:
        request = pb.BatchResolveRequest.FromString(raw)
    except DecodeError:
        assert got is None
        return
    if got is not None:
        assert [t.encode() for t in request.identifiers] == got
        assert not request.types and not request.indexes and not request.recursive


# ------------------------------------------------------------------------------ cache._sieve
def python_order(policy: SievePolicy) -> tuple[list[tuple[bytes, bool]], int]:
    """SievePolicy's live queue with visited bits, and the hand's position among live entries."""
    order = []
    hand = 0
    for i, key in enumerate(policy._queue):
        if i == policy._hand:
            hand = len(order)
        if key is not None:
            order.append((key, policy._map[key][1]))
    return order, hand


@pytest.mark.parametrize("seed", range(8))
def test_native_sieve_evicts_exactly_like_the_python_policy(seed: int) -> None:
    """The same random puts, gets, replacements and removals on both: the same answers, sizes,
    queue order, visited bits and hand after every step (so the same evictions, compactions
    included: the weights force thousands of evictions)."""
    rnd = random.Random(seed)
    native_policy, python_policy = _sieve.Sieve(2_000), SievePolicy(2_000)
    keys = [f"key-{i}".encode() for i in range(rnd.choice([20, 300]))]
    for step in range(3_000):
        key = rnd.choice(keys)
        op = rnd.random()
        if op < 0.45:
            entry = (bytes(rnd.randrange(4)), float(step), rnd.choice([1, 30, 200, 900, 2_000, 2_001]))
            native_policy.put(key, entry)
            python_policy.put(key, entry)
        elif op < 0.85:
            assert native_policy.get(key) == python_policy.get(key)
        elif op < 0.99:
            native_policy.remove(key)
            python_policy.remove(key)
        else:
            native_policy.clear()
            python_policy.clear()
        assert native_policy.sizes() == python_policy.sizes()
        assert native_policy._order() == python_order(python_policy), step
        assert native_policy._consistent()
    assert native_policy.name == "sieve" and native_policy.max_weight == 2_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seed", range(5))
def test_cache_get_many_in_c_equals_the_python_loop(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two record caches driven by the same random operations, one on the C policy (and its
    get_many) and one on the Python policy, answer every batch alike and count alike."""
    rnd = random.Random(seed)
    clock = Clock()
    native_cache = RecordCache(4000, policy="sieve", clock=clock, ttl_of=lambda v: len(v) % 5)
    monkeypatch.setattr(record_cache, "_SIEVE", None)
    python_cache = RecordCache(4000, policy="sieve", clock=clock, ttl_of=lambda v: len(v) % 5)
    assert isinstance(native_cache._policy, _sieve.Sieve)
    assert isinstance(python_cache._policy, SievePolicy)
    caches = (native_cache, python_cache)
    keys = [f"K{i}".encode() for i in range(60)]
    for _ in range(400):
        op = rnd.random()
        key = rnd.choice(keys)
        if op < 0.3:
            value = bytes(rnd.randrange(1, 256) for _ in range(rnd.randrange(1, 90)))
            for c in caches:
                c.fill(key, value, c.epoch())
        elif op < 0.4:
            for c in caches:
                c.fill(key, None, c.epoch())
        elif op < 0.45:
            for c in caches:
                c.invalidate(key)
        elif op < 0.5:
            clock.now += rnd.choice([0.5, 2.0, 61.0])
        else:
            batch = [rnd.choice(keys) for _ in range(rnd.randrange(0, 30))]
            assert native_cache.get_many(list(batch)) == python_cache.get_many(list(batch))
        assert native_cache.stats() == python_cache.stats()
        assert native_cache._policy._order() == python_order(python_cache._policy)


def test_native_sieve_rejects_what_it_cannot_hold() -> None:
    policy = _sieve.Sieve(100)
    with pytest.raises(TypeError):
        policy.put("text", (b"v", 1.0, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        policy.put(b"k", (b"v", 1.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        policy.get_many([b"k"], {b"k": "not a time"}, 0.0)
    with pytest.raises(TypeError):
        policy.get_many(["k"], {}, 0.0)
    assert policy.get_many([b"k", b"j"], {b"k": 5}, 1.0) == ([b"", None], 0, 1, 0)
    policy.put(b"big", (b"v", 1.0, 101))  # heavier than the whole cache: not kept
    assert policy.sizes() == (0, 0)


# ------------------------------------------------------------------------------ item_status_bytes
@given(
    st.sampled_from([NotFound, AlreadyExists, EtagMismatch, PermissionDenied]),
    st.text(),
    st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=1),
)
@example(NotFound, "88.118.8/X is not registered", None, {"identifier": "88.118.8/X"})
@example(NotFound, "", "", {})
def test_item_status_bytes_equal_protobuf(
    cls: type[NotFound], message: str, reason: str | None, metadata: dict[str, str]
) -> None:
    for text in (message, *metadata, *metadata.values()):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            return  # a lone surrogate is not UTF-8: no protocol carries it
    exc = cls(message, reason=reason, metadata=metadata)
    assert item_status_bytes(exc) == item_status(exc).SerializeToString()


def test_item_status_bytes_of_other_errors_come_from_protobuf() -> None:
    bad = InvalidArgument.single("identifiers[3]", "must not be empty")
    assert item_status_bytes(bad) == item_status(bad).SerializeToString()
    two = NotFound("gone", metadata={"identifier": "a", "prefix": "b"})
    assert item_status_bytes(two) == item_status(two).SerializeToString()
    boom = RuntimeError("secret detail")
    assert item_status_bytes(boom) == item_status(boom).SerializeToString()
    assert b"secret" not in item_status_bytes(boom)


# ------------------------------------------------------------------------------ the NotFound memo
def test_not_found_memo_is_bounded_in_bytes(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anonymous callers flooding distinct misses cannot grow the memo past its byte bound, and
    every answer is still a NotFound item."""
    monkeypatch.setattr(resolution, "_ABSENT_MEMO_MAX_BYTES", 2_000)
    handlers = resolution.ResolutionHandlers(registry)
    for round_ in range(3):
        raws = [f"88.118.8/MISS-{round_}-{i}".encode() for i in range(50)]
        answer = pb.BatchResolveResponse.FromString(handlers.plain_results(list(raws)))
        assert [r.error.code for r in answer.results] == [5] * 50
        assert 0 < handlers._absent_items.size <= 2_000 + 400  # the bound, plus the entry that crossed it
    long_id = ("88.118.8/" + "X" * 200).encode()
    handlers.plain_results([long_id])
    assert long_id not in handlers._absent_items


def test_unary_not_found_memo_is_bounded_and_answers_as_the_first_miss(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unary Resolve's NotFound statuses: bounded like the batch memo, and a memoised answer
    is the very status the first miss built (code, message, details trailer)."""
    monkeypatch.setattr(resolution, "_ABSENT_MEMO_MAX_BYTES", 2_000)
    handlers = resolution.ResolutionHandlers(registry)

    class Aborted(Exception):
        pass

    class Context:
        def abort_with_status(self, status: grpc.Status) -> None:
            self.status = status
            raise Aborted

    def status_of(raw: bytes) -> grpc.Status:
        context = Context()
        with pytest.raises(Aborted):
            handlers.resolve(field(TAG1, raw), context)  # type: ignore[arg-type]
        return context.status

    first = status_of(b"88.118.8/MISS-A")
    assert first.code is grpc.StatusCode.NOT_FOUND
    assert status_of(b"88.118.8/MISS-A") is first
    for i in range(50):
        status_of(f"88.118.8/MISS-{i}".encode())
        assert 0 < handlers._absent_statuses.size <= 2_000 + 400
    long_id = ("88.118.8/" + "X" * 200).encode()
    assert status_of(long_id).code is grpc.StatusCode.NOT_FOUND
    assert long_id not in handlers._absent_statuses


def test_native_sieve_refuses_a_weight_bound_that_could_overflow() -> None:
    with pytest.raises(ValueError):
        _sieve.Sieve(sys.maxsize)
    with pytest.raises(ValueError):
        _sieve.Sieve(-1)
