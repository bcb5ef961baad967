"""Hand-assembled protobuf framing for answers built from stored bytes without re-encoding.

A length-delimited field is ``tag, varint(len), payload``; a serialized sub-message is a valid
payload, so a response is the concatenation of stored record bytes under the right tags.
"""

from __future__ import annotations

from registry.wire import SMALL_LIMIT, SMALL_VARINTS, TAG1, TAG2, TAG3, TAG4, varint

__all__ = ["SMALL_LIMIT", "SMALL_VARINTS", "TAG1", "TAG2", "TAG3", "TAG4", "field", "only_field1", "varint"]


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` is the pre-computed key byte, e.g. b"\\n" for field 1."""
    n = len(payload)
    return tag + (SMALL_VARINTS[n] if n < SMALL_LIMIT else varint(n)) + payload


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
