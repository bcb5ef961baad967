"""Load generator processes for the resolution benchmark.

Two generators, both run in processes of their own (never in the process that measures the
server), each reporting its own CPU time so that a client-bound run shows:

- :func:`h2_unary` speaks HTTP/2 directly on a blocking socket: every gRPC request is a pre-encoded
  HEADERS frame (HPACK literals, no dynamic table) plus one DATA frame (5-byte gRPC prefix +
  serialized message), many streams in flight per connection, responses parsed at the frame
  level only. In ``bench/results/resolution.json`` it used 20-55 us of client CPU per call
  (``client_cpu_cores`` / calls per second over the unary rows), well under the 144-430 us the
  server spends per call, so one client core can keep a server core busy; ``h2load`` (C) is
  cheaper still but sends the same body on every request, so it cannot draw keys from a
  popularity distribution. A call answered with DATA counts as ``ok``; a
  trailers-only answer (NOT_FOUND for a miss, or any error) counts as ``error`` — the run checks
  separately, with the grpcio client, that misses are exactly the NOT_FOUND ones.
- :func:`grpc_calls` uses grpcio (C-core) with raw-bytes (de)serializers for BatchResolve,
  StreamResolve and the 95/5 resolve/register mix (registration needs mutual TLS).

Both return a dict: ``calls``, ``ok``, ``errors``, ``ids``, ``seconds``, ``cpu_s`` and
``lat_ns`` (bytes of an ``array('q')`` of per-call latencies).
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import struct
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

# ---------------------------------------------------------------------------------------------
# raw HTTP/2


def _hpack_literal(name_index: int | None, name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing (RFC 7541 6.2.2), no Huffman coding."""

    def length(n: int, prefix_bits: int, first: int = 0) -> bytes:
        limit = (1 << prefix_bits) - 1
        if n < limit:
            return bytes((first | n,))
        out = bytearray((first | limit,))
        n -= limit
        while n >= 128:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    head = length(name_index, 4) if name_index is not None else b"\x00" + length(len(name), 7) + name
    return head + length(len(value), 7) + value


def request_headers(path: str, authority: str) -> bytes:
    """The HPACK block of a gRPC POST to ``path`` (static-table indexes from RFC 7541 App. A)."""
    return b"".join(
        (
            b"\x83",  # :method POST
            b"\x86",  # :scheme http
            _hpack_literal(4, b":path", path.encode()),
            _hpack_literal(1, b":authority", authority.encode()),
            _hpack_literal(31, b"content-type", b"application/grpc"),
            _hpack_literal(None, b"te", b"trailers"),
        )
    )


_FRAME = struct.Struct(">I B I")  # (length << 8 | type), flags, stream id  -> packed as 3+1+1+4
_DATA, _HEADERS, _RST, _SETTINGS, _PING, _GOAWAY, _WINDOW = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _END_HEADERS, _ACK = 0x1, 0x4, 0x1
_BIG_WINDOW = (1 << 31) - 1


def _frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return _FRAME.pack((len(payload) << 8) | ftype, flags, stream) + payload


