import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from registry.pb import record_pb2 as _record_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchChangesRequest(_message.Message):
    __slots__ = ("prefix", "after_sequence", "from_now")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FROM_NOW_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    after_sequence: int
    from_now: bool
    def __init__(self, prefix: _Optional[str] = ..., after_sequence: _Optional[int] = ..., from_now: _Optional[bool] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("sequence", "commit_time", "operation", "identifier", "enterprise", "record", "etag_before", "etag_after", "detail")
    class DetailEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    ENTERPRISE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ETAG_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ETAG_AFTER_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    commit_time: _timestamp_pb2.Timestamp
    operation: str
    identifier: str
    enterprise: str
    record: _record_pb2.Record
    etag_before: str
    etag_after: str
    detail: _containers.ScalarMap[str, str]
    def __init__(self, sequence: _Optional[int] = ..., commit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., operation: _Optional[str] = ..., identifier: _Optional[str] = ..., enterprise: _Optional[str] = ..., record: _Optional[_Union[_record_pb2.Record, _Mapping]] = ..., etag_before: _Optional[str] = ..., etag_after: _Optional[str] = ..., detail: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WatchChangesResponse(_message.Message):
    __slots__ = ("changes", "cursor")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    cursor: int
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., cursor: _Optional[int] = ...) -> None: ...
