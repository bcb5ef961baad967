"""Protobuf forms of the template, audit and change-feed value objects (adapter side: the core
keeps templates as JSON and audit entries as canonical JSON)."""

from __future__ import annotations

from registry.audit import AuditEntry, Change
from registry.codec import timestamp
from registry.pb import admin_pb2, changes_pb2, record_pb2
from registry.templates import DataType, Template, TemplateField, TemplateState

_DATA_TYPE_TO_PB = {t: admin_pb2.TemplateField.DataType.Value(t.name) for t in DataType}
_DATA_TYPE_FROM_PB = {v: k for k, v in _DATA_TYPE_TO_PB.items()}


def template_to_pb(t: Template) -> admin_pb2.Template:
    pb = admin_pb2.Template(
        name=t.name,
        version=t.version,
        display_name=t.display_name,
        description=t.description,
        state=int(t.state),
    )
    for f in t.fields:
        pb.fields.add(
            type=f.type,
            index=f.index,
            data_type=_DATA_TYPE_TO_PB[f.data_type],
            required=f.required,
            min_length=f.min_length,
            max_length=f.max_length,
            minimum=f.minimum,
            maximum=f.maximum,
            pattern=f.pattern,
            enum_values=f.enum_values,
            display_name=f.display_name,
            description=f.description,
        )
    if t.create_time_ns:
        pb.create_time.CopyFrom(timestamp(t.create_time_ns))
    if t.update_time_ns:
        pb.update_time.CopyFrom(timestamp(t.update_time_ns))
    return pb


def template_from_pb(pb: admin_pb2.Template) -> Template:
    """Input side: output-only fields (state, times) are ignored; an unspecified data type is a string."""
    return Template(
        name=pb.name,
        version=pb.version,
        display_name=pb.display_name,
        description=pb.description,
        state=TemplateState.ACTIVE,
        fields=tuple(
            TemplateField(
                type=f.type,
                index=f.index,
                data_type=_DATA_TYPE_FROM_PB.get(f.data_type, DataType.STRING),
                required=f.required,
                min_length=f.min_length,
                max_length=f.max_length,
                minimum=f.minimum,
                maximum=f.maximum,
                pattern=f.pattern,
                enum_values=tuple(f.enum_values),
                display_name=f.display_name,
                description=f.description,
            )
            for f in pb.fields
        ),
    )


def audit_entry_to_pb(e: AuditEntry) -> admin_pb2.AuditEntry:
    return admin_pb2.AuditEntry(
        sequence=e.sequence,
        time=timestamp(e.time_ns),
        operation=e.operation,
        actor_role=e.actor_role,
        actor_prefix=e.actor_prefix,
        actor_fingerprint=e.actor_fingerprint,
        origin=e.origin,
        identifier=e.identifier,
        enterprise=e.enterprise,
        etag_before=e.etag_before,
        etag_after=e.etag_after,
        detail=e.detail,
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def change_to_pb(c: Change) -> changes_pb2.Change:
    pb = changes_pb2.Change(
        sequence=c.sequence,
        commit_time=timestamp(c.time_ns),
        operation=c.operation,
        identifier=c.identifier,
        enterprise=c.enterprise,
        etag_before=c.etag_before,
        etag_after=c.etag_after,
        detail=c.detail,
    )
    if c.record is not None:
        pb.record.CopyFrom(record_pb2.Record.FromString(c.record))
    return pb
