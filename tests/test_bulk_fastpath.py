"""The CSV and JSON Lines fast paths (registry.bulk.chunks.CsvPlan, JsonPlan) against the full row
checker: for every row they take they make the very bytes, key and owner the full checker makes,
and they leave every row the full checker would reject to the full checker."""

from __future__ import annotations

import datetime
import functools
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import fastcodec
from registry.bulk import formats
from registry.bulk.chunks import CsvPlan, JsonPlan
from registry.bulk.formats import csv_values, json_row, parse_header, time_ns
from registry.bulk.rows import RowChecker, RowRules, etag_for
from registry.errors import IdnodeError, InvalidArgument
from registry.identifier import parse, prefix_length, prefix_problem, suffix_problem
from registry.model import Principal
from registry.rocks import RocksStore
from registry.store import Table
from tests.bulk_support import make_node

NOW = 1_722_000_000_123_456_789


def checker_for(db: Path, principal: Principal, create: bool = False, restore: bool = False) -> RowChecker:
    with RocksStore(db) as store:
        enterprises = dict(store.scan(Table.ENTERPRISES, b"", b"\xff" * 8, 1 << 30))
    return RowChecker(
        RowRules("88.118", enterprises, principal, NOW, 12345, create_enterprises=create, restore=restore)
    )


def full(checker: RowChecker, row: list[str], number: int, header: str) -> tuple[bytes, str, bytes] | str:
    columns = parse_header(header)
    try:
        values = csv_values(row[1:], columns, NOW)
        checked = checker.check(number, row[0], values, stamped=True)
    except IdnodeError as exc:
        return exc.reason
    return checked.key, checked.owner, checked.data


Encoded = tuple[bytes, str, bytes]


def taken_alike(
    fast: Callable[[Any, int], Encoded | None],
    full: Callable[[Any, int], Encoded | str],
    rows: list[tuple[int, Any]],
) -> list[tuple[int, Encoded]]:
    """The rows ``fast`` takes, with what it made, each checked equal to what ``full`` makes; the
    full checker decides every other row (and any reject is its own)."""
    taken = []
    for number, row in rows:
        expected = full(row, number)
        got = fast(row, number)
        if got is not None:
            assert got == expected, (row, expected)
            taken.append((number, got))
    return taken


CELLS = [
    "",
    "https://example.com/p/1",
    "螺栓 M8",
    "x" * 16384,
    "x" * 16385,
    "AAEC",
    "not base64!",
    " sp ",
    "é",
]
IDENTS = [
    "88.118.8/SN-1",
    "88.118.8.1/a/b.c",
    "88.118.9/螺栓M8-001",
    "88.118.8/ lead",
    "88.118.8/trail ",
    "88.118.8/",
    "88.118.8",
    "88.118.77/X",
    "99.1/X",
    "88.118.8/ctl\x07",
    "88.118.8/" + "y" * 250,
    "88..118/X",
    "88.118.8/zero\u200bwidth",
]


