"""Infrastructure around the services: health checking, server reflection, TLS on the public
listener, message size limits, the access log, and the client's retry policy."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from registry import limits
from resolver.client import IdnodeClient, value
from resolver.datadir import DataDir
from resolver.server import SERVICE_NAMES, NodeServer
from tests.node_fixtures import (
    MakeEnterprise,
    management_target,
    node_config,
    public_target,
    raw_rpc_error,
    rpc_error,
)

IDNODE_SERVICES = {
    "idnode.v1.ResolutionService",
    "idnode.v1.RegistrationService",
    "idnode.v1.AdminService",
    "idnode.v1.ChangeFeedService",
    "idnode.v1.HierarchyService",
}


# ------------------------------------------------------------------------------ health


@pytest.mark.parametrize("listener", ["public", "management"])
def test_health_reports_serving(listener: str, anon_client: IdnodeClient, admin_client: IdnodeClient) -> None:
    channel = (anon_client if listener == "public" else admin_client).channel
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", *sorted(IDNODE_SERVICES)):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    err = raw_rpc_error(lambda: health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5))
    assert err.code() is grpc.StatusCode.NOT_FOUND


def test_health_watch_streams_serving(anon_client: IdnodeClient) -> None:
    health = health_pb2_grpc.HealthStub(anon_client.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service="idnode.v1.ResolutionService"), timeout=5)
    first = next(watch)
    watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


# ------------------------------------------------------------------------------ reflection


def _reflect(channel: grpc.Channel, *requests: reflection_pb2.ServerReflectionRequest):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return list(stub.ServerReflectionInfo(iter(requests), timeout=5))


@pytest.mark.parametrize("listener", ["public", "management"])
def test_reflection_lists_services(
    listener: str, anon_client: IdnodeClient, admin_client: IdnodeClient
) -> None:
    channel = (anon_client if listener == "public" else admin_client).channel
    [answer] = _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in answer.list_services_response.service}
    assert names >= IDNODE_SERVICES
    assert "grpc.health.v1.Health" in names
    assert "grpc.reflection.v1alpha.ServerReflection" in names
    assert set(SERVICE_NAMES) == IDNODE_SERVICES


def test_reflection_describes_the_idnode_services(anon_client: IdnodeClient) -> None:
    answers = _reflect(
        anon_client.channel,
        *(
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)
            for name in sorted(IDNODE_SERVICES)
        ),
    )
    methods: dict[str, set[str]] = {}
    for answer in answers:
        assert answer.WhichOneof("message_response") == "file_descriptor_response"
        for raw in answer.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            for service in fd.service:
                methods[f"{fd.package}.{service.name}"] = {m.name for m in service.method}
    resolution = {"Resolve", "BatchResolve", "StreamResolve", "GetTemplate"}
    assert methods["idnode.v1.ResolutionService"] == resolution
    assert methods["idnode.v1.ChangeFeedService"] == {"WatchChanges"}
    assert "BatchCreateIdentifiers" in methods["idnode.v1.RegistrationService"]
    assert "GetNodeStats" in methods["idnode.v1.AdminService"]
    assert {"RegisterPrefix", "WithdrawPrefix", "LookupRoute"} <= methods["idnode.v1.HierarchyService"]


# ------------------------------------------------------------------------------ listeners and limits


def test_public_listener_with_tls(node_dir: DataDir) -> None:
    server = NodeServer(node_config(node_dir.root, public_tls=True))
    server.start()
    try:
        with IdnodeClient(public_target(server).replace("127.0.0.1", "localhost"), ca=node_dir.ca_cert) as c:
            err = rpc_error(lambda: c.resolve("88.118.8/X"))
            assert err.code is grpc.StatusCode.NOT_FOUND
            # server-authenticated TLS is still anonymous
            assert rpc_error(lambda: c.stats()).reason == "CREDENTIAL_REQUIRED"
        with IdnodeClient(public_target(server), retries=False) as plain:
            assert rpc_error(lambda: plain.resolve("88.118.8/X")).code is grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_oversized_message_is_refused(make_enterprise: MakeEnterprise, admin_client: IdnodeClient) -> None:
    prefix, c = make_enterprise("8")
    huge = [value(1, "BLOB", b"x" * (limits.MESSAGE_MAX_BYTES + 1))]
    err = rpc_error(lambda: c.create(f"{prefix}/HUGE", huge))
    assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert admin_client.stats().identifier_count == 0
    c.create(f"{prefix}/SMALL", [])  # the connection is still usable
    assert admin_client.stats().identifier_count == 1


def test_access_log_lines(node_dir: DataDir, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="idnode.access")
    server = NodeServer(node_config(node_dir.root, access_log=True))
    server.start()
    try:
        with IdnodeClient(management_target(server), credentials=node_dir.admin.directory) as admin:
            admin.stats()
            rpc_error(lambda: admin.get_enterprise("88.118.404"))
        with IdnodeClient(public_target(server)) as anon:
            rpc_error(lambda: anon.resolve("88.118.8/NONE"))
    finally:
        server.stop(0)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "idnode.access"]
    seen = {(line["method"], line["code"]) for line in lines}
    assert ("/idnode.v1.AdminService/GetNodeStats", "OK") in seen
    assert ("/idnode.v1.AdminService/GetEnterprise", "NOT_FOUND") in seen
    assert ("/idnode.v1.ResolutionService/Resolve", "NOT_FOUND") in seen
    assert all(isinstance(line["ms"], int | float) and line["ms"] >= 0 for line in lines)


def test_stop_drains_and_refuses_new_calls(node_dir: DataDir) -> None:
    server = NodeServer(node_config(node_dir.root))
    server.start()
    with IdnodeClient(public_target(server), retries=False) as c:
        assert rpc_error(lambda: c.resolve("88.118.8/X")).code is grpc.StatusCode.NOT_FOUND
        server.stop(0)
        assert rpc_error(lambda: c.resolve("88.118.8/X")).code is grpc.StatusCode.UNAVAILABLE


# ------------------------------------------------------------------------------ client retry policy


class _Unavailable:
    """A gRPC server answering every idnode method with UNAVAILABLE, counting attempts."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((self,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method

        def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls[method] = self.calls.get(method, 0) + 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "try later")
            raise AssertionError("unreachable")

        return grpc.unary_unary_rpc_method_handler(refuse)


