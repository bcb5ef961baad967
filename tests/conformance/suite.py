"""The conformance suite every :class:`registry.store.Store` backend must pass.

Use it by subclassing :class:`StoreConformance` in a ``test_*.py`` module and providing two
fixtures (on the subclass or in a conftest):

- ``store``: a fresh, empty, open store; the fixture closes it at teardown;
- ``reopen``: a callable ``reopen(store) -> Store`` that closes ``store`` and returns a new handle
  on the same data (the fixture closes every handle it returned at teardown).

The suite touches nothing but the :class:`~registry.store.Store` protocol.
"""

from __future__ import annotations

import threading

import pytest

from registry.store import (
    Add,
    ConditionFailed,
    Delete,
    Expect,
    Put,
    Store,
    StoreUnavailable,
    Table,
    Txn,
)

ALL_TABLES = list(Table)


def put(store: Store, table: Table, key: bytes, value: bytes) -> None:
    store.commit(Txn(writes=(Put(table, key, value),)))


def snapshot(store: Store) -> dict[object, object]:
    """Everything the suite can observe of a store: every table's pairs and every counter."""
    out: dict[object, object] = {t: store.scan(t, b"", b"\xff" * 16, 1_000_000) for t in Table}
    out["counters"] = store.counters(b"")
    return out


