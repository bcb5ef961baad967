import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from registry.pb import admin_pb2 as _admin_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Route(_message.Message):
    __slots__ = ("prefix", "node_address", "node_id", "register_time", "registered_by")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTER_TIME_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_BY_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    node_address: str
    node_id: str
    register_time: _timestamp_pb2.Timestamp
    registered_by: str
    def __init__(self, prefix: _Optional[str] = ..., node_address: _Optional[str] = ..., node_id: _Optional[str] = ..., register_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., registered_by: _Optional[str] = ...) -> None: ...

class Referral(_message.Message):
    __slots__ = ("prefix", "node_address", "node_id")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    node_address: str
    node_id: str
    def __init__(self, prefix: _Optional[str] = ..., node_address: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class RegisterPrefixRequest(_message.Message):
    __slots__ = ("prefix", "node_address")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    node_address: str
    def __init__(self, prefix: _Optional[str] = ..., node_address: _Optional[str] = ...) -> None: ...

class WithdrawPrefixRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class WithdrawPrefixResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LookupRouteRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class AddNodeRouteRequest(_message.Message):
    __slots__ = ("prefix", "node_address", "node_id", "issue_credential")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUE_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    node_address: str
    node_id: str
    issue_credential: bool
    def __init__(self, prefix: _Optional[str] = ..., node_address: _Optional[str] = ..., node_id: _Optional[str] = ..., issue_credential: _Optional[bool] = ...) -> None: ...

class AddNodeRouteResponse(_message.Message):
    __slots__ = ("route", "credential")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    route: Route
    credential: _admin_pb2.Credential
    def __init__(self, route: _Optional[_Union[Route, _Mapping]] = ..., credential: _Optional[_Union[_admin_pb2.Credential, _Mapping]] = ...) -> None: ...

class RemoveRouteRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class RemoveRouteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRoutesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRoutesResponse(_message.Message):
    __slots__ = ("routes", "next_page_token")
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    next_page_token: str
    def __init__(self, routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
