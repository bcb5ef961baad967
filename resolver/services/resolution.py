"""ResolutionService: public, anonymous, and the node's hot path.

Unfiltered answers are assembled from the stored record bytes (see :mod:`.wire`) and handed to
gRPC through handlers without a response serializer, so a cached resolve neither decodes nor
re-encodes the record. Filtered requests and misses take the core's slower, validating path.
Per-identifier failures in batches and streams are ``google.rpc.Status`` values in the result,
never a failed call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import DecodeError

from registry import limits
from registry.errors import IdnodeError, InvalidArgument
from registry.pb import admin_pb2
from registry.pb import resolution_pb2 as pb
from registry.service import Registry
from resolver.errors import abort, item_status
from resolver.services.convert import template_to_pb
from resolver.services.mapping import maps_errors
from resolver.services.wire import (
    SMALL_LIMIT,
    SMALL_VARINTS,
    TAG1,
    TAG2,
    TAG3,
    TAG4,
    field,
    only_field1,
    varint,
)

if TYPE_CHECKING:
    from resolver.hierarchy import Router

SERVICE_NAME = "idnode.v1.ResolutionService"


class ResolutionHandlers:
    def __init__(self, registry: Registry, router: Router | None = None) -> None:
        """``router``: answers identifiers other nodes serve (:mod:`resolver.hierarchy`); only
        requests that miss locally (or are not plain) ever reach it."""
        self.registry = registry
        self.router = router

    def resolve(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        """``raw`` is the serialized ResolveRequest: an unfiltered request is answered from its
        bytes; anything else (filters, a miss, a malformed request) is parsed in full."""
        try:
            identifier = only_field1(raw)
            if identifier is not None:
                data = self.registry.lookup(identifier.upper())
                if data is not None:
                    return field(TAG1, data)
            request = pb.ResolveRequest.FromString(raw)
            router = self.router
            if router is not None and router.handles(request.identifier):
                found, referral = router.answer(
                    request.identifier, request.types, request.indexes, request.recursive, context
                )
                if referral is not None:
                    return field(TAG2, referral.SerializeToString())
                data = found or b""
            elif identifier is not None:  # looked up above and not there
                raise self.registry.missing(request.identifier)
            else:
                data = self.registry.resolve(request.identifier, request.types, request.indexes)
        except DecodeError:
            abort(context, InvalidArgument.single("request", "is not a valid ResolveRequest"))
        except Exception as exc:
            abort(context, exc)
        return field(TAG1, data)

    def results(
        self,
        identifiers: Sequence[str],
        types: Sequence[str],
        indexes: Sequence[int],
        recursive: bool = False,
        context: grpc.ServicerContext | None = None,
    ) -> bytes:
        """The encoded ``repeated ResolveResult results = 1`` for ``identifiers``, in order; an
        identifier another node serves gets a referral, or with ``recursive`` its record."""
        if len(identifiers) > limits.BATCH_RESOLVE_MAX:
            raise InvalidArgument.single(
                "identifiers", f"at most {limits.BATCH_RESOLVE_MAX} identifiers per call"
            )
        raws = [text.encode() for text in identifiers]
        if types or indexes:
            found: list[bytes | None] = [None] * len(raws)
        else:
            found = self.registry.lookup_many([raw.upper() for raw in raws])
        parts: list[bytes] = []
        extend = parts.extend
        for i, data in enumerate(found):
            raw = raws[i]
            if data is None:
                parts.append(self._slow_result(i, identifiers[i], raw, types, indexes, recursive, context))
                continue
            # ResolveResult{identifier=raw, record=data} as field 1 of the response, framed flat
            # (one join at the end, no intermediate bytes per item): measured 0.29 vs 0.48 us/id.
            n_raw, n_data = len(raw), len(data)
            v_raw = SMALL_VARINTS[n_raw] if n_raw < SMALL_LIMIT else varint(n_raw)
            v_data = SMALL_VARINTS[n_data] if n_data < SMALL_LIMIT else varint(n_data)
            inner = 2 + len(v_raw) + n_raw + len(v_data) + n_data
            extend(
                (
                    TAG1,
                    SMALL_VARINTS[inner] if inner < SMALL_LIMIT else varint(inner),
                    TAG1,
                    v_raw,
                    raw,
                    TAG2,
                    v_data,
                    data,
                )
            )
        return b"".join(parts)

    def _slow_result(
        self,
        i: int,
        text: str,
        text_bytes: bytes,
        types: Sequence[str],
        indexes: Sequence[int],
        recursive: bool,
        context: grpc.ServicerContext | None,
    ) -> bytes:
        """One framed ResolveResult for an identifier the fast path did not find: a filtered
        answer, a referral or recursive answer, or an error status."""
        filtered = bool(types or indexes)
        try:
            router = self.router
            data: bytes | None = None
            if router is not None and router.handles(text):
                data, referral = router.answer(text, types, indexes, recursive, context, f"identifiers[{i}]")
                if referral is not None:
                    item = field(TAG1, text_bytes) + field(TAG4, referral.SerializeToString())
                    return field(TAG1, item)
            elif not filtered:
                raise self.registry.missing(text, f"identifiers[{i}]")
            else:
                data = self.registry.resolve(text, types, indexes, field=f"identifiers[{i}]")
        except IdnodeError as exc:
            item = field(TAG1, text_bytes) + field(TAG3, item_status(exc).SerializeToString())
            return field(TAG1, item)
        assert data is not None
        return field(TAG1, field(TAG1, text_bytes) + field(TAG2, data))

    @maps_errors
    def batch_resolve(self, request: pb.BatchResolveRequest, context: grpc.ServicerContext) -> bytes:
        return self.results(request.identifiers, request.types, request.indexes, request.recursive, context)

    def stream_resolve(
        self, requests: Iterator[pb.StreamResolveRequest], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        try:
            for request in requests:
                yield self.results(
                    request.identifiers, request.types, request.indexes, request.recursive, context
                )
        except Exception as exc:
            abort(context, exc)

    @maps_errors
    def get_template(
        self, request: pb.GetTemplateRequest, context: grpc.ServicerContext
    ) -> admin_pb2.Template:
        """Public: a template's definition, for rendering a record's values by field name."""
        return template_to_pb(self.registry.templates.get(request.template))

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Resolve": grpc.unary_unary_rpc_method_handler(self.resolve),
                "BatchResolve": grpc.unary_unary_rpc_method_handler(
                    self.batch_resolve, request_deserializer=pb.BatchResolveRequest.FromString
                ),
                "StreamResolve": grpc.stream_stream_rpc_method_handler(
                    self.stream_resolve, request_deserializer=pb.StreamResolveRequest.FromString
                ),
                "GetTemplate": grpc.unary_unary_rpc_method_handler(
                    self.get_template,
                    request_deserializer=pb.GetTemplateRequest.FromString,
                    response_serializer=admin_pb2.Template.SerializeToString,
                ),
            },
        )
