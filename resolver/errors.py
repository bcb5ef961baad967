"""The one table from domain errors to gRPC status codes, and the ``google.rpc.Status`` they become.

Every RPC error leaves the node through :func:`to_status` (via :func:`abort` or, for one item of
a batch, :func:`item_status`): a canonical code, a message, an ``ErrorInfo`` with a stable reason
in domain ``idnode``, and for bad input a ``BadRequest`` naming each field.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from registry.errors import (
    AlreadyExists,
    DeadlineExceeded,
    EtagMismatch,
    FailedPrecondition,
    IdnodeError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from registry.store import StoreFull, StoreUnavailable
from registry.wire import TAG1, TAG2, TAG3, field, varint

log = logging.getLogger("idnode.errors")

ERROR_DOMAIN = "idnode"

STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    EtagMismatch: grpc.StatusCode.ABORTED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,  # and EnterpriseSuspended, a subclass
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    StoreFull: grpc.StatusCode.RESOURCE_EXHAUSTED,  # before its base class, StoreUnavailable
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    IdnodeError: grpc.StatusCode.INTERNAL,
}
"""Domain error class -> status code. A subclass maps as its nearest listed ancestor."""


def status_code_of(exc: BaseException) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = STATUS_OF.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def describe(exc: BaseException) -> tuple[str, str, dict[str, str]]:
    """(message, reason, metadata) of ``exc`` as every protocol reports it. Errors that are not
    domain errors get a generic description that reveals nothing of the failure (callers log it)."""
    if isinstance(exc, IdnodeError):
        return exc.message, exc.reason, exc.metadata
    if isinstance(exc, StoreFull):
        return "the node's storage is full; the write was not applied", "STORE_FULL", {}
    if isinstance(exc, StoreUnavailable):
        return "the store is unavailable; retry later", "STORE_UNAVAILABLE", {}
    return "internal error", "INTERNAL", {}


def to_status(exc: Exception) -> status_pb2.Status:
    """The ``google.rpc.Status`` for ``exc``. Errors that are not domain errors become a generic
    INTERNAL whose message reveals nothing of the failure (it is logged instead)."""
    code = status_code_of(exc)
    message, reason, metadata = describe(exc)
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.append(
        _pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))
    )
    if isinstance(exc, InvalidArgument):
        bad = error_details_pb2.BadRequest()
        for v in exc.violations:
            bad.field_violations.add(field=v.field, description=v.description)
        status.details.append(_pack(bad))
    return status


def item_status(exc: Exception) -> status_pb2.Status:
    """The status of one failed item inside a batch or stream answer."""
    return to_status(exc)


_ERROR_INFO_TYPE_URL = field(TAG1, b"type.googleapis.com/google.rpc.ErrorInfo")
_DOMAIN = field(TAG2, ERROR_DOMAIN.encode())


def item_status_bytes(exc: Exception) -> bytes:
    """``item_status(exc).SerializeToString()``, assembled from bytes for the shape a batch
    repeats most (a NotFound per missing identifier): a domain error with at most one metadata
    entry and no BadRequest. Others are built by protobuf. tests/test_native.py checks the two
    give the same bytes."""
    if not isinstance(exc, IdnodeError) or isinstance(exc, InvalidArgument) or len(exc.metadata) > 1:
        return item_status(exc).SerializeToString()
    info = field(TAG1, exc.reason.encode()) + _DOMAIN
    for key, value in exc.metadata.items():
        info += field(TAG3, field(TAG1, key.encode()) + field(TAG2, value.encode()))
    code = status_code_of(exc).value[0]
    head = b"\x08" + varint(code) if code else b""
    message = field(TAG2, exc.message.encode()) if exc.message else b""
    return head + message + field(TAG3, _ERROR_INFO_TYPE_URL + field(TAG2, info))


def call_status(exc: Exception) -> grpc.Status:
    """What a call that failed with ``exc`` ends with: the code, the message, and
    :func:`to_status` in the ``grpc-status-details-bin`` trailer."""
    return rpc_status.to_status(to_status(exc))


def log_for_operators(exc: BaseException, *, internal: bool) -> None:
    """Log what the caller is not told and an operator must act on: a store whose disk or memory
    is full, and a failure the protocol answers as the server's own (``internal``: logged with its
    traceback)."""
    if isinstance(exc, StoreFull):
        log.error("a write was refused: %s", exc)
    elif internal:
        log.error("internal error", exc_info=exc)


def abort(context: grpc.ServicerContext, exc: Exception) -> NoReturn:
    """End the call with the status for ``exc``."""
    log_for_operators(exc, internal=status_code_of(exc) is grpc.StatusCode.INTERNAL)
    abort_with(context, call_status(exc))


def abort_with(context: grpc.ServicerContext, status: grpc.Status) -> NoReturn:
    """End the call with ``status``, one :func:`call_status` made (and a caller may have kept)."""
    context.abort_with_status(status)
    raise AssertionError("abort_with_status returned")  # pragma: no cover


NOT_FOUND_CODE = code_pb2.NOT_FOUND
