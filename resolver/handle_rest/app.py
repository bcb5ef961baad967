"""The routes of the Handle REST API, sans I/O: a :class:`Request` in, a complete HTTP response
(bytes) out.

======================================  ======================================================
``GET /api/handles/{prefix}/{suffix}``   resolve; ``index=``/``type=`` filters (repeatable)
``PUT /api/handles/{prefix}/{suffix}``   create or replace (``overwrite=true``, the default, or
                                         ``false``); with ``index=``: add/replace those values
``DELETE /api/handles/{prefix}/{suffix}`` the whole handle, or with ``index=`` those values
``GET /api/handles?prefix=P``            list a prefix (``page``, 0-based, and ``pageSize``);
                                         authenticated, like Handle.Net
``PUT /idnode/v1/passwords/{prefix}``    set an enterprise's Basic password (see :mod:`.auth`)
``GET /{prefix}/{suffix}``               scan-to-web: 302 to the record's URL value, else a
                                         readable 404 page (``?noredirect`` shows the page)
======================================  ======================================================

Replies of ``/api/`` are Handle JSON with ``handle`` echoed exactly as requested (decoded from
the URL), errors included; status pairs come from :mod:`.errors`. Writes are served only on a
listener created with ``writes=True`` (the node's HTTPS listener); elsewhere they are 405/5.

Speed: a successful GET's whole HTTP response is kept per URL together with the record bytes it
was built from; :meth:`HandleApp.cached` serves it again while :meth:`Registry.lookup` still
returns those bytes (so the record cache's coherence and TTL rules hold unchanged).
"""

from __future__ import annotations

import html
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from registry import limits
from registry.errors import AlreadyExists, EtagMismatch, IdnodeError, InvalidArgument, NotFound
from registry.identifier import Identifier, fold, parse, parse_prefix
from registry.model import Principal, Value
from registry.pb import record_pb2
from registry.service import Registry
from resolver.handle_rest import codec
from resolver.handle_rest.auth import RestAuthenticator
from resolver.handle_rest.errors import (
    InvalidHandle,
    MethodNotAllowed,
    ValueExists,
    ValuesNotFound,
    error_doc,
    pair_of,
)

