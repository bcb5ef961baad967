"""Conversion between the core's value objects and their protobuf encoding.

A serialized ``idnode.v1.Record`` is the storage format and the wire format at once; the resolve
hot path moves those bytes without calling anything here. Only writes, filtered resolves and
management calls decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from registry import fastcodec, limits
from registry.model import Enterprise, EnterpriseState, Record, Value
from registry.pb import admin_pb2, record_pb2


def timestamp(ns: int) -> Timestamp:
    """A protobuf Timestamp for ``ns`` nanoseconds since the epoch."""
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def _ns(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000_000 + ts.nanos


def value_to_pb(value: Value) -> record_pb2.Value:
    pb = record_pb2.Value(index=value.index, type=value.type, ttl=value.ttl)
    if isinstance(value.data, bytes):
        pb.binary = value.data
    else:
        pb.text = value.data
    if value.timestamp_ns:
        pb.timestamp.CopyFrom(timestamp(value.timestamp_ns))
    return pb


def is_binary(pb: record_pb2.Value) -> bool:
    """Whether the value holds bytes (no data at all is empty text)."""
    return pb.WhichOneof("data") == "binary"


def value_ttl(pb: record_pb2.Value) -> int:
    """The value's TTL in seconds: unset is the default, 86400."""
    return pb.ttl if pb.HasField("ttl") else limits.DEFAULT_TTL_SECONDS


def time_ns(pb: Any, field: str) -> int:
    """The Timestamp ``field`` of message ``pb`` in nanoseconds; 0 when unset."""
    return _ns(getattr(pb, field)) if pb.HasField(field) else 0


def value_from_pb(pb: record_pb2.Value) -> Value:
    """Output-only and unset fields get their defaults (:func:`is_binary`, :func:`value_ttl`,
    :func:`time_ns`)."""
    return Value(
        pb.index, pb.type, pb.binary if is_binary(pb) else pb.text, value_ttl(pb), time_ns(pb, "timestamp")
    )


def record_to_pb(record: Record) -> record_pb2.Record:
    pb = record_pb2.Record(
        identifier=record.identifier, owner=record.owner, etag=record.etag, template=record.template
    )
    pb.values.extend(value_to_pb(v) for v in record.values)
    if record.create_time_ns:
        pb.create_time.CopyFrom(timestamp(record.create_time_ns))
    if record.update_time_ns:
        pb.update_time.CopyFrom(timestamp(record.update_time_ns))
    return pb


def record_from_pb(pb: record_pb2.Record) -> Record:
    return Record(
        identifier=pb.identifier,
        values=tuple(value_from_pb(v) for v in pb.values),
        owner=pb.owner,
        create_time_ns=time_ns(pb, "create_time"),
        update_time_ns=time_ns(pb, "update_time"),
        etag=pb.etag,
        template=pb.template,
    )


def encode_record(record: Record) -> bytes:
    """The stored (and answered) bytes of ``record``, whose values have passed validation: those of
    :func:`encode_record_pb`, built without protobuf objects (:mod:`registry.fastcodec`)."""
    return fastcodec.encode_record(record)


def encode_record_pb(record: Record) -> bytes:
    """The reference encoding: protobuf's deterministic serialization of ``record``."""
    return record_to_pb(record).SerializeToString(deterministic=True)


def decode_record(data: bytes) -> Record:
    return record_from_pb(record_pb2.Record.FromString(data))


def matching_values(
    pb: record_pb2.Record, types: Sequence[str], indexes: Sequence[int]
) -> list[record_pb2.Value]:
    """The values of ``pb`` whose type is in ``types`` (if any given) and whose index is in
    ``indexes`` (if any given): the one resolution filter (gRPC and Handle REST)."""
    type_set, index_set = set(types), set(indexes)
    return [
        v
        for v in pb.values
        if (not type_set or v.type in type_set) and (not index_set or v.index in index_set)
    ]


def filter_record_bytes(data: bytes, types: Sequence[str], indexes: Sequence[int]) -> bytes:
    """The stored record with only the values matching ``types`` (if any) and ``indexes`` (if any).

    With neither filter the input is returned as is.
    """
    if not types and not indexes:
        return data
    pb = record_pb2.Record.FromString(data)
    kept = matching_values(pb, types, indexes)
    del pb.values[:]
    pb.values.extend(kept)
    return pb.SerializeToString(deterministic=True)


def enterprise_to_pb(enterprise: Enterprise, identifier_count: int = 0) -> admin_pb2.Enterprise:
    pb = admin_pb2.Enterprise(
        prefix=enterprise.prefix,
        display_name=enterprise.display_name,
        contact=enterprise.contact,
        state=int(enterprise.state),
        identifier_count=identifier_count,
        require_template=enterprise.require_template,
    )
    pb.credential_fingerprints.extend(enterprise.fingerprints)
    if enterprise.create_time_ns:
        pb.create_time.CopyFrom(timestamp(enterprise.create_time_ns))
    if enterprise.update_time_ns:
        pb.update_time.CopyFrom(timestamp(enterprise.update_time_ns))
    return pb


def encode_enterprise(enterprise: Enterprise) -> bytes:
    return enterprise_to_pb(enterprise).SerializeToString(deterministic=True)


def decode_enterprise(data: bytes) -> Enterprise:
    pb = admin_pb2.Enterprise.FromString(data)
    return Enterprise(
        prefix=pb.prefix,
        display_name=pb.display_name,
        contact=pb.contact,
        state=EnterpriseState(pb.state),
        create_time_ns=_ns(pb.create_time),
        update_time_ns=_ns(pb.update_time),
        fingerprints=tuple(pb.credential_fingerprints),
        require_template=pb.require_template,
    )


def values_from_pb(values: Iterable[record_pb2.Value]) -> tuple[Value, ...]:
    return tuple(value_from_pb(v) for v in values)
