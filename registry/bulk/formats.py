"""The bulk file formats: CSV and JSON Lines, plain, gzip or zstd, read and written.

CSV
---
UTF-8 (a leading byte-order mark is ignored), RFC 4180 quoting, one record per row. The header row
names the columns: the first is ``identifier``, each further column holds one value and is named
``[INDEX:]TYPE[ ttl=SECONDS][ base64]``:

- ``TYPE`` is the value type (``URL``, ``EMAIL``, ``product.batch``...); types never contain white
  space, so the space-separated options after it are unambiguous;
- ``INDEX:`` gives the value's index; without it the index is the column's position among the value
  columns (the first value column is index 1);
- ``ttl=SECONDS`` sets the TTL of the column's values (default 86400);
- ``base64`` says the cells are base64 and the values binary.

An empty cell means "no value at this index" (so an empty text value cannot be written in CSV; use
JSON Lines for that). Example::

    identifier,URL,2:product.batch,3:product.name ttl=3600,9:HS_PUBKEY base64
    88.118.8/SN-000001,https://example.com/p/1,B2024-07,螺栓 M8,AAEC
    88.118.8/SN-000002,https://example.com/p/2,,Bolt M8,

JSON Lines
----------
One JSON object per line, the API's record shape::

    {"identifier": "88.118.8/SN-000001",
     "values": [{"index": 1, "type": "URL", "data": "https://example.com/p/1", "ttl": 86400},
                {"index": 9, "type": "HS_PUBKEY", "data": {"binary": "AAEC"}}]}

``ttl`` defaults to 86400 and ``data`` to empty text. Exports add the node-maintained fields
``owner``, ``create_time``, ``update_time``, ``etag`` and each value's ``timestamp`` (RFC 3339,
nanoseconds); an administrator's import keeps them (a restore), other imports ignore them.

Compression
-----------
Input is sniffed by its magic bytes (gzip ``1f 8b``, zstd ``28 b5 2f fd``), whatever its name;
output is compressed when the file name ends in ``.gz`` or ``.zst``. ``-`` is stdin / stdout.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import csv
import datetime
import enum
import functools
import gzip
import io
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard
from google.protobuf.timestamp_pb2 import Timestamp

from registry import codec, limits, native
from registry.errors import FailedPrecondition, InvalidArgument
from registry.fastcodec import remember
from registry.model import Value
from registry.pb import record_pb2

MALFORMED = "MALFORMED_ROW"
"""Reject reason of a row that cannot be decoded at all (bad UTF-8, JSON, CSV shape, base64)."""

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BOM = b"\xef\xbb\xbf"


class Format(enum.Enum):
    CSV = "csv"
    JSONL = "jsonl"


def guess_format(name: str) -> Format:
    """The format a file name implies (``x.csv``, ``x.csv.gz``, ``x.jsonl.zst``, ``x.ndjson``...).

    Raises ValueError when the name says nothing (stdin, or an unknown extension)."""
    base = name.lower()
    for ext in (".gz", ".gzip", ".zst", ".zstd"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    if base.endswith(".csv"):
        return Format.CSV
    if base.endswith((".jsonl", ".ndjson", ".json")):
        return Format.JSONL
    raise ValueError(f"cannot tell the format of {name!r}; say csv or jsonl")


def malformed(description: str, field: str = "row") -> InvalidArgument:
    return InvalidArgument.single(field, description, reason=MALFORMED)


# ------------------------------------------------------------------------------------------ input
class UnknownEncoding(FailedPrecondition):
    default_reason = "UNKNOWN_ENCODING"


def text_encoding(name: str | None) -> str | None:
    """The codec name of the text encoding ``name`` (None or any spelling of UTF-8: None, the bytes
    are UTF-8 already); :class:`UnknownEncoding` for one Python does not know."""
    if name is None:
        return None
    try:
        codec_name = codecs.lookup(name).name
    except LookupError:
        raise UnknownEncoding(f"unknown text encoding {name!r} (try utf-8, gb18030 or gbk)") from None
    return None if codec_name == "utf-8" else codec_name


class Source:
    """A readable input: ``-`` (stdin), a path, or an open binary file, decompressed if it is gzip
    or zstd, and transcoded to UTF-8 from ``encoding`` when one other than UTF-8 is given (GB 18030
    or GBK, as Chinese editions of Windows and Excel write text). ``read(n)`` returns those bytes;
    :meth:`position` / ``size`` report progress through the underlying (possibly compressed) file
    when it is seekable, else (0, None). :class:`UnknownEncoding` for an unknown ``encoding``."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, encoding: str | None = None) -> None:
        transcode_from = text_encoding(encoding)  # before any file is opened
        self._owned: BinaryIO | None = None
        if isinstance(source, str | os.PathLike):
            name = os.fspath(source)
            if name == "-":
                raw: BinaryIO = sys.stdin.buffer
                self.name = "-"
            else:
                raw = open(name, "rb")  # noqa: SIM115 - closed by close()
                self._owned = raw
                self.name = name
        else:
            raw = source
            self.name = getattr(source, "name", "<stream>")
        self._raw = raw
        self.size: int | None = None
        try:
            if raw.seekable():
                self.size = os.fstat(raw.fileno()).st_size
        except (OSError, ValueError, io.UnsupportedOperation):
            self.size = None
        buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
        head = buffered.peek(4)[:4]  # type: ignore[attr-defined]
        stream: IO[bytes]
        if head.startswith(_GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=buffered, mode="rb")
        elif head.startswith(_ZSTD_MAGIC):
            stream = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
        else:
            stream = buffered
        self._buffered = buffered
        self._decompressed = stream
        if transcode_from is not None:
            stream = _Transcoded(stream, transcode_from)  # type: ignore[assignment]
        self._stream = stream

    @property
    def compressed(self) -> bool:
        """Whether the input is gzip or zstd (``read`` decompresses it)."""
        return self._decompressed is not self._buffered

    @property
    def transcoded(self) -> bool:
        """Whether ``read`` transcodes the input to UTF-8 (its offsets are then not the file's)."""
        return self._stream is not self._decompressed

    def read(self, n: int) -> bytes:
        """Up to ``n`` decompressed bytes; fewer only at the end of the input."""
        first = self._stream.read(n)
        if len(first) >= n or not first:  # a file's whole request comes back at once: no copy
            return first
        pieces = [first]
        have = len(first)
        while have < n:
            piece = self._stream.read(n - have)
            if not piece:
                break
            pieces.append(piece)
            have += len(piece)
        return b"".join(pieces)

    def shared_path(self) -> str | None:
        """A path other processes can open to read this very input, when it is an uncompressed
        regular file opened here by name (None otherwise: stdin, a caller's stream, a pipe,
        compressed input). On Linux it is ``/proc/PID/fd/N`` of this process's open file, so a
        rename or replacement of the named file after it was opened changes nothing."""
        if self.compressed or self.transcoded or self._owned is None:
            return None
        try:
            fd = self._owned.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
        except (OSError, ValueError):
            return None
        proc = f"/proc/{os.getpid()}/fd/{fd}"
        return proc if os.path.exists(proc) else os.path.abspath(self.name)

    def position(self) -> int:
        """Bytes of the underlying file consumed so far (0 when unknown)."""
        try:
            return self._raw.tell() if self.size is not None else 0
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self.compressed:
            self._decompressed.close()
        if self._owned is not None:
            self._owned.close()


