"""RegistrationService: an authenticated enterprise's identifiers."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from registry import codec
from registry.pb import record_pb2
from registry.pb import registration_pb2 as pb
from registry.service import Registry
from resolver.auth import Authenticator
from resolver.errors import item_status
from resolver.pb import registration_pb2_grpc
from resolver.services.mapping import maps_errors


class RegistrationServicer(registration_pb2_grpc.RegistrationServiceServicer):
    def __init__(self, registry: Registry, auth: Authenticator) -> None:
        self.registry = registry
        self.auth = auth

    @maps_errors
    def CreateIdentifier(
        self, request: pb.CreateIdentifierRequest, context: grpc.ServicerContext
    ) -> record_pb2.Record:
        principal = self.auth.principal(context)
        record = self.registry.create(
            principal,
            request.record.identifier,
            codec.values_from_pb(request.record.values),
            template=request.record.template,
            origin=context.peer(),
        )
        return codec.record_to_pb(record)

    @maps_errors
    def GetIdentifier(
        self, request: pb.GetIdentifierRequest, context: grpc.ServicerContext
    ) -> record_pb2.Record:
        principal = self.auth.principal(context)
        return codec.record_to_pb(self.registry.get(principal, request.identifier))

    @maps_errors
    def UpdateIdentifier(
        self, request: pb.UpdateIdentifierRequest, context: grpc.ServicerContext
    ) -> record_pb2.Record:
        principal = self.auth.principal(context)
        record = self.registry.update(
            principal,
            request.record.identifier,
            codec.values_from_pb(request.record.values),
            request.record.etag,
            template=request.record.template,
            origin=context.peer(),
        )
        return codec.record_to_pb(record)

    @maps_errors
    def DeleteIdentifier(
        self, request: pb.DeleteIdentifierRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        principal = self.auth.principal(context)
        self.registry.delete(principal, request.identifier, request.etag, origin=context.peer())
        return empty_pb2.Empty()

    @maps_errors
    def ListIdentifiers(
        self, request: pb.ListIdentifiersRequest, context: grpc.ServicerContext
    ) -> pb.ListIdentifiersResponse:
        principal = self.auth.principal(context)
        rows, token = self.registry.list(principal, request.parent, request.page_size, request.page_token)
        return pb.ListIdentifiersResponse(
            records=[record_pb2.Record.FromString(row) for row in rows], next_page_token=token
        )

    @maps_errors
    def BatchCreateIdentifiers(
        self, request: pb.BatchCreateIdentifiersRequest, context: grpc.ServicerContext
    ) -> pb.BatchCreateIdentifiersResponse:
        principal = self.auth.principal(context)
        items = [(r.record.identifier, codec.values_from_pb(r.record.values)) for r in request.requests]
        templates = [r.record.template for r in request.requests]
        outcomes = self.registry.batch_create(
            principal, items, request.request_id, templates=templates, origin=context.peer()
        )
        response = pb.BatchCreateIdentifiersResponse()
        for outcome in outcomes:
            if outcome.error is None:
                response.results.add(identifier=outcome.identifier, etag=outcome.etag)
            else:
                response.results.add(identifier=outcome.identifier, error=item_status(outcome.error))
        return response
