from google.rpc import status_pb2 as _status_pb2
from registry.pb import admin_pb2 as _admin_pb2
from registry.pb import hierarchy_pb2 as _hierarchy_pb2
from registry.pb import record_pb2 as _record_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetTemplateRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: str
    def __init__(self, template: _Optional[str] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("identifier", "types", "indexes", "recursive")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    types: _containers.RepeatedScalarFieldContainer[str]
    indexes: _containers.RepeatedScalarFieldContainer[int]
    recursive: bool
    def __init__(self, identifier: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., indexes: _Optional[_Iterable[int]] = ..., recursive: _Optional[bool] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("record", "referral")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    record: _record_pb2.Record
    referral: _hierarchy_pb2.Referral
    def __init__(self, record: _Optional[_Union[_record_pb2.Record, _Mapping]] = ..., referral: _Optional[_Union[_hierarchy_pb2.Referral, _Mapping]] = ...) -> None: ...

class BatchResolveRequest(_message.Message):
    __slots__ = ("identifiers", "types", "indexes", "recursive")
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    identifiers: _containers.RepeatedScalarFieldContainer[str]
    types: _containers.RepeatedScalarFieldContainer[str]
    indexes: _containers.RepeatedScalarFieldContainer[int]
    recursive: bool
    def __init__(self, identifiers: _Optional[_Iterable[str]] = ..., types: _Optional[_Iterable[str]] = ..., indexes: _Optional[_Iterable[int]] = ..., recursive: _Optional[bool] = ...) -> None: ...

class ResolveResult(_message.Message):
    __slots__ = ("identifier", "record", "error", "referral")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    record: _record_pb2.Record
    error: _status_pb2.Status
    referral: _hierarchy_pb2.Referral
    def __init__(self, identifier: _Optional[str] = ..., record: _Optional[_Union[_record_pb2.Record, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., referral: _Optional[_Union[_hierarchy_pb2.Referral, _Mapping]] = ...) -> None: ...

class BatchResolveResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ResolveResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ResolveResult, _Mapping]]] = ...) -> None: ...

class StreamResolveRequest(_message.Message):
    __slots__ = ("identifiers", "types", "indexes", "recursive")
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    identifiers: _containers.RepeatedScalarFieldContainer[str]
    types: _containers.RepeatedScalarFieldContainer[str]
    indexes: _containers.RepeatedScalarFieldContainer[int]
    recursive: bool
    def __init__(self, identifiers: _Optional[_Iterable[str]] = ..., types: _Optional[_Iterable[str]] = ..., indexes: _Optional[_Iterable[int]] = ..., recursive: _Optional[bool] = ...) -> None: ...

class StreamResolveResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ResolveResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ResolveResult, _Mapping]]] = ...) -> None: ...
