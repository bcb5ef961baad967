"""AdminService: enterprises, their credentials, node statistics. Administrator only."""

from __future__ import annotations

import grpc
from google.protobuf.duration_pb2 import Duration

from registry import codec
from registry.errors import InvalidArgument
from registry.model import Enterprise, EnterpriseState, Principal, Role
from registry.pb import admin_pb2 as pb
from registry.service import Registry, require_admin
from resolver import pki
from resolver.auth import Authenticator
from resolver.pb import admin_pb2_grpc
from resolver.services.convert import audit_entry_to_pb, template_from_pb, template_to_pb
from resolver.services.mapping import maps_errors

UPDATABLE_ENTERPRISE_FIELDS = ("display_name", "contact", "require_template")


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
            principal, request.code, request.display_name, request.contact, issue, origin=context.peer()
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

    def _set_state(
        self, principal: Principal, prefix: str, state: EnterpriseState, origin: str = ""
    ) -> pb.Enterprise:
        updated = self.registry.set_enterprise_state(principal, prefix, state, origin=origin)
        return self._enterprise_pb(updated)

    @maps_errors
    def SuspendEnterprise(
        self, request: pb.SuspendEnterpriseRequest, context: grpc.ServicerContext
    ) -> pb.Enterprise:
        return self._set_state(
            self.auth.principal(context), request.prefix, EnterpriseState.SUSPENDED, context.peer()
        )

    @maps_errors
    def ResumeEnterprise(
        self, request: pb.ResumeEnterpriseRequest, context: grpc.ServicerContext
    ) -> pb.Enterprise:
        return self._set_state(
            self.auth.principal(context), request.prefix, EnterpriseState.ACTIVE, context.peer()
        )

    @maps_errors
    def RemoveEnterprise(
        self, request: pb.RemoveEnterpriseRequest, context: grpc.ServicerContext
    ) -> pb.RemoveEnterpriseResponse:
        self.registry.remove_enterprise(self.auth.principal(context), request.prefix, origin=context.peer())
        return pb.RemoveEnterpriseResponse()

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

    @maps_errors
    def UpdateEnterprise(
        self, request: pb.UpdateEnterpriseRequest, context: grpc.ServicerContext
    ) -> pb.Enterprise:
        principal = self.auth.principal(context)
        paths = list(request.update_mask.paths)
        unknown = [p for p in paths if p not in UPDATABLE_ENTERPRISE_FIELDS]
        if unknown or not paths:
            raise InvalidArgument.single(
                "update_mask", f"paths must be some of {', '.join(UPDATABLE_ENTERPRISE_FIELDS)}"
            )
        e = request.enterprise
        updated = self.registry.update_enterprise(
            principal,
            e.prefix,
            display_name=e.display_name if "display_name" in paths else None,
            contact=e.contact if "contact" in paths else None,
            require_template=e.require_template if "require_template" in paths else None,
            origin=context.peer(),
        )
        return self._enterprise_pb(updated)

    @maps_errors
    def CreateTemplate(self, request: pb.CreateTemplateRequest, context: grpc.ServicerContext) -> pb.Template:
        principal = self.auth.principal(context)
        template = self.registry.templates.create(
            principal, template_from_pb(request.template), origin=context.peer()
        )
        return template_to_pb(template)

    @maps_errors
    def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: grpc.ServicerContext
    ) -> pb.ListTemplatesResponse:
        require_admin(self.auth.principal(context))
        page, token = self.registry.templates.list(
            request.page_size,
            request.page_token,
            name=request.name,
            include_deprecated=not request.active_only,
        )
        return pb.ListTemplatesResponse(templates=[template_to_pb(t) for t in page], next_page_token=token)

    @maps_errors
    def DeprecateTemplate(
        self, request: pb.DeprecateTemplateRequest, context: grpc.ServicerContext
    ) -> pb.Template:
        principal = self.auth.principal(context)
        template = self.registry.templates.deprecate(principal, request.template, origin=context.peer())
        return template_to_pb(template)

    @maps_errors
    def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditEntriesResponse:
        principal = self.auth.principal(context)
        entries, token = self.registry.audit.list(
            principal,
            enterprise=request.enterprise,
            identifier=request.identifier,
            since_ns=request.start_time.ToNanoseconds() if request.HasField("start_time") else 0,
            until_ns=request.end_time.ToNanoseconds() if request.HasField("end_time") else 0,
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListAuditEntriesResponse(
            entries=[audit_entry_to_pb(e) for e in entries], next_page_token=token
        )

    @maps_errors
    def VerifyAuditTrail(
        self, request: pb.VerifyAuditTrailRequest, context: grpc.ServicerContext
    ) -> pb.VerifyAuditTrailResponse:
        require_admin(self.auth.principal(context))
        report = self.registry.audit.verify()
        return pb.VerifyAuditTrailResponse(
            ok=report.ok,
            entry_count=report.entries,
            head_sequence=report.head_sequence,
            head_hash=report.head_hash,
            problem=report.problem,
            problem_sequence=report.sequence,
        )
