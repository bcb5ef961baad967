"""The hierarchy (issue 5 part 2): a root holding prefix routes, secondary nodes registering their
enterprise prefixes through a durable outbox, and resolution that follows routes (referral by
default, the record itself with recursion, cached for its TTL).

The first tests exercise the core (:mod:`registry.hierarchy`) on a real RocksDB store; the rest
run three real ``idnode serve`` processes on loopback (root 88, node A 88.118, node B 88.119) and
a client, and cause the faults for real: a stopped root, restarted processes, a port nobody
listens on, a socket that accepts and never answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from registry.errors import FailedPrecondition, NotFound, PermissionDenied, Unauthenticated
from registry.hierarchy import Outbox, RootGuard, Routes
from registry.model import EnterpriseState, Principal, Role
from registry.pb import resolution_pb2
from registry.service import Registry
from registry.store import Table
from resolver.cli import cli
from resolver.client import IdnodeClient, IdnodeRpcError, value
from resolver.hierarchy import HOPS_KEY, VIA_KEY, Router
from tests.node_fixtures import rpc_error, save_credential, wait_for

REPO = Path(__file__).resolve().parent.parent
ADMIN = Principal.admin()
NODE_A = "88.118"
NODE_B = "88.119"


# ------------------------------------------------------------------------------- core, real store
def test_routes_longest_prefix_node_rules_and_idempotence(registry: Registry) -> None:
    routes = Routes(registry.store)
    routes.add(ADMIN, NODE_B, "127.0.0.1:9001", fingerprint="fp-b")
    node_b = routes.authenticate_node(NODE_B, "fp-b")
    assert node_b.role is Role.NODE and node_b.prefix == NODE_B
    with pytest.raises(Unauthenticated):
        routes.authenticate_node(NODE_B, "fp-other")
    with pytest.raises(Unauthenticated):
        routes.authenticate_node(NODE_A, "fp-b")

    assert routes.lookup("88.119.5.1").prefix == NODE_B
    first = routes.register(node_b, "88.119.5", "127.0.0.1:9001")
    again = routes.register(node_b, "88.119.5", "127.0.0.1:9001")  # a retried outbox entry
    assert again == first
    assert routes.lookup("88.119.5.1").prefix == "88.119.5"  # longest prefix wins
    assert routes.lookup("88.119.50").prefix == NODE_B  # a sibling, not a sub-prefix

    with pytest.raises(PermissionDenied) as outside:
        routes.register(node_b, "88.118.5", "127.0.0.1:9001")
    assert outside.value.reason == "PREFIX_NOT_OWNED"
    with pytest.raises(PermissionDenied):
        routes.register(node_b, NODE_B, "127.0.0.1:9001")  # its own route is the administrator's
    with pytest.raises(PermissionDenied) as not_admin:
        routes.add(node_b, "88.120", "127.0.0.1:9001")
    assert not_admin.value.reason == "ADMIN_ONLY"

    routes.withdraw(node_b, "88.119.5")
    routes.withdraw(node_b, "88.119.5")  # idempotent
    assert routes.lookup("88.119.5.1").prefix == NODE_B
    with pytest.raises(NotFound) as none:
        routes.lookup("86.1")
    assert none.value.reason == "NO_ROUTE"
    page, token = routes.list(ADMIN)
    assert [r.prefix for r in page] == [NODE_B] and token == ""


def test_outbox_entry_commits_with_the_enterprise_and_survives_replacement(registry: Registry) -> None:
    outbox = Outbox(registry.store)
    registry.enterprise_hooks.append(outbox)
    registry.create_enterprise(ADMIN, "5", "E5", "", lambda p: "fp5")
    [entry] = outbox.pending()
    assert (entry.op, entry.prefix) == ("register", "88.118.5")
    assert outbox.wake.is_set()

    registry.set_enterprise_state(ADMIN, "88.118.5", EnterpriseState.SUSPENDED)
    registry.remove_enterprise(ADMIN, "88.118.5")
    [replaced] = outbox.pending()
    assert replaced.op == "withdraw"  # the unsent registration was replaced, not queued behind
    assert outbox.done(entry) is False  # an acknowledgement of the old entry keeps the new one
    assert outbox.done(replaced) is True
    assert outbox.pending() == []
    assert registry.enterprise("88.118.5") is None


def test_refused_enterprise_creation_writes_nothing(registry: Registry) -> None:
    registry.enterprise_hooks.append(RootGuard())
    with pytest.raises(FailedPrecondition) as refused:
        registry.create_enterprise(ADMIN, "5", "E5", "", lambda p: "fp5")
    assert refused.value.reason == "ROOT_NODE"
    assert registry.store.scan(Table.ENTERPRISES, b"", b"\xff", 10) == []


def test_remove_enterprise_needs_suspended_and_empty(registry: Registry, enterprise: Principal) -> None:
    registry.create(enterprise, "88.118.8/P-1", [value_of("URL", "u")])
    with pytest.raises(FailedPrecondition) as active:
        registry.remove_enterprise(ADMIN, "88.118.8")
    assert active.value.reason == "ENTERPRISE_ACTIVE"
    registry.set_enterprise_state(ADMIN, "88.118.8", EnterpriseState.SUSPENDED)
    with pytest.raises(FailedPrecondition) as not_empty:
        registry.remove_enterprise(ADMIN, "88.118.8")
    assert not_empty.value.reason == "ENTERPRISE_NOT_EMPTY"
    registry.delete(ADMIN, "88.118.8/P-1")
    with pytest.raises(PermissionDenied):
        registry.remove_enterprise(enterprise, "88.118.8")
    registry.remove_enterprise(ADMIN, "88.118.8")
    with pytest.raises(Unauthenticated):  # its credential stops working at once
        registry.authenticate_enterprise("88.118.8", enterprise.fingerprint)
    with pytest.raises(NotFound):
        registry.remove_enterprise(ADMIN, "88.118.8")


def test_router_handles_only_prefixes_outside_its_node(registry: Registry) -> None:
    from cache import RecordCache

    router = Router(node_id=NODE_A, routes=None, upstream=None, foreign_cache=RecordCache(1 << 20))
    assert not router.handles("88.118/x") and not router.handles("88.118.8/X")
    assert router.handles("88.1189/X") and router.handles("88.119.5/X") and router.handles("86/X")


def value_of(type_: str, data: str) -> Any:
    from registry.model import Value

    return Value(1, type_, data)


# ------------------------------------------------------------------------------- real processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One ``idnode serve`` process on fixed loopback ports (so it can be restarted in place)."""

    name: str
    data_dir: Path
    node_prefix: str
    args: list[str]
    public_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None

    @property
    def public(self) -> str:
        return f"127.0.0.1:{self.public_port}"

    @property
    def management(self) -> str:
        return f"localhost:{self.management_port}"

    @property
    def admin_credentials(self) -> Path:
        return self.data_dir / "credentials" / "admin"

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "resolver.cli", "--data-dir", str(self.data_dir), "serve",
            "--workers", "1", "--node-prefix", self.node_prefix, "--no-demo", "--no-fsync",
            "--public", self.public, "--management-listen", f"127.0.0.1:{self.management_port}",
            "--metrics", "", "--http", "", "--https", "", *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if re.search(r"management \(mutual TLS\):", line):
                return
        raise AssertionError(f"{self.name} exited early: {self.proc.wait()} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(timeout=30) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        self.proc = None

    def admin(self) -> IdnodeClient:
        return IdnodeClient(self.management, credentials=self.admin_credentials)

    def anon(self, timeout: float = 10.0) -> IdnodeClient:
        return IdnodeClient(self.public, timeout=timeout)


@dataclass
class Hierarchy:
    root: Node
    a: Node
    b: Node
    tmp: Path


def route_of(node: Node, prefix: str) -> str:
    with node.anon(timeout=2) as c:
        return c.lookup_route(prefix).prefix


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hierarchy]:
    """Root (88), node A (88.118) and node B (88.119) as three real processes; the root's
    administrator routes each node prefix and issues each node's credential."""
    tmp = tmp_path_factory.mktemp("hierarchy")
    root = Node("root", tmp / "root", "88", ["--role", "root"])
    nodes: list[Node] = [root]
    try:
        root.start()
        upstream = f"localhost:{root.management_port}"
        a = Node("A", tmp / "a", NODE_A, [])
        b = Node("B", tmp / "b", NODE_B, [])
        for node in (a, b):
            with root.admin() as admin:
                response = admin.add_node_route(node.node_prefix, node.public, issue_credential=True)
            creds = save_credential(tmp / f"cred-{node.name}", response.credential)
            node.args = ["--upstream", upstream, "--upstream-credentials", str(creds)]
            node.start()
            nodes.append(node)
        yield Hierarchy(root, a, b, tmp)
    finally:
        for node in nodes:
            node.stop()