class _Transcoded(io.RawIOBase):
    """The text of ``stream`` in ``encoding``, read as UTF-8 bytes. Bytes ``encoding`` cannot
    decode come through as they were (surrogate escapes), so the rows holding them are rejected as
    not UTF-8 and the rest of the input is read. Closing it leaves ``stream`` open."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder(encoding)("surrogateescape")
        self._pending = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        """Up to ``n`` bytes (all that is left if ``n`` < 0); fewer only at the end."""
        while (n < 0 or len(self._pending) < n) and not self._ended:
            piece = self._stream.read(max(n - len(self._pending), 1 << 16) if n >= 0 else -1)
            self._ended = not piece
            text = self._decoder.decode(piece, final=self._ended)
            self._pending += text.encode("utf-8", "surrogateescape")
        if n < 0 or len(self._pending) <= n:
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:n], self._pending[n:]
        return out


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of whole rows. ``start`` is the decompressed byte offset of ``data`` in the input and
    ``end`` the offset just past it (where a resumed import starts reading). A chunk cut by
    reference (:class:`ChunkReader` with ``by_reference``) carries no ``data`` but the ``path``
    its bytes are read from, by whichever process checks it (:meth:`read`)."""

    seq: int
    start: int
    end: int
    data: bytes
    path: str | None = None

    def read(self) -> bytes:
        """The chunk's bytes: ``data``, or bytes ``start:end`` of the file at ``path`` (OSError;
        :class:`InputChanged` when the file no longer holds them all)."""
        if self.path is None:
            return self.data
        size = self.end - self.start
        with open(self.path, "rb", buffering=0) as f:
            data = os.pread(f.fileno(), size, self.start)
        if len(data) != size:
            raise InputChanged(
                f"the input changed while it was being imported: bytes {self.start}-{self.end} are "
                f"no longer all there (it ends at byte {self.start + len(data)}); import a file "
                "that is not being written to"
            )
        return data


