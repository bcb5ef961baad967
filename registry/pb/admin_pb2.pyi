import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Enterprise(_message.Message):
    __slots__ = ("prefix", "display_name", "contact", "state", "create_time", "update_time", "credential_fingerprints", "identifier_count")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Enterprise.State]
        ACTIVE: _ClassVar[Enterprise.State]
        SUSPENDED: _ClassVar[Enterprise.State]
    STATE_UNSPECIFIED: Enterprise.State
    ACTIVE: Enterprise.State
    SUSPENDED: Enterprise.State
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_COUNT_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    display_name: str
    contact: str
    state: Enterprise.State
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    credential_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    identifier_count: int
    def __init__(self, prefix: _Optional[str] = ..., display_name: _Optional[str] = ..., contact: _Optional[str] = ..., state: _Optional[_Union[Enterprise.State, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., credential_fingerprints: _Optional[_Iterable[str]] = ..., identifier_count: _Optional[int] = ...) -> None: ...

class CreateEnterpriseRequest(_message.Message):
    __slots__ = ("code", "display_name", "contact")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    code: str
    display_name: str
    contact: str
    def __init__(self, code: _Optional[str] = ..., display_name: _Optional[str] = ..., contact: _Optional[str] = ...) -> None: ...

class Credential(_message.Message):
    __slots__ = ("certificate_pem", "private_key_pem", "ca_certificate_pem")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: str
    private_key_pem: str
    ca_certificate_pem: str
    def __init__(self, certificate_pem: _Optional[str] = ..., private_key_pem: _Optional[str] = ..., ca_certificate_pem: _Optional[str] = ...) -> None: ...

class CreateEnterpriseResponse(_message.Message):
    __slots__ = ("enterprise", "credential")
    ENTERPRISE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    enterprise: Enterprise
    credential: Credential
    def __init__(self, enterprise: _Optional[_Union[Enterprise, _Mapping]] = ..., credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class GetEnterpriseRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class ListEnterprisesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEnterprisesResponse(_message.Message):
    __slots__ = ("enterprises", "next_page_token")
    ENTERPRISES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    enterprises: _containers.RepeatedCompositeFieldContainer[Enterprise]
    next_page_token: str
    def __init__(self, enterprises: _Optional[_Iterable[_Union[Enterprise, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SuspendEnterpriseRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class ResumeEnterpriseRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class GetNodeStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStats(_message.Message):
    __slots__ = ("node_prefix", "identifier_count", "identifier_count_by_enterprise", "enterprise_count", "uptime")
    class IdentifierCountByEnterpriseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_COUNT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_COUNT_BY_ENTERPRISE_FIELD_NUMBER: _ClassVar[int]
    ENTERPRISE_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    node_prefix: str
    identifier_count: int
    identifier_count_by_enterprise: _containers.ScalarMap[str, int]
    enterprise_count: int
    uptime: _duration_pb2.Duration
    def __init__(self, node_prefix: _Optional[str] = ..., identifier_count: _Optional[int] = ..., identifier_count_by_enterprise: _Optional[_Mapping[str, int]] = ..., enterprise_count: _Optional[int] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
