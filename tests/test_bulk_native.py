"""The C twin of the CSV fast path (``registry/bulk/_csvfast.c``) against the pure-Python path.

Every test builds the same chunk twice, with the extension and with ``chunks._csvfast`` set to None
(what ``IDNODE_NATIVE=0`` or a missing build gives; the extension is used even under
``IDNODE_NATIVE=0`` here), each with a fresh checker, and asserts the
ChunkResults are equal: keys, rows, owners, records (returned, or read back from the SST file),
rejects with their rows and reasons, counts and missing enterprises. The extension is imported
directly, so these tests fail when the build is missing.
"""

from __future__ import annotations

import contextlib
import random
import re
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rocksdict import Rdict

from registry.bulk import _csvfast, chunks, importer
from registry.bulk import runs as run_files
from registry.bulk.chunks import ChunkResult, Conflict, Settings, build_chunk
from registry.bulk.formats import Chunk, Format, parse_header
from registry.bulk.importer import KeyFilter
from registry.bulk.rows import RowChecker, RowRules
from registry.bulk.runs import read_index
from registry.model import Principal
from registry.native import enabled as native_enabled
from registry.rocks import RocksStore, sst_options
from registry.service import Registry
from registry.store import Table
from tests.bulk_support import gen_data, make_node

NOW = 1_722_000_000_123_456_789
NONCE = (1 << 64) - 7  # etag numbers wrap past 2**64 within the first rows
START = 4096
HEADER = "identifier," + ",".join(f"{i}:{t}" for i, t in gen_data().COLUMNS)
BINARY_HEADER = "identifier,URL,2:product.batch,9:blob base64,4:note ttl=60"


@pytest.fixture(scope="module")
def enterprises(tmp_path_factory: pytest.TempPathFactory) -> dict[bytes, bytes]:
    """A snapshot of a node with enterprises 88.118.1-21 (88.118.21 requires a template)."""
    db = make_node(tmp_path_factory.mktemp("node") / "db", tuple(str(i) for i in range(1, 22)))
    with RocksStore(db) as store:
        Registry(store).update_enterprise(Principal.admin(), "88.118.21", require_template=True)
        return dict(store.scan(Table.ENTERPRISES, b"", b"\xff" * 8, 1 << 30))


@contextlib.contextmanager
def using(native: bool) -> Iterator[None]:
    """Run with the extension (even under IDNODE_NATIVE=0) or with the pure-Python path."""
    saved = chunks._csvfast, importer._csvfast
    chunks._csvfast = importer._csvfast = _csvfast if native else None
    try:
        yield
    finally:
        chunks._csvfast, importer._csvfast = saved


def rules_for(
    enterprises: dict[bytes, bytes], principal: Principal | None = None, *, create: bool = False
) -> RowRules:
    return RowRules(
        "88.118", enterprises, principal or Principal.admin(), NOW, NONCE, create_enterprises=create
    )


def sst_items(path: str, scratch: Path) -> list[tuple[bytes, bytes]]:
    """The records of an SST file, read back through a scratch database."""
    db = Rdict(str(scratch), sst_options())
    try:
        db.ingest_external_file([path])
        return list(db.items())
    finally:
        db.close()
        Rdict.destroy(str(scratch))


def build(
    data: bytes,
    rules: RowRules,
    *,
    header: str = HEADER,
    conflict: Conflict = Conflict.FAIL,
    native: bool,
    sst_dir: Path | None = None,
    runs: bool = False,
) -> ChunkResult:
    """``build_chunk`` of ``data`` with a fresh checker, with or without the extension; an SST
    file's records are read back into ``values``, a run file's whole unpacked bytes into ``run``."""
    chunk = Chunk(3, START, START + len(data), data)
    if sst_dir is not None:
        sst_dir.mkdir(exist_ok=True)
    setup = Settings(
        rules, Format.CSV, tuple(parse_header(header)), conflict, str(sst_dir) if sst_dir else None, 1, runs
    )
    with using(native):
        result = build_chunk(chunk, setup, RowChecker(rules))
    if result.sst is not None:
        assert sst_dir is not None
        items = sst_items(result.sst, sst_dir / "read")
        assert [k for k, _ in items] == result.keys
        result = replace(result, values=[v for _, v in items], sst="written")
    if result.run is not None:
        tail, size = run_files.tail_bytes(result.run)
        result = replace(result, run=run_files.RangeReader().read(result.run, 0, size - len(tail)) + tail)  # type: ignore[arg-type]
    return result