class InputChanged(FailedPrecondition):
    """The input file no longer holds bytes an import has already cut into rows."""

    default_reason = "INPUT_CHANGED"


class ChunkReader:
    """Cuts an input into chunks of about ``chunk_bytes`` that end on a row boundary.

    For CSV a newline ends a row only outside quotes; since quote characters come in pairs inside a
    quoted field (``""`` escapes one), a newline ends a row exactly when the number of ``"`` before
    it is even. The CSV header, when present, is read first into :attr:`header`.
    """

    def __init__(
        self, source: Source, fmt: Format, chunk_bytes: int = 16 << 20, *, by_reference: bool = False
    ) -> None:
        """``by_reference``: where ``source`` can be read by other processes
        (:meth:`Source.shared_path`), yield chunks that name their byte range instead of holding
        it (:meth:`Chunk.read`); the cuts are found in a buffer reused from chunk to chunk, so
        this process neither keeps nor hands over the input's bytes. Elsewhere ignored."""
        self.source = source
        self.fmt = fmt
        self.chunk_bytes = chunk_bytes
        self.shared_path = source.shared_path() if by_reference else None
        self._buf = b""
        self._offset = 0  # decompressed offset of _buf[0]
        self._eof = False
        self.header: bytes = b""
        if fmt is Format.CSV:
            self.header = self._take_header()
            if self.header.startswith(_BOM):
                self.header = self.header[len(_BOM) :]
        else:
            self._fill(4)
            if self._buf.startswith(_BOM):
                self._buf = self._buf[len(_BOM) :]
                self._offset += len(_BOM)

    def _fill(self, want: int) -> None:
        """Read until ``_buf`` holds ``want`` bytes or the input ends, in one read where the input
        allows (the buffer is copied once, not once per piece)."""
        if len(self._buf) >= want or self._eof:
            return
        piece = self.source.read(max(want - len(self._buf), 1 << 20))
        if len(self._buf) + len(piece) < want:  # Source.read returns less only at the end
            self._eof = True
        self._buf = self._buf + piece if self._buf else piece

    def _cut(self, data: bytes | bytearray, end: int) -> int:
        """Length of the longest prefix of ``data[:end]`` made of whole rows (0 if none)."""
        if self.fmt is Format.JSONL:
            return data.rfind(b"\n", 0, end) + 1
        nl = data.rfind(b"\n", 0, end)
        if nl < 0:
            return 0
        if data.find(b'"', 0, nl) < 0:  # no quotes (the usual export): any newline ends a row
            return nl + 1
        quotes = data.count(b'"', 0, nl)
        while quotes % 2:
            prev = data.rfind(b"\n", 0, nl)
            if prev < 0:
                return 0
            quotes -= data.count(b'"', prev, nl)
            nl = prev
        return nl + 1

    def _first_row_end(self, data: bytes | bytearray) -> int:
        """Length of the first row of ``data`` with its line end (0 if it does not end in it)."""
        if self.fmt is Format.JSONL:
            return data.find(b"\n") + 1
        quotes = 0
        pos = 0
        while (nl := data.find(b"\n", pos)) >= 0:
            quotes += data.count(b'"', pos, nl)
            if quotes % 2 == 0:
                return nl + 1
            pos = nl + 1
        return 0

    def _take_header(self) -> bytes:
        """The first row (header) of the input, without its line end."""
        size = 1 << 16
        while True:
            self._fill(size)
            data = self._buf
            end = self._first_row_end(data)
            if end:
                self._buf = data[end:]
                self._offset += end
                return data[: end - 1].rstrip(b"\r")
            if self._eof:
                self._buf = b""
                self._offset += len(data)
                return data.rstrip(b"\r\n")
            size *= 2

    def position(self) -> int:
        """Bytes of the underlying file consumed so far (0 when unknown), for progress."""
        return self._offset if self.shared_path is not None else self.source.position()

    def skip_to(self, offset: int) -> None:
        """Discard input up to decompressed ``offset`` (a chunk ``end`` of an earlier run)."""
        if self.shared_path is not None:
            size = os.stat(self.shared_path).st_size
            if offset > size:
                raise ValueError(f"the input ends at byte {size}, before {offset}")
            self._buf = b""
            self._offset = max(offset, self._offset)
            return
        while self._offset + len(self._buf) < offset and not self._eof:
            self._offset += len(self._buf)
            self._buf = b""
            self._fill(min(offset - self._offset, 8 << 20))
        drop = offset - self._offset
        if drop > len(self._buf):
            raise ValueError(f"the input ends at byte {self._offset + len(self._buf)}, before {offset}")
        self._buf = self._buf[drop:]
        self._offset = offset

    def _next_cut(self, window: bytes | bytearray, size: int, ended: bool) -> int:
        """Where the next chunk ends in ``window[:size]``, the input from the next chunk's start
        (``ended``: the input ends there); 0 when more of the input must be read first. As many
        whole rows as fit in a chunk; a row longer than a chunk alone, once read to its end; the
        rest whole when the input ends within a chunk (its last row may lack its line end)."""
        cut = self._cut(window, min(size, self.chunk_bytes))
        if cut == 0:  # a row longer than a chunk
            cut = self._first_row_end(bytes(window[:size]) if size < len(window) else window)
        if cut == 0 and not ended:
            return 0
        if cut == 0 or (ended and size <= self.chunk_bytes):
            cut = size
        return cut

    def __iter__(self) -> Iterator[Chunk]:
        if self.shared_path is not None:
            yield from self._by_reference(self.shared_path)
            return
        seq = 0
        while True:
            # One byte more than a chunk: whether the rest of the input fits in this chunk is then
            # known, whatever was read before.
            self._fill(self.chunk_bytes + 1)
            if not self._buf:
                return
            cut = self._next_cut(self._buf, len(self._buf), self._eof)
            if cut == 0:
                self._fill(len(self._buf) * 2)
                continue
            data, self._buf = self._buf[:cut], self._buf[cut:]
            start = self._offset
            self._offset += cut
            yield Chunk(seq, start, self._offset, data)
            seq += 1

    def _by_reference(self, path: str) -> Iterator[Chunk]:
        """:meth:`__iter__` cutting the file at ``path`` from :attr:`_offset` on, reading each
        stretch into one reused buffer."""
        self._buf = b""
        with open(path, "rb", buffering=0) as f:
            fd = f.fileno()
            buf = bytearray(self.chunk_bytes + 1)  # one more: a short read is the end
            seq = 0
            while True:
                start = self._offset
                got = os.preadv(fd, [buf], start)
                if got == 0:
                    return
                cut = self._next_cut(buf, got, got < len(buf))
                if cut == 0:
                    buf = bytearray(len(buf) * 2)
                    continue
                self._offset = start + cut
                yield Chunk(seq, start, self._offset, b"", path)
                seq += 1
                if len(buf) > self.chunk_bytes + 1:
                    buf = bytearray(self.chunk_bytes + 1)


