"""Domain errors. Each carries a stable ``reason`` (the ErrorInfo reason on the wire) and, for bad
input, the field violations that name what was wrong. Adapters map the class to a status through
one table (``resolver.errors``); nothing here knows about gRPC."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: ``field`` is a path such as ``record.values[2].type``."""

    field: str
    description: str

    def under(self, parent: str) -> FieldViolation:
        """The same violation with ``parent`` prepended to the field path."""
        return FieldViolation(f"{parent}.{self.field}" if self.field else parent, self.description)


class IdnodeError(Exception):
    """Base of all domain errors.

    ``reason`` is an UPPER_SNAKE_CASE constant clients may branch on; ``metadata`` holds
    non-secret context (an identifier, a prefix) for ErrorInfo.
    """

    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(IdnodeError):
    """The request is malformed; ``violations`` lists every bad field found."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: Iterable[FieldViolation],
        *,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        if not self.violations:
            raise ValueError("InvalidArgument needs at least one violation")
        first = self.violations[0]
        text = message or (
            f"{first.field}: {first.description}"
            + (f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else "")
        )
        super().__init__(text, reason=reason)

    @classmethod
    def single(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        return cls([FieldViolation(field, description)], reason=reason)

    def under(self, parent: str) -> InvalidArgument:
        """The same error with every field path nested under ``parent``."""
        return InvalidArgument([v.under(parent) for v in self.violations], reason=self.reason)


class NotFound(IdnodeError):
    default_reason = "NOT_FOUND"


class AlreadyExists(IdnodeError):
    default_reason = "ALREADY_EXISTS"


class EtagMismatch(IdnodeError):
    """A write's etag precondition did not hold: the record changed since it was read."""

    default_reason = "ETAG_MISMATCH"


class FailedPrecondition(IdnodeError):
    default_reason = "FAILED_PRECONDITION"


class Unauthenticated(IdnodeError):
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(IdnodeError):
    default_reason = "PERMISSION_DENIED"


class EnterpriseSuspended(PermissionDenied):
    default_reason = "ENTERPRISE_SUSPENDED"


class Unavailable(IdnodeError):
    """A transient failure of a dependency; the same request may succeed later."""

    default_reason = "UNAVAILABLE"


class ResourceExhausted(IdnodeError):
    default_reason = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(IdnodeError):
    """Another node did not answer within the caller's deadline."""

    default_reason = "DEADLINE_EXCEEDED"
