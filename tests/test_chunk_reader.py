"""Cutting an input into chunks of whole rows (``registry.bulk.formats.ChunkReader``): whatever the
chunk size, compression or quoting, the chunks put back together are the input after its header,
each chunk holds whole rows only, and the offsets say where each chunk lies in the input."""

from __future__ import annotations

import csv
import gzip
import io
import itertools

import zstandard
from hypothesis import example, given, settings
from hypothesis import strategies as st

from registry.bulk.formats import Chunk, ChunkReader, Format, Source

PROPS = settings(max_examples=300, deadline=None)

# Cells that need quoting now and then: quotes, commas, CR and LF inside a quoted field.
cell = st.text(alphabet=st.sampled_from(list('ab,"\r\n中')), max_size=6)
row = st.lists(cell, min_size=1, max_size=4)


def _csv(rows: list[list[str]], line_end: str) -> bytes:
    """RFC 4180 with ``line_end``: a cell holding a comma, quote, CR or LF is quoted."""

    def quoted(cell: str) -> str:
        return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\r\n') else cell

    return "".join(",".join(map(quoted, r)) + line_end for r in rows).encode()


def _compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data)
    if how == "zstd":  # small frames: the decompressor returns short reads at frame ends
        return b"".join(zstandard.ZstdCompressor().compress(data[i : i + 7]) for i in range(0, len(data), 7))
    return data


def _chunks(data: bytes, fmt: Format, chunk_bytes: int) -> tuple[ChunkReader, list[Chunk]]:
    reader = ChunkReader(Source(io.BytesIO(data)), fmt, chunk_bytes)
    return reader, list(reader)


def _row_ends(data: bytes) -> list[int]:
    """Where the rows of ``data`` end: just past each newline with an even number of quotes before
    it."""
    ends, quotes = [], 0
    for i, byte in enumerate(data):
        quotes += byte == ord('"')
        if byte == ord("\n") and quotes % 2 == 0:
            ends.append(i + 1)
    return ends


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


@PROPS
@given(
    rows=st.lists(row, max_size=30),
    line_end=st.sampled_from(["\n", "\r\n"]),
    chunk_bytes=st.integers(1, 200),
    how=st.sampled_from(["plain", "gzip", "zstd"]),
    final_line_end=st.booleans(),
)
@example(rows=[['"', "\n"], ["a"]], line_end="\n", chunk_bytes=3, how="plain", final_line_end=True)
def test_csv_chunks_are_whole_rows_that_rebuild_the_input(
    rows: list[list[str]], line_end: str, chunk_bytes: int, how: str, final_line_end: bool
) -> None:
    header = b"identifier,URL" + line_end.encode()
    body = _csv(rows, line_end)
    if not final_line_end:
        body = body.removesuffix(line_end.encode())
    reader, chunks = _chunks(_compress(header + body, how), Format.CSV, chunk_bytes)
    assert reader.header == b"identifier,URL"
    assert b"".join(c.data for c in chunks) == body
    offset = len(header)
    for seq, chunk in enumerate(chunks):
        assert (chunk.seq, chunk.start, chunk.end) == (seq, offset, offset + len(chunk.data))
        assert chunk.data
        offset = chunk.end
        # Whole rows: the rows of the chunks, one chunk at a time, are the rows of the body.
        assert chunk.data.count(b'"') % 2 == 0
        # More than chunk_bytes only for a row that alone is longer.
        assert len(chunk.data) <= chunk_bytes or len(_rows(chunk.data)) == 1
    # As many rows as fit: the next chunk's first row would not have.
    for chunk, after in itertools.pairwise(chunks):
        if len(chunk.data) <= chunk_bytes:
            first_row = (_row_ends(after.data) or [len(after.data)])[0]  # the last may lack its end
            assert len(chunk.data) + first_row > chunk_bytes
    assert [r for c in chunks for r in _rows(c.data)] == _rows(body)


@PROPS
@given(
    lines=st.lists(st.text(alphabet=st.sampled_from(list('ab"{}\r中')), max_size=8), max_size=20),
    chunk_bytes=st.integers(1, 100),
)
def test_jsonl_chunks_end_on_a_newline(lines: list[str], chunk_bytes: int) -> None:
    body = "".join(line + "\n" for line in lines).encode()
    _, chunks = _chunks(body, Format.JSONL, chunk_bytes)
    assert b"".join(c.data for c in chunks) == body
    assert all(c.data.endswith(b"\n") for c in chunks)
    # A chunk holds one line more than chunk_bytes allows only when that line alone is longer.
    for c in chunks:
        assert len(c.data) <= chunk_bytes or c.data.count(b"\n") == 1


def test_a_chunk_is_cut_at_the_last_row_end_that_fits() -> None:
    body = b"88.118.8/A,x\n88.118.8/B,y\n88.118.8/C,z\n"
    _, chunks = _chunks(b"identifier,URL\n" + body, Format.CSV, 30)
    assert [c.data for c in chunks] == [b"88.118.8/A,x\n88.118.8/B,y\n", b"88.118.8/C,z\n"]
