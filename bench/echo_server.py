"""The bare echo baseline: the ceiling of a Python gRPC call on this machine.

A sync grpcio server built exactly like :class:`resolver.server.NodeServer`'s public listener (same
thread pool size, options and concurrency limit) but with no interceptors and a handler that does
nothing: ``Resolve`` answers a fixed pre-built payload (the size of a typical record answer) without
(de)serializers, ``BatchResolve`` answers a fixed payload of the size of a batch answer, and
``StreamResolve`` answers each request message with a fixed payload. Method paths are the node's, so
the same load generator (and the same pre-encoded requests) drive both.

``EchoPool(N, ...)`` runs N processes sharing the port through SO_REUSEPORT, each pinned to a CPU
of its own as a :class:`resolver.workers.WorkerPool`'s N workers pin themselves (``pin=False``:
not pinned)::

    python -m bench.echo_server --port 9000 --processes 2 --unary-bytes 300
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent import futures

import grpc

from registry import limits
from resolver.server import ServerConfig, tune_gc_for_serving
from resolver.shutdown import stop_on_signals
from resolver.workers import pin_to_cpu

SERVICE = "idnode.v1.ResolutionService"


def build_server(
    port: int, unary_payload: bytes, batch_payload: bytes, reuse_port: bool, config: ServerConfig
) -> tuple[grpc.Server, int]:
    def resolve(request: bytes, context: grpc.ServicerContext) -> bytes:
        return unary_payload

    def batch(request: bytes, context: grpc.ServicerContext) -> bytes:
        return batch_payload

    def stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in requests:
            yield batch_payload

    options = [
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_receive_message_length", limits.MESSAGE_MAX_BYTES),
        ("grpc.max_send_message_length", 128 << 20),
        *config.extra_options,
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="echo-rpc"),
        options=options,
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Resolve": grpc.unary_unary_rpc_method_handler(resolve),
                    "BatchResolve": grpc.unary_unary_rpc_method_handler(batch),
                    "StreamResolve": grpc.stream_stream_rpc_method_handler(stream),
                },
            ),
        )
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    return server, bound


def _child(
    port: int,
    unary_bytes: int,
    batch_bytes: int,
    reuse_port: bool,
    cpus: list[int] | None,
    pin_index: int | None,
    ready: object,
) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)  # before grpc starts its threads, so that they all inherit it
    if pin_index is not None:
        pin_to_cpu(pin_index)
    stop = stop_on_signals()
    server, bound = build_server(port, b"x" * unary_bytes, b"x" * batch_bytes, reuse_port, ServerConfig())
    server.start()
    tune_gc_for_serving()  # as the node's processes do: the ratios compare like with like
    ready.send(bound)  # type: ignore[attr-defined]
    stop.wait()
    server.stop(0).wait()


class EchoPool:
    """``processes`` echo server processes on one port (SO_REUSEPORT when more than one); ``cpus``:
    run every process on these CPUs; else with ``pin`` and more than one process, pin process i to
    a CPU as :func:`resolver.workers.pin_to_cpu` pins node worker i."""

    def __init__(
        self,
        processes: int,
        unary_bytes: int,
        batch_bytes: int,
        port: int = 0,
        cpus: list[int] | None = None,
        pin: bool = True,
    ) -> None:
        self.processes = processes
        self.cpus = cpus
        self.pin = pin and processes > 1 and not cpus
        self.unary_bytes = unary_bytes
        self.batch_bytes = batch_bytes
        self.port = port
        self.procs: list[multiprocessing.process.BaseProcess] = []

    def start(self) -> int:
        ctx = multiprocessing.get_context("spawn")
        reuse = self.processes > 1
        for i in range(self.processes):
            parent, child = ctx.Pipe(duplex=False)
            pin_index = i if self.pin else None
            proc = ctx.Process(
                target=_child,
                args=(self.port, self.unary_bytes, self.batch_bytes, reuse, self.cpus, pin_index, child),
                daemon=True,
            )
            proc.start()
            child.close()
            if not parent.poll(30):
                raise RuntimeError("echo server did not start")
            self.port = parent.recv()
            self.procs.append(proc)
        return self.port

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid]

    def stop(self) -> None:
        for p in self.procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        self.procs.clear()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--unary-bytes", type=int, default=300)
    parser.add_argument("--batch-bytes", type=int, default=300_000)
    args = parser.parse_args()
    pool = EchoPool(args.processes, args.unary_bytes, args.batch_bytes, args.port)
    port = pool.start()
    print(f"echo serving on 127.0.0.1:{port} pids {pool.pids}", flush=True)
    stop = stop_on_signals()
    stop.wait()
    pool.stop()


if __name__ == "__main__":
    main()
