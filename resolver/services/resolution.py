"""ResolutionService: public, anonymous, and the node's hot path.

Unfiltered answers are assembled from the stored record bytes (see :mod:`.wire`) and handed to
gRPC through handlers without a response serializer, so a cached resolve neither decodes nor
re-encodes the record. Filtered requests and misses take the core's slower, validating path.
Per-identifier failures in batches and streams are ``google.rpc.Status`` values in the result,
never a failed call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.message import DecodeError

from registry import limits
from registry.errors import IdnodeError, InvalidArgument
from registry.pb import admin_pb2
from registry.pb import resolution_pb2 as pb
from registry.service import Registry
from resolver.errors import abort, abort_with, call_status, item_status_bytes
from resolver.services.convert import template_to_pb
from resolver.services.mapping import maps_errors
from resolver.services.wire import (
    TAG1,
    TAG2,
    TAG3,
    TAG4,
    batch_identifiers,
    field,
    fold_keys,
    frame_results,
    only_field1,
)

if TYPE_CHECKING:
    from resolver.hierarchy import Router

SERVICE_NAME = "idnode.v1.ResolutionService"
_ABSENT_MEMO_MAX_BYTES = 4 << 20
"""Bound of each NotFound memo (:class:`AbsentMemo`; measured ~3.5 KB at most per entry)."""
_ABSENT_MEMO_MAX_KEY = 128
"""Identifiers longer than this (bytes) are not memoised."""

T = TypeVar("T")


class AbsentMemo(dict[bytes, T]):
    """Answers for identifiers that are not registered, by the identifier's bytes as requested.

    Such an answer (a NotFound) depends on nothing but those bytes; whether the identifier is
    registered is still decided by the lookup, every time, before the memo is asked. Bounded by
    approximate size: cleared when :data:`_ABSENT_MEMO_MAX_BYTES` is reached, so anonymous
    callers flooding distinct misses cannot grow it; identifiers longer than
    :data:`_ABSENT_MEMO_MAX_KEY` bytes are not kept. A ``dict``, so that the hot path's ``get``
    is the dict's own."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def keep(self, key: bytes, answer: T, answer_size: int) -> None:
        """Keep ``answer`` (about ``answer_size`` bytes) for ``key``, unless ``key`` is too long."""
        if len(key) > _ABSENT_MEMO_MAX_KEY:
            return
        if self.size >= _ABSENT_MEMO_MAX_BYTES:
            self.clear()
            self.size = 0
        self[key] = answer
        self.size += len(key) + answer_size