def decode_text(data: bytes) -> tuple[str, bool]:
    """``data`` as text, and whether it held invalid UTF-8 (then kept as surrogate escapes, which
    :func:`bad_utf8` finds in the affected rows only)."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape"), True


_SURROGATE = re.compile("[\udc80-\udcff]")
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")


def bad_utf8(cells: Sequence[str] | str) -> bool:
    if isinstance(cells, str):
        return _SURROGATE.search(cells) is not None
    return any(_SURROGATE.search(c) for c in cells)


# ------------------------------------------------------------------------------------------ CSV
@dataclass(frozen=True, slots=True)
class Column:
    """A CSV value column."""

    index: int
    type: str
    ttl: int = limits.DEFAULT_TTL_SECONDS
    binary: bool = False

    @property
    def header(self) -> str:
        text = f"{self.index}:{self.type}"
        if self.ttl != limits.DEFAULT_TTL_SECONDS:
            text += f" ttl={self.ttl}"
        if self.binary:
            text += " base64"
        return text


_INDEX = re.compile(r"(\d{1,10}):(.*)", re.S)


def parse_header(header: bytes | str) -> list[Column]:
    """The value columns named by a CSV header row; ValueError says what is wrong with it."""
    text = header.decode("utf-8") if isinstance(header, bytes) else header
    cells = next(csv.reader([text]), [])
    if not cells or cells[0].strip().lower() != "identifier":
        raise ValueError("the first CSV column must be named 'identifier'")
    columns = []
    for position, cell in enumerate(cells[1:], start=1):
        words = cell.split()
        if not words:
            raise ValueError(f"CSV column {position + 1} has no name; name it [INDEX:]TYPE")
        match = _INDEX.fullmatch(words[0])
        index, value_type = (int(match[1]), match[2]) if match else (position, words[0])
        ttl, binary = limits.DEFAULT_TTL_SECONDS, False
        for option in words[1:]:
            if option.lower() == "base64":
                binary = True
            elif option.lower().startswith("ttl=") and option[4:].isdigit():
                ttl = int(option[4:])
            else:
                raise ValueError(f"CSV column {position + 1} ({cell!r}): unknown option {option!r}")
        columns.append(Column(index, value_type, ttl, binary))
    return columns


def csv_rows(text: str) -> Iterator[list[str]]:
    """The rows of a chunk of CSV text (blank lines dropped), lazily."""
    return (row for row in csv.reader(io.StringIO(text, newline="")) if row)


# A quoted cell past the csv module's default limit (128 KiB) made csv.reader raise, which stopped
# the whole import ("error: Error: field larger than field limit (131072)"); such a cell is a row
# the checks reject (a value is at most 16 KiB), read like any other. The limit is the process's.
csv.field_size_limit(max(csv.field_size_limit(), (1 << 31) - 1))


_new = object.__new__
_set_index, _set_type, _set_data, _set_ttl, _set_timestamp = (
    Value.__dict__[name].__set__ for name in ("index", "type", "data", "ttl", "timestamp_ns")
)


def _value(index: int, value_type: str, data: str | bytes, ttl: int, timestamp_ns: int) -> Value:
    """``Value(index, value_type, data, ttl, timestamp_ns)`` at half the cost: the frozen
    dataclass's __init__ only assigns the slots, which this does directly."""
    value = _new(Value)
    _set_index(value, index)
    _set_type(value, value_type)
    _set_data(value, data)
    _set_ttl(value, ttl)
    _set_timestamp(value, timestamp_ns)
    return value