API = "/api/handles"
PASSWORDS = "/idnode/v1/passwords/"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
HOT_ENTRIES_MAX = 65_536
"""Pre-encoded GET responses kept (a few hundred bytes each); the oldest goes first."""
LIST_PAGE_SIZE_MAX = 10_000
_UPDATE_ATTEMPTS = 8
_REASONS = {
    200: "OK",
    201: "Created",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def http_response(
    status: int, body: bytes, content_type: str = JSON_TYPE, extra: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """A complete HTTP/1.1 response. Header values must be ASCII without CR/LF."""
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"Content-Type: {content_type}"]
    head.extend(f"{name}: {value}" for name, value in extra)
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request. ``target`` is the raw request target (path and query, still
    percent-encoded); ``peer_cert`` the verified TLS client certificate (DER) if any."""

    method: str
    target: bytes
    authorization: str = ""
    body: bytes = b""
    peer_cert: bytes | None = None
    writes: bool = False
    """Whether this listener serves PUT/DELETE."""


def _decode(raw: str, field: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidHandle.single(field, "is not valid UTF-8 after percent-decoding") from None


def _ints(raw: list[str], field: str) -> list[int]:
    out = []
    for text in raw:
        if text == "various":  # Handle.Net's "all indexes"
            continue
        value = codec.parse_int(text)
        if value is None:
            raise InvalidArgument.single(field, f"{text!r} is not an integer")
        out.append(value)
    return out


def _flag(query: dict[str, list[str]], name: str, default: bool) -> bool:
    raw = query.get(name)
    if not raw:
        return default
    text = raw[-1].lower()
    if text not in ("true", "false"):
        raise InvalidArgument.single(name, "must be true or false")
    return text == "true"


class HandleApp:
    """The Handle REST routes over one :class:`Registry` (shared with gRPC)."""

    def __init__(self, registry: Registry, auth: RestAuthenticator | None = None) -> None:
        self.registry = registry
        self.auth = auth or RestAuthenticator(registry)
        self._hot: OrderedDict[bytes, tuple[bytes, bytes, bytes]] = OrderedDict()

    # ------------------------------------------------------------------ hot path
    def cached(self, target: bytes) -> bytes | None:
        """The pre-encoded response to ``GET target`` if it is still current, else None."""
        entry = self._hot.get(target)
        if entry is not None and self.registry.lookup(entry[0]) == entry[1]:
            return entry[2]
        return None

    def _remember(self, target: bytes, key: bytes, record: bytes, response: bytes) -> bytes:
        hot = self._hot
        if len(hot) >= HOT_ENTRIES_MAX:
            hot.popitem(last=False)
        hot[target] = (key, record, response)
        return response

    # ------------------------------------------------------------------ dispatch
    def is_slow(self, request: Request) -> bool:
        """Whether the request may block (writes, scrypt, listings): run it off the event loop."""
        return request.method != "GET" or _is_listing(_path_of(request.target))

    def handle(self, request: Request) -> bytes:
        """The complete HTTP response to ``request``. Never raises."""
        text = request.target.decode("latin-1")
        path, _, query_text = text.partition("?")
        query = parse_qs(query_text, keep_blank_values=True)
        if _is_listing(path):
            return self._json_call(lambda: self._list(request, query), "", 200)
        if path.startswith(API + "/"):
            return self._handle_api(request, path[len(API) + 1 :], query)
        if path.startswith(PASSWORDS):
            return self._json_call(lambda: self._set_password(request, path[len(PASSWORDS) :]), "", 200)
        if path.startswith("/api/"):
            return self._json_error(NotFound(f"no such API: {path}", reason="NO_SUCH_API"), "")
        return self._scan_to_web(request, path, query)

    def _json_error(self, exc: BaseException, handle: str) -> bytes:
        status, doc = error_doc(exc, handle)
        return http_response(status, codec.dumps(doc))

    def _json_call(self, call: Callable[[], dict[str, Any]], handle: str, status: int) -> bytes:
        try:
            doc = call()
        except Exception as exc:
            return self._json_error(exc, handle)
        return http_response(doc.pop("_status", status), codec.dumps(doc))

    def _handle_api(self, request: Request, raw_handle: str, query: dict[str, list[str]]) -> bytes:
        try:
            handle = _decode(raw_handle, "handle")
        except InvalidHandle as exc:
            return self._json_error(exc, raw_handle)
        try:
            if request.method == "GET":
                return self._resolve(request, handle, query)
            if request.method in ("PUT", "DELETE"):
                if not request.writes:
                    raise MethodNotAllowed(
                        f"{request.method} is served on the node's HTTPS listener only",
                        reason="READ_ONLY_LISTENER",
                    )
                principal = self.auth.principal(request.authorization, request.peer_cert)
                ident = self._parse(handle)
                if request.method == "PUT":
                    status = self._put(principal, ident, request.body, query)
                else:
                    self._delete(principal, ident, query)
                    status = 200
                return http_response(status, codec.handle_reply(1, handle))
            raise MethodNotAllowed(f"{request.method} is not supported on {API}/")
        except Exception as exc:
            return self._json_error(exc, handle)

    @staticmethod
    def _parse(handle: str) -> Identifier:
        """The identifier ``handle`` names; a malformed one is InvalidHandle (400/102)."""
        try:
            return parse(handle, "handle")
        except InvalidArgument as exc:
            raise InvalidHandle(exc.violations) from None

    # ------------------------------------------------------------------ resolution
    def _lookup(self, handle: str) -> tuple[bytes, bytes]:
        key = fold(handle)
        data = self.registry.lookup(key)
        if data is None:
            self._parse(handle)  # malformed: InvalidHandle
            raise self.registry.missing(handle, "handle")
        return key, data

    def _resolve(self, request: Request, handle: str, query: dict[str, list[str]]) -> bytes:
        types = query.get("type", [])
        indexes = _ints(query.get("index", []), "index")
        key, data = self._lookup(handle)
        values = codec.values_json(data, types, indexes)
        body = codec.handle_reply(1 if values else 200, handle, values)
        return self._remember(request.target, key, data, http_response(200, body))

    # ------------------------------------------------------------------ writes
    def _put(self, principal: Principal, ident: Identifier, body: bytes, query: dict[str, list[str]]) -> int:
        """Create (201) or replace (200) the handle, or with ``index=`` add/replace values (200)."""
        overwrite = _flag(query, "overwrite", True)
        indexes = _ints(query.get("index", []), "index")
        values = codec.values_from_body(body)
        handle = ident.text
        if not indexes:
            try:
                self.registry.create(principal, handle, values, field="handle")
                return 201
            except AlreadyExists:
                if not overwrite:
                    raise
            self.registry.update(principal, handle, values, field="handle")
            return 200
        wanted = set(indexes)
        stray = [i for i, v in enumerate(values) if v.index not in wanted]
        if stray:
            raise InvalidArgument.single(f"values[{stray[0]}].index", "is not among the index= parameters")
        given = {v.index: v for v in values}

        def change(current: dict[int, Value]) -> dict[int, Value]:
            if not overwrite and given.keys() & current.keys():
                taken = sorted(given.keys() & current.keys())
                raise ValueExists(
                    f"{handle} already has a value at index {taken[0]}", metadata={"identifier": handle}
                )
            return {**current, **given}

        self._modify(principal, ident, change)
        return 200

    def _delete(self, principal: Principal, ident: Identifier, query: dict[str, list[str]]) -> None:
        handle = ident.text
        indexes = set(_ints(query.get("index", []), "index"))
        if not indexes:
            self.registry.delete(principal, handle)
            return

        def change(current: dict[int, Value]) -> dict[int, Value]:
            if not indexes & current.keys():
                raise ValuesNotFound(
                    f"{handle} has no value at index {', '.join(map(str, sorted(indexes)))}",
                    metadata={"identifier": handle},
                )
            return {i: v for i, v in current.items() if i not in indexes}

        self._modify(principal, ident, change)

    def _modify(
        self, principal: Principal, ident: Identifier, change: Callable[[dict[int, Value]], dict[int, Value]]
    ) -> None:
        """Read-modify-write of a record's values, conditional on its etag (retried on a race)."""
        for attempt in range(_UPDATE_ATTEMPTS):
            record = self.registry.get(principal, ident.text, "handle")
            values = change({v.index: v for v in record.values})
            try:
                self.registry.update(principal, ident.text, list(values.values()), record.etag, "handle")
                return
            except EtagMismatch:
                if attempt == _UPDATE_ATTEMPTS - 1:
                    raise

    # ------------------------------------------------------------------ listing and passwords
    def _list(self, request: Request, query: dict[str, list[str]]) -> dict[str, Any]:
        principal = self.auth.principal(request.authorization, request.peer_cert)
        given = (query.get("prefix") or [""])[-1]
        prefix = parse_prefix(given.removeprefix("0.NA/"), "prefix")
        page = _ints(query.get("page", []), "page")
        size = _ints(query.get("pageSize", []), "pageSize")
        page_no = page[-1] if page else 0
        page_size = min(size[-1], LIST_PAGE_SIZE_MAX) if size else limits.PAGE_SIZE_MAX
        if page_size < 1:
            raise InvalidArgument.single("pageSize", "must be at least 1")
        skip, total, handles, token = page_no * page_size, 0, [], ""
        while True:
            rows, token = self.registry.list(principal, prefix, limits.PAGE_SIZE_MAX, token)
            for row in rows:
                if skip <= total < skip + page_size:
                    handles.append(record_pb2.Record.FromString(row).identifier)
                total += 1
            if not token:
                break
        return {
            "responseCode": 1,
            "handle": "",
            "prefix": given,
            "totalCount": str(total),
            "page": page_no,
            "pageSize": page_size,
            "handles": handles,
        }

    def _set_password(self, request: Request, raw_prefix: str) -> dict[str, Any]:
        if request.method != "PUT" or not request.writes:
            raise MethodNotAllowed("set a password with PUT on the node's HTTPS listener")
        principal = self.auth.principal(request.authorization, request.peer_cert)
        try:
            doc = json.loads(request.body)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("password"), str):
            raise InvalidArgument.single("password", 'the body must be {"password": "..."}')
        handle = self.auth.set_password(principal, _decode(raw_prefix, "prefix"), doc["password"])
        return {"responseCode": 1, "handle": handle, "username": f"300:{handle}"}

    # ------------------------------------------------------------------ scan-to-web
    def _scan_to_web(self, request: Request, path: str, query: dict[str, list[str]]) -> bytes:
        if request.method != "GET":
            return _page(405, "Method not allowed", "Only GET is served here.")
        if path == "/":
            return _page(
                200, "idnode", "Resolve an identifier: GET /PREFIX/SUFFIX, or /api/handles/PREFIX/SUFFIX."
            )
        try:
            handle = _decode(path[1:], "handle")
            key, data = self._lookup(handle)
        except IdnodeError as exc:
            status, _ = pair_of(exc)
            title = "Not found" if status == 404 else "Cannot resolve"
            return _page(status, title, f"{path[1:]}: {exc.message}")
        record = record_pb2.Record.FromString(data)
        target = None if "noredirect" in query else _redirect_target(record)
        if target is None:
            return _record_page(record, handle, found="noredirect" in query)
        response = http_response(302, b"", HTML_TYPE, (("Location", target),))
        return self._remember(request.target, key, data, response)


