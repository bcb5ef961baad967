"""AdminService: enterprises, their credentials, node statistics. Administrator only."""

from __future__ import annotations

import grpc
from google.protobuf.duration_pb2 import Duration

from registry import codec
from registry.model import Enterprise, EnterpriseState, Principal, Role
from registry.pb import admin_pb2 as pb
from registry.service import Registry
from resolver import pki
from resolver.auth import Authenticator
from resolver.pb import admin_pb2_grpc
from resolver.services.mapping import maps_errors


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, registry: Registry, auth: Authenticator, ca: pki.KeyPair) -> None:
        self.registry = registry
        self.auth = auth
        self.ca = ca

    def _enterprise_pb(self, enterprise: Enterprise) -> pb.Enterprise:
        return codec.enterprise_to_pb(enterprise, self.registry.identifier_count(enterprise.prefix))

    @maps_errors
    def CreateEnterprise(
        self, request: pb.CreateEnterpriseRequest, context: grpc.ServicerContext
    ) -> pb.CreateEnterpriseResponse:
        principal = self.auth.principal(context)
        issued: list[pki.KeyPair] = []

        def issue(prefix: str) -> str:
            pair = pki.issue_client_cert(self.ca, Role.ENTERPRISE, prefix)
            issued.append(pair)
            return pki.fingerprint(pair.cert_pem)

        enterprise = self.registry.create_enterprise(
            principal, request.code, request.display_name, request.contact, issue
        )
        pair = issued[-1]
        return pb.CreateEnterpriseResponse(
            enterprise=self._enterprise_pb(enterprise),
            credential=pb.Credential(
                certificate_pem=pair.cert_pem.decode(),
                private_key_pem=pair.key_pem.decode(),
                ca_certificate_pem=self.ca.cert_pem.decode(),
            ),
        )

    @maps_errors
    def GetEnterprise(self, request: pb.GetEnterpriseRequest, context: grpc.ServicerContext) -> pb.Enterprise:
        principal = self.auth.principal(context)
        return self._enterprise_pb(self.registry.get_enterprise(principal, request.prefix))

    @maps_errors
    def ListEnterprises(
        self, request: pb.ListEnterprisesRequest, context: grpc.ServicerContext
    ) -> pb.ListEnterprisesResponse:
        principal = self.auth.principal(context)
        page, token = self.registry.list_enterprises(principal, request.page_size, request.page_token)
        return pb.ListEnterprisesResponse(
            enterprises=[self._enterprise_pb(e) for e in page], next_page_token=token
        )

    def _set_state(self, principal: Principal, prefix: str, state: EnterpriseState) -> pb.Enterprise:
        return self._enterprise_pb(self.registry.set_enterprise_state(principal, prefix, state))

    @maps_errors
    def SuspendEnterprise(
        self, request: pb.SuspendEnterpriseRequest, context: grpc.ServicerContext
    ) -> pb.Enterprise:
        return self._set_state(self.auth.principal(context), request.prefix, EnterpriseState.SUSPENDED)

    @maps_errors
    def ResumeEnterprise(
        self, request: pb.ResumeEnterpriseRequest, context: grpc.ServicerContext
    ) -> pb.Enterprise:
        return self._set_state(self.auth.principal(context), request.prefix, EnterpriseState.ACTIVE)

    @maps_errors
    def GetNodeStats(self, request: pb.GetNodeStatsRequest, context: grpc.ServicerContext) -> pb.NodeStats:
        stats = self.registry.stats(self.auth.principal(context))
        uptime = Duration()
        uptime.FromNanoseconds(int(stats.uptime_seconds * 1e9))
        return pb.NodeStats(
            node_prefix=stats.node_prefix,
            identifier_count=stats.identifier_count,
            identifier_count_by_enterprise=stats.identifier_count_by_enterprise,
            enterprise_count=stats.enterprise_count,
            uptime=uptime,
        )