def csv_values(cells: Sequence[str], columns: Sequence[Column], timestamp_ns: int = 0) -> tuple[Value, ...]:
    """The values of one CSV row (without its identifier cell), stamped ``timestamp_ns``; empty
    cells are no value."""
    if len(cells) != len(columns):
        raise malformed(f"has {len(cells) + 1} columns, the header names {len(columns) + 1}")
    out = []
    for column, cell in zip(columns, cells, strict=True):
        if not cell:
            continue
        if column.binary:
            try:
                data: str | bytes = base64.b64decode(cell, validate=True)
            except (binascii.Error, ValueError):
                raise malformed("is not valid base64", f"values[{column.index}]") from None
        else:
            data = cell
        out.append(_value(column.index, column.type, data, column.ttl, timestamp_ns))
    return tuple(out)


ColumnKey = tuple[int, str, int, bool]
"""A CSV column as (index, type, TTL, binary)."""


_lines = native.load("registry.bulk._lines")


def lines_in_c() -> bool:
    """Whether :func:`csv_column_keys`, :func:`csv_lines` and :func:`json_lines` run in C here
    (``registry/bulk/_lines.c``)."""
    return _lines is not None


def csv_column_keys(encoded: list[bytes]) -> set[ColumnKey]:
    """The columns that hold every value of the encoded records ``encoded``. In C where it is
    built (:func:`lines_in_c`); the twin reads the protobuf messages without building
    :class:`Record` objects, which took most of an export's time (bench/README.md, "Session 8")."""
    if _lines is not None and (keys := _lines.column_keys(encoded)) is not None:
        return keys
    return {
        (v.index, v.type, codec.value_ttl(v), codec.is_binary(v))
        for data in encoded
        for v in record_pb2.Record.FromString(data).values
    }


def csv_columns(keys: Iterable[ColumnKey]) -> list[Column]:
    """The columns of ``keys`` in their order in a file: by index, type, TTL, then binary."""
    return [Column(*key) for key in sorted(set(keys))]


def csv_lines(encoded: list[bytes], column_of: dict[ColumnKey, int], width: int) -> bytes:
    """The UTF-8 CSV lines of the encoded records ``encoded`` (see :func:`csv_cells` and
    :func:`csv_line`), in C where it is built. ValueError if a value cannot be written in CSV."""
    if _lines is not None and (lines := _lines.csv_lines(encoded, column_of, width)) is not None:
        return lines
    return "".join(
        csv_line(csv_cells(record_pb2.Record.FromString(data), column_of, width)) for data in encoded
    ).encode()