@pytest.fixture
def unavailable() -> Iterator[_Unavailable]:
    u = _Unavailable()
    u.server.start()
    yield u
    u.server.stop(0)


def test_client_retries_only_safe_calls(unavailable: _Unavailable) -> None:
    with IdnodeClient(f"127.0.0.1:{unavailable.port}") as c:
        safe = {
            "/idnode.v1.ResolutionService/Resolve": lambda: c.resolve("88.118.8/X"),
            "/idnode.v1.ResolutionService/BatchResolve": lambda: c.batch_resolve(["88.118.8/X"]),
            "/idnode.v1.RegistrationService/GetIdentifier": lambda: c.get("88.118.8/X"),
            "/idnode.v1.RegistrationService/ListIdentifiers": lambda: c.list("88.118.8"),
            "/idnode.v1.AdminService/GetEnterprise": lambda: c.get_enterprise("88.118.8"),
            "/idnode.v1.AdminService/ListEnterprises": lambda: c.list_enterprises(),
            "/idnode.v1.AdminService/GetNodeStats": lambda: c.stats(),
        }
        unsafe = {
            "/idnode.v1.RegistrationService/CreateIdentifier": lambda: c.create("88.118.8/X", []),
            "/idnode.v1.RegistrationService/UpdateIdentifier": lambda: c.update("88.118.8/X", []),
            "/idnode.v1.RegistrationService/DeleteIdentifier": lambda: c.delete("88.118.8/X"),
            "/idnode.v1.RegistrationService/BatchCreateIdentifiers": lambda: c.batch_create(
                [("88.118.8/X", [])]
            ),
            "/idnode.v1.AdminService/CreateEnterprise": lambda: c.create_enterprise("8"),
            "/idnode.v1.AdminService/SuspendEnterprise": lambda: c.suspend_enterprise("88.118.8"),
            "/idnode.v1.AdminService/ResumeEnterprise": lambda: c.resume_enterprise("88.118.8"),
        }
        # concurrently, so the retries' backoffs overlap
        with futures.ThreadPoolExecutor(len(safe) + len(unsafe)) as pool:
            errors = list(pool.map(rpc_error, [*safe.values(), *unsafe.values()]))
        assert all(e.code is grpc.StatusCode.UNAVAILABLE for e in errors)
    for method in safe:
        assert unavailable.calls[method] == 4, method
    for method in unsafe:
        assert unavailable.calls[method] == 1, method


def test_client_retries_batch_create_carrying_a_request_id(unavailable: _Unavailable) -> None:
    """Safe to repeat: the node answers a retry with the first answer (see the client's docstring)."""
    with IdnodeClient(f"127.0.0.1:{unavailable.port}") as c:
        err = rpc_error(lambda: c.batch_create([("88.118.8/X", [])], request_id="r-1"))
    assert err.code is grpc.StatusCode.UNAVAILABLE
    assert unavailable.calls["/idnode.v1.RegistrationService/BatchCreateIdentifiers"] == 4


def test_client_without_retries_tries_once(unavailable: _Unavailable) -> None:
    with IdnodeClient(f"127.0.0.1:{unavailable.port}", retries=False) as c:
        assert rpc_error(lambda: c.resolve("88.118.8/X")).code is grpc.StatusCode.UNAVAILABLE
        assert rpc_error(lambda: c.batch_create([], request_id="r")).code is grpc.StatusCode.UNAVAILABLE
    assert unavailable.calls["/idnode.v1.ResolutionService/Resolve"] == 1
    assert unavailable.calls["/idnode.v1.RegistrationService/BatchCreateIdentifiers"] == 1
