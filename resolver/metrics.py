"""Prometheus metrics that cost the hot path next to nothing.

Calls are counted in plain integers and a fixed-bucket latency histogram per (method, code); the
Prometheus families are only built when the endpoint is scraped (a custom collector), so a call
pays two clock reads, a bisect and two integer increments. Cache and store figures are read from
the cache's own counters at scrape time.

Exposed metrics (all prefixed ``idnode_``):

- ``grpc_requests_total{method,code}`` — finished calls;
- ``grpc_request_duration_seconds{method}`` — handler latency histogram (unary and streaming);
- ``cache_hits_total``, ``cache_negative_hits_total``, ``cache_misses_total`` (a miss is one
  store read), ``cache_entries``, ``cache_bytes``;
- ``identifiers`` — identifiers registered (the writer process only);
- ``store_memory_bytes{part}`` — what the embedded RocksDB holds in the process: ``block_cache``,
  ``table_readers`` (index and filter blocks, which grow with the data) and ``memtables``;
- ``uptime_seconds``.

With several worker processes each worker serves its own endpoint (port + worker index) and
labels nothing: scrape them all and sum.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from cache import RecordCache

BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


class MethodStats:
    """Counters of one RPC method. Increments are not locked: under the GIL a lost increment is
    possible only between threads interleaving inside ``+=``, which costs at most a few counts."""

    __slots__ = ("buckets", "codes", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.codes: dict[str, int] = {}
        self.sum = 0.0


class Metrics:
    """Per-process metrics. :meth:`interceptor` instruments every call; :meth:`serve` exposes them."""

    def __init__(
        self,
        cache: RecordCache | None = None,
        identifiers: Callable[[], int] | None = None,
        store_memory: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.methods: dict[str, MethodStats] = {}
        self.cache = cache
        self.identifiers = identifiers
        self.store_memory = store_memory
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def stats(self, method: str) -> MethodStats:
        found = self.methods.get(method)
        if found is None:
            with self._lock:
                found = self.methods.setdefault(method, MethodStats())
        return found

    def observe(self, stats: MethodStats, seconds: float, code: str) -> None:
        stats.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        stats.sum += seconds
        stats.codes[code] = stats.codes.get(code, 0) + 1

    def interceptor(self) -> grpc.ServerInterceptor:
        return _MetricsInterceptor(self)

    def collector(self) -> Collector:
        return _Collector(self)

    def serve(self, address: str) -> int:
        """Start the ``/metrics`` HTTP endpoint on ``host:port``; returns the bound port."""
        host, _, port = address.rpartition(":")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector())
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
        return int(server.server_port)


def _code_name(context: grpc.ServicerContext) -> str:
    code = context.code()  # type: ignore[attr-defined]
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


class _MetricsInterceptor(grpc.ServerInterceptor):
    """Wraps each method's handler once (cached per method), not per call."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        try:
            return self._wrapped[method]
        except KeyError:
            pass
        handler = continuation(handler_call_details)
        wrapped = self._wrap(method, handler) if handler is not None else None
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        stats = self.metrics.stats(method)
        observe = self.metrics.observe
        clock = time.perf_counter

        def unary(
            inner: Callable[[Any, grpc.ServicerContext], Any],
        ) -> Callable[[Any, grpc.ServicerContext], Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                start = clock()
                try:
                    response = inner(request, context)
                except BaseException:
                    observe(stats, clock() - start, _code_name(context))
                    raise
                observe(stats, clock() - start, "OK")
                return response

            return call

        def streaming(
            inner: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
        ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start = clock()
                try:
                    yield from inner(request, context)
                except BaseException:
                    observe(stats, clock() - start, _code_name(context))
                    raise
                observe(stats, clock() - start, "OK")

            return call

        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kw)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **kw)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kw)
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **kw)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        m = self.metrics
        requests = CounterMetricFamily(
            "idnode_grpc_requests", "Finished gRPC calls.", labels=["method", "code"]
        )
        latency = HistogramMetricFamily(
            "idnode_grpc_request_duration_seconds", "gRPC handler latency.", labels=["method"]
        )
        for method, stats in sorted(m.methods.items()):
            for code, n in sorted(stats.codes.items()):
                requests.add_metric([method, code], n)
            cumulative, buckets = 0, []
            for bound, n in zip((*BUCKETS, float("inf")), stats.buckets, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([method], buckets, stats.sum)
        yield requests
        yield latency
        if m.cache is not None:
            s = m.cache.stats()
            yield CounterMetricFamily("idnode_cache_hits", "Cache hits.", value=s.hits)
            yield CounterMetricFamily(
                "idnode_cache_negative_hits", "Cached not-registered answers.", value=s.negative_hits
            )
            yield CounterMetricFamily(
                "idnode_cache_misses", "Cache misses (each one store read).", value=s.misses
            )
            yield GaugeMetricFamily("idnode_cache_entries", "Positive cache entries.", value=s.entries)
            yield GaugeMetricFamily("idnode_cache_bytes", "Bytes held by positive entries.", value=s.bytes)
        if m.identifiers is not None:
            yield GaugeMetricFamily("idnode_identifiers", "Identifiers registered.", value=m.identifiers())
        if m.store_memory is not None:
            memory = GaugeMetricFamily(
                "idnode_store_memory_bytes",
                "Bytes the embedded store holds in this process.",
                labels=["part"],
            )
            for part, n in sorted(m.store_memory().items()):
                memory.add_metric([part], n)
            yield memory
        yield GaugeMetricFamily(
            "idnode_uptime_seconds", "Seconds since start.", value=time.monotonic() - m.started
        )
