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


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` is the pre-computed key byte, e.g. b"\\n" for field 1."""
    return tag + varint(len(payload)) + payload


TAG1 = b"\x0a"  # field 1, wire type 2
TAG2 = b"\x12"  # field 2, wire type 2
TAG3 = b"\x1a"  # field 3, wire type 2
