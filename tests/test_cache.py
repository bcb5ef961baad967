"""RecordCache: counters, byte bound, eviction policies, TTLs, negative entries, the epoch guard,
threads. Generic behaviour is checked for every policy; each policy's own eviction rule on its own."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from cache import NEGATIVE, CacheStats, RecordCache
from cache.record_cache import _ENTRY_OVERHEAD, NEGATIVE_TTL_SECONDS, POLICIES
from cache.ttl import record_min_ttl
from registry import codec, limits
from registry.model import Record, Value
from registry.pb import record_pb2


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cost(key: bytes, value: bytes) -> int:
    """What one positive entry counts against the byte budget."""
    return len(key) + len(value) + _ENTRY_OVERHEAD


def make(max_bytes: int, policy: str = "sieve", ttl: int = 3600, **kw: object) -> RecordCache:
    """A cache whose records (opaque test bytes) all have TTL ``ttl``."""
    return RecordCache(max_bytes, policy=policy, ttl_of=lambda v: ttl, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=sorted(POLICIES))
def policy(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


def encoded(*ttls: int | None, identifier: str = "88.118.8/R") -> bytes:
    """An encoded record with one value per ttl (None: ttl unset)."""
    pb = record_pb2.Record(identifier=identifier, owner="88.118.8", etag="e")
    for i, t in enumerate(ttls, 1):
        v = pb.values.add(index=i, type="URL", text=f"https://example.com/{i}")
        if t is not None:
            v.ttl = t
    return pb.SerializeToString()


# ============================================================================ generic behaviour
def test_miss_hit_and_negative_hit_counters(policy: str) -> None:
    c = make(1 << 20, policy)
    assert c.get(b"K") is None
    c.fill(b"K", b"record", c.epoch())
    c.fill(b"GONE", None, c.epoch())
    assert c.get(b"K") == b"record"
    assert c.get(b"K") == b"record"
    assert c.get(b"GONE") == NEGATIVE
    assert c.get(b"OTHER") is None
    s = c.stats()
    assert (s.hits, s.negative_hits, s.misses, s.expired) == (2, 1, 2, 0)
    assert (s.entries, s.negative_entries) == (1, 1)
    assert s.bytes == cost(b"K", b"record")
    assert s.max_bytes == 1 << 20
    assert s.policy == policy
    assert isinstance(s, CacheStats)


def test_get_many_answers_and_counts_like_get(policy: str) -> None:
    now = [100.0]
    caches = [make(1 << 20, policy, clock=lambda: now[0]) for _ in range(2)]
    keys = [b"HIT", b"GONE", b"MISS", b"HIT", b"OLD", b"OLDNEG"]
    for c in caches:
        c.fill(b"OLD", b"old", c.epoch())
        c.fill(b"OLDNEG", None, c.epoch())
    now[0] += 10_000  # OLD (ttl 3600) and OLDNEG (60 s) have expired
    for c in caches:
        c.fill(b"HIT", b"record", c.epoch())
        c.fill(b"GONE", None, c.epoch())
    one_by_one = [caches[0].get(k) for k in keys]
    assert caches[1].get_many(keys) == one_by_one == [b"record", NEGATIVE, None, b"record", None, None]
    a, b = caches[0].stats(), caches[1].stats()
    assert (a.hits, a.negative_hits, a.misses, a.expired) == (b.hits, b.negative_hits, b.misses, b.expired)
    assert (b.hits, b.negative_hits, b.misses, b.expired) == (2, 1, 3, 2)


def test_default_policy_is_sieve() -> None:
    assert RecordCache(1 << 20).stats().policy == "sieve"


def test_negative_is_distinct_from_a_miss(policy: str) -> None:
    c = make(1 << 20, policy)
    c.fill(b"K", None, c.epoch())
    hit = c.get(b"K")
    assert hit is not None
    assert hit == NEGATIVE == b""


def test_refill_replaces_and_accounts_bytes(policy: str) -> None:
    c = make(1 << 20, policy)
    c.fill(b"K", b"a" * 100, c.epoch())
    c.fill(b"K", b"b" * 10, c.epoch())
    assert c.get(b"K") == b"b" * 10
    assert c.stats().entries == 1
    assert c.stats().bytes == cost(b"K", b"b" * 10)


def test_positive_and_negative_fills_replace_each_other(policy: str) -> None:
    c = make(1 << 20, policy)
    c.fill(b"K", b"v", c.epoch())
    c.fill(b"K", None, c.epoch())
    assert c.get(b"K") == NEGATIVE
    assert (c.stats().entries, c.stats().negative_entries, c.stats().bytes) == (0, 1, 0)
    c.fill(b"K", b"v", c.epoch())
    assert c.get(b"K") == b"v"
    assert (c.stats().entries, c.stats().negative_entries) == (1, 0)


def test_byte_bound_holds_after_every_fill(policy: str) -> None:
    c = make(10_000, policy)
    rng = random.Random(1)
    for _ in range(2_000):
        key = b"key%d" % rng.randrange(400)
        if rng.random() < 0.5:
            c.get(key)
        c.fill(key, bytes(rng.randrange(1, 900)), c.epoch())
        assert c.stats().bytes <= 10_000
    s = c.stats()
    assert s.entries > 0
    assert s.bytes <= s.max_bytes


def test_negative_entries_bounded_by_count_and_do_not_evict_positives(policy: str) -> None:
    value = b"v" * 50
    c = make(cost(b"p0", value) * 2, policy, max_negative=3)
    c.fill(b"p0", value, c.epoch())
    c.fill(b"p1", value, c.epoch())
    for i in range(100):
        c.fill(b"n%d" % i, None, c.epoch())
    s = c.stats()
    assert s.negative_entries == 3
    assert s.entries == 2
    assert s.bytes == 2 * cost(b"p0", value)
    assert c.get(b"p0") == value and c.get(b"p1") == value
    # The most recent negatives are the ones kept.
    assert [c.get(b"n%d" % i) for i in (97, 98, 99)] == [NEGATIVE] * 3
    assert c.get(b"n96") is None
    assert c.get(b"n0") is None


def test_invalidate_removes_positive_and_negative(policy: str) -> None:
    c = make(1 << 20, policy)
    c.fill(b"P", b"record", c.epoch())
    c.fill(b"N", None, c.epoch())
    c.fill(b"KEEP", b"other", c.epoch())
    c.invalidate(b"P")
    c.invalidate(b"N")
    c.invalidate(b"NEVER-CACHED")
    assert c.get(b"P") is None
    assert c.get(b"N") is None
    assert c.get(b"KEEP") == b"other"
    s = c.stats()
    assert (s.entries, s.negative_entries) == (1, 0)
    assert s.bytes == cost(b"KEEP", b"other")


def test_epoch_guard_drops_a_fill_that_raced_an_invalidation(policy: str) -> None:
    c = make(1 << 20, policy)
    epoch = c.epoch()  # a reader starts reading the store ...
    c.invalidate(b"K")  # ... a writer commits and invalidates ...
    c.fill(b"K", b"old value", epoch)  # ... the reader's stale result must not be cached
    assert c.get(b"K") is None
    c.fill(b"K", None, epoch)  # nor a stale absence
    assert c.get(b"K") is None
    assert c.stats().entries == 0 and c.stats().negative_entries == 0
    # A read that starts after the invalidation fills normally.
    c.fill(b"K", b"new value", c.epoch())
    assert c.get(b"K") == b"new value"


def test_epoch_guard_applies_across_keys_and_clear(policy: str) -> None:
    c = make(1 << 20, policy)
    epoch = c.epoch()
    c.invalidate(b"SOME-OTHER-KEY")
    c.fill(b"K", b"v", epoch)
    assert c.get(b"K") is None
    epoch = c.epoch()
    c.clear()
    c.fill(b"K", b"v", epoch)
    assert c.get(b"K") is None


def test_clear(policy: str) -> None:
    c = make(1 << 20, policy)
    c.fill(b"P", b"v", c.epoch())
    c.fill(b"N", None, c.epoch())
    c.clear()
    s = c.stats()
    assert (s.entries, s.negative_entries, s.bytes) == (0, 0, 0)
    assert c.get(b"P") is None and c.get(b"N") is None


def test_max_bytes_zero_caches_nothing(policy: str) -> None:
    c = make(0, policy)
    c.fill(b"P", b"v", c.epoch())
    c.fill(b"N", None, c.epoch())
    assert c.get(b"P") is None
    assert c.get(b"N") is None
    s = c.stats()
    assert (s.entries, s.negative_entries, s.bytes, s.misses) == (0, 0, 0, 2)


def test_value_larger_than_max_bytes_is_not_cached_and_evicts_nothing(policy: str) -> None:
    c = make(1_000, policy)
    c.fill(b"small", b"x", c.epoch())
    c.fill(b"huge", b"y" * 1_000, c.epoch())
    assert c.get(b"huge") is None
    assert c.get(b"small") == b"x"
    assert c.stats().bytes == cost(b"small", b"x")
    # Exactly at the budget fits (in an empty cache: an admission policy may prefer "small").
    c = make(1_000, policy)
    exact = b"z" * (1_000 - len(b"exact") - _ENTRY_OVERHEAD)
    c.fill(b"exact", exact, c.epoch())
    assert c.get(b"exact") == exact
    assert c.stats().bytes == 1_000


def test_thread_safety_smoke(policy: str) -> None:
    max_bytes = 20_000
    c = make(max_bytes, policy, max_negative=50)
    keys = [b"key%03d" % i for i in range(200)]
    n_threads, rounds = 8, 1_500
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(rounds):
                key = rng.choice(keys)
                op = rng.random()
                if op < 0.45:
                    c.fill(key, key * rng.randrange(1, 40), c.epoch())
                elif op < 0.55:
                    c.fill(key, None, c.epoch())
                elif op < 0.7:
                    c.invalidate(key)
                else:
                    got = c.get(key)
                    assert (
                        got is None or got == NEGATIVE or (got.startswith(key) and len(got) % len(key) == 0)
                    )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = c.stats()
    assert s.bytes <= max_bytes
    assert s.negative_entries <= 50
    # The byte accounting is exact: forgetting every key brings it back to zero.
    for key in keys:
        c.invalidate(key)
    s = c.stats()
    assert (s.entries, s.negative_entries, s.bytes) == (0, 0, 0)


# ============================================================================ TTLs
def test_record_is_served_until_its_ttl_then_expires(policy: str) -> None:
    clock = FakeClock()
    c = make(1 << 20, policy, ttl=10, clock=clock)
    c.fill(b"K", b"v", c.epoch())
    clock.now += 9.999
    assert c.get(b"K") == b"v"
    clock.now += 0.001  # exactly ttl seconds after the fill
    assert c.get(b"K") is None
    s = c.stats()
    assert (s.hits, s.misses, s.expired) == (1, 1, 1)
    # A refill (what the Registry does after the miss) starts a new lifetime.
    c.fill(b"K", b"v2", c.epoch())
    clock.now += 9
    assert c.get(b"K") == b"v2"


def test_ttl_is_the_smallest_value_ttl_of_the_real_record(policy: str) -> None:
    clock = FakeClock()
    c = RecordCache(1 << 20, policy=policy, clock=clock)  # type: ignore[arg-type]
    data = encoded(86400, 30, None)
    c.fill(b"K", data, c.epoch())
    clock.now += 29.5
    assert c.get(b"K") == data
    clock.now += 0.5
    assert c.get(b"K") is None


def test_record_with_ttl_zero_is_not_cached(policy: str) -> None:
    c = RecordCache(1 << 20, policy=policy)  # type: ignore[arg-type]
    c.fill(b"K", encoded(3600, 0), c.epoch())
    assert c.get(b"K") is None
    assert c.stats().entries == 0
    c = make(1 << 20, policy, ttl=0)
    c.fill(b"K", b"v", c.epoch())
    assert c.get(b"K") is None


def test_undecodable_value_is_not_cached() -> None:
    c = RecordCache(1 << 20)
    c.fill(b"K", b"\xff\xff not a record", c.epoch())
    assert c.get(b"K") is None
    assert c.stats().entries == 0


def test_record_min_ttl() -> None:
    assert record_min_ttl(encoded(3600, 60, 86400)) == 60
    assert record_min_ttl(encoded(None)) == limits.DEFAULT_TTL_SECONDS  # unset means the default
    assert record_min_ttl(encoded(None, 0)) == 0  # an explicit 0 is not "unset"
    assert record_min_ttl(encoded()) == limits.DEFAULT_TTL_SECONDS  # no values
    # What the Registry stores (codec sets every ttl explicitly).
    rec = Record(identifier="88.118.8/X", values=(Value(1, "URL", "u", ttl=5), Value(2, "EMAIL", "e")))
    assert record_min_ttl(codec.encode_record(rec)) == 5


def test_negative_entry_expires_after_negative_ttl(policy: str) -> None:
    clock = FakeClock()
    c = make(1 << 20, policy, clock=clock)
    assert c.negative_ttl == NEGATIVE_TTL_SECONDS == 60
    c.fill(b"N", None, c.epoch())
    clock.now += 59.9
    assert c.get(b"N") == NEGATIVE
    clock.now += 0.1
    assert c.get(b"N") is None
    assert c.stats().expired == 1
    short = make(1 << 20, policy, clock=clock, negative_ttl=2.5)
    short.fill(b"N", None, short.epoch())
    clock.now += 2.4
    assert short.get(b"N") == NEGATIVE
    clock.now += 0.1
    assert short.get(b"N") is None


def test_negative_ttl_zero_disables_negative_entries(policy: str) -> None:
    c = make(1 << 20, policy, negative_ttl=0)
    c.fill(b"N", None, c.epoch())
    assert c.get(b"N") is None
    assert c.stats().negative_entries == 0


# ============================================================================ eviction policies
def test_lru_eviction_order() -> None:
    value = b"v" * 100
    per = cost(b"k0", value)
    c = make(per * 3, "lru")
    for k in (b"k0", b"k1", b"k2"):
        c.fill(k, value, c.epoch())
    assert c.stats().entries == 3
    assert c.get(b"k0") == value  # k0 is now the most recently used; k1 the least
    c.fill(b"k3", value, c.epoch())
    assert c.get(b"k1") is None
    assert c.get(b"k0") == value
    assert c.get(b"k2") == value
    assert c.get(b"k3") == value
    # Order now, least recent first: k0, k2, k3. Two more fills evict k0 then k2.
    c.fill(b"k4", value, c.epoch())
    c.fill(b"k5", value, c.epoch())
    assert c.get(b"k0") is None
    assert c.get(b"k2") is None
    assert [c.get(k) == value for k in (b"k3", b"k4", b"k5")] == [True, True, True]
    assert c.stats().bytes == 3 * per


def test_sieve_visited_entry_survives_the_hand() -> None:
    value = b"v" * 100
    per = cost(b"k0", value)
    c = make(per * 3, "sieve")
    for k in (b"k0", b"k1", b"k2"):
        c.fill(k, value, c.epoch())
    assert c.get(b"k0") == value  # visited: the hand clears its bit and passes it once
    c.fill(b"k3", value, c.epoch())  # the hand starts at the oldest, k0 (visited), evicts k1
    assert [c.get(k) is not None for k in (b"k0", b"k1", b"k2", b"k3")] == [True, False, True, True]
    # The hand now points at k2 (visited by the get just above, as are k0 and k3): it clears
    # k2, k3 and k0 in turn, wraps round, and evicts k2, the oldest of the three.
    c.fill(b"k4", value, c.epoch())
    assert [c.get(k) is not None for k in (b"k0", b"k2", b"k3", b"k4")] == [True, False, True, True]
    assert c.stats().bytes == 3 * per


@pytest.mark.parametrize("policy", ["lru", "sieve"])
def test_large_fill_evicts_as_many_as_needed(policy: str) -> None:
    small = b"s" * 10
    c = make(cost(b"k0", small) * 10, policy)
    for i in range(10):
        c.fill(b"k%d" % i, small, c.epoch())
    big = b"B" * (cost(b"k0", small) * 5)
    c.fill(b"big", big, c.epoch())
    assert c.get(b"big") == big
    s = c.stats()
    assert s.bytes <= s.max_bytes
    assert s.bytes == cost(b"big", big) + (s.entries - 1) * cost(b"k0", small)
    assert c.get(b"k0") is None  # oldest (and unvisited) went first
    assert c.get(b"k9") == small  # newest small one stayed


def test_tinylfu_admits_while_there_is_room_then_prefers_frequent_keys() -> None:
    value = b"v" * 100
    per = cost(b"hot0", value)
    c = make(per * 4, "tinylfu")
    for k in (b"hot0", b"hot1", b"hot2", b"hot3"):
        c.fill(k, value, c.epoch())  # room: all admitted
    for _ in range(5):
        for k in (b"hot0", b"hot1", b"hot2", b"hot3"):
            assert c.get(k) == value
    for i in range(50):  # a one-pass scan: each key seen once, the hot ones five times
        key = b"cold%d" % i
        assert c.get(key) is None
        c.fill(key, value, c.epoch())
    assert [c.get(k) == value for k in (b"hot0", b"hot1", b"hot2", b"hot3")] == [True] * 4
    assert c.stats().bytes <= per * 4


def hot_set_hits(policy: str) -> tuple[int, int]:
    """(hits, requests) on a hot set of 20 keys in a cache of 50 entries, while a one-pass scan
    over 3,000 cold keys takes 3 requests in 4. Each hot key comes back every 80 requests, after
    79 other keys: beyond LRU's reach, but each hot key is requested again and again."""
    value = b"v" * 60
    c = make(cost(b"hot000", value) * 50, policy)
    hot = [b"hot%03d" % i for i in range(20)]
    for _ in range(3):
        for k in hot:
            if c.get(k) is None:
                c.fill(k, value, c.epoch())
    hits = requests = scanned = 0
    for i in range(4_000):
        if i % 4 == 0:
            key = hot[requests % len(hot)]
            requests += 1
        else:
            key = b"cold%05d" % scanned
            scanned += 1
        if c.get(key) is None:
            c.fill(key, value, c.epoch())
        elif key in hot:
            hits += 1
    return hits, requests


def test_scan_resistance_beats_lru_on_a_deterministic_trace() -> None:
    lru_hits, requests = hot_set_hits("lru")
    assert requests == 1_000
    assert lru_hits < 50  # LRU: the scan flushes the hot set
    for policy in ("sieve", "tinylfu"):
        hits, _ = hot_set_hits(policy)
        assert hits > lru_hits
        assert hits >= 900, policy
