"""RecordCache: counters, bounds, LRU eviction, negative entries, the epoch guard, threads."""

from __future__ import annotations

import random
import threading

from cache import NEGATIVE, CacheStats, RecordCache
from cache.record_cache import _ENTRY_OVERHEAD


def cost(key: bytes, value: bytes) -> int:
    """What one positive entry counts against the byte budget."""
    return len(key) + len(value) + _ENTRY_OVERHEAD


def test_miss_hit_and_negative_hit_counters() -> None:
    c = RecordCache(1 << 20)
    assert c.get(b"K") is None
    c.fill(b"K", b"record", c.epoch())
    c.fill(b"GONE", None, c.epoch())
    assert c.get(b"K") == b"record"
    assert c.get(b"K") == b"record"
    assert c.get(b"GONE") == NEGATIVE
    assert c.get(b"OTHER") is None
    s = c.stats()
    assert (s.hits, s.negative_hits, s.misses) == (2, 1, 2)
    assert (s.entries, s.negative_entries) == (1, 1)
    assert s.bytes == cost(b"K", b"record")
    assert s.max_bytes == 1 << 20
    assert isinstance(s, CacheStats)


def test_negative_is_distinct_from_a_miss() -> None:
    c = RecordCache(1 << 20)
    c.fill(b"K", None, c.epoch())
    hit = c.get(b"K")
    assert hit is not None
    assert hit == NEGATIVE == b""


def test_refill_replaces_and_accounts_bytes() -> None:
    c = RecordCache(1 << 20)
    c.fill(b"K", b"a" * 100, c.epoch())
    c.fill(b"K", b"b" * 10, c.epoch())
    assert c.get(b"K") == b"b" * 10
    assert c.stats().entries == 1
    assert c.stats().bytes == cost(b"K", b"b" * 10)


def test_byte_bound_respected_after_many_fills() -> None:
    c = RecordCache(10_000)
    rng = random.Random(1)
    for i in range(2_000):
        c.fill(b"key%d" % i, bytes(rng.randrange(1, 900)), c.epoch())
        assert c.stats().bytes <= 10_000
    s = c.stats()
    assert s.entries > 0
    assert s.bytes <= s.max_bytes
    # The most recent fill is always kept (it fits on its own).
    assert c.get(b"key1999") is not None


def test_lru_eviction_order() -> None:
    value = b"v" * 100
    per = cost(b"k0", value)
    c = RecordCache(per * 3)
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


def test_large_fill_evicts_as_many_as_needed() -> None:
    small = b"s" * 10
    c = RecordCache(cost(b"k0", small) * 10)
    for i in range(10):
        c.fill(b"k%d" % i, small, c.epoch())
    big = b"B" * (cost(b"k0", small) * 5)
    c.fill(b"big", big, c.epoch())
    assert c.get(b"big") == big
    s = c.stats()
    assert s.bytes <= s.max_bytes
    assert s.bytes == cost(b"big", big) + (s.entries - 1) * cost(b"k0", small)
    assert c.get(b"k0") is None  # oldest went first
    assert c.get(b"k9") == small  # newest small one stayed


def test_negative_entries_bounded_by_count_and_do_not_evict_positives() -> None:
    value = b"v" * 50
    c = RecordCache(cost(b"p0", value) * 2, max_negative=3)
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


def test_invalidate_removes_positive_and_negative() -> None:
    c = RecordCache(1 << 20)
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


def test_epoch_guard_drops_a_fill_that_raced_an_invalidation() -> None:
    c = RecordCache(1 << 20)
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


def test_epoch_guard_applies_across_keys_and_clear() -> None:
    c = RecordCache(1 << 20)
    epoch = c.epoch()
    c.invalidate(b"SOME-OTHER-KEY")
    c.fill(b"K", b"v", epoch)
    assert c.get(b"K") is None
    epoch = c.epoch()
    c.clear()
    c.fill(b"K", b"v", epoch)
    assert c.get(b"K") is None


def test_clear() -> None:
    c = RecordCache(1 << 20)
    c.fill(b"P", b"v", c.epoch())
    c.fill(b"N", None, c.epoch())
    c.clear()
    s = c.stats()
    assert (s.entries, s.negative_entries, s.bytes) == (0, 0, 0)
    assert c.get(b"P") is None and c.get(b"N") is None


def test_max_bytes_zero_caches_nothing() -> None:
    c = RecordCache(0)
    c.fill(b"P", b"v", c.epoch())
    c.fill(b"N", None, c.epoch())
    assert c.get(b"P") is None
    assert c.get(b"N") is None
    s = c.stats()
    assert (s.entries, s.negative_entries, s.bytes, s.misses) == (0, 0, 0, 2)


def test_value_larger_than_max_bytes_is_not_cached_and_evicts_nothing() -> None:
    c = RecordCache(1_000)
    c.fill(b"small", b"x", c.epoch())
    c.fill(b"huge", b"y" * 1_000, c.epoch())
    assert c.get(b"huge") is None
    assert c.get(b"small") == b"x"
    assert c.stats().bytes == cost(b"small", b"x")
    # Exactly at the budget fits.
    exact = b"z" * (1_000 - len(b"exact") - _ENTRY_OVERHEAD)
    c.fill(b"exact", exact, c.epoch())
    assert c.get(b"exact") == exact
    assert c.stats().bytes == 1_000


def test_thread_safety_smoke() -> None:
    max_bytes = 20_000
    c = RecordCache(max_bytes, max_negative=50)
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
