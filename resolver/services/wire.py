"""Hand-assembled protobuf framing for answers built from stored bytes without re-encoding.

A length-delimited field is ``tag, varint(len), payload``; a serialized sub-message is a valid
payload, so a response is the concatenation of stored record bytes under the right tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from registry import native
from registry.wire import SMALL_LIMIT, SMALL_VARINTS, TAG1, TAG2, TAG3, TAG4, field, varint

__all__ = [
    "SMALL_LIMIT",
    "SMALL_VARINTS",
    "TAG1",
    "TAG2",
    "TAG3",
    "TAG4",
    "batch_identifiers",
    "field",
    "fold_keys",
    "frame_results",
    "only_field1",
    "varint",
]


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


def py_fold_keys(raws: list[bytes]) -> list[bytes]:
    """Each identifier's storage key (:func:`registry.identifier.fold` of its UTF-8 bytes)."""
    return [raw.upper() for raw in raws]


def py_frame_results(
    raws: Sequence[bytes], found: Sequence[bytes | None], slow: Mapping[int, bytes]
) -> bytes:
    """The encoded ``repeated ResolveResult results = 1``: item i is ResolveResult{identifier =
    raws[i], record = found[i]} when found[i] is a record (non-empty bytes), else ``slow[i]``, an
    already framed field-1 item (an error status, a referral, a filtered answer)."""
    parts: list[bytes] = []
    extend = parts.extend
    for i, data in enumerate(found):
        if not data:
            parts.append(slow[i])
            continue
        raw = raws[i]
        # Framed flat (one join at the end, no intermediate bytes per item).
        n_raw, n_data = len(raw), len(data)
        v_raw = SMALL_VARINTS[n_raw] if n_raw < SMALL_LIMIT else varint(n_raw)
        v_data = SMALL_VARINTS[n_data] if n_data < SMALL_LIMIT else varint(n_data)
        inner = 2 + len(v_raw) + n_raw + len(v_data) + n_data
        extend(
            (
                TAG1,
                SMALL_VARINTS[inner] if inner < SMALL_LIMIT else varint(inner),
                TAG1,
                v_raw,
                raw,
                TAG2,
                v_data,
                data,
            )
        )
    return b"".join(parts)


def py_batch_identifiers(raw: bytes) -> list[bytes] | None:
    """Always None: without the native module, batch requests are parsed by protobuf."""
    return None


_native = native.load("resolver._hotpath")
batch_identifiers: Callable[[bytes], list[bytes] | None] = (
    _native.batch_identifiers if _native is not None else py_batch_identifiers
)
"""The identifiers' UTF-8 bytes of a serialized Batch/StreamResolveRequest holding nothing but
field 1; None means "parse it with protobuf" (other fields, malformed data, invalid UTF-8, or no
native module)."""
fold_keys: Callable[[list[bytes]], list[bytes]] = _native.fold_keys if _native is not None else py_fold_keys
frame_results: Callable[[Sequence[bytes], Sequence[bytes | None], Mapping[int, bytes]], bytes] = (
    _native.frame_results if _native is not None else py_frame_results
)
