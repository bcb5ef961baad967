"""Immutable value objects of the core: values, records, enterprises, principals.

Times are integer nanoseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from registry import limits


@dataclass(frozen=True, slots=True)
class Value:
    """One typed value. ``data`` is text (``str``) or raw bytes; ``timestamp_ns`` 0 means "not yet
    stamped" (the node stamps it when it writes the value)."""

    index: int
    type: str
    data: str | bytes = ""
    ttl: int = limits.DEFAULT_TTL_SECONDS
    timestamp_ns: int = 0

    def stamped(self, timestamp_ns: int) -> Value:
        """This value with ``timestamp_ns`` (``dataclasses.replace``, without its per-call cost)."""
        return Value(self.index, self.type, self.data, self.ttl, timestamp_ns)

    def same_content(self, other: Value) -> bool:
        """Equal in everything but the timestamp."""
        return (self.index, self.type, self.data, self.ttl) == (
            other.index,
            other.type,
            other.data,
            other.ttl,
        )


@dataclass(frozen=True, slots=True)
class Record:
    """An identifier's record: its values plus node-maintained metadata."""

    identifier: str
    values: tuple[Value, ...] = ()
    owner: str = ""
    create_time_ns: int = 0
    update_time_ns: int = 0
    etag: str = ""
    template: str = ""
    """The industry data template (``name@version``) the record was registered against, or ""."""


class EnterpriseState(enum.IntEnum):
    """Mirrors ``idnode.v1.Enterprise.State``."""

    ACTIVE = 1
    SUSPENDED = 2


@dataclass(frozen=True, slots=True)
class Enterprise:
    """An enterprise and the prefix allocated to it. ``fingerprints`` are SHA-256 hex digests of the
    client certificates it may write with (public data; the node never holds the private keys)."""

    prefix: str
    display_name: str = ""
    contact: str = ""
    state: EnterpriseState = EnterpriseState.ACTIVE
    create_time_ns: int = 0
    update_time_ns: int = 0
    fingerprints: tuple[str, ...] = ()
    require_template: bool = False
    """Every identifier it registers must name a template (set by the administrator)."""

    @property
    def active(self) -> bool:
        return self.state is EnterpriseState.ACTIVE


class Role(enum.Enum):
    ADMIN = "admin"
    ENTERPRISE = "enterprise"
    NODE = "node"
    """A secondary node, towards the root: may only register and withdraw routes under its prefix."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by an adapter's authentication. ``prefix`` is the enterprise
    prefix for ``Role.ENTERPRISE`` and empty for the administrator."""

    role: Role
    prefix: str = ""
    fingerprint: str = field(default="", repr=False)

    @classmethod
    def admin(cls, fingerprint: str = "") -> Principal:
        return cls(Role.ADMIN, "", fingerprint)

    @classmethod
    def enterprise(cls, prefix: str, fingerprint: str = "") -> Principal:
        return cls(Role.ENTERPRISE, prefix, fingerprint)