def assert_same(data: bytes, rules: RowRules, tmp: Path | None = None, **kwargs: object) -> ChunkResult:
    """The chunk's result with the extension, asserted equal to the pure-Python one."""
    native = build(data, rules, native=True, sst_dir=tmp / "c" if tmp else None, **kwargs)  # type: ignore[arg-type]
    python = build(data, rules, native=False, sst_dir=tmp / "py" if tmp else None, **kwargs)  # type: ignore[arg-type]
    assert native == python
    return native


def generated(n: int, seed: int) -> list[list[str]]:
    """``n`` rows like bench/gen_data.py's (~8% Chinese identifiers), as cell lists."""
    return [[ident, *cells] for ident, cells in gen_data().generate(n, 20, seed)]


def csv_bytes(rows: list[list[str]]) -> bytes:
    return "".join(",".join(row) + "\n" for row in rows).encode()


BAD_IDENTS = [
    "88.118.1",  # no suffix
    "88.118.1/",
    "88.118.1/ lead",
    "88.118.1/trail ",
    "88.118.1/ctl\x07",
    "88.118.1/tab\there",
    "88.118.1/del\x7f",
    "88.118.1/zero\u200bwidth",  # a format character: not printable
    "88.118.1/nbsp\u00a0x",  # a separator other than the ASCII space
    "88.118.1/private\ue000",
    "88.118.1/" + "y" * 246,  # 255 characters: the longest
    "88.118.1/" + "y" * 247,  # 256
    "88.118.1/" + "螺" * 246,  # 255 characters, 747 bytes
    "88.118.1/" + "螺" * 247,
    "88..118/X",
    "88.118./X",
    ".88.118.1/X",
    "88.118.1x/X",  # no such enterprise
    "88.118.77/X",
    "99.1/X",
    "88.118.21/needs-template",
    "88.118.1.5/sub-prefix",
    "88.118.1." + "a" * 32 + "/ok",
    "88.118.1." + "a" * 33 + "/segment-too-long",
    "8" * 32 + "." + "8" * 31 + "/X",  # a 64-character prefix, unknown
    "8" * 32 + "." + "8" * 32 + "/X",  # 65
    "88.118.1/é-ü-螺栓-😀",
    "88.118.1/emoji-\U0001f600",
    "88.118.1/unassigned-\U000e0080",
    "88.118.1/with/slash.and.dot",
    "88.118.1/UPPER-lower",
    "88.118.1/upper-LOWER",
    "",
]


def mutated_rows(n: int, seed: int) -> list[list[str]]:
    """Generated rows, about a third of them broken or unusual in some way."""
    rng = random.Random(seed)
    rows = generated(n, seed)
    out: list[list[str]] = []
    for row in rows:
        kind = rng.random()
        row = list(row)
        if kind < 0.08:
            row[0] = rng.choice(BAD_IDENTS)
        elif kind < 0.12:
            row.append("extra")
        elif kind < 0.15:
            row.pop()
        elif kind < 0.18:
            row[rng.randrange(1, len(row))] = "x" * rng.choice((16383, 16384, 16385))
        elif kind < 0.20:
            row[1:] = ["z" * 16000] * (len(row) - 1)  # each value fits, the record does not
        elif kind < 0.25 and out:
            row[0] = rng.choice(out)[0]  # a duplicate key
        elif kind < 0.28 and out:
            row[0] = rng.choice(out)[0].swapcase()  # a duplicate under the case rule
        elif kind < 0.31:
            row[1:] = [""] * (len(row) - 1)  # no values at all
        elif kind < 0.34:
            row[2] = "螺栓 M8 国标 " * rng.randrange(1, 20)
        out.append(row)
    return out


