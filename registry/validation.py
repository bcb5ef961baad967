"""Validation of record contents, shared by every way in (gRPC, bulk import, Handle REST).

Each check collects every violation it finds, so a client learns all that is wrong at once.
Field paths are relative (``values[2].type``); callers nest them under their own field names.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from registry import limits
from registry.errors import FieldViolation, InvalidArgument
from registry.model import Value
from registry.store import Store, Table

UINT32_MAX = 2**32 - 1


def type_problem(value_type: str) -> str | None:
    """Why ``value_type`` is not a valid value type, or None."""
    if not value_type:
        return "must not be empty"
    if len(value_type) > limits.TYPE_MAX_CHARS:
        return f"must be at most {limits.TYPE_MAX_CHARS} characters"
    # isprintable() admits the ASCII space only; split() finds it (and any other white space).
    if not value_type.isprintable() or value_type.split() != [value_type]:
        return "must be printable characters without white space"
    return None


def value_violations(values: Sequence[Value]) -> list[FieldViolation]:
    """Every problem with a record's values: count, indexes, types, data sizes, TTLs."""
    out: list[FieldViolation] = []
    if len(values) > limits.VALUES_MAX:
        out.append(FieldViolation("values", f"at most {limits.VALUES_MAX} values per record"))
    seen: set[int] = set()
    for i, v in enumerate(values):
        at = f"values[{i}]"
        if not 1 <= v.index <= UINT32_MAX:
            out.append(FieldViolation(f"{at}.index", f"must be between 1 and {UINT32_MAX}"))
        elif v.index in seen:
            out.append(FieldViolation(f"{at}.index", f"index {v.index} appears more than once"))
        seen.add(v.index)
        problem = type_problem(v.type)
        if problem:
            out.append(FieldViolation(f"{at}.type", problem))
        try:
            size = len(v.data) if isinstance(v.data, bytes) else len(v.data.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\udc80" escape
            out.append(FieldViolation(f"{at}.data", "text must be valid Unicode (no lone surrogates)"))
            size = 0
        if size > limits.VALUE_DATA_MAX_BYTES:
            out.append(FieldViolation(f"{at}.data", f"must be at most {limits.VALUE_DATA_MAX_BYTES} bytes"))
        if not 0 <= v.ttl <= UINT32_MAX:
            out.append(FieldViolation(f"{at}.ttl", f"must be between 0 and {UINT32_MAX} seconds"))
    return out


def check_values(values: Sequence[Value]) -> None:
    """Raise :class:`InvalidArgument` listing every problem with ``values``."""
    violations = value_violations(values)
    if violations:
        raise InvalidArgument(violations)


def check_record_size(encoded: bytes) -> None:
    if len(encoded) > limits.RECORD_MAX_BYTES:
        raise InvalidArgument.single(
            "values", f"the encoded record is {len(encoded)} bytes; at most {limits.RECORD_MAX_BYTES}"
        )


def page_size(requested: int, field: str = "page_size") -> int:
    """AIP-158 page size: 0 means the default, negative is an error, above the maximum is clamped."""
    if requested < 0:
        raise InvalidArgument.single(field, "must not be negative")
    if requested == 0:
        return limits.PAGE_SIZE_DEFAULT
    return min(requested, limits.PAGE_SIZE_MAX)


_TOKEN_VERSION = b"\x01"


def encode_page_token(last_key: bytes) -> str:
    """The AIP-158 page token continuing after ``last_key``."""
    return base64.urlsafe_b64encode(_TOKEN_VERSION + last_key).decode().rstrip("=")


def decode_page_token(token: str, lower: bytes, upper: bytes, field: str = "page_token") -> bytes:
    """The key to continue after, checked to lie in ``[lower, upper)`` so a token cannot be replayed
    against another prefix."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raw = b""
    if not raw.startswith(_TOKEN_VERSION) or not lower <= raw[1:] < upper:
        raise InvalidArgument.single(field, "is not a page token issued for this listing")
    return raw[1:]


def page(
    store: Store, table: Table, lower: bytes, upper: bytes, size: int, token: str
) -> tuple[list[bytes], str]:
    """One AIP-158 page of ``table`` in ``[lower, upper)``: the values and the next page token
    ("" on the last page)."""
    limit = page_size(size)
    start = decode_page_token(token, lower, upper) + b"\0" if token else lower
    rows = store.scan(table, start, upper, limit + 1)
    next_token = encode_page_token(rows[limit - 1][0]) if len(rows) > limit else ""
    return [v for _, v in rows[:limit]], next_token
