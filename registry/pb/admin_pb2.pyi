import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Enterprise(_message.Message):
    __slots__ = ("prefix", "display_name", "contact", "state", "create_time", "update_time", "credential_fingerprints", "identifier_count", "require_template")
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
    REQUIRE_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    display_name: str
    contact: str
    state: Enterprise.State
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    credential_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    identifier_count: int
    require_template: bool
    def __init__(self, prefix: _Optional[str] = ..., display_name: _Optional[str] = ..., contact: _Optional[str] = ..., state: _Optional[_Union[Enterprise.State, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., credential_fingerprints: _Optional[_Iterable[str]] = ..., identifier_count: _Optional[int] = ..., require_template: _Optional[bool] = ...) -> None: ...

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

class RemoveEnterpriseRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class RemoveEnterpriseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

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

class UpdateEnterpriseRequest(_message.Message):
    __slots__ = ("enterprise", "update_mask")
    ENTERPRISE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    enterprise: Enterprise
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, enterprise: _Optional[_Union[Enterprise, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class TemplateField(_message.Message):
    __slots__ = ("type", "index", "data_type", "required", "min_length", "max_length", "minimum", "maximum", "pattern", "enum_values", "display_name", "description")
    class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DATA_TYPE_UNSPECIFIED: _ClassVar[TemplateField.DataType]
        STRING: _ClassVar[TemplateField.DataType]
        INTEGER: _ClassVar[TemplateField.DataType]
        DECIMAL: _ClassVar[TemplateField.DataType]
        DATE: _ClassVar[TemplateField.DataType]
        DATETIME: _ClassVar[TemplateField.DataType]
        URL: _ClassVar[TemplateField.DataType]
        ENUMERATION: _ClassVar[TemplateField.DataType]
        GTIN: _ClassVar[TemplateField.DataType]
    DATA_TYPE_UNSPECIFIED: TemplateField.DataType
    STRING: TemplateField.DataType
    INTEGER: TemplateField.DataType
    DECIMAL: TemplateField.DataType
    DATE: TemplateField.DataType
    DATETIME: TemplateField.DataType
    URL: TemplateField.DataType
    ENUMERATION: TemplateField.DataType
    GTIN: TemplateField.DataType
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    ENUM_VALUES_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    type: str
    index: int
    data_type: TemplateField.DataType
    required: bool
    min_length: int
    max_length: int
    minimum: str
    maximum: str
    pattern: str
    enum_values: _containers.RepeatedScalarFieldContainer[str]
    display_name: str
    description: str
    def __init__(self, type: _Optional[str] = ..., index: _Optional[int] = ..., data_type: _Optional[_Union[TemplateField.DataType, str]] = ..., required: _Optional[bool] = ..., min_length: _Optional[int] = ..., max_length: _Optional[int] = ..., minimum: _Optional[str] = ..., maximum: _Optional[str] = ..., pattern: _Optional[str] = ..., enum_values: _Optional[_Iterable[str]] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("name", "version", "fields", "display_name", "description", "state", "create_time", "update_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Template.State]
        ACTIVE: _ClassVar[Template.State]
        DEPRECATED: _ClassVar[Template.State]
    STATE_UNSPECIFIED: Template.State
    ACTIVE: Template.State
    DEPRECATED: Template.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    fields: _containers.RepeatedCompositeFieldContainer[TemplateField]
    display_name: str
    description: str
    state: Template.State
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[TemplateField, _Mapping]]] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., state: _Optional[_Union[Template.State, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateTemplateRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "name", "active_only")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    name: str
    active_only: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., name: _Optional[str] = ..., active_only: _Optional[bool] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates", "next_page_token")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    next_page_token: str
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeprecateTemplateRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: str
    def __init__(self, template: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("sequence", "time", "operation", "actor_role", "actor_prefix", "actor_fingerprint", "origin", "identifier", "enterprise", "etag_before", "etag_after", "detail", "prev_hash", "hash")
    class DetailEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    ENTERPRISE_FIELD_NUMBER: _ClassVar[int]
    ETAG_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ETAG_AFTER_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    operation: str
    actor_role: str
    actor_prefix: str
    actor_fingerprint: str
    origin: str
    identifier: str
    enterprise: str
    etag_before: str
    etag_after: str
    detail: _containers.ScalarMap[str, str]
    prev_hash: str
    hash: str
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., operation: _Optional[str] = ..., actor_role: _Optional[str] = ..., actor_prefix: _Optional[str] = ..., actor_fingerprint: _Optional[str] = ..., origin: _Optional[str] = ..., identifier: _Optional[str] = ..., enterprise: _Optional[str] = ..., etag_before: _Optional[str] = ..., etag_after: _Optional[str] = ..., detail: _Optional[_Mapping[str, str]] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class ListAuditEntriesRequest(_message.Message):
    __slots__ = ("enterprise", "identifier", "start_time", "end_time", "page_size", "page_token")
    ENTERPRISE_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    enterprise: str
    identifier: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, enterprise: _Optional[str] = ..., identifier: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class VerifyAuditTrailRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditTrailResponse(_message.Message):
    __slots__ = ("ok", "entry_count", "head_sequence", "head_hash", "problem", "problem_sequence")
    OK_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    entry_count: int
    head_sequence: int
    head_hash: str
    problem: str
    problem_sequence: int
    def __init__(self, ok: _Optional[bool] = ..., entry_count: _Optional[int] = ..., head_sequence: _Optional[int] = ..., head_hash: _Optional[str] = ..., problem: _Optional[str] = ..., problem_sequence: _Optional[int] = ...) -> None: ...
