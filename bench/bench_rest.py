"""Handle REST: cached GETs per second per core, with a same-run baseline.

Starts a real node (RocksDB in a temporary directory, 1,000 records) with its plain HTTP Handle
REST listener, pins this process (server) to one core and ``wrk`` to another, and loads
``GET /api/handles/PREFIX/SUFFIX`` over the records (all cached after the first pass). The same
run measures the baseline: the same HTTP stack (uvloop + httptools protocol) answering a
constant response, so the ratio says what resolving costs on top of HTTP itself. With
``--aiohttp`` (if aiohttp is installed) it also measures aiohttp serving the same app and a
constant, the stack this one was chosen against.

Prints one line per measurement: requests/s at saturation and requests per CPU-second of the
server process (the "per core" figure), and the ratio to the baseline.

    apt-get install -y wrk
    .venv/bin/python bench/bench_rest.py [--seconds 5] [--connections 64] [--aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httptools
import uvloop

from registry.model import Principal, Value
from resolver.datadir import DataDir
from resolver.handle_rest.app import Request, http_response
from resolver.server import NodeServer, ServerConfig

RECORDS = 1000
PREFIX = "88.118.8"
CONSTANT = http_response(200, b'{"responseCode":1,"handle":"88.118.8/x","values":[]}')


class ConstantProtocol(asyncio.Protocol):
    """The baseline: httptools on uvloop answering a constant response."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.write(CONSTANT)


def serve_in_thread(start: Callable[[asyncio.AbstractEventLoop], object], port: int) -> None:
    """Run ``start(loop)`` (which binds 127.0.0.1:``port``) on a new uvloop loop in a daemon thread."""
    ready = threading.Event()

    def run() -> None:
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start(loop))  # type: ignore[arg-type]
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)


def wrk(port: int, paths: list[str], seconds: int, connections: int, core: int) -> float:
    """Requests/s reported by wrk (pinned to ``core``) cycling over ``paths``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n")
        f.write("local i = 0\nrequest = function()\n  i = i % #paths + 1\n")
        f.write('  return wrk.format("GET", paths[i])\nend\n')
        script = f.name
    cmd = ["taskset", "-c", str(core), "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", script]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True)
    os.unlink(script)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if not match or "Non-2xx" in out.stdout:
        raise RuntimeError(f"wrk failed or saw errors:\n{out.stdout}")
    return float(match.group(1))


def measure(name: str, port: int, paths: list[str], args: argparse.Namespace) -> float:
    """Run wrk against ``port`` and print req/s and req per server CPU-second."""
    wrk(port, paths, 1, args.connections, args.client_core)  # warm up: fill caches
    cpu0, wall0 = time.process_time(), time.perf_counter()
    rate = wrk(port, paths, args.seconds, args.connections, args.client_core)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    per_core = rate * wall / cpu if cpu else rate
    print(f"{name:<44} {rate:>10,.0f} req/s   {per_core:>10,.0f} req/CPU-s", flush=True)
    return per_core


def aiohttp_servers(
    app_handle: Callable[[Request], bytes], cached: Callable[[bytes], bytes | None]
) -> tuple[int, int]:
    """aiohttp serving (a) the same Handle app, (b) a constant; returns their ports."""
    from aiohttp import web

    body = CONSTANT.split(b"\r\n\r\n", 1)[1]

    async def constant(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def handle(request: web.Request) -> web.Response:
        target = request.raw_path.encode()
        raw = cached(target) or app_handle(Request("GET", target))
        head, _, payload = raw.partition(b"\r\n\r\n")
        return web.Response(body=payload, status=int(head[9:12]), content_type="application/json")

    ports: list[int] = []

    def starter(handler: Callable[..., object]) -> Callable[[asyncio.AbstractEventLoop], object]:
        async def start(loop: asyncio.AbstractEventLoop) -> None:
            app = web.Application()
            app.router.add_get("/{tail:.*}", handler)  # type: ignore[arg-type]
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

        return start

    serve_in_thread(starter(handle), 0)
    serve_in_thread(starter(constant), 0)
    return ports[0], ports[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--aiohttp", action="store_true", help="also measure aiohttp (must be installed)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench_rest needs wrk: apt-get install -y wrk")
    os.sched_setaffinity(0, {args.server_core})  # before any thread starts: they all inherit it

    root = Path(tempfile.mkdtemp(prefix="bench-rest-"))
    data_dir = DataDir(root / "node")
    data_dir.init("88.118")
    config = ServerConfig(
        data_dir=data_dir.root,
        public_address="127.0.0.1:0",
        management_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        fsync=False,
        threads=4,
        block_cache_bytes=64 << 20,
        cache_bytes=64 << 20,
    )
    server = NodeServer(config)
    server.start()
    try:
        admin = Principal.admin()
        server.registry.create_enterprise(admin, "8", "Bench", "", lambda _: "bench")
        paths = []
        for i in range(RECORDS):
            handle = f"{PREFIX}/P-{i:06d}"
            server.registry.create(
                admin,
                handle,
                [
                    Value(1, "URL", f"https://example.com/products/{i}"),
                    Value(2, "product.batch", f"B{i % 97}"),
                    Value(3, "product.model", "XK-200"),
                ],
            )
            paths.append(f"/api/handles/{handle}")

        const_port = 0

        async def start_constant(loop: asyncio.AbstractEventLoop) -> None:
            nonlocal const_port
            srv = await loop.create_server(ConstantProtocol, "127.0.0.1", 0)
            const_port = srv.sockets[0].getsockname()[1]

        serve_in_thread(start_constant, 0)
        print(f"Handle REST bench: {RECORDS} records, wrk -c{args.connections}, {args.seconds:.0f}s per run")
        baseline = measure("baseline: uvloop+httptools, constant", const_port, paths, args)
        rest = measure("idnode REST: cached GET /api/handles/...", server.http_port, paths, args)
        print(f"{'ratio to baseline':<44} {rest / baseline:>10.2f}")
        if args.aiohttp:
            assert server.rest is not None
            app = server.rest.app
            same_port, constant_port = aiohttp_servers(app.handle, app.cached)
            measure("aiohttp: constant", constant_port, paths, args)
            measure("aiohttp: same app, cached GET", same_port, paths, args)
    finally:
        server.stop(0)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
