"""Hand-assembled protobuf framing for answers built from stored bytes without re-encoding.

A length-delimited field is ``tag, varint(len), payload``; a serialized sub-message is a valid
payload, so a response is the concatenation of stored record bytes under the right tags.
"""

from __future__ import annotations


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


SMALL_LIMIT = 1 << 14
SMALL_VARINTS = tuple(varint(n) for n in range(SMALL_LIMIT))
"""Pre-encoded varints of 0..16383 (every length below 16 KiB: one tuple index instead of a call)."""


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` is the pre-computed key byte, e.g. b"\\n" for field 1."""
    n = len(payload)
    return tag + (SMALL_VARINTS[n] if n < SMALL_LIMIT else varint(n)) + payload


TAG1 = b"\x0a"  # field 1, wire type 2
TAG2 = b"\x12"  # field 2, wire type 2
TAG3 = b"\x1a"  # field 3, wire type 2
TAG4 = b"\x22"  # field 4, wire type 2


def only_field1(raw: bytes) -> bytes | None:
    """The payload of a message whose *only* content is one length-delimited field 1 shorter than
    16 KiB, else None (the caller then parses the message in full).

    This is how a plain ``ResolveRequest{identifier}`` looks on the wire; reading it here avoids
    building a protobuf object and decoding the identifier to ``str`` on the hot path.
    """
    size = len(raw)
    if size < 2 or raw[0] != 0x0A:
        return None
    n = raw[1]
    if n < 0x80:
        return raw[2:] if n + 2 == size else None
    if size < 3 or raw[2] >= 0x80:
        return None
    n = (n & 0x7F) | (raw[2] << 7)
    return raw[3:] if n + 3 == size else None