def make_enterprise(node: Node, code: str, directory: Path) -> IdnodeClient:
    with node.admin() as admin:
        response = admin.create_enterprise(code, f"Enterprise {code}", "ops@example.com")
    creds = save_credential(directory / response.enterprise.prefix, response.credential)
    return IdnodeClient(node.management, credentials=creds)


def test_three_nodes_referral_then_recursion_cached_for_the_ttl(hierarchy: Hierarchy) -> None:
    a, b, root = hierarchy.a, hierarchy.b, hierarchy.root
    with make_enterprise(b, "5", hierarchy.tmp) as acme:
        acme.create("88.119.5/P-1", [value(1, "URL", "https://b.example/p/1", ttl=300)])
        # B registered its new enterprise prefix upward through the outbox.
        assert wait_for(lambda: route_of(root, "88.119.5") == "88.119.5", "route 88.119.5 at the root")

        with a.anon() as client:
            referral = client.resolve_response("88.119.5/p-1")
            assert not referral.HasField("record")
            assert referral.referral.node_address == b.public
            assert referral.referral.prefix == "88.119.5" and referral.referral.node_id == NODE_B

            full = client.resolve_response("88.119.5/p-1", recursive=True)
            assert full.record.identifier == "88.119.5/P-1"
            assert full.record.values[0].text == "https://b.example/p/1"

            # Changed at B: A keeps answering from its cache for the record's TTL (300 s).
            acme.update("88.119.5/P-1", [value(1, "URL", "https://b.example/p/1-new", ttl=300)])
            with b.anon() as at_b:
                assert at_b.resolve("88.119.5/P-1").values[0].text == "https://b.example/p/1-new"
            cached = client.resolve_response("88.119.5/P-1", recursive=True)
            assert cached.record.values[0].text == "https://b.example/p/1"

            # Batch: per-item referral, record, and local answers side by side.
            results = client.batch_resolve(["88.119.5/P-1", "88.118.404/X"])
            assert results[0].WhichOneof("result") == "referral"
            assert results[0].referral.node_address == b.public
            assert results[1].WhichOneof("result") == "error"  # A's own prefix: not registered
            results = client.batch_resolve(["88.119.5/P-1"], recursive=True)
            assert results[0].record.identifier == "88.119.5/P-1"

        with root.anon() as at_root:  # the root answers everything from its routes
            assert at_root.resolve_response("88.119.5/P-1").referral.node_address == b.public
            fetched = at_root.resolve_response("88.119.5/P-1", recursive=True)
            assert fetched.record.values[0].text == "https://b.example/p/1-new"
            missing = rpc_error(lambda: at_root.resolve_response("88.119.5/NOPE", recursive=True))
            assert missing.code is grpc.StatusCode.NOT_FOUND
            no_route = rpc_error(lambda: at_root.resolve_response("86.1/X"))
            assert no_route.code is grpc.StatusCode.NOT_FOUND and no_route.reason == "NO_ROUTE"


