"""The encoder of ``idnode.v1.Record`` that every write uses (:func:`registry.codec.encode_record`
and bulk import): the bytes of protobuf's deterministic serialization
(:func:`registry.codec.encode_record_pb`, the reference), built with byte operations instead of
protobuf message objects. ``tests/test_bulk_roundtrip.py`` checks byte equality with the reference
on generated records, including binary, empty, non-ASCII and extreme values. Values must have
passed validation (indexes, TTLs and times in their protobuf ranges); nothing is checked here.

Wire facts used (proto3): implicit-presence scalars (``index``, ``type``, ``owner``, ``etag``,
Timestamp ``seconds``/``nanos``) are omitted when zero/empty; ``text``/``binary`` (a oneof) and
``ttl`` (``optional``) are always written because the codec always sets them; messages are
written only when the codec sets them (a timestamp when its nanoseconds are non-zero); fields go
in field-number order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from registry.model import Record, Value
from registry.wire import SMALL_LIMIT, SMALL_VARINTS, TAG1, TAG2, TAG3, TAG4, TAG5, TAG6, TAG7, varint64

_MEMO_MAX = 4096
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")
# Keys of the varint fields (wire type 0) this module writes.
_VARINT1 = b"\x08"  # Value.index, Timestamp.seconds
_VARINT2 = b"\x10"  # Timestamp.nanos
_VARINT5 = b"\x28"  # Value.ttl
_varint_memo: dict[int, bytes] = {}
_timestamp_memo: dict[int, bytes] = {}


def remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    """Keep ``value`` in ``memo``, emptied when it holds :data:`_MEMO_MAX` entries: what repeats
    now (an import's or a batch's one time, a file's TTLs) stays memoised however long the process
    runs, where a memo that stopped growing when full would hold a node's first 4,096 times forever
    and miss every later one."""
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


def _varint(n: int) -> bytes:
    if 0 <= n < SMALL_LIMIT:
        return SMALL_VARINTS[n]
    out = _varint_memo.get(n)
    if out is None:
        out = varint64(n)
        remember(_varint_memo, n, out)  # TTLs and the like repeat
    return out


def _timestamp(ns: int) -> bytes:
    """A length-prefixed Timestamp message (memoised: an import stamps one time on every value)."""
    out = _timestamp_memo.get(ns)
    if out is None:
        seconds, nanos = divmod(ns, 1_000_000_000)
        body = (_VARINT1 + varint64(seconds) if seconds else b"") + (
            _VARINT2 + varint64(nanos) if nanos else b""
        )
        out = _varint(len(body)) + body
        remember(_timestamp_memo, ns, out)
    return out


_type_memo: dict[str, bytes] = {}
_tail_memo: dict[tuple[int, int], bytes] = {}


def _type_field(value_type: str) -> bytes:
    out = _type_memo.get(value_type)
    if out is None:
        t = value_type.encode()
        out = TAG2 + _varint(len(t)) + t if t else b""
        remember(_type_memo, value_type, out)
    return out


def _tail(ttl: int, timestamp_ns: int) -> bytes:
    """The ``ttl`` and ``timestamp`` fields of a value (memoised: they repeat across a file)."""
    key = (ttl, timestamp_ns)
    out = _tail_memo.get(key)
    if out is None:
        out = _VARINT5 + _varint(ttl) + (TAG6 + _timestamp(timestamp_ns) if timestamp_ns else b"")
        remember(_tail_memo, key, out)
    return out


def encode_record(record: Record) -> bytes:
    """Byte-identical to ``registry.codec.encode_record_pb(record)``."""
    return encode_fields(
        record.identifier,
        record.values,
        record.owner,
        record.create_time_ns,
        record.update_time_ns,
        record.etag,
        record.template,
    )


def encode_fields(
    identifier: str,
    values: Sequence[Value],
    owner: str,
    create_time_ns: int,
    update_time_ns: int,
    etag: str,
    template: str = "",
) -> bytes:
    """``encode_record(Record(identifier, values, owner, create_time_ns, update_time_ns, etag,
    template))`` without building the Record."""
    varint = _varint
    table = SMALL_VARINTS
    type_memo = _type_memo
    tail_memo = _tail_memo
    ident = identifier.encode()
    parts = [TAG1, varint(len(ident)), ident] if ident else []
    for v in values:
        index = v.index
        head = _VARINT1 + (table[index] if 0 < index < SMALL_LIMIT else varint(index)) if index else b""
        typ = type_memo.get(v.type)
        if typ is None:
            typ = _type_field(v.type)
        data = v.data
        if isinstance(data, str):
            data = data.encode()
            tag = TAG3
        else:
            tag = TAG4
        tail = tail_memo.get((v.ttl, v.timestamp_ns))
        if tail is None:
            tail = _tail(v.ttl, v.timestamp_ns)
        n = len(data)
        body = b"".join((head, typ, tag, table[n] if n < SMALL_LIMIT else varint(n), data, tail))
        n = len(body)
        parts += (TAG2, table[n] if n < SMALL_LIMIT else varint(n), body)
    if owner:
        raw = owner.encode()
        parts += (TAG3, varint(len(raw)), raw)
    if create_time_ns:
        parts += (TAG4, _timestamp(create_time_ns))
    if update_time_ns:
        parts += (TAG5, _timestamp(update_time_ns))
    if etag:
        raw = etag.encode()
        parts += (TAG6, varint(len(raw)), raw)
    if template:
        raw = template.encode()
        parts += (TAG7, varint(len(raw)), raw)
    return b"".join(parts)
