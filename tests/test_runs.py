"""Run files and their merge (``registry.bulk.runs``): the pure-Python twin on its own, and the C
twin (``registry/bulk/_runs.c``) against it.

The C twin comes from :func:`registry.native.load`: with ``IDNODE_NATIVE=0`` the comparisons skip
and only the pure-Python tests run; with ``IDNODE_REQUIRE_NATIVE=1`` a missing build is an error.
"""

from __future__ import annotations

import gc
import mmap
import random
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from registry import native
from registry.bulk import runs
from registry.bulk.runs import FOOTER, INDEX_EVERY, MAGIC, PyMerger, py_frame, read_index

_runs = native.load("registry.bulk._runs")
needs_native = pytest.mark.skipif(_runs is None, reason="the C twin is off (IDNODE_NATIVE=0) or not built")
PROPS = settings(max_examples=300, deadline=None)

Records = dict[bytes, tuple[bytes, int]]  # key -> (value, row) of one run
Batch = tuple[list[bytes], list[bytes], list[tuple[int, int, bytes]]]


def mergers() -> list[Any]:
    """The Merger classes to test on their own: the Python twin always, the C twin when loaded."""
    return [
        pytest.param(PyMerger, id="python"),
        pytest.param(_runs.Merger if _runs is not None else None, id="native", marks=needs_native),
    ]


def framed(records: Records) -> bytes:
    keys = sorted(records)
    return py_frame(keys, [records[k][0] for k in keys], [records[k][1] for k in keys])


def drain(merger: Any, limits: Sequence[int]) -> list[tuple[Batch | None, dict[bytes, int]]]:
    """Every next() answer up to the first None, each with a copy of counts after the call;
    ``limits`` are used in turn."""
    out: list[tuple[Batch | None, dict[bytes, int]]] = []
    for call in range(1_000_000):
        batch = merger.next(limits[call % len(limits)])
        out.append((batch, dict(merger.counts)))
        if batch is None:
            return out
    raise AssertionError("the merge never ends")


def outcome(make: Callable[[], Any], limits: Sequence[int]) -> tuple[list[Any], str | None]:
    """What a merge gives up to its end or its first error: the answers (as :func:`drain`), and the
    error's kind (None, or "init" / "next" for a ValueError from the constructor / next())."""
    try:
        merger = make()
    except ValueError:
        return [], "init"
    out: list[Any] = []
    for call in range(1_000_000):
        try:
            batch = merger.next(limits[call % len(limits)])
        except ValueError:
            return out, "next"
        out.append((batch, dict(merger.counts)))
        if batch is None:
            return out, None
    raise AssertionError("the merge never ends")


def model(
    run_records: Sequence[Records], lo: bytes | None, hi: bytes | None, keep_last: bool
) -> tuple[list[bytes], list[bytes], list[tuple[int, int, bytes]], dict[bytes, int]]:
    """What a merge must give, from the records themselves: kept keys and values, dups, counts."""
    holders: dict[bytes, list[tuple[int, int, bytes]]] = {}
    for run, records in enumerate(run_records):
        for key, (value, row) in records.items():
            if (lo is None or key >= lo) and (hi is None or key < hi):
                holders.setdefault(key, []).append((run, row, value))
    keys = sorted(holders)
    kept = -1 if keep_last else 0
    values = [holders[k][kept][2] for k in keys]
    dups = [d for k in keys for d in holders[k] if d is not holders[k][kept]]
    counts = dict(Counter(k.split(b"/", 1)[0] for k in keys))
    return keys, values, dups, counts


def check_against_model(
    answers: list[tuple[Batch | None, dict[bytes, int]]],
    run_records: Sequence[Records],
    lo: bytes | None,
    hi: bytes | None,
    keep_last: bool,
    limits: Sequence[int],
) -> None:
    keys, values, dups, counts = model(run_records, lo, hi, keep_last)
    assert answers[-1][0] is None and all(batch is not None for batch, _ in answers[:-1])
    got_keys: list[bytes] = []
    got_values: list[bytes] = []
    got_dups: list[tuple[int, int, bytes]] = []
    for call, (batch, counts_now) in enumerate(answers[:-1]):
        assert batch is not None
        batch_keys, batch_values, batch_dups = batch
        # a batch is as long as the limit allows (each group gives one kept record)
        assert len(batch_keys) == min(max(limits[call % len(limits)], 1), len(keys) - len(got_keys))
        assert len(batch_values) == len(batch_keys)
        got_keys += batch_keys
        got_values += batch_values
        got_dups += batch_dups
        assert counts_now == dict(Counter(k.split(b"/", 1)[0] for k in got_keys))
    assert got_keys == keys
    assert got_values == values
    assert got_dups == dups
    assert answers[-1][1] == counts