_QUOTED = re.compile(r'[,"\r\n]')


def csv_line(cells: Sequence[str]) -> str:
    """``cells`` as one CSV line ending in LF: a cell holding a comma, a quote, a CR or an LF is
    quoted, its quotes doubled. Python's ``csv.writer`` (3.11) with LF line ends leaves a lone CR
    unquoted, and every CSV reader, this node's import included, then cuts the row there."""
    return ",".join('"' + c.replace('"', '""') + '"' if _QUOTED.search(c) else c for c in cells) + "\n"


def csv_cells(record: record_pb2.Record, column_of: dict[ColumnKey, int], width: int) -> list[str]:
    """One CSV row for the record message ``record``; ``column_of`` maps a column's (index, type,
    TTL, binary) to its position. ValueError if a value cannot be written in CSV: empty text, or a
    column ``column_of`` lacks (a value written after the export read the columns)."""
    cells = [""] * (width + 1)
    cells[0] = record.identifier
    for v in record.values:
        binary = codec.is_binary(v)
        position = column_of.get((v.index, v.type, codec.value_ttl(v), binary))
        if position is None:
            raise ValueError(
                f"{record.identifier} has a value in a column the header lacks (index {v.index}): "
                "it was written during the export; export again"
            )
        if binary:
            cells[position + 1] = base64.b64encode(v.binary).decode()
        elif not v.text:
            raise ValueError(f"{record.identifier} has an empty text value (index {v.index}); export JSONL")
        else:
            cells[position + 1] = v.text
    return cells


# ------------------------------------------------------------------------------------------ JSONL
@dataclass(frozen=True, slots=True)
class Meta:
    """Fields of an input row beside its identifier and values; zero / empty when absent: the
    node-maintained ones (kept by a restore) and the template the record names."""

    create_time_ns: int = 0
    update_time_ns: int = 0
    etag: str = ""
    timestamps: tuple[int, ...] = ()
    template: str = ""
    """``name@version`` the record was registered against (JSON Lines ``template``)."""

    @property
    def present(self) -> bool:
        """Whether the row carries node-maintained fields (a restore keeps them)."""
        return bool(self.create_time_ns or self.update_time_ns or self.etag or any(self.timestamps))


NO_META = Meta()


def time_ns(text: Any, field: str) -> int:
    """Nanoseconds since the epoch of the RFC 3339 time ``text``, as protobuf's JSON mapping reads
    it (``Timestamp.FromJsonString``); raises InvalidArgument naming ``field``. The shape an
    export writes (UTC, ``Z``, up to nine fraction digits) is read without protobuf's strptime,
    which took 43% of an import of exported rows (bench/README.md, "Session 10")."""
    if not isinstance(text, str):
        raise InvalidArgument.single(field, "must be an RFC 3339 time string")
    known = _time_memo.get(text)
    if known is not None:
        return known
    utc = _RFC3339_UTC.fullmatch(text)
    ns = None
    if utc is not None:
        seconds = _utc_seconds(utc.group(1))
        if seconds is not None:
            fraction = utc.group(2)
            ns = seconds * 1_000_000_000 + (int(fraction.ljust(9, "0")) if fraction else 0)
    if ns is None:
        ts = Timestamp()
        try:
            ts.FromJsonString(text)
        except ValueError:
            raise InvalidArgument.single(
                field, "must be an RFC 3339 time such as 2024-01-31T08:00:00Z"
            ) from None
        ns = ts.seconds * 1_000_000_000 + ts.nanos
    remember(_time_memo, text, ns)
    return ns


_time_memo: dict[str, int] = {}
"""Times read (exact text -> nanoseconds; bounded as :func:`registry.fastcodec.remember` bounds
its memos): an export's record carries the same time on every value and often on its neighbours
(a batch's one time), so most reads repeat."""


_RFC3339_UTC = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?Z")
_EPOCH = datetime.datetime(1970, 1, 1)


@functools.lru_cache(maxsize=4096)
def _utc_seconds(text: str) -> int | None:
    """Seconds since the epoch of ``YYYY-MM-DDTHH:MM:SS`` in UTC (None if no such moment, which
    protobuf's parser then reports). An export's rows share their seconds: each is worked out once."""
    try:
        moment = datetime.datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
        )
    except ValueError:
        return None
    delta = moment - _EPOCH
    return delta.days * 86400 + delta.seconds