def _path_of(target: bytes) -> str:
    return target.partition(b"?")[0].decode("latin-1")


def _is_listing(path: str) -> bool:
    """Whether ``path`` (no query) is the listing route (authenticated, scrypt, a full scan)."""
    return path in (API, API + "/")


def _redirect_target(record: record_pb2.Record) -> str | None:
    """The first (lowest-index) text URL value, as an ASCII URI safe for a Location header."""
    for v in sorted(record.values, key=lambda v: v.index):
        if v.type.upper() == "URL" and v.WhichOneof("data") != "binary" and v.text:
            if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in v.text):
                continue
            return quote(v.text, safe=":/?#[]@!$&'()*+,;=%~")
    return None


def _page(status: int, title: str, message: str, extra_html: str = "") -> bytes:
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{extra_html}</body></html>"
    )
    return http_response(status, body.encode(), HTML_TYPE)


def _record_page(record: record_pb2.Record, handle: str, *, found: bool) -> bytes:
    rows = "".join(
        f"<tr><td>{v.index}</td><td>{html.escape(v.type)}</td>"
        f"<td>{html.escape(v.text if v.WhichOneof('data') != 'binary' else '0x' + v.binary.hex())}</td></tr>"
        for v in record.values
    )
    table = f"<table><tr><th>Index</th><th>Type</th><th>Data</th></tr>{rows}</table>"
    if found:
        return _page(200, record.identifier, f"Values of {record.identifier}:", table)
    return _page(404, "No URL", f"{handle} is registered but has no URL value to go to.", table)
