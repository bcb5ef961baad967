"""Server interceptors, built in one place and in one explicit order.

The chain is (outermost first): metrics (:mod:`resolver.metrics`, wrapped once per method, so
a call pays a dict lookup and two clock reads), then the access log (only when enabled).
Authentication is not an interceptor: services ask :class:`resolver.auth.Authenticator` for the
principal, so anonymous resolution pays nothing for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from resolver.metrics import Metrics

access_log = logging.getLogger("idnode.access")


class AccessLogInterceptor(grpc.ServerInterceptor):
    """One JSON line per unary call: method, peer-independent status, duration. Never logs
    request contents or credentials."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        inner = handler.unary_unary

        def logged(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return inner(request, context)
            except Exception:
                code = str(context.code() or grpc.StatusCode.UNKNOWN).removeprefix("StatusCode.")
                raise
            finally:
                access_log.info(
                    json.dumps(
                        {"method": method, "code": code, "ms": round((time.perf_counter() - start) * 1e3, 3)}
                    )
                )

        return grpc.unary_unary_rpc_method_handler(
            logged,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def build_interceptors(*, metrics: Metrics | None, access_log_enabled: bool) -> list[grpc.ServerInterceptor]:
    """The interceptor chain for a server, outermost first."""
    chain: list[grpc.ServerInterceptor] = []
    if metrics is not None:
        chain.append(metrics.interceptor())
    if access_log_enabled:
        chain.append(AccessLogInterceptor())
    return chain
