"""Industry data templates: what a product's identifier record must carry in one industry.

A template (``name@version``, e.g. ``gs1.product@1``) lists fields; each field names a value type
(``product.gtin``) at a record index, a data type with a strict parser, whether it is required, and
bounds (length in characters; a numeric or temporal range) and an optional regular expression.
A record registered against a template is checked with :func:`check_against_template`, which
reports *every* problem at once as :class:`~registry.errors.FieldViolation` values.

Versions are immutable: publishing ``name@version`` twice is ALREADY_EXISTS; a change is a new
version. Deprecating a version only flags it (no new registrations against it; records that carry
it keep resolving and can still be updated).

Templates are stored as canonical JSON in :attr:`Table.TEMPLATES` under ``NAME@version`` (name
ASCII upper-cased), so every storage backend handles them as plain key/value pairs.

Everything here is pure Python: no grpc, no CLI.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from registry.authz import require_admin
from registry.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from registry.model import Principal, Record, Value
from registry.store import ConditionFailed, Expect, Put, Store, Table, Txn
from registry.validation import decode_page_token, encode_page_token, page_size, type_problem

if TYPE_CHECKING:  # pragma: no cover
    from registry.audit import AuditLog

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Template names: 1..64 ASCII letters, digits, ``.``, ``_``, ``-``; starting with a letter or digit."""
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
"""Versions: 1..32 of the same characters (``1``, ``2.1``, ``2026-01``)."""
FIELDS_MAX = 256
PATTERN_MAX_CHARS = 256
ENUM_VALUES_MAX = 256
TEXT_MAX_CHARS = 500
"""display_name / description of a template or field."""


class DataType(enum.Enum):
    """What a template field's text must parse as. Values are the names used in JSON definitions
    and mirror ``idnode.v1.TemplateField.DataType`` (without the ``DATA_TYPE_`` prefix)."""

    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    URL = "url"
    ENUMERATION = "enumeration"
    GTIN = "gtin"


_RANGED = {DataType.INTEGER, DataType.DECIMAL, DataType.DATE, DataType.DATETIME}


class TemplateState(enum.IntEnum):
    """Mirrors ``idnode.v1.Template.State``."""

    ACTIVE = 1
    DEPRECATED = 2


# ------------------------------------------------------------------ parsers (strict, total)
_INTEGER_RE = re.compile(r"[+-]?[0-9]{1,40}")
_DECIMAL_RE = re.compile(r"[+-]?[0-9]{1,40}(?:\.[0-9]{1,40})?")
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)
_GTIN_LENGTHS = (8, 12, 13, 14)


def parse_integer(text: str) -> int:
    """An optionally signed run of ASCII digits (at most 40). No spaces, underscores, exponents or
    non-ASCII digits (which Python's ``int()`` would accept). ValueError otherwise."""
    if not _INTEGER_RE.fullmatch(text):
        raise ValueError("must be an integer: optional sign and ASCII digits only")
    return int(text)


def parse_decimal(text: str) -> Decimal:
    """``[+-]digits[.digits]`` in ASCII; no exponent, NaN or Infinity. ValueError otherwise."""
    if not _DECIMAL_RE.fullmatch(text):
        raise ValueError("must be a decimal number such as 12.50 (no exponent)")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise ValueError("must be a decimal number") from None


def parse_date(text: str) -> dt.date:
    """A calendar date ``YYYY-MM-DD`` (ISO 8601 extended form, year 0001..9999). ValueError otherwise."""
    m = _DATE_RE.fullmatch(text)
    if not m:
        raise ValueError("must be a date YYYY-MM-DD")
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise ValueError("must be a real calendar date YYYY-MM-DD") from None


def parse_datetime(text: str) -> dt.datetime:
    """An RFC 3339 timestamp with a UTC offset: ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)``.

    Fractions beyond microseconds are truncated; a leap second (``:60``) is refused. Returns an
    aware datetime. ValueError otherwise."""
    m = _DATETIME_RE.fullmatch(text)
    if not m:
        raise ValueError("must be an RFC 3339 date-time with offset, e.g. 2026-01-31T08:00:00Z")
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    micros = int((m[7] or "0").ljust(6, "0")[:6])
    offset = m[8]
    try:
        if offset == "Z":
            tz = dt.UTC
        else:
            oh, om = int(offset[1:3]), int(offset[4:6])
            if oh > 23 or om > 59:
                raise ValueError
            delta = dt.timedelta(hours=oh, minutes=om)
            tz = dt.timezone(delta if offset[0] == "+" else -delta)
        return dt.datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
    except ValueError:
        raise ValueError("must be a real date-time (RFC 3339)") from None