def test_fast_path_makes_the_full_checkers_bytes(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    header = "identifier,URL,2:product.batch,9:blob base64,4:note ttl=60"
    rng = random.Random(7)
    # create: 88.118.77 is an enterprise the import creates; its rows take the fast path too.
    for principal, create in (
        (Principal.admin(), False),
        (Principal.enterprise("88.118.8"), False),
        (Principal.admin(), True),
    ):
        checker = checker_for(db, principal, create)
        plan = CsvPlan(parse_header(header), checker)
        assert plan.usable
        rows = []
        for number in range(1, 3000):
            row = [rng.choice(IDENTS)] + [rng.choice(CELLS) for _ in range(4)]
            if rng.random() < 0.02:
                row.append("extra")
            rows.append((number, row))
        taken = taken_alike(plan.encode, functools.partial(full, checker, header=header), rows)
        assert len(taken) > 100
        assert any(got[1] == "88.118.77" for _, got in taken) == create
        assert ("88.118.77" in checker.missing) == create


def test_bad_column_sends_every_row_to_the_full_checker(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    checker = checker_for(db, Principal.admin())
    for header in ("identifier,1:URL,1:EMAIL", "identifier,0:URL", "identifier,URL ttl=99999999999"):
        assert not CsvPlan(parse_header(header), checker).usable


def test_prefix_length_is_the_grammar() -> None:
    rng = random.Random(3)
    alphabet = ["a", "Z", "0", ".", "/", " ", "\x00", "é", "\u200b", "\n", "螺", "x" * 31, "y" * 33]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        prefix, slash, suffix = text.partition("/")
        ok = bool(text) and len(text) <= 255 and bool(slash)
        ok = ok and prefix_problem(prefix) is None and suffix_problem(suffix) is None
        assert bool(prefix_length(text)) == ok, repr(text)
        if ok:
            assert parse(text).prefix == prefix


def full_json(checker: RowChecker, line: str, number: int) -> tuple[bytes, str, bytes] | str:
    try:
        identifier, values, meta = json_row(line)
        checked = checker.check(number, identifier, values, meta)
    except IdnodeError as exc:
        return exc.reason
    return checked.key, checked.owner, checked.data


TIMES: list[Any] = [
    "2024-07-26T13:20:00Z",
    "2024-07-26T13:20:00.123456789Z",
    "2024-07-26T13:20:00.5Z",
    "2024-07-26T21:20:00+08:00",
    "1970-01-01T00:00:00Z",  # zero: as if absent
    "2024-02-30T00:00:00Z",
    "yesterday",
    5,
    None,
]
JSON_TYPES = ["URL", "product.batch", "EMAIL", "HS_ADMIN", "", "bad type!", 7]
JSON_DATA: list[Any] = [
    *CELLS,
    {"binary": "AAEC"},
    {"binary": "not base64!"},
    {"binary": ""},
    {"binary": "AAEC", "x": 1},
    {"binary": 5},
    None,
    5,
    ["x"],
]


def json_line(rng: random.Random) -> str:
    """A JSON Lines row, mostly of the plain shape, sometimes not (extra or odd keys, bad types,
    metadata, binary or empty data, a surrogate escape, not an object, not JSON)."""
    values = []
    for _ in range(rng.randrange(0, 5)):
        odd = rng.random() < 0.15
        item: dict[str, Any] = {
            "index": rng.choice([0, -1, True] if odd else [1, 2, 3, 4, 100]),
            "type": rng.choice(JSON_TYPES if odd else JSON_TYPES[:2]),
        }
        item["data"] = rng.choice(JSON_DATA) if rng.random() < 0.3 else rng.choice(CELLS[1:3])
        if rng.random() < 0.5:
            item["ttl"] = rng.choice([86400, 60, 0, -5, 2**40, "60", False])
        if rng.random() < 0.3:
            item["timestamp"] = rng.choice(TIMES)
        if rng.random() < 0.05:
            del item[rng.choice(["index", "type", "data"])]
        values.append(item)
    doc: dict[str, Any] = {"identifier": rng.choice([*IDENTS, 5]), "values": values}
    if rng.random() < 0.4:  # as an export writes them, now and then wrong
        doc["owner"] = rng.choice(["88.118.8", "88.118.9", "", 3])
        for name in ("create_time", "update_time"):
            if rng.random() < 0.8:
                doc[name] = rng.choice(TIMES)
        if rng.random() < 0.8:
            doc["etag"] = rng.choice(["00000000000000ff", "e", "", 7, "螺"])
    if rng.random() < 0.05:
        doc[rng.choice(["etag", "create_time", "note"])] = "x"
    if rng.random() < 0.03:
        doc = rng.choice([{"values": values}, {"identifier": doc["identifier"], "values": {}}])
    line = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
    roll = rng.random()
    if roll < 0.02:
        line = line.replace('"x', '"\\ud800x', 1)
    elif roll < 0.04:
        line = rng.choice(["[1, 2]", "not json", line[:-1]])
    return line


def test_json_fast_path_makes_the_full_checkers_bytes(tmp_path: Path) -> None:
    db = make_node(tmp_path / "db")
    rng = random.Random(11)
    for principal, create, restore in (
        (Principal.admin(), False, True),
        (Principal.enterprise("88.118.8"), False, False),
        (Principal.admin(), True, True),
    ):
        checker = checker_for(db, principal, create, restore)
        plan = JsonPlan(checker)
        rows = [(number, json_line(rng)) for number in range(1, 4000)]
        taken = taken_alike(plan.encode, functools.partial(full_json, checker), rows)
        assert len(taken) > 100
        assert any(got[1] == "88.118.77" for _, got in taken) == create
        assert ("88.118.77" in checker.missing) == create
        restored = sum(etag_for(12345, number).encode() not in got[2] for number, got in taken)
        assert (restored > 20) == restore, restored  # rows that kept their own etag


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 10**9))
def test_json_fast_path_never_disagrees_with_the_full_checker(seed: int, number: int) -> None:
    checker = RowChecker(RowRules("88.118", {}, Principal.admin(), NOW, 99, create_enterprises=True))
    plan = JsonPlan(checker)
    rng = random.Random(seed)
    for _ in range(5):
        line = json_line(rng)
        got = plan.encode(line, number)
        assert got is None or got == full_json(checker, line, number), line


