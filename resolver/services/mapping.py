"""The decorator every servicer method wears: any exception leaves as a canonical status."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from resolver.errors import abort

R = TypeVar("R")


def maps_errors(
    method: Callable[[Any, Any, grpc.ServicerContext], R],
) -> Callable[[Any, Any, grpc.ServicerContext], R]:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except Exception as exc:
            abort(context, exc)

    return wrapper