class StoreConformance:
    """Subclass with ``store`` and ``reopen`` fixtures; see the module docstring."""

    # ------------------------------------------------------------------ protocol
    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    # ------------------------------------------------------------------ point reads and writes
    @pytest.mark.parametrize("table", ALL_TABLES, ids=lambda t: t.value)
    def test_get_missing_key_is_none(self, store: Store, table: Table) -> None:
        assert store.get(table, b"missing") is None

    @pytest.mark.parametrize("table", ALL_TABLES, ids=lambda t: t.value)
    def test_put_then_get_in_every_table(self, store: Store, table: Table) -> None:
        key, value = b"k\x00\xff" + table.value.encode(), b"\x00value\xff" + table.value.encode()
        put(store, table, key, value)
        assert store.get(table, key) == value
        assert store.get_many(table, [key]) == [value]

    def test_tables_are_separate_key_spaces(self, store: Store) -> None:
        for i, table in enumerate(Table):
            put(store, table, b"same-key", b"v%d" % i)
        for i, table in enumerate(Table):
            assert store.get(table, b"same-key") == b"v%d" % i
        store.commit(Txn(writes=(Delete(Table.RECORDS, b"same-key"),)))
        assert store.get(Table.RECORDS, b"same-key") is None
        assert store.get(Table.META, b"same-key") is not None

    def test_put_overwrites(self, store: Store) -> None:
        put(store, Table.RECORDS, b"k", b"one")
        put(store, Table.RECORDS, b"k", b"two")
        assert store.get(Table.RECORDS, b"k") == b"two"

    def test_empty_value_is_stored_not_absent(self, store: Store) -> None:
        put(store, Table.META, b"k", b"")
        assert store.get(Table.META, b"k") == b""
        store.commit(Txn(expects=(Expect(Table.META, b"k", b""),), writes=(Put(Table.META, b"k", b"x"),)))
        assert store.get(Table.META, b"k") == b"x"

    def test_get_many_keeps_order_and_reports_missing_as_none(self, store: Store) -> None:
        put(store, Table.RECORDS, b"b", b"2")
        put(store, Table.RECORDS, b"a", b"1")
        keys = [b"b", b"missing", b"a", b"b", b"zz"]
        assert store.get_many(Table.RECORDS, keys) == [b"2", None, b"1", b"2", None]
        assert store.get_many(Table.RECORDS, tuple(keys)) == [b"2", None, b"1", b"2", None]  # any Sequence
        assert store.get_many(Table.RECORDS, []) == []

    def test_delete(self, store: Store) -> None:
        put(store, Table.RECORDS, b"k", b"v")
        put(store, Table.RECORDS, b"other", b"v")
        store.commit(Txn(writes=(Delete(Table.RECORDS, b"k"),)))
        assert store.get(Table.RECORDS, b"k") is None
        assert store.get(Table.RECORDS, b"other") == b"v"
        assert store.scan(Table.RECORDS, b"", b"\xff", 10) == [(b"other", b"v")]

    def test_delete_of_missing_key_is_harmless(self, store: Store) -> None:
        store.commit(Txn(writes=(Delete(Table.RECORDS, b"never"),)))
        assert store.get(Table.RECORDS, b"never") is None

    def test_writes_in_one_txn_apply_in_order(self, store: Store) -> None:
        store.commit(
            Txn(
                writes=(
                    Put(Table.RECORDS, b"a", b"1"),
                    Delete(Table.RECORDS, b"a"),
                    Put(Table.RECORDS, b"b", b"1"),
                    Put(Table.RECORDS, b"b", b"2"),
                )
            )
        )
        assert store.get(Table.RECORDS, b"a") is None
        assert store.get(Table.RECORDS, b"b") == b"2"

    # ------------------------------------------------------------------ scans
    SCAN_KEYS = (
        b"\x00",
        b"\x00\x00",
        b"a",
        b"a\x00",
        b"a\x00\xff",
        b"a\x01",
        b"a\xff",
        b"a\xff\xff",
        b"b",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
    )

    @pytest.fixture
    def scan_store(self, store: Store) -> Store:
        # Insert out of order, over several commits, to rule out insertion-order answers.
        keys = list(self.SCAN_KEYS)
        for chunk in (keys[::3], keys[1::3], keys[2::3]):
            store.commit(Txn(writes=tuple(Put(Table.RECORDS, k, b"v:" + k) for k in reversed(chunk))))
        put(store, Table.META, b"a\x00", b"other table")
        return store

    def keys_between(self, lower: bytes, upper: bytes) -> list[bytes]:
        return sorted(k for k in self.SCAN_KEYS if lower <= k < upper)

    def test_scan_everything_ascending(self, scan_store: Store) -> None:
        rows = scan_store.scan(Table.RECORDS, b"", b"\xff\xff\xff", 100)
        assert [k for k, _ in rows] == sorted(self.SCAN_KEYS)
        assert all(v == b"v:" + k for k, v in rows)

    @pytest.mark.parametrize(
        ("lower", "upper"),
        [
            (b"a", b"b"),
            (b"a\x00", b"a\xff"),
            (b"a\x00", b"a\xff\xff"),
            (b"\x00", b"\x00\x00"),
            (b"\x00\x00", b"a\x00\xff"),
            (b"a\x00\x00", b"a\x02"),
            (b"b", b"\xff\xff"),
            (b"\xff", b"\xff\xff\xff"),
            (b"c", b"d"),
        ],
    )
    def test_scan_lower_inclusive_upper_exclusive(
        self, scan_store: Store, lower: bytes, upper: bytes
    ) -> None:
        rows = scan_store.scan(Table.RECORDS, lower, upper, 100)
        assert [k for k, _ in rows] == self.keys_between(lower, upper)

    def test_scan_limit(self, scan_store: Store) -> None:
        everything = self.keys_between(b"", b"\xff\xff\xff")
        for limit in (1, 2, 5, len(everything), len(everything) + 5):
            rows = scan_store.scan(Table.RECORDS, b"", b"\xff\xff\xff", limit)
            assert [k for k, _ in rows] == everything[:limit]

    def test_scan_limit_zero_is_empty(self, scan_store: Store) -> None:
        assert scan_store.scan(Table.RECORDS, b"", b"\xff\xff\xff", 0) == []

    @pytest.mark.parametrize(("lower", "upper"), [(b"a", b"a"), (b"b", b"a"), (b"\xff", b"\x00")])
    def test_scan_empty_when_lower_not_below_upper(
        self, scan_store: Store, lower: bytes, upper: bytes
    ) -> None:
        assert scan_store.scan(Table.RECORDS, lower, upper, 100) == []

    def test_scan_stays_in_its_table(self, scan_store: Store) -> None:
        assert scan_store.scan(Table.META, b"", b"\xff", 100) == [(b"a\x00", b"other table")]
        assert scan_store.scan(Table.ENTERPRISES, b"", b"\xff", 100) == []

    def test_scan_does_not_see_deleted_keys(self, scan_store: Store) -> None:
        scan_store.commit(Txn(writes=(Delete(Table.RECORDS, b"a\x00"), Delete(Table.RECORDS, b"a\x01"))))
        rows = scan_store.scan(Table.RECORDS, b"a", b"b", 100)
        assert [k for k, _ in rows] == [b"a", b"a\x00\xff", b"a\xff", b"a\xff\xff"]

    # ------------------------------------------------------------------ conditional commits
    def test_expect_absent_succeeds_on_missing_key(self, store: Store) -> None:
        store.commit(
            Txn(expects=(Expect(Table.RECORDS, b"k", None),), writes=(Put(Table.RECORDS, b"k", b"v"),))
        )
        assert store.get(Table.RECORDS, b"k") == b"v"

    def test_expect_exact_value_is_compare_and_set(self, store: Store) -> None:
        put(store, Table.RECORDS, b"k", b"v1")
        store.commit(
            Txn(expects=(Expect(Table.RECORDS, b"k", b"v1"),), writes=(Put(Table.RECORDS, b"k", b"v2"),))
        )
        assert store.get(Table.RECORDS, b"k") == b"v2"
        # The same swap again is stale now.
        with pytest.raises(ConditionFailed) as info:
            store.commit(
                Txn(expects=(Expect(Table.RECORDS, b"k", b"v1"),), writes=(Put(Table.RECORDS, b"k", b"v3"),))
            )
        assert info.value.index == 0
        assert info.value.expect == Expect(Table.RECORDS, b"k", b"v1")
        assert store.get(Table.RECORDS, b"k") == b"v2"

    def test_expect_value_on_missing_key_fails(self, store: Store) -> None:
        with pytest.raises(ConditionFailed) as info:
            store.commit(
                Txn(expects=(Expect(Table.RECORDS, b"k", b"v"),), writes=(Put(Table.RECORDS, b"k", b"w"),))
            )
        assert info.value.index == 0
        assert store.get(Table.RECORDS, b"k") is None

    def test_expect_is_per_table(self, store: Store) -> None:
        put(store, Table.META, b"k", b"v")
        # Present in META says nothing about RECORDS.
        store.commit(
            Txn(expects=(Expect(Table.RECORDS, b"k", None),), writes=(Put(Table.RECORDS, b"k", b"r"),))
        )
        with pytest.raises(ConditionFailed):
            store.commit(
                Txn(expects=(Expect(Table.META, b"k", None),), writes=(Put(Table.META, b"k", b"x"),))
            )
        assert store.get(Table.META, b"k") == b"v"

    def test_expect_then_delete(self, store: Store) -> None:
        put(store, Table.RECORDS, b"k", b"v")
        store.commit(Txn(expects=(Expect(Table.RECORDS, b"k", b"v"),), writes=(Delete(Table.RECORDS, b"k"),)))
        assert store.get(Table.RECORDS, b"k") is None
        with pytest.raises(ConditionFailed):
            store.commit(
                Txn(expects=(Expect(Table.RECORDS, b"k", b"v"),), writes=(Delete(Table.RECORDS, b"k"),))
            )

    @pytest.mark.parametrize(
        "failing", ["absent_expected_but_present", "value_mismatch", "value_expected_but_absent"]
    )
    def test_failing_expect_changes_nothing(self, store: Store, failing: str) -> None:
        put(store, Table.RECORDS, b"present", b"old")
        put(store, Table.ENTERPRISES, b"e", b"old")
        store.commit(Txn(adds=(Add(b"c:1", 5),)))
        before = snapshot(store)
        bad = {
            "absent_expected_but_present": Expect(Table.RECORDS, b"present", None),
            "value_mismatch": Expect(Table.RECORDS, b"present", b"not the value"),
            "value_expected_but_absent": Expect(Table.RECORDS, b"absent", b"anything"),
        }[failing]
        txn = Txn(
            expects=(
                Expect(Table.RECORDS, b"absent-too", None),  # holds
                Expect(Table.ENTERPRISES, b"e", b"old"),  # holds
                bad,
                Expect(Table.RECORDS, b"also-absent", b"x"),  # fails too, but later
            ),
            writes=(
                Put(Table.RECORDS, b"new", b"v"),
                Put(Table.RECORDS, b"present", b"new"),
                Delete(Table.ENTERPRISES, b"e"),
                Put(Table.META, b"m", b"v"),
            ),
            adds=(Add(b"c:1", 1), Add(b"c:2", 7)),
        )
        with pytest.raises(ConditionFailed) as info:
            store.commit(txn)
        assert info.value.index == 2
        assert info.value.expect == bad
        assert snapshot(store) == before
        assert store.counter(b"c:1") == 5
        assert store.counter(b"c:2") == 0

    def test_condition_failed_index_names_first_failing_expect(self, store: Store) -> None:
        put(store, Table.RECORDS, b"x", b"1")
        expects = (
            Expect(Table.RECORDS, b"a", None),
            Expect(Table.RECORDS, b"x", b"1"),
            Expect(Table.RECORDS, b"b", None),
            Expect(Table.RECORDS, b"x", None),  # first failure
            Expect(Table.RECORDS, b"x", b"2"),  # fails as well
        )
        with pytest.raises(ConditionFailed) as info:
            store.commit(Txn(expects=expects, writes=(Put(Table.RECORDS, b"a", b"v"),)))
        assert info.value.index == 3
        assert info.value.expect == expects[3]
        assert store.get(Table.RECORDS, b"a") is None

    def test_successful_txn_applies_writes_and_adds_together(self, store: Store) -> None:
        store.commit(
            Txn(
                expects=(Expect(Table.RECORDS, b"a", None), Expect(Table.RECORDS, b"b", None)),
                writes=(Put(Table.RECORDS, b"a", b"1"), Put(Table.RECORDS, b"b", b"2")),
                adds=(Add(b"n", 2),),
            )
        )
        assert store.get_many(Table.RECORDS, [b"a", b"b"]) == [b"1", b"2"]
        assert store.counter(b"n") == 2

    def test_empty_txn_is_a_no_op(self, store: Store) -> None:
        before = snapshot(store)
        store.commit(Txn())
        assert snapshot(store) == before

    # ------------------------------------------------------------------ counters
    def test_missing_counter_is_zero(self, store: Store) -> None:
        assert store.counter(b"nope") == 0
        assert store.counters(b"nope") == {}

    def test_add_accumulates(self, store: Store) -> None:
        for _ in range(5):
            store.commit(Txn(adds=(Add(b"n", 3),)))
        assert store.counter(b"n") == 15

    def test_negative_deltas(self, store: Store) -> None:
        store.commit(Txn(adds=(Add(b"n", 10),)))
        store.commit(Txn(adds=(Add(b"n", -4),)))
        assert store.counter(b"n") == 6
        store.commit(Txn(adds=(Add(b"n", -10),)))
        assert store.counter(b"n") == -4
        store.commit(Txn(adds=(Add(b"m", -1),)))
        assert store.counter(b"m") == -1

    def test_several_adds_of_one_counter_in_one_txn(self, store: Store) -> None:
        store.commit(Txn(adds=(Add(b"n", 1), Add(b"other", 100), Add(b"n", 2), Add(b"n", -5), Add(b"n", 10))))
        assert store.counter(b"n") == 8
        assert store.counter(b"other") == 100
        store.commit(Txn(adds=(Add(b"n", 1), Add(b"n", 1))))
        assert store.counter(b"n") == 10

    def test_adds_that_cancel_leave_the_counter_unchanged(self, store: Store) -> None:
        store.commit(Txn(adds=(Add(b"n", 4),)))
        store.commit(Txn(adds=(Add(b"n", 3), Add(b"n", -3))))
        assert store.counter(b"n") == 4

    def test_large_counter_values(self, store: Store) -> None:
        store.commit(Txn(adds=(Add(b"n", 2**40),)))
        store.commit(Txn(adds=(Add(b"n", 2**40),)))
        assert store.counter(b"n") == 2**41

    def test_counters_filters_by_prefix(self, store: Store) -> None:
        store.commit(
            Txn(
                adds=(
                    Add(b"ids:*", 3),
                    Add(b"ids:88.118.8", 2),
                    Add(b"ids:88.118.80", 1),
                    Add(b"idx", 9),
                    Add(b"id", 8),
                    Add(b"enterprises", 2),
                )
            )
        )
        assert store.counters(b"ids:") == {b"ids:*": 3, b"ids:88.118.8": 2, b"ids:88.118.80": 1}
        assert store.counters(b"ids:88.118.8") == {b"ids:88.118.8": 2, b"ids:88.118.80": 1}
        assert store.counters(b"enterprises") == {b"enterprises": 2}
        assert store.counters(b"zzz") == {}
        assert store.counters(b"") == {
            b"ids:*": 3,
            b"ids:88.118.8": 2,
            b"ids:88.118.80": 1,
            b"idx": 9,
            b"id": 8,
            b"enterprises": 2,
        }

    def test_counters_prefix_with_binary_names(self, store: Store) -> None:
        """Every name starting with the prefix, however many 0xff bytes follow it."""
        names = [b"p\x00", b"p", b"p\xff", b"p\xff" * 4, b"p" + b"\xff" * 8, b"p" + b"\xff" * 9 + b"x"]
        store.commit(
            Txn(adds=(*(Add(n, i + 1) for i, n in enumerate(names)), Add(b"q", 1), Add(b"o\xff", 1)))
        )
        assert store.counters(b"p") == {n: i + 1 for i, n in enumerate(names)}
        assert store.counters(b"p\xff") == {n: i + 1 for i, n in enumerate(names) if n.startswith(b"p\xff")}

    def test_counters_are_not_table_keys(self, store: Store) -> None:
        store.commit(Txn(adds=(Add(b"n", 1),)))
        for table in Table:
            assert store.get(table, b"n") is None

    # ------------------------------------------------------------------ durability
    def test_commits_survive_close_and_reopen(self, store: Store, reopen) -> None:
        for table in Table:
            put(store, table, b"k", table.value.encode())
        put(store, Table.RECORDS, b"gone", b"v")
        store.commit(
            Txn(
                expects=(Expect(Table.RECORDS, b"gone", b"v"),),
                writes=(Delete(Table.RECORDS, b"gone"), Put(Table.RECORDS, b"\x00\xff", b"\xff\x00")),
                adds=(Add(b"n", 7), Add(b"m", -2)),
            )
        )
        before = snapshot(store)

        again = reopen(store)
        assert snapshot(again) == before
        for table in Table:
            assert again.get(table, b"k") == table.value.encode()
        assert again.get(Table.RECORDS, b"gone") is None
        assert again.get(Table.RECORDS, b"\x00\xff") == b"\xff\x00"
        assert again.counter(b"n") == 7
        assert again.counter(b"m") == -2

        # The reopened store is fully usable, and counters continue from their stored values.
        again.commit(Txn(expects=(Expect(Table.RECORDS, b"k", b"records"),), adds=(Add(b"n", 1),)))
        assert again.counter(b"n") == 8
        third = reopen(again)
        assert third.counter(b"n") == 8

    # ------------------------------------------------------------------ closing
    def test_commit_after_close_raises_store_unavailable(self, store: Store) -> None:
        store.close()
        with pytest.raises(StoreUnavailable):
            store.commit(Txn(writes=(Put(Table.RECORDS, b"k", b"v"),)))

    def test_close_twice_is_harmless(self, store: Store) -> None:
        store.close()
        store.close()

    def test_reads_after_close_raise_store_unavailable(self, store: Store) -> None:
        """A closed handle "cannot serve right now": every read says so with StoreUnavailable (which
        adapters report as UNAVAILABLE), not with some backend-specific exception."""
        store.close()
        for read in (
            lambda: store.get(Table.RECORDS, b"k"),
            lambda: store.get_many(Table.RECORDS, [b"k"]),
            lambda: store.scan(Table.RECORDS, b"a", b"b", 1),
            lambda: store.counter(b"n"),
            lambda: store.counters(b"n"),
        ):
            with pytest.raises(StoreUnavailable):
                read()

    # ------------------------------------------------------------------ concurrency
    def test_concurrent_create_exactly_one_wins(self, store: Store) -> None:
        n = 8
        barrier = threading.Barrier(n)
        won: list[int] = []
        lost: list[int] = []
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                barrier.wait()
                store.commit(
                    Txn(
                        expects=(Expect(Table.RECORDS, b"contended", None),),
                        writes=(Put(Table.RECORDS, b"contended", b"thread-%d" % i),),
                        adds=(Add(b"created", 1),),
                    )
                )
                won.append(i)
            except ConditionFailed as exc:
                assert exc.index == 0
                lost.append(i)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(won) == 1
        assert sorted(won + lost) == list(range(n))
        assert store.get(Table.RECORDS, b"contended") == b"thread-%d" % won[0]
        assert store.counter(b"created") == 1

    def test_concurrent_counter_adds_are_not_lost(self, store: Store) -> None:
        n, per = 8, 50
        barrier = threading.Barrier(n)

        def worker() -> None:
            barrier.wait()
            for _ in range(per):
                store.commit(Txn(adds=(Add(b"n", 1),)))

        threads = [threading.Thread(target=worker) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.counter(b"n") == n * per
