"""Protobuf wire primitives for code that assembles messages from bytes instead of message
objects (:mod:`registry.fastcodec`, :mod:`resolver.services.wire`)."""

from __future__ import annotations

MASK64 = (1 << 64) - 1
"""A negative int64 is written as its 64-bit two's complement (a 10-byte varint)."""


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint64(n: int) -> bytes:
    """The varint of an int64 field: like :func:`varint`, negative values included."""
    return varint(n & MASK64)


SMALL_LIMIT = 1 << 14
SMALL_VARINTS = tuple(varint(n) for n in range(SMALL_LIMIT))
"""Pre-encoded varints of 0..16383 (every length below 16 KiB: one tuple index instead of a call)."""

# Keys of length-delimited fields (wire type 2): (field number << 3) | 2.
TAG1 = b"\x0a"
TAG2 = b"\x12"
TAG3 = b"\x1a"
TAG4 = b"\x22"
TAG5 = b"\x2a"
TAG6 = b"\x32"
TAG7 = b"\x3a"


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` is the pre-computed key byte, e.g. b"\\n" for field 1."""
    n = len(payload)
    return tag + (SMALL_VARINTS[n] if n < SMALL_LIMIT else varint(n)) + payload
