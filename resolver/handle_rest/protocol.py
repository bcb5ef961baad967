"""The HTTP/1.1 server of the Handle REST API: ``asyncio.Protocol`` + ``httptools`` on ``uvloop``.

Chosen by measurement (bench/README.md, "Handle REST"): the same cached GET costs several times
less CPU here than through aiohttp. One event loop runs in a thread of the node process and
serves every listener; GETs are answered on the loop (a cached one is a dict hit plus
:meth:`Registry.lookup`), anything that may block (writes, scrypt checks, listings) runs on a
small thread pool. Responses on a connection always leave in request order (pipelining).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools
import uvloop

from registry import limits
from registry.service import Registry
from resolver.handle_rest.app import API, HandleApp, Request, http_response
from resolver.handle_rest.auth import RestAuthenticator
from resolver.handle_rest.errors import BodyTooLarge, error_reply

if TYPE_CHECKING:
    from resolver.datadir import DataDir
    from resolver.server import ServerConfig

log = logging.getLogger("idnode.handle_rest")

BODY_MAX_BYTES = limits.MESSAGE_MAX_BYTES
_PIPELINE_MAX = 64
"""Queued responses on one connection before it stops reading."""
_BAD_REQUEST = http_response(400, b'{"responseCode":2,"handle":"","message":"malformed HTTP request"}')


@dataclass(frozen=True, slots=True)
class Listener:
    """One bound address: ``secure`` is TLS; ``writes`` whether PUT/DELETE are served there."""

    address: str
    secure: bool
    writes: bool


class HttpProtocol(asyncio.Protocol):
    """One connection."""

    __slots__ = (
        "_app",
        "_auth_header",
        "_body",
        "_body_size",
        "_connections",
        "_executor",
        "_listener",
        "_loop",
        "_parser",
        "_paused",
        "_queue",
        "_too_large",
        "_transport",
        "_url",
    )

    def __init__(
        self,
        app: HandleApp,
        listener: Listener,
        executor: concurrent.futures.Executor,
        loop: asyncio.AbstractEventLoop,
        connections: set[HttpProtocol],
    ) -> None:
        self._app = app
        self._connections = connections
        self._listener = listener
        self._executor = executor
        self._loop = loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: collections.deque[tuple[asyncio.Future[bytes], bool]] = collections.deque()
        self._paused = False
        self._url = b""
        self._auth_header = b""
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False

    # ---------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's SSL transport is duck-typed
        self._connections.add(self)

    def close(self) -> None:
        """Close the connection now (node shutdown)."""
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None
        for future, _ in self._queue:
            future.cancel()
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:  # HttpParserUpgrade too
            self._fail()

    # ---------------------------------------------------------------- httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._auth_header = b""
        self._body = []
        self._body_size = 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 13 and name.lower() == b"authorization":
            self._auth_header = value

    def on_body(self, body: bytes) -> None:
        # An oversized body is read to its end but not kept, then answered 413 (raising here
        # would only surface as a generic parser error, and closing early could reset the
        # connection before the client reads the answer).
        self._body_size += len(body)
        if self._body_size > BODY_MAX_BYTES:
            self._too_large = True
            self._body = []
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        keep = parser.should_keep_alive()
        if self._too_large:
            error = BodyTooLarge(f"the request body exceeds {BODY_MAX_BYTES} bytes")
            self._enqueue_ready(http_response(*error_reply(error, _handle_of(self._url))), keep=False)
            return
        if method == b"GET" and not self._queue:
            cached = self._app.cached(self._url)
            if cached is not None:
                self._write(cached, keep)
                return
        transport = self._transport
        if transport is None:
            return
        peer_cert = None
        if self._listener.secure:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                peer_cert = ssl_object.getpeercert(binary_form=True)
        request = Request(
            method=method.decode("ascii", "replace"),
            target=self._url,
            authorization=self._auth_header.decode("latin-1"),
            body=b"".join(self._body),
            peer_cert=peer_cert,
            writes=self._listener.writes,
        )
        if self._app.is_slow(request):
            future = self._loop.run_in_executor(self._executor, self._app.handle, request)
            self._enqueue(future, keep)
        else:
            self._enqueue_ready(self._app.handle(request), keep)

    # ---------------------------------------------------------------- output
    def _enqueue_ready(self, response: bytes, keep: bool) -> None:
        """Send ``response`` now, or after the responses still pending on this connection."""
        if self._queue:
            done: asyncio.Future[bytes] = self._loop.create_future()
            done.set_result(response)
            self._enqueue(done, keep)
        else:
            self._write(response, keep)

    def _fail(self) -> None:
        if self._transport is not None:
            self._transport.write(_BAD_REQUEST)
            self._transport.close()

    def _write(self, response: bytes, keep: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(response)
        if not keep:
            transport.close()
            self._transport = None

    def _enqueue(self, future: asyncio.Future[bytes], keep: bool) -> None:
        self._queue.append((future, keep))
        future.add_done_callback(self._flush)
        if len(self._queue) >= _PIPELINE_MAX and not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def _flush(self, _: object = None) -> None:
        queue = self._queue
        while queue and queue[0][0].done():
            future, keep = queue.popleft()
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                log.error("request failed", exc_info=error)
                self._write(http_response(*error_reply(error, "")), keep=False)
                return
            self._write(future.result(), keep)
        if self._paused and len(queue) < _PIPELINE_MAX // 2 and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False


def _handle_of(url: bytes) -> str:
    """The handle an ``/api/handles/`` request target names (best effort, for error replies)."""
    path = url.partition(b"?")[0].decode("latin-1")
    if not path.startswith(API + "/"):
        return ""
    return unquote(path[len(API) + 1 :], errors="replace")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def server_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS with the node's certificate; a client certificate is asked for and, if sent, must be
    issued by the node CA (it is then mapped to a principal per request)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class HandleRestServer:
    """The Handle REST listeners of one node process, on their own event-loop thread.

    ``start()`` binds every listener (raising if one cannot be bound) and returns; ``ports`` then
    holds each listener's bound port. ``stop()`` closes listeners and connections.
    """

    def __init__(
        self,
        registry: Registry,
        listeners: list[Listener],
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        threads: int = 8,
    ) -> None:
        self.app = HandleApp(registry, RestAuthenticator(registry))
        self.listeners = listeners
        self.ports: list[int] = [0] * len(listeners)
        """Bound port of each listener, in order."""
        self._ssl = ssl_context
        self._reuse_port = reuse_port
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="idnode-rest")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[HttpProtocol] = set()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_node(
        cls, config: ServerConfig, registry: Registry, data_dir: DataDir, *, writer: bool, reuse_port: bool
    ) -> HandleRestServer:
        """The listeners ``config`` asks for: plain HTTP (reads) on every process; HTTPS (reads
        and writes) only on the ``writer`` (the process that owns the store)."""
        listeners = []
        if config.http_address:
            listeners.append(Listener(config.http_address, secure=False, writes=False))
        if config.https_address and writer:
            listeners.append(Listener(config.https_address, secure=True, writes=True))
        context = None
        if config.https_address and writer:
            context = server_ssl_context(data_dir.server_cert, data_dir.server_key, data_dir.ca_cert)
        return cls(registry, listeners, ssl_context=context, reuse_port=reuse_port)

    def _port(self, secure: bool) -> int:
        for listener, port in zip(self.listeners, self.ports, strict=True):
            if listener.secure is secure:
                return port
        return 0

    @property
    def http_port(self) -> int:
        """Bound port of the plain HTTP listener (0: none)."""
        return self._port(False)

    @property
    def https_port(self) -> int:
        """Bound port of the HTTPS listener (0: none)."""
        return self._port(True)

    def start(self) -> None:
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="idnode-rest", daemon=True)
        self._thread.start()
        started.result()

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        loop = uvloop.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._bind(loop))
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        for listener in self.listeners:
            host, port = split_address(listener.address)
            if listener.secure and self._ssl is None:
                raise ValueError("a TLS listener needs an SSL context")

            def factory(listener: Listener = listener) -> HttpProtocol:
                return HttpProtocol(self.app, listener, self._executor, loop, self._connections)

            server = await loop.create_server(
                factory,
                host,
                port,
                ssl=self._ssl if listener.secure else None,
                reuse_port=self._reuse_port or None,
                backlog=1024,
            )
            self._servers.append(server)
            self.ports[len(self._servers) - 1] = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def close() -> None:
            for server in self._servers:
                server.close()
            for connection in list(self._connections):
                connection.close()
            await asyncio.sleep(0)

        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(close(), loop).result(5)
            except (TimeoutError, concurrent.futures.TimeoutError):
                log.warning("Handle REST listeners did not close in time")
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._loop = None