def rfc3339(ns: int) -> str:
    """``ns`` nanoseconds since the epoch as RFC 3339 UTC with nine fraction digits."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return _utc_second(seconds) + f".{nanos:09d}Z"


@functools.lru_cache(maxsize=4096)
def _utc_second(seconds: int) -> str:
    """A record's times and its values' timestamps mostly share a second (one write stamps them
    all): an export formats each second once."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _lone_surrogate(doc: Any) -> bool:
    """Whether any string in ``doc`` holds a surrogate (json.loads joins valid pairs, so only
    unpaired ones remain)."""
    if isinstance(doc, str):
        return _ANY_SURROGATE.search(doc) is not None
    if isinstance(doc, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in doc.items())
    if isinstance(doc, list):
        return any(_lone_surrogate(v) for v in doc)
    return False


def json_row(line: str) -> tuple[str, tuple[Value, ...], Meta]:
    """Identifier text, values and metadata of one JSON Lines row; raises InvalidArgument
    (reason MALFORMED_ROW when the line is not a JSON object of the record shape)."""
    try:
        doc = json.loads(line)
        lone = "\\ud" in line.lower() and _lone_surrogate(doc)
    except ValueError as exc:
        raise malformed(f"is not valid JSON: {exc}") from None
    except RecursionError:  # arrays or objects nested ~1,000 deep: no record is
        raise malformed("is nested too deeply to be a record") from None
    if not isinstance(doc, dict):
        raise malformed("must be a JSON object")
    if lone:
        raise malformed("holds a lone surrogate escape (\\udXXX): not valid Unicode text")
    identifier = doc.get("identifier")
    if not isinstance(identifier, str):
        raise malformed("must have an 'identifier' string", "identifier")
    raw_values = doc.get("values", [])
    if not isinstance(raw_values, list):
        raise malformed("must be a list", "values")
    values = []
    stamps = []
    for i, item in enumerate(raw_values):
        at = f"values[{i}]"
        if not isinstance(item, dict):
            raise malformed("must be an object", at)
        index, value_type = item.get("index", 0), item.get("type", "")
        ttl = item.get("ttl", limits.DEFAULT_TTL_SECONDS)
        for name, got, want in (("index", index, int), ("ttl", ttl, int), ("type", value_type, str)):
            if not isinstance(got, want) or isinstance(got, bool):
                raise InvalidArgument.single(
                    f"{at}.{name}", f"must be a{'n integer' if want is int else ' string'}"
                )
        data = item.get("data", "")
        if isinstance(data, dict):
            encoded = data.get("binary")
            if not isinstance(encoded, str) or len(data) != 1:
                raise malformed('must be text or {"binary": "<base64>"}', f"{at}.data")
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise malformed("is not valid base64", f"{at}.data.binary") from None
        elif not isinstance(data, str):
            raise malformed('must be text or {"binary": "<base64>"}', f"{at}.data")
        values.append(Value(index, value_type, data, ttl))
        stamp = item.get("timestamp")
        stamps.append(time_ns(stamp, f"{at}.timestamp") if stamp is not None else 0)
    meta = NO_META
    if any(k in doc for k in ("create_time", "update_time", "etag", "template")) or any(stamps):
        etag, template = doc.get("etag", ""), doc.get("template", "")
        for name, text in (("etag", etag), ("template", template)):
            if not isinstance(text, str):
                raise InvalidArgument.single(name, "must be a string")
        meta = Meta(
            time_ns(doc["create_time"], "create_time") if "create_time" in doc else 0,
            time_ns(doc["update_time"], "update_time") if "update_time" in doc else 0,
            etag,
            tuple(stamps),
            template,
        )
    return identifier, tuple(values), meta


def decode_row(
    row: list[str] | str, fmt: Format, columns: Sequence[Column], dirty: bool, now_ns: int = 0
) -> tuple[str, tuple[Value, ...], Meta]:
    """(identifier, values, metadata) of one row; raises IdnodeError (MALFORMED_ROW...) for a row
    that cannot be decoded. The identifier of a CSV row is :func:`row_identifier`, even when
    the row is rejected."""
    if dirty and bad_utf8(row):
        raise malformed("is not valid UTF-8")
    if fmt is Format.CSV:
        return row[0], csv_values(row[1:], columns, now_ns), NO_META
    return json_row(row)  # type: ignore[arg-type]


def row_identifier(row: list[str] | str, fmt: Format) -> str:
    """The identifier a reject line names for a row that cannot be decoded."""
    return row[0] if fmt is Format.CSV and row else ""