def test_json_plans_are_bounded(tmp_path: Path) -> None:
    checker = checker_for(make_node(tmp_path / "db"), Principal.admin())
    plan = JsonPlan(checker)
    plan.MAX_SHAPES = 3
    rows = [
        json.dumps({"identifier": "88.118.8/A", "values": [{"index": i, "type": "URL", "data": "u"}]})
        for i in range(1, 6)
    ]
    got = [plan.encode(row, n) for n, row in enumerate(rows, start=1)]
    assert [g is not None for g in got] == [True, True, True, False, False]
    assert got[0] == full_json(checker, rows[0], 1)


def protobuf_ns(text: str) -> int | None:
    ts = Timestamp()
    try:
        ts.FromJsonString(text)
    except ValueError:
        return None
    return ts.seconds * 1_000_000_000 + ts.nanos


def our_ns(text: str) -> int | None:
    try:
        return time_ns(text, "t")
    except InvalidArgument:
        return None


@given(
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59)),
    st.one_of(st.none(), st.text("0123456789", max_size=11)),
    st.sampled_from(["Z", "z", "+08:00", "-05:30", "", "Zx"]),
)
def test_times_read_as_protobufs_json_mapping_reads_them(
    moment: datetime.datetime, fraction: str | None, zone: str
) -> None:
    """The shortcut for an export's times (UTC, Z, up to nine digits) agrees with protobuf's parser,
    and everything else still goes to it."""
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}" + ("" if fraction is None else "." + fraction) + zone
    assert our_ns(text) == protobuf_ns(text), text
    assert our_ns(text) == protobuf_ns(text), text  # read again: from the memo where it was good


@given(st.text("0123456789-:.TZtz+ ", max_size=32))
def test_time_like_noise_is_read_as_protobuf_reads_it(text: str) -> None:
    assert our_ns(text) == protobuf_ns(text), text
    assert our_ns(text) == protobuf_ns(text), text


def test_the_time_memo_is_bounded_and_keeps_memoising() -> None:
    """Emptied when full, not frozen: times read after 4,096 others are memoised too."""
    texts = [f"2024-01-01T00:00:00.{i:09d}Z" for i in range(2 * fastcodec._MEMO_MAX + 10)]
    assert [time_ns(t, "t") for t in texts] == [1_704_067_200_000_000_000 + i for i in range(len(texts))]
    assert len(formats._time_memo) <= fastcodec._MEMO_MAX
    assert formats._time_memo[texts[-1]] == 1_704_067_200_000_000_000 + len(texts) - 1


def test_impossible_times_are_errors() -> None:
    for text in (
        "2024-02-30T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "0000-01-01T00:00:00Z",
    ):
        assert our_ns(text) is None and protobuf_ns(text) is None, text
    assert our_ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
