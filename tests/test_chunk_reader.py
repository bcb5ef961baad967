"""Cutting an input into chunks of whole rows (``registry.bulk.formats.ChunkReader``): whatever the
chunk size, compression or quoting, the chunks put back together are the input after its header,
each chunk holds whole rows only, and the offsets say where each chunk lies in the input."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import os
import tempfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import example, given, settings
from hypothesis import strategies as st

from registry.bulk.formats import Chunk, ChunkReader, Format, InputChanged, Source

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


# -- by reference: chunks that name their byte range in the file, read by whoever checks them --


def _by_reference(path: Path, fmt: Format, chunk_bytes: int, skip_to: int = 0) -> tuple[Source, list[Chunk]]:
    src = Source(str(path))
    reader = ChunkReader(src, fmt, chunk_bytes, by_reference=True)
    if skip_to:
        reader.skip_to(skip_to)
    return src, list(reader)


@PROPS
@given(
    rows=st.lists(row, max_size=30),
    line_end=st.sampled_from(["\n", "\r\n"]),
    chunk_bytes=st.integers(1, 200),
    final_line_end=st.booleans(),
    bom=st.booleans(),
    fmt=st.sampled_from([Format.CSV, Format.JSONL]),
    resume_at=st.integers(0, 40),
)
def test_chunks_by_reference_are_the_chunks_read_in_memory(
    rows: list[list[str]],
    line_end: str,
    chunk_bytes: int,
    final_line_end: bool,
    bom: bool,
    fmt: Format,
    resume_at: int,
) -> None:
    """Same seq, offsets and bytes as the in-memory reader, from the start and resumed at the end
    of any of its chunks; the reader's position is where its last chunk ended."""
    header = b"identifier,URL" + line_end.encode() if fmt is Format.CSV else b""
    body = _csv(rows, line_end)
    if not final_line_end:
        body = body.removesuffix(line_end.encode())
    data = (b"\xef\xbb\xbf" if bom else b"") + header + body
    _, expected = _chunks(data, fmt, chunk_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(data)
        src, chunks = _by_reference(path, fmt, chunk_bytes)
        try:
            assert all(c.data == b"" and c.path is not None for c in chunks)
            assert [(c.seq, c.start, c.end, c.read()) for c in chunks] == [
                (c.seq, c.start, c.end, c.data) for c in expected
            ]
        finally:
            src.close()
        if expected:
            resumed_from = expected[min(resume_at, len(expected) - 1)].end
            src, chunks = _by_reference(path, fmt, chunk_bytes, skip_to=resumed_from)
            try:
                rest = [c.data for c in expected if c.start >= resumed_from]
                assert [c.read() for c in chunks] == rest
            finally:
                src.close()


def test_a_chunk_by_reference_reads_the_file_it_was_cut_from(tmp_path: Path) -> None:
    """The workers read the file this process opened, even when the name now points elsewhere;
    a file cut short since is an error that says so, never a short chunk."""
    path = tmp_path / "in.csv"
    body = b"".join(b"88.118.8/SN-%05d,https://example.com/%d\n" % (i, i) for i in range(2000))
    path.write_bytes(b"identifier,URL\n" + body)
    src = Source(str(path))
    try:
        reader = ChunkReader(src, Format.CSV, 8192, by_reference=True)
        chunks = list(reader)
        assert len(chunks) > 3 and reader.position() == chunks[-1].end == len(b"identifier,URL\n") + len(body)
        os.rename(path, tmp_path / "moved.csv")
        path.write_bytes(b"identifier,URL\n88.118.8/OTHER,x\n")
        assert b"".join(c.read() for c in chunks) == body
        with open(tmp_path / "moved.csv", "r+b") as f:
            f.truncate(chunks[2].start + 10)
        assert chunks[1].read()
        with pytest.raises(InputChanged, match="changed while it was being imported"):
            chunks[2].read()
    finally:
        src.close()


@pytest.mark.parametrize("how", ["gzip", "zstd"])
def test_compressed_input_is_never_cut_by_reference(tmp_path: Path, how: str) -> None:
    """A compressed file's offsets are not the file's: its chunks carry their bytes."""
    body = b"".join(b"88.118.8/SN-%05d,x\n" % i for i in range(500))
    path = tmp_path / "in.csv"
    path.write_bytes(_compress(b"identifier,URL\n" + body, how))
    src, chunks = _by_reference(path, Format.CSV, 1000)
    src.close()
    assert all(c.path is None for c in chunks)
    assert b"".join(c.data for c in chunks) == body
