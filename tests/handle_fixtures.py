"""Fixtures for the Handle REST tests: a real node with its plain HTTP and HTTPS Handle listeners
on port 0, enterprises with real client certificates and Basic passwords, and a small HTTP client
(``http.client``) that returns status, parsed JSON and headers.

Registered from ``tests/conftest.py`` through ``pytest_plugins``.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from registry.model import Principal, Role
from resolver import pki
from resolver.datadir import CredentialFiles, DataDir
from resolver.server import NodeServer
from tests.node_fixtures import node_config

PASSWORD = "correct horse battery"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def pair(self) -> tuple[int, int]:
        """(HTTP status, Handle responseCode)."""
        return self.status, self.json["responseCode"]


@dataclass
class RestEnterprise:
    """An enterprise of the test node: its prefix, certificate files and Basic credentials."""

    prefix: str
    credential: CredentialFiles
    password: str = PASSWORD

    @property
    def username(self) -> str:
        return f"300:{self.prefix}/admin"

    @property
    def basic(self) -> str:
        """The Authorization header pyhandle sends: ``Basic b64(quote(user) + ":" + pw)``."""
        user = self.username.replace(":", "%3A")
        return "Basic " + base64.b64encode(f"{user}:{self.password}".encode()).decode()


@dataclass
class RestNode:
    """A running node with both Handle REST listeners, and helpers to call them."""

    server: NodeServer
    data_dir: DataDir
    clients: list[http.client.HTTPConnection] = field(default_factory=list)

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.server.https_port}"

    def context(self, credential: CredentialFiles | None = None) -> ssl.SSLContext:
        """Verifies the node certificate with the node CA; presents ``credential`` if given."""
        ctx = ssl.create_default_context(cafile=str(self.data_dir.ca_cert))
        if credential is not None:
            ctx.load_cert_chain(credential.cert, credential.key)
        return ctx

    def request(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        tls: bool = True,
        auth: str = "",
        cert: CredentialFiles | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request on a new connection; ``body`` is JSON-encoded unless bytes or str."""
        conn: http.client.HTTPConnection
        if tls:
            conn = http.client.HTTPSConnection(
                "localhost", self.server.https_port, context=self.context(cert)
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port)
        self.clients.append(conn)
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = auth
        payload: bytes | None = None
        if body is not None:
            payload = (
                body
                if isinstance(body, bytes)
                else (body if isinstance(body, str) else json.dumps(body)).encode()
            )
            sent["Content-Type"] = "application/json"
        conn.request(method, target, body=payload, headers=sent)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return Reply(response.status, data, {k.lower(): v for k, v in response.getheaders()})

    def get(self, target: str, **kwargs: Any) -> Reply:
        return self.request("GET", target, **kwargs)


@pytest.fixture
def rest_node(node_dir: DataDir) -> Iterator[RestNode]:
    """A node with plain HTTP and HTTPS Handle REST listeners on 127.0.0.1, port 0."""
    server = NodeServer(node_config(node_dir.root, http_address="127.0.0.1:0", https_address="127.0.0.1:0"))
    server.start()
    node = RestNode(server, node_dir)
    try:
        yield node
    finally:
        for conn in node.clients:
            conn.close()
        server.stop(0)


@pytest.fixture
def make_rest_enterprise(rest_node: RestNode, tmp_path: Path) -> Any:
    """Factory ``(code, password=PASSWORD) -> RestEnterprise``: the enterprise ``88.118.CODE``
    with a node-issued client certificate (saved under tmp_path) and a Basic password set through
    ``PUT /idnode/v1/passwords/PREFIX`` as the administrator."""

    def make(code: str, password: str = PASSWORD) -> RestEnterprise:
        ca = rest_node.data_dir.ca()
        prefix = f"{rest_node.server.registry.node_prefix}.{code}"
        pair = pki.issue_client_cert(ca, Role.ENTERPRISE, prefix)
        rest_node.server.registry.create_enterprise(
            Principal.admin(), code, f"Enterprise {code}", "", lambda _: pki.fingerprint(pair.cert_pem)
        )
        credential = CredentialFiles(tmp_path / "credentials" / prefix)
        credential.save(pair, ca.cert_pem)
        reply = rest_node.request(
            "PUT", f"/idnode/v1/passwords/{prefix}", {"password": password}, cert=rest_node.data_dir.admin
        )
        assert reply.pair == (200, 1), reply.body
        return RestEnterprise(prefix, credential, password)

    return make


@pytest.fixture
def rest_enterprise(make_rest_enterprise: Any) -> RestEnterprise:
    """Enterprise 88.118.8 with a certificate and the Basic password ``PASSWORD``."""
    return make_rest_enterprise("8")