def parse_url(text: str) -> str:
    """An absolute ``http``/``https`` URL with a host and no white space or control characters."""
    if not text or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError("must be an http(s) URL without spaces")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValueError("must be a well-formed http(s) URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL with a host")
    return text


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of ``body`` (the GTIN without its last digit): from the right,
    digits weigh 3, 1, 3, ...; the check digit brings the sum to a multiple of 10."""
    if not body.isascii() or not body.isdigit():
        raise ValueError("GTIN digits must be ASCII digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def parse_gtin(text: str) -> str:
    """A GTIN-8, -12, -13 or -14 (ASCII digits only) whose last digit is its GS1 check digit."""
    if not text.isascii() or not text.isdigit() or len(text) not in _GTIN_LENGTHS:
        raise ValueError("must be a GTIN: 8, 12, 13 or 14 digits")
    expected = gtin_check_digit(text[:-1])
    if int(text[-1]) != expected:
        raise ValueError(f"is not a valid GTIN: the check digit should be {expected}")
    return text


PARSERS: dict[DataType, Callable[[str], Any]] = {
    DataType.STRING: str,
    DataType.INTEGER: parse_integer,
    DataType.DECIMAL: parse_decimal,
    DataType.DATE: parse_date,
    DataType.DATETIME: parse_datetime,
    DataType.URL: parse_url,
    DataType.ENUMERATION: str,
    DataType.GTIN: parse_gtin,
}
"""Data type -> strict parser (raises ValueError with a user-facing description)."""


@functools.lru_cache(maxsize=4096)
def _bound(data_type: DataType, text: str) -> Any:
    """A field's ``minimum``/``maximum`` parsed once (published templates are validated, so it
    parses)."""
    return PARSERS[data_type](text)


# ------------------------------------------------------------------ model
@dataclass(frozen=True, slots=True)
class TemplateField:
    """One item of a template: value ``type`` at record ``index``.

    ``min_length``/``max_length`` bound the text in characters (``max_length`` 0: unbounded);
    ``minimum``/``maximum`` (inclusive, written in the field's own syntax) bound integer, decimal,
    date and date-time fields; ``pattern`` is a regular expression the whole text must match;
    ``enum_values`` lists the allowed texts of an enumeration."""

    type: str
    index: int
    data_type: DataType = DataType.STRING
    required: bool = False
    min_length: int = 0
    max_length: int = 0
    minimum: str = ""
    maximum: str = ""
    pattern: str = ""
    enum_values: tuple[str, ...] = ()
    display_name: str = ""
    description: str = ""

    def problems(self, value: Value) -> list[str]:
        """Every reason ``value``'s data does not satisfy this field (empty: it does)."""
        if isinstance(value.data, bytes):
            return ["must be text, not binary data"]
        text = value.data
        out: list[str] = []
        if len(text) < self.min_length:
            out.append(f"must be at least {self.min_length} characters")
        if self.max_length and len(text) > self.max_length:
            out.append(f"must be at most {self.max_length} characters")
        try:
            parsed = PARSERS[self.data_type](text)
        except ValueError as exc:
            out.append(str(exc))
            parsed = None
        if parsed is not None and self.data_type in _RANGED:
            if self.minimum and parsed < _bound(self.data_type, self.minimum):
                out.append(f"must be at least {self.minimum}")
            if self.maximum and parsed > _bound(self.data_type, self.maximum):
                out.append(f"must be at most {self.maximum}")
        if self.data_type is DataType.ENUMERATION and text not in self.enum_values:
            out.append("must be one of " + ", ".join(self.enum_values))
        if self.pattern and re.fullmatch(self.pattern, text) is None:
            out.append(f"must match the pattern {self.pattern}")
        return out


@dataclass(frozen=True, slots=True)
class Template:
    """An industry data template version. Immutable once published, except ``state``."""

    name: str
    version: str
    fields: tuple[TemplateField, ...] = ()
    display_name: str = ""
    description: str = ""
    state: TemplateState = TemplateState.ACTIVE
    create_time_ns: int = 0
    update_time_ns: int = 0

    @property
    def ref(self) -> str:
        """``name@version``, the form records carry in ``Record.template``."""
        return template_ref(self.name, self.version)

    @property
    def active(self) -> bool:
        return self.state is TemplateState.ACTIVE


def template_ref(name: str, version: str) -> str:
    return f"{name}@{version}"


def parse_template_ref(ref: str, field_name: str = "template") -> tuple[str, str]:
    """``(name, version)`` of ``name@version``; InvalidArgument naming ``field_name`` otherwise."""
    name, sep, version = ref.partition("@")
    if not sep or not NAME_RE.fullmatch(name) or not VERSION_RE.fullmatch(version):
        raise InvalidArgument.single(
            field_name, "must be a template reference NAME@VERSION, e.g. gs1.product@1"
        )
    return name, version


def template_key(name: str, version: str) -> bytes:
    """The storage key: ASCII upper-cased name, ``@``, version as given."""
    return name.upper().encode() + b"@" + version.encode()


# ------------------------------------------------------------------ definition checks
def _text_problem(text: str) -> str | None:
    if len(text) > TEXT_MAX_CHARS:
        return f"must be at most {TEXT_MAX_CHARS} characters"
    return None


def template_violations(template: Template) -> list[FieldViolation]:
    """Every problem with a template definition (paths such as ``fields[2].maximum``)."""
    out: list[FieldViolation] = []
    if not NAME_RE.fullmatch(template.name):
        out.append(FieldViolation("name", "must be 1 to 64 ASCII letters, digits, '.', '_' or '-'"))
    if not VERSION_RE.fullmatch(template.version):
        out.append(FieldViolation("version", "must be 1 to 32 ASCII letters, digits, '.', '_' or '-'"))
    for name in ("display_name", "description"):
        problem = _text_problem(getattr(template, name))
        if problem:
            out.append(FieldViolation(name, problem))
    if not template.fields:
        out.append(FieldViolation("fields", "a template needs at least one field"))
    if len(template.fields) > FIELDS_MAX:
        out.append(FieldViolation("fields", f"at most {FIELDS_MAX} fields"))
    indexes: set[int] = set()
    types: set[str] = set()
    for i, f in enumerate(template.fields):
        at = f"fields[{i}]"
        problem = type_problem(f.type)
        if problem:
            out.append(FieldViolation(f"{at}.type", problem))
        elif f.type in types:
            out.append(FieldViolation(f"{at}.type", f"{f.type} appears more than once"))
        types.add(f.type)
        if not 1 <= f.index <= 2**32 - 1:
            out.append(FieldViolation(f"{at}.index", "must be between 1 and 4294967295"))
        elif f.index in indexes:
            out.append(FieldViolation(f"{at}.index", f"index {f.index} appears more than once"))
        indexes.add(f.index)
        if f.min_length < 0:
            out.append(FieldViolation(f"{at}.min_length", "must not be negative"))
        if f.max_length < 0:
            out.append(FieldViolation(f"{at}.max_length", "must not be negative"))
        elif f.max_length and f.min_length > f.max_length:
            out.append(FieldViolation(f"{at}.max_length", "must not be less than min_length"))
        bounds = {}
        for bound in ("minimum", "maximum"):
            text = getattr(f, bound)
            if not text:
                continue
            if f.data_type not in _RANGED:
                out.append(FieldViolation(f"{at}.{bound}", f"applies only to {_ranged_names()} fields"))
                continue
            try:
                bounds[bound] = PARSERS[f.data_type](text)
            except ValueError as exc:
                out.append(FieldViolation(f"{at}.{bound}", str(exc)))
        if len(bounds) == 2 and bounds["minimum"] > bounds["maximum"]:
            out.append(FieldViolation(f"{at}.maximum", "must not be less than minimum"))
        if f.pattern:
            if len(f.pattern) > PATTERN_MAX_CHARS:
                out.append(FieldViolation(f"{at}.pattern", f"must be at most {PATTERN_MAX_CHARS} characters"))
            else:
                try:
                    re.compile(f.pattern)
                except re.error as exc:
                    out.append(FieldViolation(f"{at}.pattern", f"is not a valid regular expression: {exc}"))
        if f.data_type is DataType.ENUMERATION:
            if not f.enum_values:
                out.append(FieldViolation(f"{at}.enum_values", "an enumeration needs at least one value"))
            elif len(f.enum_values) > ENUM_VALUES_MAX or len(set(f.enum_values)) != len(f.enum_values):
                out.append(FieldViolation(f"{at}.enum_values", f"at most {ENUM_VALUES_MAX} distinct values"))
        elif f.enum_values:
            out.append(FieldViolation(f"{at}.enum_values", "applies only to enumeration fields"))
        for name in ("display_name", "description"):
            problem = _text_problem(getattr(f, name))
            if problem:
                out.append(FieldViolation(f"{at}.{name}", problem))
    return out


def _ranged_names() -> str:
    return ", ".join(sorted(t.value for t in _RANGED))


# ------------------------------------------------------------------ record checks
def check_against_template(record: Record | Sequence[Value], template: Template) -> list[FieldViolation]:
    """Every way ``record`` (or its values) fails ``template``, all at once; empty if it conforms.

    Paths are relative to the record (``values[3].data``; ``values`` for a missing required
    field); descriptions name the template field. Values at indexes the template does not define
    are allowed (a record may carry more than the template asks). This is the hook bulk import
    calls per row; the caller nests the paths under its own field name."""
    values = record.values if isinstance(record, Record) else tuple(record)
    by_index = {v.index: (i, v) for i, v in enumerate(values)}
    out: list[FieldViolation] = []
    for f in template.fields:
        label = f"{f.type} (index {f.index} of template {template.ref})"
        found = by_index.get(f.index)
        if found is None:
            if f.required:
                out.append(FieldViolation("values", f"missing required template field {label}"))
            continue
        i, value = found
        if value.type != f.type:
            out.append(FieldViolation(f"values[{i}].type", f"must be {f.type} for template field {label}"))
            continue
        out.extend(FieldViolation(f"values[{i}].data", f"{label}: {p}") for p in f.problems(value))
    return out


# ------------------------------------------------------------------ encoding
def template_to_dict(template: Template) -> dict[str, Any]:
    """The JSON form (also the CLI's definition file format; output-only fields included)."""
    return {
        "name": template.name,
        "version": template.version,
        "display_name": template.display_name,
        "description": template.description,
        "state": template.state.name.lower(),
        "create_time_ns": template.create_time_ns,
        "update_time_ns": template.update_time_ns,
        "fields": [
            {
                "type": f.type,
                "index": f.index,
                "data_type": f.data_type.value,
                "required": f.required,
                "min_length": f.min_length,
                "max_length": f.max_length,
                "minimum": f.minimum,
                "maximum": f.maximum,
                "pattern": f.pattern,
                "enum_values": list(f.enum_values),
                "display_name": f.display_name,
                "description": f.description,
            }
            for f in template.fields
        ],
    }


def template_from_dict(doc: Mapping[str, Any]) -> Template:
    """A template from its JSON/TOML form. Unknown keys and wrongly typed values are
    InvalidArgument naming the field; output-only keys (state, times) are read when present."""
    violations: list[FieldViolation] = []

    def get(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any, at: str) -> Any:
        raw = d.get(key, default)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(raw, bool) and bool not in kinds) or not isinstance(raw, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            violations.append(FieldViolation(f"{at}{key}", f"must be {names}"))
            return default
        return raw

    allowed = {"name", "version", "display_name", "description", "state", "create_time_ns"}
    allowed |= {"update_time_ns", "fields"}
    violations.extend(FieldViolation(k, "is not a template attribute") for k in doc if k not in allowed)
    fields_out: list[TemplateField] = []
    raw_fields = get(doc, "fields", list, [], "")
    field_keys = {f.name for f in TemplateField.__dataclass_fields__.values()}
    for i, raw in enumerate(raw_fields):
        at = f"fields[{i}]."
        if not isinstance(raw, Mapping):
            violations.append(FieldViolation(f"fields[{i}]", "must be a table/object"))
            continue
        violations.extend(
            FieldViolation(f"{at}{k}", "is not a field attribute") for k in raw if k not in field_keys
        )
        data_type_name = get(raw, "data_type", str, "string", at)
        try:
            data_type = DataType(data_type_name.lower())
        except ValueError:
            names = ", ".join(t.value for t in DataType)
            violations.append(FieldViolation(f"{at}data_type", f"must be one of {names}"))
            data_type = DataType.STRING
        enum_values = get(raw, "enum_values", list, [], at)
        if not all(isinstance(v, str) for v in enum_values):
            violations.append(FieldViolation(f"{at}enum_values", "must be a list of strings"))
            enum_values = []
        fields_out.append(
            TemplateField(
                type=get(raw, "type", str, "", at),
                index=get(raw, "index", int, 0, at),
                data_type=data_type,
                required=get(raw, "required", bool, False, at),
                min_length=get(raw, "min_length", int, 0, at),
                max_length=get(raw, "max_length", int, 0, at),
                minimum=str(get(raw, "minimum", (str, int), "", at)),
                maximum=str(get(raw, "maximum", (str, int), "", at)),
                pattern=get(raw, "pattern", str, "", at),
                enum_values=tuple(enum_values),
                display_name=get(raw, "display_name", str, "", at),
                description=get(raw, "description", str, "", at),
            )
        )
    state_name = get(doc, "state", str, "active", "")
    state = TemplateState.DEPRECATED if state_name.lower() == "deprecated" else TemplateState.ACTIVE
    template = Template(
        name=get(doc, "name", str, "", ""),
        version=str(get(doc, "version", (str, int), "", "")),
        fields=tuple(fields_out),
        display_name=get(doc, "display_name", str, "", ""),
        description=get(doc, "description", str, "", ""),
        state=state,
        create_time_ns=get(doc, "create_time_ns", int, 0, ""),
        update_time_ns=get(doc, "update_time_ns", int, 0, ""),
    )
    if violations:
        raise InvalidArgument(violations)
    return template


def encode_template(template: Template) -> bytes:
    return json.dumps(template_to_dict(template), sort_keys=True, separators=(",", ":")).encode()


def decode_template(data: bytes) -> Template:
    return template_from_dict(json.loads(data))


# ------------------------------------------------------------------ the catalog (core operations)
_DECODED_MAX = 1024
"""Decoded templates a catalog keeps (by stored bytes) before starting afresh."""


class TemplateCatalog:
    """The node's published templates. Writes need the administrator and are audited (each in the
    same commit as its audit entry); reads are public (scanner apps render fields by name).

    ``audit`` is the node's :class:`registry.audit.AuditLog` (its ``commit`` is used for writes)."""

    def __init__(self, store: Store, audit: AuditLog, clock: Callable[[], int]) -> None:
        self.store = store
        self.audit = audit
        self._clock = clock
        self._decoded: dict[bytes, Template] = {}

    def _decode(self, raw: bytes) -> Template:
        """``decode_template(raw)``, memoized by the stored bytes (a state change changes them,
        so a deprecated template is never served from an old entry)."""
        found = self._decoded.get(raw)
        if found is None:
            found = decode_template(raw)
            if len(self._decoded) >= _DECODED_MAX:
                self._decoded.clear()
            self._decoded[raw] = found
        return found

    def create(self, principal: Principal, template: Template, *, origin: str = "") -> Template:
        """Publish ``template`` (state and times are set by the node). INVALID_ARGUMENT listing
        every problem of the definition; ALREADY_EXISTS if this name@version exists (in any ASCII
        case of the name): versions are immutable."""
        from registry.audit import Draft, Operation, digest

        require_admin(principal)
        violations = template_violations(template)
        if violations:
            raise InvalidArgument(violations)
        now = self._clock()
        published = replace(template, state=TemplateState.ACTIVE, create_time_ns=now, update_time_ns=now)
        key = template_key(template.name, template.version)
        data = encode_template(published)
        try:
            self.audit.commit(
                Txn(expects=(Expect(Table.TEMPLATES, key, None),), writes=(Put(Table.TEMPLATES, key, data),)),
                [
                    Draft(
                        Operation.TEMPLATE_CREATE,
                        principal,
                        origin,
                        etag_after=digest(data),
                        detail={"template": published.ref},
                    )
                ],
            )
        except ConditionFailed:
            raise AlreadyExists(
                f"template {published.ref} already exists; publish a new version instead",
                metadata={"template": published.ref},
            ) from None
        return published

    def get(self, ref: str, field_name: str = "template") -> Template:
        """The template ``name@version`` (name ASCII case-insensitive); NOT_FOUND if there is none."""
        name, version = parse_template_ref(ref, field_name)
        raw = self.store.get(Table.TEMPLATES, template_key(name, version))
        if raw is None:
            raise NotFound(f"no template {ref}", reason="TEMPLATE_NOT_FOUND", metadata={"template": ref})
        return self._decode(raw)

    def find(self, ref: str) -> Template | None:
        """Like :meth:`get`, None when absent (INVALID_ARGUMENT ``template`` for a malformed
        reference)."""
        name, version = parse_template_ref(ref)
        raw = self.store.get(Table.TEMPLATES, template_key(name, version))
        return self._decode(raw) if raw is not None else None

    def list(
        self, size: int = 0, token: str = "", *, name: str = "", include_deprecated: bool = True
    ) -> tuple[list[Template], str]:
        """Templates in key order (name upper-cased, then version), optionally only ``name``'s versions."""
        limit = page_size(size)
        lower, upper = b"", b"\xff"
        if name:
            lower = name.upper().encode() + b"@"
            upper = name.upper().encode() + b"A"  # "A" follows "@" in ASCII
        start = decode_page_token(token, lower, upper) + b"\0" if token else lower
        found: list[tuple[bytes, Template]] = []
        while len(found) <= limit:
            rows = self.store.scan(Table.TEMPLATES, start, upper, limit + 1)
            for key, raw in rows:
                t = self._decode(raw)
                if include_deprecated or t.active:
                    found.append((key, t))
            if len(rows) <= limit:
                break
            start = rows[-1][0] + b"\0"
        if len(found) > limit:
            return [t for _, t in found[:limit]], encode_page_token(found[limit - 1][0])
        return [t for _, t in found], ""

    def deprecate(self, principal: Principal, ref: str, *, origin: str = "") -> Template:
        """Flag ``ref`` deprecated: no new registrations against it. Idempotent."""
        from registry.audit import Draft, Operation, digest

        require_admin(principal)
        while True:
            name, version = parse_template_ref(ref)
            key = template_key(name, version)
            raw = self.store.get(Table.TEMPLATES, key)
            if raw is None:
                raise NotFound(f"no template {ref}", reason="TEMPLATE_NOT_FOUND", metadata={"template": ref})
            current = decode_template(raw)
            if not current.active:
                return current
            updated = replace(current, state=TemplateState.DEPRECATED, update_time_ns=self._clock())
            data = encode_template(updated)
            try:
                self.audit.commit(
                    Txn(
                        expects=(Expect(Table.TEMPLATES, key, raw),),
                        writes=(Put(Table.TEMPLATES, key, data),),
                    ),
                    [
                        Draft(
                            Operation.TEMPLATE_DEPRECATE,
                            principal,
                            origin,
                            etag_before=digest(raw),
                            etag_after=digest(data),
                            detail={"template": updated.ref},
                        )
                    ],
                )
            except ConditionFailed:
                continue
            return updated

    def violations_for(self, ref: str, values: Sequence[Value], *, new: bool) -> list[FieldViolation]:
        """Problems registering ``values`` against ``ref`` (relative paths; ``template`` for the
        reference itself). ``new``: a registration (a deprecated version is refused) rather than
        an update of a record already carrying ``ref``."""
        try:
            template = self.find(ref)
        except InvalidArgument as exc:
            return list(exc.violations)
        if template is None:
            return [FieldViolation("template", f"no template {ref} is published on this node")]
        if new and not template.active:
            return [FieldViolation("template", f"template {template.ref} is deprecated; use a newer version")]
        return check_against_template(values, template)


__all__ = [
    "PARSERS",
    "DataType",
    "Template",
    "TemplateCatalog",
    "TemplateField",
    "TemplateState",
    "check_against_template",
    "decode_template",
    "encode_template",
    "gtin_check_digit",
    "parse_date",
    "parse_datetime",
    "parse_decimal",
    "parse_gtin",
    "parse_integer",
    "parse_template_ref",
    "parse_url",
    "template_from_dict",
    "template_ref",
    "template_to_dict",
    "template_violations",
]