def json_lines(encoded: list[bytes], metadata: bool = True) -> bytes:
    """The UTF-8 JSON Lines of the encoded records ``encoded`` (see :func:`json_line`), in C
    where it is built (:func:`lines_in_c`)."""
    if _lines is not None and (lines := _lines.json_lines(encoded, metadata)) is not None:
        return lines
    parse = record_pb2.Record.FromString
    return "".join(json_line(parse(data), metadata) + "\n" for data in encoded).encode()


def json_line(record: record_pb2.Record, metadata: bool = True) -> str:
    """One JSON Lines row for the record message ``record`` (with the node-maintained fields when
    ``metadata``). Reads the message as :func:`registry.codec.record_from_pb` would."""
    values = []
    for v in record.values:
        item: dict[str, Any] = {"index": v.index, "type": v.type}
        item["data"] = {"binary": base64.b64encode(v.binary).decode()} if codec.is_binary(v) else v.text
        item["ttl"] = codec.value_ttl(v)
        if metadata and (stamp := codec.time_ns(v, "timestamp")):
            item["timestamp"] = rfc3339(stamp)
        values.append(item)
    doc: dict[str, Any] = {"identifier": record.identifier, "values": values}
    if record.template:
        doc["template"] = record.template
    if metadata:
        doc["owner"] = record.owner
        if created := codec.time_ns(record, "create_time"):
            doc["create_time"] = rfc3339(created)
        if updated := codec.time_ns(record, "update_time"):
            doc["update_time"] = rfc3339(updated)
        doc["etag"] = record.etag
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------------------------------ output
OUTPUT_BUFFER = 1 << 20
"""Bytes an output file buffers (:func:`open_output`)."""


def open_output(dest: str | os.PathLike[str]) -> BinaryIO:
    """A binary writer for ``dest`` (``-`` is stdout, left open), compressing by its extension,
    buffering :data:`OUTPUT_BUFFER` bytes.

    Standard output gets a writer of its own over the descriptor, not ``sys.stdout.buffer``: given
    a 2.5 MB write, that one reported success after a partial write when the pipe's reader went
    away, so the export ended with status 0 and its output cut (measured with CPython 3.11.7: 69,632
    of 2,552,661 bytes written); a new ``BufferedWriter`` over the same descriptor raises
    ``BrokenPipeError`` (``tests/test_bulk_cli.py``)."""
    name = os.fspath(dest)
    if name == "-":
        sys.stdout.flush()
        stdout = io.FileIO(sys.stdout.fileno(), "wb", closefd=False)
        return io.BufferedWriter(stdout, buffer_size=OUTPUT_BUFFER)  # type: ignore[return-value]
    raw: BinaryIO = open(name, "wb", buffering=OUTPUT_BUFFER)  # noqa: SIM115 - the caller closes it
    lower = name.lower()
    if lower.endswith(_GZIP_SUFFIXES):
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=_GZIP_LEVEL)  # type: ignore[return-value]
    if lower.endswith(_ZSTD_SUFFIXES):
        return _ZstdWriter(raw)  # type: ignore[return-value]
    return raw


_GZIP_SUFFIXES = (".gz", ".gzip")
_ZSTD_SUFFIXES = (".zst", ".zstd")
_GZIP_LEVEL = 6
_ZSTD_LEVEL = 3


def compressor(dest: str | os.PathLike[str]) -> Callable[[bytes], bytes] | None:
    """What :func:`open_output` packs ``dest``'s bytes with, as a one-shot function (None: it
    writes them as they are)."""
    lower = os.fspath(dest).lower()
    if lower.endswith(_GZIP_SUFFIXES):
        return functools.partial(gzip.compress, compresslevel=_GZIP_LEVEL)
    if lower.endswith(_ZSTD_SUFFIXES):
        return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress
    return None


class _ZstdWriter(io.RawIOBase):
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._writer = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).stream_writer(raw, closefd=True)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self._writer.write(data)

    def close(self) -> None:
        if not self.closed:
            self._writer.flush(zstandard.FLUSH_FRAME)
            self._writer.close()
        super().close()


def source_identity(source: str | os.PathLike[str] | BinaryIO) -> str:
    """What identifies an input across runs, for resuming: path, size and mtime of a file."""
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        if name == "-":
            return "-"
        st = os.stat(name)
        return f"{Path(name).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return str(getattr(source, "name", "<stream>"))