def _grpc_message(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


class _Conn:
    def __init__(self, port: int, headers: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = headers
        self.next_stream = 1
        self.inflight: dict[int, int] = {}  # stream -> send time (ns)
        self.got_data: set[int] = set()
        self.buf = b""
        self.send_window = 65535
        self.received = 0
        settings = struct.pack(">HI", 4, _BIG_WINDOW) + struct.pack(">HI", 2, 0)  # window; no push
        self.sock.sendall(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            + _frame(_SETTINGS, 0, 0, settings)
            + _frame(_WINDOW, 0, 0, struct.pack(">I", _BIG_WINDOW - 65535))
        )

    def request(self, message: bytes, now: int) -> bytes:
        sid = self.next_stream
        self.next_stream += 2
        self.inflight[sid] = now
        body = _grpc_message(message)
        self.send_window -= len(body)
        return _frame(_HEADERS, _END_HEADERS, sid, self.headers) + _frame(_DATA, _END_STREAM, sid, body)


def h2_unary(
    port: int,
    path: str,
    messages: Sequence[bytes],
    seconds: float,
    connections: int = 8,
    depth: int = 64,
    start_at: int = 0,
    warmup: float = 0.0,
) -> dict[str, Any]:
    """Keep ``depth`` calls in flight over ``connections`` connections for ``seconds``; requests
    are ``messages`` in order from ``start_at``, cycling. Calls finished during the first
    ``warmup`` seconds are not counted."""
    headers = request_headers(path, f"127.0.0.1:{port}")
    conns = [_Conn(port, headers) for _ in range(connections)]
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    per_conn = [depth // connections + (1 if i < depth % connections else 0) for i in range(connections)]
    n_msgs = len(messages)
    cursor = start_at % n_msgs
    lat = array("q")
    ok = errors = 0
    perf = time.perf_counter_ns
    t_start = perf()
    t_count = t_start + int(warmup * 1e9)
    t_end = t_count + int(seconds * 1e9)
    cpu0 = time.process_time()
    counting_cpu0 = None
    # prime
    for c, n in zip(conns, per_conn, strict=True):
        out = []
        for _ in range(n):
            out.append(c.request(messages[cursor], perf()))
            cursor = (cursor + 1) % n_msgs
        if out:
            c.sock.sendall(b"".join(out))
    stopping = False
    while True:
        now = perf()
        if counting_cpu0 is None and now >= t_count:
            counting_cpu0 = time.process_time()
            ok = errors = 0
            del lat[:]
        if now >= t_end:
            stopping = True
        if stopping and not any(c.inflight for c in conns):
            break
        for key, _ in sel.select(timeout=1.0):
            c: _Conn = key.data
            data = c.sock.recv(1 << 18)
            if not data:
                raise ConnectionError("server closed the connection")
            buf = c.buf + data if c.buf else data
            pos = 0
            size = len(buf)
            out = []
            finished = 0
            while size - pos >= 9:
                head, flags, sid = _FRAME.unpack_from(buf, pos)
                length = head >> 8
                if size - pos - 9 < length:
                    break
                ftype = head & 0xFF
                p = pos + 9
                pos = p + length
                sid &= 0x7FFFFFFF
                if ftype == _DATA:
                    if length:
                        c.got_data.add(sid)
                        c.received += length
                elif ftype == _HEADERS:
                    if flags & _END_STREAM:
                        sent = c.inflight.pop(sid, None)
                        if sent is not None:
                            t = perf()
                            if t >= t_count:
                                lat.append(t - sent)
                                if sid in c.got_data:
                                    ok += 1
                                else:
                                    errors += 1
                            c.got_data.discard(sid)
                            finished += 1
                elif ftype == _SETTINGS:
                    if not flags & _ACK:
                        out.append(_frame(_SETTINGS, _ACK, 0, b""))
                elif ftype == _PING:
                    if not flags & _ACK:
                        out.append(_frame(_PING, _ACK, 0, buf[p:pos]))
                elif ftype == _WINDOW:
                    if sid == 0:
                        c.send_window += struct.unpack_from(">I", buf, p)[0] & 0x7FFFFFFF
                elif ftype == _RST:
                    if c.inflight.pop(sid, None) is not None:
                        errors += 1
                        finished += 1
                elif ftype == _GOAWAY:
                    raise ConnectionError("server sent GOAWAY")
            c.buf = buf[pos:]
            if c.received > 1 << 30:
                out.append(_frame(_WINDOW, 0, 0, struct.pack(">I", c.received)))
                c.received = 0
            if not stopping:
                t = perf()
                for _ in range(finished):
                    msg = messages[cursor]
                    if c.send_window < len(msg) + 5:
                        break  # the server will open its window soon; stay one short meanwhile
                    out.append(c.request(msg, t))
                    cursor = (cursor + 1) % n_msgs
            if out:
                c.sock.sendall(b"".join(out))
    t_stop = perf()
    elapsed = (t_stop - t_count) / 1e9
    cpu = time.process_time() - (counting_cpu0 if counting_cpu0 is not None else cpu0)
    epoch_shift = time.time() - t_stop / 1e9
    for c in conns:
        sel.unregister(c.sock)
        c.sock.close()
    return {
        "calls": ok + errors,
        "ok": ok,
        "errors": errors,
        "ids": ok + errors,
        "seconds": elapsed,
        "cpu_s": cpu,
        "lat_ns": lat.tobytes(),
        "t0": t_count / 1e9 + epoch_shift,
        "t1": t_stop / 1e9 + epoch_shift,
    }


# ---------------------------------------------------------------------------------------------
# grpcio client


def grpc_calls(
    port: int,
    kind: str,
    messages: Sequence[bytes],
    seconds: float,
    depth: int,
    ids_per_call: int,
    start_at: int = 0,
    warmup: float = 0.0,
    mix: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``depth`` threads, each with its own channel and one call in flight. ``kind``: ``batch``
    (unary BatchResolve), ``stream`` (one StreamResolve per thread, the next request sent when the
    previous answer comes back) or ``mix`` (unary Resolve, and every 20th call a CreateIdentifier
    over mutual TLS; ``mix`` = {"port": management port, "cred": credential directory with
    ca.pem/cert.pem/key.pem, "prefix": the enterprise's prefix, "run" and "proc": tags that keep
    the created identifiers unique})."""
    if kind not in ("batch", "stream", "mix"):
        raise ValueError(f"unknown kind {kind!r}")
    import threading

    import grpc

    options = [("grpc.max_receive_message_length", 128 << 20), ("grpc.use_local_subchannel_pool", 1)]
    lat = array("q")
    lock = threading.Lock()
    counts = {"calls": 0, "ok": 0, "errors": 0, "ids": 0}
    perf = time.perf_counter_ns
    t0 = perf()
    t_count = t0 + int(warmup * 1e9)
    t_end = t_count + int(seconds * 1e9)
    n_msgs = len(messages)

    def channel() -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{port}", options=options)

    def worker(w: int) -> None:
        ch = channel()
        mine = array("q")
        c = {"calls": 0, "ok": 0, "errors": 0, "ids": 0}
        i = (start_at + w * 7919) % n_msgs
        if kind == "stream":
            call = ch.stream_stream(
                "/idnode.v1.ResolutionService/StreamResolve",
                request_serializer=None,
                response_deserializer=None,
            )
            import queue

            q: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
            sent: list[int] = []

            def gen():
                while True:
                    item = q.get()
                    if item is None:
                        return
                    yield item

            q.put(messages[i])
            sent.append(perf())
            i = (i + 1) % n_msgs
            for _ in call(gen()):
                t = perf()
                s = sent.pop(0)
                if t >= t_count:
                    mine.append(t - s)
                    c["calls"] += 1
                    c["ok"] += 1
                    c["ids"] += ids_per_call
                if t >= t_end:
                    q.put(None)
                    continue
                q.put(messages[i])
                sent.append(perf())
                i = (i + 1) % n_msgs
        else:
            path = "BatchResolve" if kind == "batch" else "Resolve"  # mix: Resolve
            call = ch.unary_unary(
                f"/idnode.v1.ResolutionService/{path}", request_serializer=None, response_deserializer=None
            )
            create = None
            if kind == "mix":
                assert mix is not None
                from pathlib import Path

                from registry.pb import record_pb2, registration_pb2

                d = Path(mix["cred"])
                creds = grpc.ssl_channel_credentials(
                    root_certificates=(d / "ca.pem").read_bytes(),
                    private_key=(d / "key.pem").read_bytes(),
                    certificate_chain=(d / "cert.pem").read_bytes(),
                )
                mch = grpc.secure_channel(f"localhost:{mix['port']}", creds, options=options)
                create = mch.unary_unary(
                    "/idnode.v1.RegistrationService/CreateIdentifier",
                    request_serializer=None,
                    response_deserializer=None,
                )
                values = [record_pb2.Value(index=1, type="URL", text="https://example.com/bench")]
                tag = f"{mix['prefix']}/BENCH-{mix['run']}-{mix['proc']}-{w}-"
                serial = 0
            k = 0
            while True:
                t = perf()
                if t >= t_end:
                    break
                try:
                    if create is not None and k % 20 == 19:
                        serial += 1
                        req = registration_pb2.CreateIdentifierRequest(
                            record=record_pb2.Record(identifier=f"{tag}{serial}", values=values)
                        ).SerializeToString()
                        create(req, timeout=30)
                    else:
                        call(messages[i], timeout=30)
                        i = (i + 1) % n_msgs
                    ok = True
                except grpc.RpcError:
                    ok = False
                k += 1
                t2 = perf()
                if t >= t_count:
                    mine.append(t2 - t)
                    c["calls"] += 1
                    c["ok" if ok else "errors"] += 1
                    c["ids"] += ids_per_call
        ch.close()
        with lock:
            lat.extend(mine)
            for key in counts:
                counts[key] += c[key]

    snap: dict[str, float] = {}

    def snapshot() -> None:
        time.sleep(max(0.0, (t_count - perf()) / 1e9))
        snap["cpu"] = time.process_time()
        snap["t0"] = time.time()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(depth)]
    timer = threading.Thread(target=snapshot)
    timer.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    timer.join()
    t_stop = time.time()
    return {
        **counts,
        "seconds": t_stop - snap["t0"],
        "cpu_s": time.process_time() - snap["cpu"],
        "lat_ns": lat.tobytes(),
        "t0": snap["t0"],
        "t1": t_stop,
    }


# ---------------------------------------------------------------------------------------------
# processes


def _child(
    fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any], cpus: list[int] | None, conn: Any
) -> None:
    import os

    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        conn.send(fn(**kwargs))
    except BaseException as exc:
        conn.send({"exception": repr(exc)})
        raise


def run_processes(
    fn: Callable[..., dict[str, Any]], kwargs_list: list[dict[str, Any]], cpus: list[int] | None = None
) -> dict[str, Any]:
    """Run ``fn(**kwargs)`` in one process per item of ``kwargs_list``, pinned to ``cpus``; merge."""
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for kwargs in kwargs_list:
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(fn, kwargs, cpus, child), daemon=True)
        p.start()
        child.close()
        procs.append((p, parent))
    results = []
    for p, parent in procs:
        results.append(parent.recv())
        p.join()
    for r in results:
        if "exception" in r:
            raise RuntimeError(f"load generator failed: {r['exception']}")
    lat = array("q")
    for r in results:
        lat.frombytes(r["lat_ns"])
    merged = {k: sum(r[k] for r in results) for k in ("calls", "ok", "errors", "ids", "cpu_s")}
    merged["seconds"] = max(r["seconds"] for r in results)
    merged["t0"] = min(r.get("t0", 0) for r in results) or None
    merged["t1"] = max(r.get("t1", 0) for r in results) or None
    merged["processes"] = len(results)
    merged["lat"] = lat
    return merged