class ResolutionHandlers:
    def __init__(self, registry: Registry, router: Router | None = None) -> None:
        """``router``: answers identifiers other nodes serve (:mod:`resolver.hierarchy`); only
        requests that miss locally (or are not plain) ever reach it."""
        self.registry = registry
        self.router = router
        self._absent_items: AbsentMemo[bytes] = AbsentMemo()
        """Framed NotFound results of batches and streams, which repeat the same misses."""
        self._absent_statuses: AbsentMemo[grpc.Status] = AbsentMemo()
        """The NotFound a unary Resolve ends with: keeping it saves a miss 20-56 us of server CPU
        (bench/README.md, "Per-call overhead", session 6)."""

    def resolve(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        """``raw`` is the serialized ResolveRequest: an unfiltered request is answered from its
        bytes (a registered identifier, or one known not to be); anything else (filters, a
        first miss, a malformed request) is parsed in full."""
        try:
            identifier = only_field1(raw)
            not_found: grpc.Status | None = None
            if identifier is not None:
                data = self.registry.lookup(identifier.upper())
                if data is not None:
                    return field(TAG1, data)
                not_found = self._absent_statuses.get(identifier)
            if not_found is None:
                answer = self._resolve_parsed(raw, identifier, context)
                if isinstance(answer, bytes):
                    return answer
                not_found = answer
        except DecodeError:
            abort(context, InvalidArgument.single("request", "is not a valid ResolveRequest"))
        except Exception as exc:
            abort(context, exc)
        abort_with(context, not_found)  # outside the try: the abort raises

    def _resolve_parsed(
        self, raw: bytes, identifier: bytes | None, context: grpc.ServicerContext
    ) -> bytes | grpc.Status:
        """:meth:`resolve` from the parsed request: the answer, or the NotFound status of a plain
        request (``identifier``: its bytes, which the fast path did not find)."""
        request = pb.ResolveRequest.FromString(raw)
        router = self.router
        if router is not None and router.handles(request.identifier):
            found, referral = router.answer(
                request.identifier, request.types, request.indexes, request.recursive, context
            )
            if referral is not None:
                return field(TAG2, referral.SerializeToString())
            return field(TAG1, found or b"")
        if identifier is not None:
            status = call_status(self.registry.missing(request.identifier))  # raises InvalidArgument
            self._absent_statuses.keep(
                identifier, status, len(status.details) + sum(len(v) for _, v in status.trailing_metadata)
            )
            return status
        return field(TAG1, self.registry.resolve(request.identifier, request.types, request.indexes))

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
        self._check_count(len(identifiers))
        return self._answer([text.encode() for text in identifiers], types, indexes, recursive, context)

    def plain_results(self, raws: list[bytes], context: grpc.ServicerContext | None = None) -> bytes:
        """:meth:`results` of a request with nothing but identifiers, given as their UTF-8 bytes
        (:func:`~resolver.services.wire.batch_identifiers`)."""
        self._check_count(len(raws))
        return self._answer(raws, (), (), False, context)

    @staticmethod
    def _check_count(n: int) -> None:
        if n > limits.BATCH_RESOLVE_MAX:
            raise InvalidArgument.single(
                "identifiers", f"at most {limits.BATCH_RESOLVE_MAX} identifiers per call"
            )

    def _answer(
        self,
        raws: list[bytes],
        types: Sequence[str],
        indexes: Sequence[int],
        recursive: bool,
        context: grpc.ServicerContext | None,
    ) -> bytes:
        if types or indexes:
            found: list[bytes | None] = [None] * len(raws)
        else:
            found = self.registry.lookup_many(fold_keys(raws))
        slow: dict[int, bytes] = {}
        if not all(found):
            absent = {} if types or indexes else self._absent_items
            for i, data in enumerate(found):
                if not data:
                    raw = raws[i]
                    item = absent.get(raw)
                    if item is None:
                        item = self._slow_result(i, raw.decode(), raw, types, indexes, recursive, context)
                    slow[i] = item
        return frame_results(raws, found, slow)

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
        ident = field(TAG1, text_bytes) if text_bytes else b""  # proto3 omits an empty string
        try:
            router = self.router
            data: bytes | None = None
            if router is not None and router.handles(text):
                data, referral = router.answer(text, types, indexes, recursive, context, f"identifiers[{i}]")
                if referral is not None:
                    item = ident + field(TAG4, referral.SerializeToString())
                    return field(TAG1, item)
            elif not filtered:
                missing = self.registry.missing(text, f"identifiers[{i}]")  # raises InvalidArgument
                item = field(TAG1, ident + field(TAG3, item_status_bytes(missing)))
                self._absent_items.keep(text_bytes, item, len(item))
                return item
            else:
                data = self.registry.resolve(text, types, indexes, field=f"identifiers[{i}]")
        except IdnodeError as exc:
            item = ident + field(TAG3, item_status_bytes(exc))
            return field(TAG1, item)
        assert data is not None
        return field(TAG1, ident + field(TAG2, data))

    def _message_results(
        self,
        raw: bytes,
        message: type[pb.BatchResolveRequest] | type[pb.StreamResolveRequest],
        context: grpc.ServicerContext,
    ) -> bytes:
        """The results for one serialized Batch/StreamResolveRequest: a plain one is read from
        its bytes, anything else is parsed by protobuf."""
        raws = batch_identifiers(raw)
        if raws is not None:
            return self.plain_results(raws, context)
        try:
            request = message.FromString(raw)
        except DecodeError:
            raise InvalidArgument.single("request", f"is not a valid {message.DESCRIPTOR.name}") from None
        return self.results(request.identifiers, request.types, request.indexes, request.recursive, context)

    @maps_errors
    def batch_resolve(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        return self._message_results(raw, pb.BatchResolveRequest, context)

    def stream_resolve(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            for raw in requests:
                yield self._message_results(raw, pb.StreamResolveRequest, context)
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
                "BatchResolve": grpc.unary_unary_rpc_method_handler(self.batch_resolve),
                "StreamResolve": grpc.stream_stream_rpc_method_handler(self.stream_resolve),
                "GetTemplate": grpc.unary_unary_rpc_method_handler(
                    self.get_template,
                    request_deserializer=pb.GetTemplateRequest.FromString,
                    response_serializer=admin_pb2.Template.SerializeToString,
                ),
            },
        )