def test_the_extension_is_built_and_used() -> None:
    assert chunks._csvfast is (_csvfast if native_enabled() else None)
    assert importer._csvfast is chunks._csvfast
    assert _csvfast.LIMITS == chunks._LIMITS  # else CsvPlan never uses it
    assert isinstance(_csvfast.Encoder, type)


def test_generated_rows_are_byte_identical(enterprises: dict[bytes, bytes], tmp_path: Path) -> None:
    rows = generated(3000, 11)
    result = assert_same(csv_bytes(rows), rules_for(enterprises), tmp_path)
    assert result.row_count == 3000 and len(result.keys) == 3000 and not result.rejects
    assert result.sst == "written"


def quoted_csv_bytes(rows: list[list[str]], line_end: str = "\n") -> bytes:
    """``rows`` as a spreadsheet or ERP system may write them: every cell quoted, commas in some."""
    return "".join(
        ",".join('"' + cell.replace('"', '""') + '"' for cell in row) + line_end for row in rows
    ).encode()


@pytest.mark.parametrize("line_end", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("quoting", ["none", "all"])
def test_only_the_first_row_of_each_prefix_goes_back_to_python(
    enterprises: dict[bytes, bytes], quoting: str, line_end: str
) -> None:
    """On clean input (Chinese identifiers included; every cell quoted, or none; Windows line ends
    or not) the C encoder takes every row but the one that makes each prefix's owner entry, and
    those with a quote escaped as "" in them."""
    rows = generated(3000, 5)
    if quoting == "all":
        rows = [[row[0], *(cell.replace(" ", ", ", 1) for cell in row[1:])] for row in rows]
    escaped = set()
    if quoting == "all":  # now and then a quote in the text, escaped as "": that row is Python's
        for n in range(7, len(rows), 97):
            rows[n][2] += '"'
            escaped.add(n + 1)
    checker = RowChecker(rules_for(enterprises))
    with using(True):
        plan = chunks.CsvPlan(parse_header(HEADER), checker)
    assert plan.native is not None
    data = (
        quoted_csv_bytes(rows, line_end)
        if quoting == "all"
        else csv_bytes(rows).replace(b"\n", line_end.encode())
    )
    assert _csvfast.usable(data)
    batch = plan.native.rows(data, START)
    handed_back = []
    while (got := batch.next()) is not None:
        number, line = got
        assert line == data.split(b"\n")[number - 1].removesuffix(b"\r")
        handed_back.append(number)
        assert plan.encode(rows[number - 1], START + number) is not None
    first_of_prefix: dict[str, int] = {}
    for n, row in enumerate(rows, start=1):
        first_of_prefix.setdefault(row[0].split("/")[0], n)
    assert handed_back == sorted(set(first_of_prefix.values()) | escaped)
    assert batch.count == 3000
    assert any(not row[0].isascii() for row in rows)


@pytest.mark.parametrize("conflict", list(Conflict))
@pytest.mark.parametrize("who", ["admin", "enterprise", "create"])
@pytest.mark.parametrize("runs", [False, True], ids=["records", "run"])
def test_mutated_rows_give_the_same_result(
    enterprises: dict[bytes, bytes], tmp_path: Path, conflict: Conflict, who: str, runs: bool
) -> None:
    """The same result with and without the extension. With ``runs`` the extension encodes the
    taken rows straight into the run file (``Rows.settle_run``): byte for byte the run the
    pure-Python path frames."""
    principal = Principal.enterprise("88.118.1") if who == "enterprise" else Principal.admin()
    rules = rules_for(enterprises, principal, create=who == "create")
    rows = mutated_rows(2500, 3)
    text = csv_bytes(rows)
    # blank lines count no row
    text = text.replace(b"\n", b"\n\n", 40)
    result = assert_same(text, rules, tmp_path, conflict=conflict, runs=runs)
    assert result.rejects and result.row_count == 2500
    if runs:
        assert result.run is not None and result.run_records > 50 and not result.keys
        assert read_index(result.run)[1] == result.run_records  # type: ignore[arg-type]
    else:
        assert result.keys and result.run is None
    if conflict is Conflict.FAIL:
        assert any(r.reason == "ALREADY_EXISTS" for r in result.rejects)
    elif conflict is Conflict.SKIP:
        assert result.skipped
    else:
        assert result.superseded
    if who == "create":
        assert result.missing


def test_values_returned_instead_of_an_sst(enterprises: dict[bytes, bytes]) -> None:
    result = assert_same(csv_bytes(mutated_rows(800, 9)), rules_for(enterprises))
    assert result.sst is None and result.values is not None and len(result.values) == len(result.keys)


def test_binary_columns(enterprises: dict[bytes, bytes], tmp_path: Path) -> None:
    rng = random.Random(4)
    rows = []
    for i in range(600):
        blob = rng.choice(["", "", "AAEC", "not base64!", "////"])
        rows.append(
            [f"88.118.{rng.randrange(1, 4)}/B-{i}", f"https://x/{i}", rng.choice(["", "B1"]), blob, "n"]
        )
    assert_same(csv_bytes(rows), rules_for(enterprises), tmp_path, header=BINARY_HEADER)


def test_unusable_plan_and_odd_chunks(enterprises: dict[bytes, bytes]) -> None:
    rules = rules_for(enterprises)
    rows = csv_bytes(generated(200, 2))
    # a column that breaks a value rule: every row goes to the full checker
    assert_same(rows, rules, header="identifier,1:URL,1:EMAIL,3:a,4:b,5:c,6:d,7:e,8:f")
    cut = rows.index(b"\n", 5000) + 1
    odd_cells = (
        b'"two\nlines"',
        b'"a"b',
        b'a"b',
        b"\r",
        b"\x00",
        b"\xff\xfe",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
    )
    for odd in odd_cells:
        data = rows[:cut] + b"88.118.1/odd," + odd + b",,,,,,,\n" + rows[cut:]
        assert not _csvfast.usable(data)
        assert_same(data, rules)
    quoted_rows = (
        b'88.118.1/q,"quoted, cell",,,,,,,',
        b'"88.118.1/quoted id","https://a",,,,,,,',
        b'"",,,,,,,,',
        b'"88.118.1/empty","",,,,,,,',
        b'88.118.1/inch,"M8 1/2"" bolt","""quoted"", then, not",,,,,,',  # Python's row, the rest C's
    )
    for quoted in quoted_rows:
        data = rows[:cut] + quoted + b"\n" + rows[cut:]
        assert _csvfast.usable(data)  # the C encoder's too
        assert_same(data, rules)
    assert_same(quoted_csv_bytes(generated(300, 4)), rules)
    assert_same(quoted_csv_bytes(generated(300, 4), "\r\n"), rules)
    assert_same(csv_bytes(generated(300, 4)).replace(b"\n", b"\r\n"), rules)
    assert_same(b"\r\n" + csv_bytes(generated(30, 4)).replace(b"\n", b"\r\n\r\n"), rules)  # blank lines
    assert_same(rows.rstrip(b"\n"), rules)  # the last row without its line end
    assert_same(b"", rules)
    assert_same(b"\n\n\n", rules)


# -- properties ------------------------------------------------------------------------------
IDENT_PIECES = [
    "88.118.1/",
    "88.118.2/",
    "88.118.1.7/",
    "88.118.21/",
    "88.118.99/",
    "88.118.3/",
    "a",
    "Z",
    "0",
    ".",
    "/",
    " ",
    "\t",
    "é",
    "螺栓",
    "\u200b",
    "\x85",
    "\U0001f600",
    "x" * 40,
]
identifiers = st.lists(st.sampled_from(IDENT_PIECES), min_size=1, max_size=6).map("".join)
plain_cells = st.text(
    st.characters(blacklist_characters=',\n\r"\x00', blacklist_categories=("Cs",)), max_size=8
)
cells = st.one_of(
    plain_cells,
    st.sampled_from(["", "x" * 16384, "x" * 16385]),
    # Quoted whole: taken by the C encoder; commas inside are text.
    st.text(st.characters(blacklist_characters='\n\r"\x00', blacklist_categories=("Cs",)), max_size=8).map(
        lambda t: f'"{t}"'
    ),
    st.sampled_from(['""', '"x" * 16384', '"' + "x" * 16384 + '"']),
    # Quoted otherwise (escaped quotes, text after the quote, a quote inside): the csv module's chunk.
    st.sampled_from(['"a""b"', '"a"b', 'a"b', '"', '"a\nb"']),
)
good_shape = st.tuples(identifiers, st.lists(cells, min_size=8, max_size=8)).map(
    lambda t: ",".join([t[0], *t[1]])
)
any_shape = st.lists(st.one_of(st.sampled_from([",", ",,,,,,,", "\n"]), identifiers, cells), max_size=12).map(
    "".join
)
lines = st.lists(st.one_of(good_shape, good_shape, any_shape), min_size=1, max_size=20)


@settings(max_examples=400, deadline=None)
@given(lines, st.sampled_from(list(Conflict)), st.booleans(), st.sampled_from(["\n", "\r\n"]))
@example(
    ["88.118.1/a,b,,,,,,,", "88.118.1/A,c,,,,,,,", "", "88.118.1/a,d,,,,,,,"], Conflict.REPLACE, True, "\n"
)
@example(["88.118.1/a,b,,,,,,,", "88.118.1/A,c,,,,,,,", "88.118.1/a,d,,,,,,,"], Conflict.FAIL, True, "\r\n")
@example(["88.118.1/a,b,,,,,,,", "88.118.1/A,c,,,,,,,", "88.118.1/a,d,,,,,,,"], Conflict.SKIP, False, "\n")
@example(['"88.118.1/a","b",,,,,,,', "", '"88.118.1/A",c,,,,,,,""'], Conflict.REPLACE, True, "\r\n")
def test_random_rows(
    enterprises: dict[bytes, bytes], lines: list[str], conflict: Conflict, runs: bool, line_end: str
) -> None:
    """The same result with and without the extension; with ``runs``, the same run file."""
    data = line_end.join(lines).encode()
    if runs:
        with tempfile.TemporaryDirectory() as tmp:
            assert_same(data, rules_for(enterprises), Path(tmp), conflict=conflict, runs=True)
    else:
        assert_same(data, rules_for(enterprises), conflict=conflict)


_SIMPLE_LINE = re.compile(r'(?:[^",\n]*|"(?:[^"\n]|"")*")(?:,(?:[^",\n]*|"(?:[^"\n]|"")*"))*')


def python_usable(data: bytes) -> bool:
    r"""Strict UTF-8 without NUL, CRs only in "\r\n" line ends, each line cells that are plain or
    quoted whole with any quote inside doubled: where csv.reader's rows are the lines."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return False
    if "\x00" in text:
        return False
    lines = text.split("\n")
    for k, line in enumerate(lines):
        if k < len(lines) - 1:
            line = line.removesuffix("\r")
        if "\r" in line or not _SIMPLE_LINE.fullmatch(line):
            return False
    return True


BYTE_PIECES = [
    b"a",
    b",",
    b"\n",
    b"\r\n",
    b'"a, b"',
    b'"',
    b"\r",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"\xe8\x9e\xba",
    b"\xe8\x9e",
    b"\xed\xa0\x80",
    b"\xef\xbf\xbf",
    b"\xf0\x9f\x98\x80",
    b"\xf4\x90\x80\x80",
    b"\xe0\x80\x80",
    b"0123456789abcdef",
]


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.lists(st.sampled_from(BYTE_PIECES), max_size=40).map(b"".join), st.binary(max_size=300)))
def test_usable_is_the_python_rule(data: bytes) -> None:
    assert _csvfast.usable(data) is python_usable(data)


# -- the key filter ----------------------------------------------------------------------------
def filter_results(native: bool, batches: list[list[bytes]]) -> tuple[list[list[int]], bytes]:
    with using(native):
        f = KeyFilter()
        return [f.test_and_add(keys) for keys in batches], bytes(f._bits)


def test_key_filter_in_c_is_the_python_filter() -> None:
    rng = random.Random(8)
    keys = [f"88.118.{rng.randrange(20)}/K{i}".encode() for i in range(20000)]
    batches = [keys[i : i + 5000] for i in range(0, 20000, 5000)] + [keys[100:300], keys[-50:]]
    native, python = filter_results(True, batches), filter_results(False, batches)
    assert native == python
    assert native[0][-2] == list(range(200)) and native[0][-1] == list(range(50))


# -- the C API's contract ------------------------------------------------------------------------
def encoder(enterprises: dict[bytes, bytes]) -> tuple[chunks.CsvPlan, object]:
    with using(True):
        plan = chunks.CsvPlan(parse_header(HEADER), RowChecker(rules_for(enterprises)))
    return plan, plan.native


def test_rows_contract(enterprises: dict[bytes, bytes]) -> None:
    plan, native = encoder(enterprises)
    data = csv_bytes(generated(50, 1))
    batch = native.rows(data, START)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        batch.settle([], 0)  # before the end
    handed_back = 0
    while (got := batch.next()) is not None:
        handed_back += 1
        assert plan.encode(got[1].decode().split(","), START + got[0]) is not None
    with pytest.raises(ValueError):
        batch.settle([], 3)  # refused before anything is done
    assert 0 < handed_back < 50
    assert len(batch.settle([], 0)[0]) == 50 - handed_back
    for again in (batch.next, lambda: batch.settle([], 0)):
        with pytest.raises(RuntimeError):
            again()  # once only
    batch = native.rows(data, START)  # type: ignore[attr-defined]
    while batch.next() is not None:
        pass
    with pytest.raises(TypeError):
        batch.settle([("not", "a", "row")], 0)
    for bad in ((1, START), (data,), (data, "x")):
        with pytest.raises(TypeError):
            native.rows(*bad)  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        _csvfast.usable("text")
    with pytest.raises((TypeError, ValueError)):
        _csvfast.Encoder(0, [], 0, {})
    with pytest.raises(ValueError):
        _csvfast.Encoder(2, [(5, b"", b"", False)], 0, {})
    with pytest.raises(ValueError):
        _csvfast.filter_test_and_add(bytearray(10), [b"x"])
    plan._owners["88.118.1.9"] = ("88.118.1", "not bytes")  # type: ignore[assignment]
    batch = native.rows(b"88.118.1.9/X,a,b,c,d,e,f,g,h\n", START)  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        batch.next()


def test_settle_merges_python_rows_by_key_then_row(enterprises: dict[bytes, bytes]) -> None:
    _, native = encoder(enterprises)
    batch = native.rows(b"", START)  # type: ignore[attr-defined]
    assert batch.next() is None and batch.count == 0
    extra = [(b"B", 1, "o", b"r1"), (b"A", 2, "o", b"r2"), (b"B", 3, "p", b"r3"), (b"A", 4, "o", b"r4")]
    for code, expected in (
        (0, ([b"A", b"B"], [2, 1], ["o", "o"], [b"r2", b"r1"], [(3, b"r3"), (4, b"r4")], 0, 0)),
        (1, ([b"A", b"B"], [2, 1], ["o", "o"], [b"r2", b"r1"], [], 0, 2)),
        (2, ([b"A", b"B"], [4, 3], ["o", "p"], [b"r4", b"r3"], [], 2, 0)),
    ):
        batch = native.rows(b"", START)  # type: ignore[attr-defined]
        assert batch.next() is None
        keys, rows, owners, values, dups, superseded, skipped = batch.settle(list(extra), code)
        dups = sorted(dups)
        assert (keys, rows, owners, values, dups, superseded, skipped) == expected
