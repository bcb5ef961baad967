"""Fixtures and helpers for the gRPC-level tests: a real node (RocksDB in ``tmp_path``, both
listeners on port 0), clients for its listeners, and enterprises with real credentials.

Registered from ``tests/conftest.py`` through ``pytest_plugins``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from registry.pb import admin_pb2, record_pb2
from resolver.client import IdnodeClient, IdnodeRpcError, value
from resolver.datadir import DataDir
from resolver.server import NodeServer, ServerConfig
from tests.helpers import NODE_PREFIX, TEST_BLOCK_CACHE_BYTES

TEST_CACHE_BYTES = 8 << 20

MakeEnterprise = Callable[..., tuple[str, IdnodeClient]]


def node_config(data_dir: Path, **overrides: Any) -> ServerConfig:
    """A config for a test node: loopback, port 0 for both listeners, no fsync, small caches."""
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "public_address": "127.0.0.1:0",
        "management_address": "127.0.0.1:0",
        "fsync": False,
        "block_cache_bytes": TEST_BLOCK_CACHE_BYTES,
        "cache_bytes": TEST_CACHE_BYTES,
        "threads": 16,
        "grace_seconds": 0.5,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


def public_target(server: NodeServer) -> str:
    return f"127.0.0.1:{server.public_port}"


def management_target(server: NodeServer) -> str:
    """The TLS listener, by a name in the server certificate's subjectAltNames."""
    return f"localhost:{server.management_port}"


def save_credential(directory: Path, credential: admin_pb2.Credential) -> Path:
    """Write a credential returned by CreateEnterprise as cert.pem / key.pem / ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_text(credential.certificate_pem)
    (directory / "key.pem").write_text(credential.private_key_pem)
    (directory / "ca.pem").write_text(credential.ca_certificate_pem)
    return directory


def rpc_error(call: Callable[[], object]) -> IdnodeRpcError:
    """Run ``call``, which must fail, and return the decoded error."""
    with pytest.raises(IdnodeRpcError) as info:
        call()
    return info.value


def raw_rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """Run a raw stub ``call``, which must fail, and return the grpc.RpcError."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def status_details(status: status_pb2.Status) -> tuple[str, str, list[tuple[str, str]]]:
    """ErrorInfo (domain, reason) and BadRequest violations (field, description) of a status."""
    domain = reason = ""
    violations: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            domain, reason = info.domain, info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    return domain, reason, violations


def fields(err: IdnodeRpcError) -> list[str]:
    """The field paths an error's BadRequest names."""
    return [f for f, _ in err.violations]


def assert_invalid(err: IdnodeRpcError, field: str) -> None:
    """``err`` is INVALID_ARGUMENT with a BadRequest naming ``field`` (with a description)."""
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT, err
    assert field in fields(err), err.violations
    assert all(description for _, description in err.violations)
    assert err.reason


def url(n: int | str) -> list[record_pb2.Value]:
    """One URL value (index 1) naming ``n``: the smallest valid record's values."""
    return [value(1, "URL", f"https://example.com/{n}")]


def run_together(n: int, work: Callable[[int], object], timeout: float = 30.0) -> list[object]:
    """Run ``work(i)`` for i in range(n) in n threads released at once; each one's result or
    exception, by ``i``. Fails if a thread is still running after ``timeout`` seconds."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"threads still running after {timeout} s"
    return results


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that (an IdnodeRpcError
    counts as not yet); fails after ``timeout`` seconds. No assertion on how long it took."""
    end = time.monotonic() + timeout
    while True:
        with contextlib.suppress(IdnodeRpcError):
            result = condition()
            if result:
                return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def ent(make_enterprise: MakeEnterprise) -> tuple[str, IdnodeClient]:
    """Enterprise code 8 on the ``node``: its prefix and a client with its credential."""
    return make_enterprise("8")


@pytest.fixture
def node_dir(tmp_path: Path) -> DataDir:
    """A data directory initialised for node prefix 88.118 (store, CA, server cert, admin credential)."""
    d = DataDir(tmp_path / "node")
    d.init(NODE_PREFIX)
    return d


@pytest.fixture
def node(node_dir: DataDir) -> Iterator[NodeServer]:
    """A started node on 127.0.0.1, both listeners on port 0, fsync off; stopped at teardown."""
    server = NodeServer(node_config(node_dir.root))
    server.start()
    try:
        yield server
    finally:
        server.stop(0)


@pytest.fixture
def clients() -> Iterator[list[IdnodeClient]]:
    """Every client a test opens through the fixtures; closed at teardown."""
    opened: list[IdnodeClient] = []
    yield opened
    for c in opened:
        c.close()


@pytest.fixture
def admin_client(node: NodeServer, node_dir: DataDir, clients: list[IdnodeClient]) -> IdnodeClient:
    """The administrator, over mutual TLS on the management listener."""
    c = IdnodeClient(management_target(node), credentials=node_dir.admin.directory)
    clients.append(c)
    return c


@pytest.fixture
def anon_client(node: NodeServer, clients: list[IdnodeClient]) -> IdnodeClient:
    """An anonymous client of the public (plaintext) listener."""
    c = IdnodeClient(public_target(node))
    clients.append(c)
    return c


@pytest.fixture
def credentials_root(tmp_path: Path) -> Path:
    """Where tests keep client credentials: outside the node's data directory."""
    root = tmp_path / "client-credentials"
    root.mkdir()
    return root


@pytest.fixture
def make_enterprise(
    node: NodeServer, admin_client: IdnodeClient, credentials_root: Path, clients: list[IdnodeClient]
) -> MakeEnterprise:
    """Factory: ``make_enterprise(code="", display_name=..., contact=...)`` creates an enterprise
    through the admin client, saves its credential outside the data directory and returns
    ``(prefix, client)``, the client speaking mutual TLS to the management listener."""

    def make(code: str = "", display_name: str = "Test enterprise", contact: str = "ops@example.com"):
        response = admin_client.create_enterprise(code, display_name, contact)
        prefix = response.enterprise.prefix
        directory = save_credential(credentials_root / prefix, response.credential)
        c = IdnodeClient(management_target(node), credentials=directory)
        clients.append(c)
        return prefix, c

    return make