def test_cli_resolve_with_and_without_recursion(hierarchy: Hierarchy) -> None:
    a, b = hierarchy.a, hierarchy.b
    with make_enterprise(b, "7", hierarchy.tmp) as e7:
        e7.create("88.119.7/Q-1", [value(1, "URL", "https://b.example/q/1")])
    wait_for(lambda: route_of(hierarchy.root, "88.119.7") == "88.119.7", "route 88.119.7")
    runner = CliRunner()
    referral = runner.invoke(cli, ["--server", a.public, "resolve", "88.119.7/Q-1"])
    assert referral.exit_code == 0, referral.stderr
    assert f"referral to node {NODE_B} at {b.public}" in referral.stdout
    full = runner.invoke(cli, ["--server", a.public, "resolve", "88.119.7/Q-1", "--recursive", "--json"])
    assert full.exit_code == 0, full.stderr
    assert json.loads(full.stdout)["values"][0]["text"] == "https://b.example/q/1"
    listed = runner.invoke(
        cli,
        ["--management", hierarchy.root.management, "--credentials", str(hierarchy.root.admin_credentials),
         "route", "list", "--json"],
    )  # fmt: skip
    assert listed.exit_code == 0, listed.stderr
    by_prefix = {r["prefix"]: r for r in json.loads(listed.stdout)}
    assert by_prefix["88.119.7"]["registered_by"] == NODE_B
    assert by_prefix[NODE_A]["node_address"] == a.public


def test_routing_loops_are_refused_clearly(hierarchy: Hierarchy) -> None:
    a, b, root = hierarchy.a, hierarchy.b, hierarchy.root
    with root.admin() as admin:
        admin.add_node_route("88.120", a.public)  # misconfigured: A does not serve 88.120
    with b.anon() as client:  # B follows the route to A, which finds the route names itself
        loop = rpc_error(lambda: client.resolve_response("88.120.1/X", recursive=True))
        assert loop.code is grpc.StatusCode.FAILED_PRECONDITION and loop.reason == "ROUTING_LOOP"
    request = resolution_pb2.ResolveRequest(identifier="88.119.5/P-1", recursive=True)
    with a.anon() as client:
        for metadata in (((VIA_KEY, f"{NODE_B},{NODE_A}"),), ((HOPS_KEY, "99"),)):
            with pytest.raises(grpc.RpcError) as info:
                client.resolution.Resolve(request, timeout=5, metadata=metadata)
            err = IdnodeRpcError.from_rpc_error(info.value)
            assert err.code is grpc.StatusCode.FAILED_PRECONDITION and err.reason == "ROUTING_LOOP", err


