"""idnode values <-> Handle.Net v9 REST JSON.

A Handle value on the wire is ``{index, type, data: {format, value}, ttl, timestamp}``. The
mapping, chosen so that every idnode value has exactly one Handle form and back:

- text data -> ``{"format": "string", "value": text}``;
- binary data -> ``{"format": "base64", "value": b64}``;
- a value of type ``HS_ADMIN`` whose text is the canonical admin JSON (see :func:`admin_text`)
  -> ``{"format": "admin", "value": {"handle", "index", "permissions"}}``. An admin value sent by a
  client is stored that way, as text, so it passes the ordinary validation and comes back as it
  was given (``index`` as an integer even when sent as ``"200"``, as pyhandle does).

Input also accepts ``data`` as a bare string (pyhandle's ``register_handle_kv``), ``{format: "hex"}``
for binary, and ``index``/``ttl`` as strings of digits. ``timestamp`` on input is ignored: the node
stamps values when it writes them. Every value on output has a ``timestamp``
(``YYYY-MM-DDTHH:MM:SSZ``, UTC), which pyhandle needs.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from registry import limits
from registry.codec import matching_values, value_from_pb
from registry.errors import FieldViolation, InvalidArgument
from registry.model import Value
from registry.pb import record_pb2

ADMIN_TYPE = "HS_ADMIN"
_ADMIN_KEYS = ("handle", "index", "permissions")
_DIGITS = frozenset("0123456789")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def dumps(doc: Any) -> bytes:
    """Compact UTF-8 JSON, the only way this package encodes JSON."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def timestamp_text(ns: int) -> str:
    """Handle's timestamp form, whole seconds in UTC: ``2015-06-09T12:34:06Z``."""
    return (_EPOCH + dt.timedelta(seconds=ns // 1_000_000_000)).strftime("%Y-%m-%dT%H:%M:%SZ")


def admin_text(handle: str, index: int, permissions: str) -> str:
    """The canonical text stored for an HS_ADMIN value."""
    return dumps({"handle": handle, "index": index, "permissions": permissions}).decode()


def _admin_value(text: str) -> dict[str, Any] | None:
    """The admin JSON object stored in ``text``, if ``text`` is exactly its canonical form."""
    if not text.startswith('{"handle":'):
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # stored by anyone with write access: nested ~1,000 deep
        return None
    if (
        not isinstance(doc, dict)
        or tuple(doc) != _ADMIN_KEYS
        or not isinstance(doc["handle"], str)
        or type(doc["index"]) is not int
        or not isinstance(doc["permissions"], str)
        or admin_text(doc["handle"], doc["index"], doc["permissions"]) != text
    ):
        return None
    return doc


def value_to_json(value: Value) -> dict[str, Any]:
    """One value in Handle's JSON shape."""
    data: dict[str, Any]
    if isinstance(value.data, bytes):
        data = {"format": "base64", "value": base64.b64encode(value.data).decode()}
    else:
        admin = _admin_value(value.data) if value.type == ADMIN_TYPE else None
        data = (
            {"format": "admin", "value": admin}
            if admin is not None
            else {"format": "string", "value": value.data}
        )
    return {
        "index": value.index,
        "type": value.type,
        "data": data,
        "ttl": value.ttl,
        "timestamp": timestamp_text(value.timestamp_ns),
    }


def values_json(
    record: bytes, types: Sequence[str] = (), indexes: Sequence[int] = ()
) -> list[dict[str, Any]]:
    """The values of an encoded record in Handle's shape, filtered as gRPC filters them
    (:func:`registry.codec.matching_values`)."""
    pb = record_pb2.Record.FromString(record)
    return [value_to_json(value_from_pb(v)) for v in matching_values(pb, types, indexes)]


def handle_reply(response_code: int, handle: str, values: Iterable[Mapping[str, Any]] | None = None) -> bytes:
    """``{"responseCode", "handle"[, "values"]}`` encoded."""
    doc: dict[str, Any] = {"responseCode": response_code, "handle": handle}
    if values is not None:
        doc["values"] = list(values)
    return dumps(doc)


# ---------------------------------------------------------------------------------------- input
def parse_int(raw: Any) -> int | None:
    """An integer given as a JSON integer or a string of ASCII digits; None otherwise."""
    if type(raw) is int:
        return raw
    if isinstance(raw, str) and raw and len(raw) <= 20 and set(raw) <= _DIGITS:
        return int(raw)
    return None


def _data_from_json(raw: Any, value_type: str, at: str, out: list[FieldViolation]) -> str | bytes:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, dict):
        out.append(FieldViolation(at, "must be a string or {format, value}"))
        return ""
    fmt = raw.get("format", "string")
    inner = raw.get("value")
    if fmt == "string":
        if not isinstance(inner, str):
            out.append(FieldViolation(f"{at}.value", "must be a string for format string"))
            return ""
        return inner
    if fmt in ("base64", "hex"):
        if not isinstance(inner, str):
            out.append(FieldViolation(f"{at}.value", f"must be a string for format {fmt}"))
            return b""
        try:
            return base64.b64decode(inner, validate=True) if fmt == "base64" else bytes.fromhex(inner)
        except (binascii.Error, ValueError):
            out.append(FieldViolation(f"{at}.value", f"is not valid {fmt}"))
            return b""
    if fmt == "admin":
        if value_type != ADMIN_TYPE:
            out.append(FieldViolation(f"{at}.format", f"admin data needs type {ADMIN_TYPE}"))
            return ""
        index = parse_int(inner.get("index")) if isinstance(inner, dict) else None
        if (
            not isinstance(inner, dict)
            or not isinstance(inner.get("handle"), str)
            or not inner["handle"]
            or index is None
            or not isinstance(inner.get("permissions", ""), str)
            or not set(inner.get("permissions", "")) <= {"0", "1"}
        ):
            out.append(
                FieldViolation(
                    f"{at}.value",
                    "admin data must be {handle, index, permissions} with a digit index and 0/1 permissions",
                )
            )
            return ""
        return admin_text(inner["handle"], index, inner.get("permissions", ""))
    out.append(
        FieldViolation(f"{at}.format", f"format {fmt!r} is not supported (string, base64, hex, admin)")
    )
    return ""


def value_from_json(raw: Any, at: str, out: list[FieldViolation]) -> Value | None:
    """One Handle value from a request body; problems are appended to ``out`` (field paths under
    ``at``) and None is returned when the value is unusable."""
    if not isinstance(raw, dict):
        out.append(FieldViolation(at, "must be an object {index, type, data[, ttl]}"))
        return None
    before = len(out)
    index = parse_int(raw.get("index"))
    if index is None:
        out.append(FieldViolation(f"{at}.index", "must be an integer or a string of digits"))
    value_type = raw.get("type")
    if not isinstance(value_type, str):
        out.append(FieldViolation(f"{at}.type", "must be a string"))
        value_type = ""
    data = _data_from_json(raw.get("data", ""), value_type, f"{at}.data", out)
    ttl = limits.DEFAULT_TTL_SECONDS
    if raw.get("ttl") is not None:
        parsed = parse_int(raw["ttl"])
        if parsed is None:
            out.append(FieldViolation(f"{at}.ttl", "must be an integer or a string of digits"))
        else:
            ttl = parsed
    if len(out) > before or index is None:
        return None
    return Value(index=index, type=value_type, data=data, ttl=ttl)


def values_from_body(body: bytes) -> list[Value]:
    """The values of a PUT body ``{"values": [...]}``; InvalidArgument lists every problem."""
    try:
        doc = json.loads(body) if body else None
    except (ValueError, RecursionError):  # nested ~1,000 deep: no values document is
        raise InvalidArgument.single("body", "is not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("values"), list):
        raise InvalidArgument.single("values", 'the body must be a JSON object {"values": [...]}')
    out: list[FieldViolation] = []
    values = [value_from_json(raw, f"values[{i}]", out) for i, raw in enumerate(doc["values"])]
    if out:
        raise InvalidArgument(out)
    return [v for v in values if v is not None]
