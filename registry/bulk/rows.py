"""One input row -> one validated, encoded record, by the same rules as the gRPC API.

Nothing here re-implements a rule: the identifier grammar is :func:`registry.identifier.parse`,
value rules are :func:`registry.validation.check_values` and :func:`check_record_size`, and who
may write what and who owns it is :meth:`registry.service.Registry.writer_owner`, run against a
read-only snapshot of the node's enterprises (so worker processes can apply it without the
database). Only the owner decision is memoised, per identifier prefix: it depends on nothing else. Records
are encoded by :mod:`registry.fastcodec` (as every write is: :func:`registry.codec.encode_record`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from registry.bulk.formats import NO_META, Meta
from registry.errors import FailedPrecondition, IdnodeError, InvalidArgument
from registry.fastcodec import encode_fields
from registry.identifier import fold, parse
from registry.model import Enterprise, Principal, Role, Value
from registry.service import META_NODE_PREFIX, Registry
from registry.store import Table, Txn
from registry.validation import check_record_size, check_values, value_violations
from registry.wire import MASK64


class SnapshotStore:
    """A read-only :class:`~registry.store.Store` holding the node prefix and a copy of the
    enterprises, for applying the owner rules where the database is not open (worker processes)."""

    def __init__(
        self, node_prefix: str, enterprises: dict[bytes, bytes], templates: dict[bytes, bytes] | None = None
    ) -> None:
        self._tables: dict[Table, dict[bytes, bytes]] = {
            Table.META: {META_NODE_PREFIX: node_prefix.encode()},
            Table.ENTERPRISES: dict(enterprises),
            Table.TEMPLATES: dict(templates or {}),
        }

    def get(self, table: Table, key: bytes) -> bytes | None:
        return self._tables.get(table, {}).get(key)

    def get_many(self, table: Table, keys: Sequence[bytes]) -> list[bytes | None]:
        return [self.get(table, k) for k in keys]

    def scan(self, table: Table, lower: bytes, upper: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        rows = sorted((k, v) for k, v in self._tables.get(table, {}).items() if lower <= k < upper)
        return rows[: max(limit, 0)]

    def commit(self, txn: Txn) -> None:
        raise FailedPrecondition("the enterprise snapshot of a bulk import is read-only")

    def counter(self, name: bytes) -> int:
        return 0

    def counters(self, prefix: bytes) -> dict[bytes, int]:
        return {}

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RowRules:
    """Everything a worker needs to check rows; picklable.

    ``enterprises`` maps case-folded prefix to encoded Enterprise (a snapshot of Table.ENTERPRISES).
    ``now_ns`` stamps every new record of the import; etags are ``nonce + row`` in hex, so a resumed
    import writes the very bytes the interrupted one would have. With ``create_enterprises`` an
    identifier under the node prefix whose enterprise does not exist yet is accepted and its would-be
    enterprise reported (the caller creates it before committing). ``restore`` keeps the times and
    etags an input row carries (administrator only)."""

    node_prefix: str
    enterprises: dict[bytes, bytes]
    principal: Principal
    now_ns: int
    nonce: int
    create_enterprises: bool = False
    restore: bool = False
    template: str = ""
    """``name@version`` every row that names none (a JSON Lines row's ``template``) is checked
    against and stored with (empty: none, and such a row of an enterprise that requires a template
    is rejected, as by the API)."""
    templates: dict[bytes, bytes] | None = None
    """A snapshot of Table.TEMPLATES (the import's template and those rows name)."""


@dataclass(frozen=True, slots=True)
class Checked:
    key: bytes
    owner: str
    data: bytes


class RowChecker:
    """Applies :class:`RowRules` to rows. Not thread-safe (memoises owners)."""

    def __init__(self, rules: RowRules) -> None:
        self.rules = rules
        self.registry = Registry(SnapshotStore(rules.node_prefix, rules.enterprises, rules.templates))  # type: ignore[arg-type]
        self._owners: dict[str, Enterprise | str | IdnodeError] = {}
        self.missing: set[str] = set()
        """Enterprise prefixes to create (``create_enterprises``) that rows checked so far need."""
        self.restores = rules.restore and rules.principal.role is Role.ADMIN
        """Whether rows' own times and etags are kept (``restore``, by the administrator)."""
        self._node_upper = rules.node_prefix.upper() + "."
        self.template = rules.template
        self.plan: Any = None
        """The CSV fast path of :mod:`registry.bulk.chunks`, made on first use."""

    def _owner(self, ident_prefix: str, text: str) -> str:
        """The owning enterprise's prefix for identifiers under ``ident_prefix``, or raise."""
        memo = self._owners.get(ident_prefix.upper())
        if memo is None:
            try:
                memo = self.registry.writer_owner(self.rules.principal, parse(text), "identifier")
            except FailedPrecondition as exc:
                memo = exc
                if self.rules.create_enterprises and exc.reason == "ENTERPRISE_NOT_FOUND":
                    upper = ident_prefix.upper()
                    if upper.startswith(self._node_upper):
                        segment = ident_prefix[len(self._node_upper) :].split(".")[0]
                        memo = f"{self.rules.node_prefix}.{segment}"
            except IdnodeError as exc:
                memo = exc
            self._owners[ident_prefix.upper()] = memo
        if isinstance(memo, Enterprise):
            return memo.prefix
        if isinstance(memo, str):
            self.missing.add(memo)
            return memo
        raise memo

    def check(
        self, row: int, text: str, values: tuple[Value, ...], meta: Meta = NO_META, *, stamped: bool = False
    ) -> Checked:
        """The encoded record for one row, or raise the IdnodeError the API would answer for the same
        create. ``row`` is a number unique to the row within the import (it makes the etag);
        ``stamped`` says the values already carry the import's timestamp."""
        ident = parse(text)
        owner = self._owner(ident.prefix, text)
        enterprise = self._owners.get(ident.prefix.upper())
        template = meta.template or self.template  # a row's own template wins
        if isinstance(enterprise, Enterprise) and (enterprise.require_template or template):
            violations = value_violations(values) + self.registry._template_violations(
                enterprise, template, values, new=True
            )
            if violations:
                raise InvalidArgument(violations)
        elif template:  # an enterprise this import creates: no policy of its own yet
            violations = value_violations(values) + self.registry.templates.violations_for(
                template, values, new=True
            )
            if violations:
                raise InvalidArgument(violations)
        else:
            check_values(values)
        now = self.rules.now_ns
        restore = self.restores and meta.present
        if restore:
            stamps = meta.timestamps or (0,) * len(values)
            values = tuple(
                Value(v.index, v.type, v.data, v.ttl, t or now) for v, t in zip(values, stamps, strict=False)
            )
        elif not stamped:
            values = tuple(Value(v.index, v.type, v.data, v.ttl, now) for v in values)
        indexes = [v.index for v in values]
        if indexes != sorted(indexes):
            values = tuple(sorted(values, key=_index))
        try:
            data = encode_fields(
                ident.text,
                values,
                owner,
                (meta.create_time_ns or now) if restore else now,
                (meta.update_time_ns or now) if restore else now,
                meta.etag if restore and meta.etag else etag_for(self.rules.nonce, row),
                template,
            )
        except UnicodeEncodeError:  # lone surrogates (JSON "\udc80"): not text the node can store
            raise InvalidArgument.single("values", "contains text that is not valid Unicode") from None
        check_record_size(data)
        return Checked(fold(ident.text), owner, data)


def etag_for(nonce: int, row: int) -> str:
    """The etag the import gives the record of row number ``row`` (see :class:`RowRules`)."""
    return f"{(nonce + row) & MASK64:016x}"


def _index(v: Value) -> int:
    return v.index


def reject_message(exc: IdnodeError) -> str:
    """Every violation of ``exc`` on one line, for the reject file."""
    if isinstance(exc, InvalidArgument):
        return "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
    return exc.message