@contextlib.contextmanager
def stalled_node() -> Iterator[int]:
    """A real gRPC server whose Resolve never answers (until the test ends): the port."""
    from concurrent import futures

    release = threading.Event()

    def stall(request: bytes, context: grpc.ServicerContext) -> bytes:
        release.wait(30)
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "idnode.v1.ResolutionService", {"Resolve": grpc.unary_unary_rpc_method_handler(stall)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        release.set()
        server.stop(0)


def test_unreachable_silent_or_stalled_node_fails_within_the_deadline(hierarchy: Hierarchy) -> None:
    a, root = hierarchy.a, hierarchy.root
    silent = socket.socket()  # accepts connections (the kernel does) and never speaks HTTP/2
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        with stalled_node() as stalled, root.admin() as admin:
            admin.add_node_route("88.121", f"127.0.0.1:{free_port()}")  # nobody listens there
            admin.add_node_route("88.122", f"127.0.0.1:{silent.getsockname()[1]}")
            admin.add_node_route("88.123", f"127.0.0.1:{stalled}")
            with a.anon(timeout=5) as client:
                for prefix in ("88.121", "88.122"):
                    down = rpc_error(lambda p=prefix: client.resolve_response(f"{p}.1/X", recursive=True))
                    assert down.code is grpc.StatusCode.UNAVAILABLE, down
                    assert down.reason == "UPSTREAM_UNAVAILABLE"
                    assert client.resolve_response(f"{prefix}.1/X").referral.prefix == prefix  # no contact
                slow = rpc_error(lambda: client.resolve_response("88.123.1/X", recursive=True, timeout=2))
                assert slow.code is grpc.StatusCode.DEADLINE_EXCEEDED, slow
                # A itself answers the caller (its forward gave up before the caller's deadline).
                assert slow.reason == "UPSTREAM_DEADLINE_EXCEEDED"
    finally:
        silent.close()


def test_node_credential_is_only_for_routes(hierarchy: Hierarchy) -> None:
    creds = hierarchy.tmp / "cred-A"
    with IdnodeClient(hierarchy.root.management, credentials=creds) as as_node:
        denied = rpc_error(lambda: as_node.list_enterprises())
        assert denied.code is grpc.StatusCode.PERMISSION_DENIED and denied.reason == "NODE_CREDENTIAL"
        outside = rpc_error(lambda: as_node.register_prefix("88.119.9", hierarchy.a.public))
        assert outside.code is grpc.StatusCode.PERMISSION_DENIED and outside.reason == "PREFIX_NOT_OWNED"
    with hierarchy.root.admin() as admin:
        refused = rpc_error(lambda: admin.create_enterprise("1"))
        assert refused.code is grpc.StatusCode.FAILED_PRECONDITION and refused.reason == "ROOT_NODE"


def test_registration_survives_a_down_root_and_restarts_then_removal_withdraws(hierarchy: Hierarchy) -> None:
    root, b = hierarchy.root, hierarchy.b
    root.stop()
    with make_enterprise(b, "6", hierarchy.tmp) as e6:  # works while the upstream is down
        e6.create("88.119.6/R-1", [value(1, "URL", "https://b.example/r/1")])
    b.stop()  # the queued registration must survive the secondary's restart too
    root.start()
    b.start()
    assert wait_for(lambda: route_of(root, "88.119.6") == "88.119.6", "route 88.119.6 after restarts")
    with hierarchy.a.anon() as client:
        assert client.resolve_response("88.119.6/R-1", recursive=True).record.identifier == "88.119.6/R-1"

    with b.admin() as admin:
        not_empty = rpc_error(
            lambda: (admin.suspend_enterprise("88.119.6"), admin.remove_enterprise("88.119.6"))
        )
        assert not_empty.code is grpc.StatusCode.FAILED_PRECONDITION
        assert not_empty.reason == "ENTERPRISE_NOT_EMPTY"
        admin.delete("88.119.6/R-1")
        admin.remove_enterprise("88.119.6")
    # Withdrawn upstream: the longest match for 88.119.6 is B's node route again.
    assert wait_for(lambda: route_of(root, "88.119.6") == NODE_B, "withdrawal of 88.119.6")