# ------------------------------------------------------------------------------ strategies
# Short keys over a few bytes, so that runs share many keys and prefixes ("/" included), some
# behind a long common prefix (the C twin compares keys by 8 bytes after the runs' common prefix,
# at most 64 bytes, and shortens it when a key without it comes).
short_keys_st = st.lists(st.sampled_from(b"ab/\x00\xff"), max_size=5).map(bytes)
PREFIXES = [b"", b"88.118.1/aaaaaaaaaaaaa", b"88.118.1/aaaaaaa", b"x" * 70, b"\xff" * 12]
keys_st = st.builds(bytes.__add__, st.sampled_from(PREFIXES), short_keys_st)
record_st = st.tuples(st.binary(max_size=12), st.integers(0, 2**64 - 1))
run_st = st.dictionaries(keys_st, record_st, max_size=25)
runs_st = st.lists(run_st, min_size=1, max_size=6)
limits_st = st.lists(st.integers(1, 50), min_size=1, max_size=4)


@st.composite
def bound_st(draw: st.DrawFn, run_records: Sequence[Records]) -> bytes | None:
    """None, below every key, a key of the runs, any key, or above every key."""
    present = sorted({k for records in run_records for k in records})
    choices: list[st.SearchStrategy[bytes | None]] = [
        st.none(),
        st.just(b""),
        keys_st,
        st.just(b"\xff" * 8),
    ]
    if present:
        choices.append(st.sampled_from(present))
    return draw(st.one_of(choices))


# ------------------------------------------------------------------------------ frame
def test_the_twin_in_use() -> None:
    if _runs is None:
        assert runs.frame is py_frame and runs.Merger is PyMerger and runs.span is runs.py_span
    else:
        assert runs.frame is _runs.frame and runs.Merger is _runs.Merger and runs.span is _runs.span


def test_frame_layout() -> None:
    data = py_frame([b"a", b"b/c"], [b"", b"xyz"], [7, 2**64 - 1])
    records = (
        struct.pack("<I", 1) + b"a" + struct.pack("<I", 0) + struct.pack("<Q", 7)
        + struct.pack("<I", 3) + b"b/c" + struct.pack("<I", 3) + b"xyz" + struct.pack("<Q", 2**64 - 1)
    )  # fmt: skip
    index = struct.pack("<QI", 0, 1) + b"a"
    assert data == records + index + FOOTER.pack(len(records), 2, 1, INDEX_EVERY, MAGIC)
    assert read_index(data) == (len(records), 2, [b"a"], [0])
    empty = py_frame([], [], [])
    assert empty == FOOTER.pack(0, 0, 0, INDEX_EVERY, MAGIC)
    assert read_index(empty) == (0, 0, [], [])


@needs_native
@PROPS
@given(st.dictionaries(st.binary(max_size=20), record_st, max_size=40))
@example({})
@example({b"": (b"", 0)})
@example({b"": (b"v", 2**64 - 1), b"\x00": (b"", 0), b"a/b": (b"x" * 300, 12)})
def test_frame_twins_are_byte_identical(records: Records) -> None:
    keys = sorted(records)
    values = [records[k][0] for k in keys]
    rows = [records[k][1] for k in keys]
    assert _runs.frame(keys, values, rows) == py_frame(keys, values, rows)
    assert _runs.frame(tuple(keys), tuple(values), tuple(rows)) == py_frame(keys, values, rows)


