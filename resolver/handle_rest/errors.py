"""The one table from domain errors to (HTTP status, Handle responseCode), and the JSON error body.

Every error reply of the Handle REST API leaves through :func:`error_reply`: Handle's status pair
for the error class (the nearest listed ancestor for a subclass), and a body
``{"responseCode", "handle", "message", "reason"[, "violations"]}``. The ``handle`` is always
there (pyhandle reads it from every reply, errors included).

Handle response codes used (Handle.Net v9 technical manual, section 14; protocol codes):
1 success, 2 server error, 3 server too busy, 5 operation not supported, 100 handle not found,
101 handle already exists, 102 invalid handle, 200 values not found, 201 value already exists,
202 invalid value, 301 server not responsible for the handle, 401 insufficient permissions,
402 authentication needed, 403 authentication failed.
"""

from __future__ import annotations

from typing import Any

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
from resolver.errors import describe, log_for_operators
from resolver.handle_rest.codec import dumps


class InvalidHandle(InvalidArgument):
    """The handle in the URL is not a well-formed identifier."""

    default_reason = "INVALID_HANDLE"


class ValuesNotFound(NotFound):
    """None of the values a DELETE (or a value-wise PUT) names exists."""

    default_reason = "VALUES_NOT_FOUND"


class ValueExists(AlreadyExists):
    """A value-wise PUT with ``overwrite=false`` names an index the handle already has."""

    default_reason = "VALUE_EXISTS"


class AuthenticationFailed(Unauthenticated):
    """Credentials were given but are wrong (bad password, unknown user, revoked certificate)."""

    default_reason = "AUTHENTICATION_FAILED"


class MethodNotAllowed(IdnodeError):
    """The method is not served at this path or on this listener."""

    default_reason = "METHOD_NOT_ALLOWED"


class BodyTooLarge(ResourceExhausted):
    default_reason = "BODY_TOO_LARGE"


PAIR_OF: dict[type[Exception], tuple[int, int]] = {
    InvalidHandle: (400, 102),
    InvalidArgument: (400, 202),
    ValuesNotFound: (400, 200),
    NotFound: (404, 100),
    ValueExists: (409, 201),
    AlreadyExists: (409, 101),
    EtagMismatch: (409, 2),
    FailedPrecondition: (400, 301),  # e.g. no enterprise owns the prefix: "not responsible"
    AuthenticationFailed: (401, 403),
    Unauthenticated: (401, 402),
    PermissionDenied: (403, 401),  # and EnterpriseSuspended, a subclass
    MethodNotAllowed: (405, 5),
    BodyTooLarge: (413, 2),
    ResourceExhausted: (503, 3),
    Unavailable: (503, 2),
    StoreFull: (507, 2),  # Insufficient Storage
    StoreUnavailable: (503, 2),
    DeadlineExceeded: (504, 2),  # e.g. a forwarded call ran out of time; Handle has no own code
    IdnodeError: (500, 2),
}
"""Domain error class -> (HTTP status, Handle responseCode). A subclass maps as its nearest
listed ancestor; anything else is (500, 2). Every class of :data:`resolver.errors.STATUS_OF` is
listed (a test checks it)."""


def pair_of(exc: BaseException) -> tuple[int, int]:
    for cls in type(exc).__mro__:
        pair = PAIR_OF.get(cls)
        if pair is not None:
            return pair
    return 500, 2


def error_doc(exc: BaseException, handle: str) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON document for ``exc``. Errors that are not domain errors become a
    generic server error whose message reveals nothing (they are logged instead)."""
    status, code = pair_of(exc)
    # Not every error the gRPC table leaves INTERNAL is the server's fault here (405, say).
    log_for_operators(exc, internal=not isinstance(exc, IdnodeError | StoreUnavailable))
    message, reason, _ = describe(exc)
    doc: dict[str, Any] = {"responseCode": code, "handle": handle, "message": message, "reason": reason}
    if isinstance(exc, InvalidArgument):
        doc["violations"] = [{"field": v.field, "description": v.description} for v in exc.violations]
    return status, doc


def error_reply(exc: BaseException, handle: str) -> tuple[int, bytes]:
    """HTTP status and encoded JSON body for ``exc`` (see :func:`error_doc`)."""
    status, doc = error_doc(exc, handle)
    return status, dumps(doc)