def generated_records(n: int, seed: int, key_len: int = 40, value_len: int = 380) -> Records:
    """``n`` records with random keys (a few prefixes), values and rows."""
    rng = random.Random(seed)
    out: Records = {}
    while len(out) < n:
        prefix = b"88.118.%d" % rng.randrange(4)
        key = prefix + b"/" + rng.randbytes(rng.randrange(key_len // 2, key_len)).hex().encode()[:key_len]
        out[key] = (rng.randbytes(rng.randrange(value_len + 1)), rng.randrange(2**64))
    return out


@pytest.mark.parametrize("n", [0, 1, 511, 512, 513, 1024, 1025, 3000])
def test_frame_around_index_boundaries(n: int) -> None:
    """The index holds every INDEX_EVERY-th key from the first, at its record's offset; the C twin
    makes the same bytes."""
    records = generated_records(n, n, value_len=40)
    keys = sorted(records)
    values = [records[k][0] for k in keys]
    rows = [records[k][1] for k in keys]
    data = py_frame(keys, values, rows)
    records_end, count, index_keys, offsets = read_index(data)
    assert count == n and index_keys == keys[::INDEX_EVERY]
    assert records_end == sum(16 + len(k) + len(v) for k, v in zip(keys, values, strict=True))
    for at, offset in zip(range(0, n, INDEX_EVERY), offsets, strict=True):
        assert offset == sum(16 + len(k) + len(v) for k, v in zip(keys[:at], values[:at], strict=True))
    if _runs is not None:
        assert _runs.frame(keys, values, rows) == data


def frames() -> list[Any]:
    return [
        pytest.param(py_frame, id="python"),
        pytest.param(_runs.frame if _runs is not None else None, id="native", marks=needs_native),
    ]


@pytest.mark.parametrize("frame", frames())
def test_frame_rejects_keys_out_of_order_and_lengths_that_differ(frame: Any) -> None:
    with pytest.raises(ValueError, match="ascend"):
        frame([b"b", b"a"], [b"", b""], [0, 0])
    with pytest.raises(ValueError, match="ascend"):
        frame([b"a", b"a"], [b"", b""], [0, 0])
    with pytest.raises(ValueError, match="ascend"):
        frame([b"a", b"ab", b"ab\x00", b"ab"], [b""] * 4, [0] * 4)
    with pytest.raises(ValueError, match="length"):
        frame([b"a"], [b"", b""], [0, 0])
    with pytest.raises(ValueError, match="length"):
        frame([b"a", b"b"], [b"", b""], [0])
    with pytest.raises(ValueError, match="length"):
        frame([], [b""], [])


@needs_native
def test_native_frame_rejects_other_types_and_rows_out_of_range() -> None:
    with pytest.raises(TypeError):
        _runs.frame(["a"], [b""], [0])
    with pytest.raises(TypeError):
        _runs.frame([b"a"], [bytearray(b"")], [0])
    with pytest.raises(TypeError):
        _runs.frame([b"a"], [b""], [1.0])
    with pytest.raises(TypeError):
        _runs.frame(None, [b""], [0])
    with pytest.raises(TypeError):
        _runs.frame([b"a"], [b""])
    with pytest.raises((OverflowError, ValueError)):
        _runs.frame([b"a"], [b""], [-1])
    with pytest.raises((OverflowError, ValueError)):
        _runs.frame([b"a"], [b""], [2**64])
    assert _runs.frame([b"a"], [b""], [True]) == py_frame([b"a"], [b""], [1])


# ------------------------------------------------------------------------------ merge
@pytest.mark.parametrize("merger", mergers())
@PROPS
@given(runs_st, st.data(), st.booleans(), limits_st)
@example([{b"a": (b"0", 1)}, {b"a": (b"1", 2)}, {b"a": (b"2", 3)}], None, True, [1])
@example([{b"a": (b"0", 1)}, {b"a": (b"1", 2)}, {b"a": (b"2", 3)}], None, False, [1])
@example([{}, {}], None, False, [1])
def test_merge_is_right(
    merger: Any, run_records: list[Records], data: Any, keep_last: bool, limits: list[int]
) -> None:
    if isinstance(data, st.DataObject):
        lo, hi = data.draw(bound_st(run_records)), data.draw(bound_st(run_records))
    else:
        lo = hi = None
    answers = drain(merger([framed(r) for r in run_records], lo, hi, keep_last), limits)
    check_against_model(answers, run_records, lo, hi, keep_last, limits)


@needs_native
@PROPS
@given(runs_st, st.data(), st.booleans(), limits_st)
def test_merge_twins_agree(
    run_records: list[Records], data: st.DataObject, keep_last: bool, limits: list[int]
) -> None:
    lo, hi = data.draw(bound_st(run_records)), data.draw(bound_st(run_records))
    bufs = [framed(r) for r in run_records]
    assert drain(_runs.Merger(bufs, lo, hi, keep_last), limits) == drain(
        PyMerger(bufs, lo, hi, keep_last), limits
    )


def long_runs(seed: int) -> list[Records]:
    """Five runs of 1-2,500 records (so a merge seeks through the index), sharing many keys."""
    rng = random.Random(seed)
    pool = list(generated_records(4000, seed, key_len=24, value_len=20).items())
    return [dict(rng.sample(pool, rng.choice((1, 600, 1100, 1500, 2500)))) for _ in range(5)]


def long_bounds(run_records: list[Records]) -> list[bytes | None]:
    """Bounds around index entries: none, below all, each of the first three index keys of the
    longest run and the keys next to them, a key between, the last key, above all."""
    longest = sorted(max(run_records, key=len))
    out: list[bytes | None] = [None, b"", b"\xff"]
    for at in (INDEX_EVERY - 1, INDEX_EVERY, INDEX_EVERY + 1, 2 * INDEX_EVERY, 2 * INDEX_EVERY + 7):
        if at < len(longest):
            out += [longest[at], longest[at] + b"\x00"]
    out += [longest[-1], longest[len(longest) // 3][:-1]]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merge_of_long_runs(seed: int) -> None:
    run_records = long_runs(seed)
    bufs = [framed(r) for r in run_records]
    bounds = long_bounds(run_records)
    rng = random.Random(seed)
    for lo in bounds:
        for hi in rng.sample(bounds, 3):
            keep_last = rng.random() < 0.5
            limits = [rng.randrange(1, 700), rng.randrange(1, 50)]
            python = drain(PyMerger(bufs, lo, hi, keep_last), limits)
            check_against_model(python, run_records, lo, hi, keep_last, limits)
            if _runs is not None:
                assert drain(_runs.Merger(bufs, lo, hi, keep_last), limits) == python


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_partition_ranges_hold_every_record_of_their_partition(tmp_path: Path, seed: int) -> None:
    """Merging each partition from just its byte ranges (runs.ranges, RangeReader, plain=True) gives
    what merging the whole runs between the same cuts gives, in both twins."""
    run_records = long_runs(seed)
    paths = []
    whole = []
    for i, records in enumerate(run_records):
        paths.append(tmp_path / f"run-{i}.run")
        whole.append(framed(records))
        runs.write_run(str(paths[-1]), whole[-1])
    every_key = sorted({k for r in run_records for k in r})
    rng = random.Random(seed)
    for n_cuts in (0, 1, 3, 17):
        cuts = sorted(set(rng.sample(every_key, n_cuts) + [every_key[0] + b"\x00"] * (n_cuts > 2)))
        per_run = []
        for path in paths:
            tail, size = runs.tail_bytes(str(path))
            assert size - len(tail) == read_index(whole[len(per_run)])[0]  # just the index and footer
            per_run.append(runs.ranges(tail, cuts, size))
        bounds: list[bytes | None] = [None, *cuts, None]
        for p in range(len(cuts) + 1):
            reader = runs.RangeReader()
            loose = [reader.read(str(path), *per_run[i][p]) for i, path in enumerate(paths)]
            lo, hi = bounds[p], bounds[p + 1]
            parts = [reader.read(str(path), *per_run[i][p], lo, hi) for i, path in enumerate(paths)]
            for i, part in enumerate(parts):
                inside = sum(1 for k in run_records[i] if (lo is None or k >= lo) and (hi is None or k < hi))
                # Without bounds: whole index blocks around the partition; with them, just its records.
                assert inside <= held(loose[i]) <= inside + 2 * INDEX_EVERY
                assert held(part) == inside
            keep_last = rng.random() < 0.5
            expected = drain(PyMerger(whole, bounds[p], bounds[p + 1], keep_last), [500])
            assert drain(PyMerger(parts, bounds[p], bounds[p + 1], keep_last, plain=True), [500]) == expected
            if _runs is not None:
                got = drain(_runs.Merger(parts, bounds[p], bounds[p + 1], keep_last, plain=True), [500])
                assert got == expected


def test_read_partition_gives_what_read_gives_in_one_reused_mapping(tmp_path: Path) -> None:
    run_records = long_runs(4)
    paths = []
    for i, records in enumerate(run_records):
        paths.append(str(tmp_path / f"run-{i}.run"))
        runs.write_run(paths[-1], framed(records))
    every_key = sorted({k for r in run_records for k in r})
    cuts = [every_key[len(every_key) // 3], every_key[2 * len(every_key) // 3]]
    per_run = []
    for path in paths:
        tail, size = runs.tail_bytes(path)
        per_run.append(runs.ranges(tail, cuts, size))
    bounds: list[bytes | None] = [None, *cuts, None]
    reader = runs.RangeReader()
    for p in (1, 0, 2, 1):  # the middle partition first and last: the mapping is reused
        ranges = [(path, *per_run[i][p]) for i, path in enumerate(paths)]
        views = reader.read_partition(ranges, bounds[p], bounds[p + 1])
        assert [bytes(v) for v in views] == [
            bytes(runs.RangeReader().read(*r, bounds[p], bounds[p + 1])) for r in ranges
        ]
        lo, hi = bounds[p], bounds[p + 1]
        inside = [k for r in run_records for k in r if (lo is None or k >= lo) and (hi is None or k < hi)]
        assert sum(held(v) for v in views) == len(inside) > 0
        for view in views:
            view.release()


def held(records: Any) -> int:
    """How many plain records ``records`` holds (every one read and checked)."""
    return sum(len(b[0]) for b, _ in drain(PyMerger([records], None, None, False, plain=True), [500]) if b)


def spans() -> list[Any]:
    """The span functions to test: the Python twin always, the C twin when loaded."""
    return [
        pytest.param(runs.py_span, id="python"),
        pytest.param(_runs.span if _runs is not None else None, id="native", marks=needs_native),
    ]


def plain(records: Records) -> bytes:
    """The records region of ``records``' run: what RangeReader.read returns for the whole run."""
    data = framed(records)
    return data[: read_index(data)[0]]


@pytest.mark.parametrize("span", spans())
@PROPS
@given(run_st, st.data())
def test_span_holds_exactly_the_keys_in_bounds(span: Any, records: Records, data: st.DataObject) -> None:
    lo = data.draw(bound_st([records]))
    hi = data.draw(bound_st([records]))
    buf = plain(records)
    start, end = span(buf, lo, hi)
    assert 0 <= start <= len(buf) and 0 <= end <= len(buf)
    inside = [k for k in sorted(records) if (lo is None or k >= lo) and (hi is None or k < hi)]
    if start <= end:
        got = drain(PyMerger([buf[start:end]], None, None, False, plain=True), [500])
        assert [k for b, _ in got if b for k in b[0]] == inside
    else:  # lo > hi: nothing lies between them, and start is where lo's records begin
        assert inside == [] and lo is not None and hi is not None and lo > hi
    assert span(bytearray(buf), lo, hi) == span(memoryview(buf), lo, hi) == (start, end)


@needs_native
@PROPS
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    st.integers(0, 200),
    st.sampled_from([None, b"", b"a", b"b/", b"c", b"\xff"]),
    st.sampled_from([None, b"", b"a/b", b"b", b"c/d", b"\xff"]),
)
def test_span_twins_agree_on_damaged_records(
    flips: list[tuple[int, int]], cut: int, lo: bytes | None, hi: bytes | None
) -> None:
    """Lengths or keys changed, or the records cut short: the same range or the same error class."""
    buf = plain({b"a": (b"0", 0), b"a/b": (b"1", 1), b"b": (b"2" * 30, 2), b"c/d": (b"3", 3), b"d": (b"", 4)})
    if flips:
        buf = flipped(buf, flips)
    buf = buf[: len(buf) - cut] if cut < len(buf) else b""

    def result(span: Any) -> Any:
        try:
            return span(buf, lo, hi)
        except ValueError as exc:
            return type(exc)

    assert result(_runs.span) == result(runs.py_span)


@needs_native
def test_native_span_arguments() -> None:
    with pytest.raises(TypeError):
        _runs.span(b"", "a", None)
    with pytest.raises(TypeError):
        _runs.span(b"", None, bytearray(b"b"))
    with pytest.raises(TypeError):
        _runs.span(b"", None)
    with pytest.raises(TypeError):
        _runs.span(5, None, None)
    with pytest.raises(runs.RunCorrupt, match="cut short"):
        _runs.span(b"\x05\x00\x00\x00ab", b"a", None)


@pytest.mark.parametrize("merger", mergers())
def test_plain_records_cut_short_raise(merger: Any) -> None:
    data = framed({b"a": (b"1", 1), b"b": (b"2", 2)})
    records_end = read_index(data)[0]
    with pytest.raises(ValueError):
        drain(merger([data[: records_end - 3]], None, None, False, plain=True), [10])


@pytest.mark.parametrize("merger", mergers())
def test_the_index_seek_skips_the_blocks_below_lo(merger: Any) -> None:
    """A broken first record is never read when lo lies past the first index entry."""
    records = generated_records(1500, 7, key_len=24, value_len=20)
    keys = sorted(records)
    data = bytearray(framed(records))
    data[0:4] = struct.pack("<I", 2**32 - 1)  # the first key runs past the records
    bufs = [bytes(data)]
    for lo in (keys[INDEX_EVERY], keys[INDEX_EVERY + 3], keys[2 * INDEX_EVERY], keys[-1]):
        answers = drain(merger(bufs, lo, None, False), [10_000])
        assert answers[0][0] is not None and answers[0][0][0] == [k for k in keys if k >= lo]
    for lo in (None, keys[0], keys[INDEX_EVERY - 1]):
        with pytest.raises(ValueError):
            drain(merger(bufs, lo, None, False), [10_000])


@pytest.mark.parametrize("merger", mergers())
@pytest.mark.parametrize("keep_last", [False, True])
def test_common_prefix_that_shrinks(merger: Any, keep_last: bool) -> None:
    """Runs whose first keys share a long prefix, then keys that leave it at every length, keys
    that are prefixes of others, and keys of 8+ bytes of 0xff (they sort before none)."""
    base = b"88.118.1/" + b"q" * 70
    rng = random.Random(5)
    pool = [
        base + b"a",
        base + b"b",
        base + b"a\x00",
        base,
        base[:-1],
        b"\xff" * 8,
        b"\xff" * 9,
        b"\xff" * 80,
    ]
    pool += [base[:cut] + b"r" for cut in range(0, len(base), 3)]
    pool += [base[:cut] + b"0" for cut in range(9, len(base), 7)]
    run_records = []
    for _ in range(6):
        keys = [base + b"a", *rng.sample(pool, 12)]
        run_records.append({k: (rng.randbytes(rng.randrange(4)), rng.randrange(100)) for k in keys})
    bufs = [framed(r) for r in run_records]
    for lo, hi in ((None, None), (base, None), (None, b"\xff" * 9), (base[:20], base + b"b")):
        for limits in ([1], [3, 50]):
            answers = drain(merger(bufs, lo, hi, keep_last), limits)
            check_against_model(answers, run_records, lo, hi, keep_last, limits)


@pytest.mark.parametrize("merger", mergers())
def test_limits_below_one_mean_one(merger: Any) -> None:
    bufs = [framed({b"a": (b"1", 1), b"b": (b"2", 2)}), framed({b"a": (b"3", 3)})]
    m = merger(bufs, None, None, False)
    assert m.next(0) == ([b"a"], [b"1"], [(1, 3, b"3")])
    assert m.next(-5) == ([b"b"], [b"2"], [])
    assert m.next(1) is None
    assert m.next(1) is None
    assert m.counts == {b"a": 1, b"b": 1}


@pytest.mark.parametrize("merger", mergers())
def test_no_runs_and_empty_ranges(merger: Any) -> None:
    assert merger([], None, None, False).next(5) is None
    buf = framed({b"a": (b"1", 1), b"b": (b"2", 2)})
    assert merger([buf], b"b", b"b", False).next(5) is None
    assert merger([buf], b"c", None, False).next(5) is None
    assert merger([buf], None, b"a", True).next(5) is None
    m = merger([buf], None, None, False)
    assert m.counts == {}


@pytest.mark.parametrize("merger", mergers())
def test_runs_in_mmaps(merger: Any, tmp_path: Path) -> None:
    run_records = long_runs(4)
    maps = []
    for i, records in enumerate(run_records):
        path = tmp_path / f"run{i}"
        path.write_bytes(framed(records))
        with path.open("rb") as f:
            maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    lo, hi = long_bounds(run_records)[4:6]
    answers = drain(merger(maps, lo, hi, True), [333])
    check_against_model(answers, run_records, lo, hi, True, [333])
    for m in maps:
        m.close()


@needs_native
def test_native_merger_holds_its_buffers(tmp_path: Path) -> None:
    path = tmp_path / "run"
    path.write_bytes(framed({b"a": (b"1", 1), b"b": (b"2", 2)}))
    with path.open("rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    m = _runs.Merger([mm], None, None, False)
    with pytest.raises(BufferError):
        mm.close()  # the merger's export keeps the mapping
    assert mm in gc.get_referents(m)
    assert m.next(1) == ([b"a"], [b"1"], [])
    del m
    mm.close()


@needs_native
def test_native_merger_arguments() -> None:
    buf = framed({b"a": (b"1", 1)})
    with pytest.raises(TypeError):
        _runs.Merger([buf], "a", None, False)
    with pytest.raises(TypeError):
        _runs.Merger([buf], None, bytearray(b"b"), False)
    with pytest.raises(TypeError):
        _runs.Merger([buf, 5], None, None, False)
    with pytest.raises(TypeError):
        _runs.Merger(None, None, None, False)
    m = _runs.Merger(runs=(buf,), lo=None, hi=None, keep_last=0)
    assert m.next(limit=2**70) == ([b"a"], [b"1"], [])
    with pytest.raises(AttributeError):
        m.counts = {}  # type: ignore[misc]


# ------------------------------------------------------------------------------ corrupt runs
def corruptions() -> list[tuple[str, bytes]]:
    """Broken variants of a valid run of 1,100 records."""
    records = generated_records(1100, 9, key_len=20, value_len=30)
    data = framed(records)
    records_end, count, index_keys, offsets = read_index(data)
    size = len(data)
    end = size - FOOTER.size

    def with_footer(**change: int | bytes) -> bytes:
        fields = dict(
            zip(
                ("records_end", "count", "entries", "every", "magic"),
                FOOTER.unpack_from(data, end),
                strict=True,
            )
        )
        fields.update(change)
        return data[:end] + FOOTER.pack(*fields.values())

    def patched(at: int, new: bytes) -> bytes:
        return data[:at] + new + data[at + len(new) :]

    second_index = records_end + 12 + len(index_keys[0])
    out = [
        ("empty", b""),
        ("footer only, cut", data[-FOOTER.size + 1 :]),
        ("wrong magic", data[:-8] + b"IDNRUN02"),
        ("wrong index step", with_footer(every=256)),
        ("records end past the index", with_footer(records_end=end + 1)),
        ("count without its index", with_footer(count=count + INDEX_EVERY)),
        ("entries without their count", with_footer(entries=4)),
        ("index offset at records_end", patched(second_index, struct.pack("<Q", records_end))),
        ("index offset far out", patched(second_index, struct.pack("<Q", 2**64 - 1))),
        ("index key past the footer", patched(second_index + 8, struct.pack("<I", 10_000))),
        ("index shorter than its footer says", data[:records_end] + data[records_end + 1 :]),
        ("a byte between index and footer", data[:end] + b"\x00" + data[end:]),
        ("first key length too long", patched(0, struct.pack("<I", records_end))),
        (
            "last value length too long",
            patched(offsets[-1] + 4 + len(index_keys[-1]), struct.pack("<I", 2**32 - 1)),
        ),
    ]
    # a record near the end whose value runs past records_end
    last_key = max(records)
    last_at = records_end - 8 - len(records[last_key][0]) - 4
    out.append(("final value too long", patched(last_at, struct.pack("<I", len(records[last_key][0]) + 1))))
    # records_end that cuts the last record short (the index still fits)
    out.append(("records end mid-record", data[: records_end - 3] + data[records_end:end]
                + FOOTER.pack(records_end - 3, count, len(offsets), INDEX_EVERY, MAGIC)))  # fmt: skip
    for cut in (1, 7, 39, 40, 41, 100, size // 2, size - 1):
        out.append((f"cut {cut} from the end", data[: size - cut]))
    return out


CORRUPTIONS = corruptions()


@pytest.mark.parametrize("merger", mergers())
@pytest.mark.parametrize(("name", "bad"), CORRUPTIONS, ids=[name for name, _ in CORRUPTIONS])
def test_corrupt_runs_raise_value_error(merger: Any, name: str, bad: bytes) -> None:
    good = framed(generated_records(50, 1, key_len=20, value_len=30))
    for bufs in ([bad], [good, bad], [bad, good]):
        with pytest.raises(ValueError):
            drain(merger(bufs, None, None, False), [37])


@needs_native
@pytest.mark.parametrize(("name", "bad"), CORRUPTIONS, ids=[name for name, _ in CORRUPTIONS])
def test_corrupt_runs_fail_alike(name: str, bad: bytes, tmp_path: Path) -> None:
    """Both twins fail at the same point, with the same answers before it, bytes or mmap."""
    good = framed(generated_records(50, 1, key_len=20, value_len=30))
    for bufs in ([bad], [good, bad], [bad, good]):
        python = outcome(lambda bufs=bufs: PyMerger(bufs, None, None, True), [37])
        assert python[1] is not None
        assert outcome(lambda bufs=bufs: _runs.Merger(bufs, None, None, True), [37]) == python
    if bad:
        path = tmp_path / "bad"
        path.write_bytes(bad)
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            got = outcome(lambda: _runs.Merger([mm], None, None, False), [37])
            assert got == outcome(lambda: PyMerger([mm], None, None, False), [37])
            assert got[1] is not None


@needs_native
def test_native_errors_are_run_corrupt_and_repeat() -> None:
    with pytest.raises(runs.RunCorrupt):
        _runs.Merger([b"x" * 39], None, None, False)
    records = {b"a": (b"1", 1), b"b": (b"2", 2), b"c": (b"3", 3)}
    data = bytearray(framed(records))
    data[4 + 1 + 4 + 1 + 8 : 4 + 1 + 4 + 1 + 8 + 4] = struct.pack("<I", 999)  # the second key
    m = _runs.Merger([bytes(data)], None, None, False)
    for _ in range(3):
        with pytest.raises(runs.RunCorrupt, match="cut short"):
            m.next(5)
    assert m.counts == {}


def flipped(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in flips:
        out[at % len(out)] = value
    return bytes(out)


@needs_native
@PROPS
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 2),
    st.sampled_from([None, b"", b"a", b"b/", b"\xff"]),
    st.booleans(),
)
def test_random_damage_gives_the_same_outcome(
    flips: list[tuple[int, int]], victim: int, lo: bytes | None, keep_last: bool
) -> None:
    """Bytes changed anywhere in one of three runs (lengths, keys, index, footer): the twins give
    the same answers and fail (or not) at the same call."""
    run_records = [
        {b"a": (b"0", 0), b"a/b": (b"1", 1), b"b": (b"2", 2), b"c/d": (b"3", 3)},
        {b"a": (b"4", 4), b"b/": (b"5", 5), b"c/d": (b"", 6)},
        {b"": (b"7", 7), b"b": (b"8", 8), b"zz": (b"9" * 20, 9)},
    ]
    bufs = [framed(r) for r in run_records]
    bufs[victim] = flipped(bufs[victim], flips)
    python = outcome(lambda: PyMerger(bufs, lo, None, keep_last), [2])
    assert outcome(lambda: _runs.Merger(bufs, lo, None, keep_last), [2]) == python


# -- packed run files (runs.write_run) ----------------------------------------------------------
def packed_records(seed: int, n: int) -> Records:
    """``n`` records whose values are long and alike (as real records are), so a run spans many
    BLOCKs and compresses."""
    rng = random.Random(seed)
    words = [b"product", b"batch", b"https://example.com/p/", b"2026-11-29", b"\xe4\xba\xa7\xe5\x93\x81"]
    return {
        b"88.118.%d/SN-%08d" % (rng.randrange(20), rng.randrange(10**8)): (
            b"|".join(rng.choice(words) + b"%d" % rng.randrange(1000) for _ in range(rng.randrange(1, 60))),
            row,
        )
        for row in range(n)
    }


@PROPS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 1200),
    cuts=st.lists(st.integers(0, 2**40), min_size=2, max_size=2),
)
@example(seed=1, n=1200, cuts=[runs.BLOCK - 1, runs.BLOCK + 1])
@example(seed=1, n=1200, cuts=[runs.BLOCK, 2 * runs.BLOCK])
@example(seed=1, n=0, cuts=[0, 0])
def test_packed_run_reads_back_as_the_unpacked_bytes(
    tmp_path_factory: Any, seed: int, n: int, cuts: list[int]
) -> None:
    """Any byte range of a packed run's records reads back as the unpacked run's same bytes, and
    the index, footer and size it reports are the unpacked run's."""
    data = framed(packed_records(seed, n))
    path = tmp_path_factory.mktemp("packed") / "r.run"
    runs.write_run(str(path), data)
    records_end = read_index(data)[0]
    tail, size = runs.tail_bytes(str(path))
    assert size == len(data) and tail == data[records_end:]
    assert runs.index_entries(str(path)) == FOOTER.unpack(data[-FOOTER.size :])[2]
    start, end = sorted(c % (records_end + 1) for c in cuts)
    assert runs.RangeReader().read(str(path), start, end) == data[start:end]


def test_one_range_reader_serves_many_runs_and_sees_a_rewritten_one(tmp_path: Path) -> None:
    """A RangeReader keeps each file's layout between reads: ranges of several runs, read in any
    order, are the unpacked runs' bytes; a run file written anew (another size) is read anew."""
    datas = [framed(packed_records(seed, 1500)) for seed in (11, 12)]
    paths = [str(tmp_path / f"r{i}.run") for i in range(2)]
    for path, data in zip(paths, datas, strict=True):
        runs.write_run(path, data)
    reader = runs.RangeReader()
    rng = random.Random(5)
    for _ in range(40):
        i = rng.randrange(2)
        end = read_index(datas[i])[0]
        start, stop = sorted((rng.randrange(end + 1), rng.randrange(end + 1)))
        assert reader.read(paths[i], start, stop) == datas[i][start:stop]
    datas[0] = framed(packed_records(13, 700))
    runs.write_run(paths[0], datas[0])
    end = read_index(datas[0])[0]
    assert end > 3 * runs.BLOCK
    start = 2 * runs.BLOCK + 5  # in a block the old layout placed elsewhere
    assert reader.read(paths[0], start, end) == datas[0][start:end]


def test_packed_run_is_smaller_than_its_records(tmp_path: Path) -> None:
    data = framed(packed_records(7, 3000))
    path = tmp_path / "r.run"
    runs.write_run(str(path), data)
    assert read_index(data)[0] > 4 * runs.BLOCK  # several blocks
    assert path.stat().st_size < len(data) / 3


@pytest.mark.parametrize("damage", ["flip a block byte", "cut the file", "unpacked", "table", "out of range"])
def test_damaged_packed_run_raises_run_corrupt(tmp_path: Path, damage: str) -> None:
    data = framed(packed_records(3, 1000))
    records_end = read_index(data)[0]
    path = tmp_path / "r.run"
    runs.write_run(str(path), data)
    raw = bytearray(path.read_bytes())
    table_at = struct.unpack_from("<Q", raw, len(raw) - runs.TRAILER.size)[0]
    if damage == "flip a block byte":
        raw[table_at // 2] ^= 0x40  # inside a compressed block: its checksum or its format breaks
    elif damage == "cut the file":
        raw = raw[: len(raw) // 2]
    elif damage == "unpacked":
        raw = bytearray(data)
    elif damage == "table":
        struct.pack_into("<Q", raw, table_at + 8, 7)  # the second block's offset
    path.write_bytes(bytes(raw))
    start = runs.BLOCK if damage == "table" else 0  # a range that starts in the second block
    with pytest.raises(runs.RunCorrupt):
        runs.RangeReader().read(
            str(path), start, records_end if damage != "out of range" else records_end + 1
        )
