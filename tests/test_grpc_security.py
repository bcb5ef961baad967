"""Authentication and authorization against a real node: anonymous callers, mutual TLS, prefix
ownership, suspension, admin-only calls, foreign CAs, secrecy of issued keys, concurrent writers."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import Name, NameAttribute
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from registry.model import Role
from registry.pb import admin_pb2, record_pb2, registration_pb2
from resolver import pki
from resolver.client import IdnodeClient, IdnodeRpcError, value
from resolver.datadir import CredentialFiles, DataDir
from resolver.server import NodeServer
from tests.node_fixtures import (
    NODE_PREFIX,
    MakeEnterprise,
    management_target,
    node_config,
    public_target,
    rpc_error,
    run_together,
    save_credential,
)

REGISTRATION_CALLS: list[tuple[str, object]] = [
    (
        "CreateIdentifier",
        registration_pb2.CreateIdentifierRequest(record=record_pb2.Record(identifier="88.118.8/X")),
    ),
    ("GetIdentifier", registration_pb2.GetIdentifierRequest(identifier="88.118.8/X")),
    (
        "UpdateIdentifier",
        registration_pb2.UpdateIdentifierRequest(record=record_pb2.Record(identifier="88.118.8/X")),
    ),
    ("DeleteIdentifier", registration_pb2.DeleteIdentifierRequest(identifier="88.118.8/X")),
    ("ListIdentifiers", registration_pb2.ListIdentifiersRequest(parent="88.118.8")),
    (
        "BatchCreateIdentifiers",
        registration_pb2.BatchCreateIdentifiersRequest(
            requests=[
                registration_pb2.CreateIdentifierRequest(record=record_pb2.Record(identifier="88.118.8/X"))
            ],
            request_id="r1",
        ),
    ),
]
ADMIN_CALLS: list[tuple[str, object]] = [
    ("CreateEnterprise", admin_pb2.CreateEnterpriseRequest(code="66", display_name="Evil")),
    ("GetEnterprise", admin_pb2.GetEnterpriseRequest(prefix="88.118.8")),
    ("ListEnterprises", admin_pb2.ListEnterprisesRequest()),
    ("SuspendEnterprise", admin_pb2.SuspendEnterpriseRequest(prefix="88.118.8")),
    ("ResumeEnterprise", admin_pb2.ResumeEnterpriseRequest(prefix="88.118.8")),
    ("GetNodeStats", admin_pb2.GetNodeStatsRequest()),
]
ALL_PROTECTED = [("registration", m, r) for m, r in REGISTRATION_CALLS] + [
    ("admin", m, r) for m, r in ADMIN_CALLS
]


def call(client: IdnodeClient, service: str, method: str, request: object) -> object:
    stub = getattr(client, service)
    try:
        return getattr(stub, method)(request, timeout=10)
    except grpc.RpcError as err:
        raise IdnodeRpcError.from_rpc_error(err) from None


def ids(calls: list[tuple[str, str, object]]) -> list[str]:
    return [m for _, m, _ in calls]


# ------------------------------------------------------------------------------ anonymous callers


@pytest.mark.parametrize(("service", "method", "request_"), ALL_PROTECTED, ids=ids(ALL_PROTECTED))
def test_anonymous_caller_needs_a_credential(
    anon_client: IdnodeClient,
    admin_client: IdnodeClient,
    make_enterprise: MakeEnterprise,
    service,
    method,
    request_,
) -> None:
    make_enterprise("8")
    err = rpc_error(lambda: call(anon_client, service, method, request_))
    assert err.code is grpc.StatusCode.UNAUTHENTICATED
    assert err.reason == "CREDENTIAL_REQUIRED"
    # nothing happened
    assert admin_client.stats().identifier_count == 0
    assert admin_client.stats().enterprise_count == 1
    assert admin_client.get_enterprise("88.118.8").state == admin_pb2.Enterprise.ACTIVE


def test_no_client_certificate_cannot_connect_to_management(node: NodeServer, node_dir: DataDir) -> None:
    """Server-authenticated TLS without a client certificate: the handshake is refused."""
    with IdnodeClient(management_target(node), ca=node_dir.ca_cert, retries=False) as c:
        err = rpc_error(lambda: c.resolve("88.118.8/X"))
        assert err.code is grpc.StatusCode.UNAVAILABLE
        err = rpc_error(lambda: c.stats())
        assert err.code is grpc.StatusCode.UNAVAILABLE


def test_plaintext_cannot_connect_to_management(node: NodeServer) -> None:
    with IdnodeClient(f"127.0.0.1:{node.management_port}", retries=False) as c:
        err = rpc_error(lambda: c.resolve("88.118.8/X"))
        assert err.code is grpc.StatusCode.UNAVAILABLE


def _foreign_credential(directory: Path, node_dir: DataDir, role: Role, prefix: str = "") -> Path:
    """A well-formed idnode credential, signed by a different CA for the same node prefix."""
    other_ca = pki.create_ca(NODE_PREFIX)
    pair = pki.issue_client_cert(other_ca, role, prefix)
    CredentialFiles(directory).save(pair, node_dir.ca_cert.read_bytes())  # trusts the real server
    return directory


@pytest.mark.parametrize("role", [Role.ADMIN, Role.ENTERPRISE])
def test_certificate_from_another_ca_is_refused(
    node: NodeServer, node_dir: DataDir, tmp_path: Path, make_enterprise: MakeEnterprise, role: Role
) -> None:
    prefix, _ = make_enterprise("8")
    creds = _foreign_credential(
        tmp_path / "foreign", node_dir, role, prefix if role is Role.ENTERPRISE else ""
    )
    with IdnodeClient(management_target(node), credentials=creds, retries=False) as c:
        for attempt in (
            lambda: c.stats(),
            lambda: c.create(f"{prefix}/FORGED", []),
            lambda: c.resolve(f"{prefix}/X"),
        ):
            assert rpc_error(attempt).code is grpc.StatusCode.UNAVAILABLE


def test_unknown_certificate_from_node_ca_is_unauthenticated(
    node: NodeServer, node_dir: DataDir, tmp_path: Path, make_enterprise: MakeEnterprise
) -> None:
    """Signed by the node CA but not a current credential (e.g. superseded): TLS passes, the
    fingerprint check refuses it."""
    prefix, _ = make_enterprise("8")
    ca = node_dir.ca()
    stale_enterprise = CredentialFiles(tmp_path / "stale-ent")
    stale_enterprise.save(pki.issue_client_cert(ca, Role.ENTERPRISE, prefix), ca.cert_pem)
    stale_admin = CredentialFiles(tmp_path / "stale-admin")
    stale_admin.save(pki.issue_client_cert(ca, Role.ADMIN), ca.cert_pem)
    no_such = CredentialFiles(tmp_path / "no-such")
    no_such.save(pki.issue_client_cert(ca, Role.ENTERPRISE, "88.118.99"), ca.cert_pem)

    for creds in (stale_enterprise, stale_admin, no_such):
        with IdnodeClient(management_target(node), credentials=creds.directory) as c:
            for attempt in (lambda c=c: c.create(f"{prefix}/X", []), lambda c=c: c.stats()):
                err = rpc_error(attempt)
                assert err.code is grpc.StatusCode.UNAUTHENTICATED
            # resolution needs no identity at all
            assert rpc_error(lambda c=c: c.resolve(f"{prefix}/X")).code is grpc.StatusCode.NOT_FOUND


def test_certificate_without_idnode_role_is_unauthenticated(
    node: NodeServer, node_dir: DataDir, tmp_path: Path
) -> None:
    ca = node_dir.ca()
    subject = Name([NameAttribute(NameOID.COMMON_NAME, "88.118.8")])  # no OU: no role
    pair = pki._issue(ca, subject, ExtendedKeyUsageOID.CLIENT_AUTH, 1, [])
    creds = CredentialFiles(tmp_path / "no-role")
    creds.save(pair, ca.cert_pem)
    with IdnodeClient(management_target(node), credentials=creds.directory) as c:
        err = rpc_error(lambda: c.create("88.118.8/X", []))
        assert err.code is grpc.StatusCode.UNAUTHENTICATED


# ------------------------------------------------------------------------------ prefix ownership


def test_enterprise_cannot_touch_another_prefix(
    make_enterprise: MakeEnterprise, admin_client: IdnodeClient
) -> None:
    a_prefix, a = make_enterprise("8")
    b_prefix, b = make_enterprise("9")
    theirs = b.create(f"{b_prefix}/B-1", [value(1, "URL", "https://b")])

    attempts: list[Callable[[], object]] = [
        lambda: a.create(f"{b_prefix}/A-WAS-HERE", []),
        lambda: a.create(f"{b_prefix}.1/SUB", []),
        lambda: a.create(f"{NODE_PREFIX}/NODE-LEVEL", []),
        lambda: a.create("88.118.80/SIBLING", []),  # 88.118.80 is not under 88.118.8
        lambda: a.create(f"{b_prefix.lower()}/b-2", []),
        lambda: a.get(f"{b_prefix}/B-1"),
        lambda: a.get(f"{b_prefix}/NOT-THERE"),
        lambda: a.update(f"{b_prefix}/B-1", []),
        lambda: a.update(f"{b_prefix}/B-1", [], etag=theirs.etag),
        lambda: a.delete(f"{b_prefix}/B-1"),
        lambda: a.delete(f"{b_prefix}/b-1", etag=theirs.etag),
        lambda: a.list(b_prefix),
        lambda: a.list(f"{b_prefix}.1"),
        lambda: a.list(NODE_PREFIX),
    ]
    for attempt in attempts:
        err = rpc_error(attempt)
        assert err.code is grpc.StatusCode.PERMISSION_DENIED, err
        assert err.reason == "PREFIX_NOT_OWNED"

    results = a.batch_create([(f"{a_prefix}/MINE", []), (f"{b_prefix}/THEIRS", [])])
    assert results[0].WhichOneof("result") == "etag"
    assert results[1].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]

    assert b.get(f"{b_prefix}/B-1") == theirs
    assert [r.identifier for r in b.list(b_prefix).records] == [f"{b_prefix}/B-1"]
    assert dict(admin_client.stats().identifier_count_by_enterprise) == {a_prefix: 1, b_prefix: 1}


def test_enterprise_may_use_its_prefix_in_any_ascii_case(make_enterprise: MakeEnterprise) -> None:
    prefix, c = make_enterprise("Acme")
    created = c.create(f"{prefix.lower()}/x-1", [])
    assert created.owner == prefix
    assert c.get(f"{prefix.upper()}/X-1") == created
    assert [r.identifier for r in c.list(prefix.upper()).records] == [f"{prefix.lower()}/x-1"]


# ------------------------------------------------------------------------------ suspension


def test_suspended_enterprise_cannot_write_but_still_resolves(
    make_enterprise: MakeEnterprise, admin_client: IdnodeClient, anon_client: IdnodeClient
) -> None:
    prefix, c = make_enterprise("8")
    other_prefix, other = make_enterprise("9")
    record = c.create(f"{prefix}/KEEP", [value(1, "URL", "https://keep")])
    c.create(f"{prefix}/DEL", [])

    admin_client.suspend_enterprise(prefix)
    # from the very next request
    writes: list[Callable[[], object]] = [
        lambda: c.create(f"{prefix}/NEW", []),
        lambda: c.update(f"{prefix}/KEEP", [value(1, "URL", "https://changed")]),
        lambda: c.update(f"{prefix}/KEEP", [], etag=record.etag),
        lambda: c.delete(f"{prefix}/DEL"),
        lambda: c.batch_create([(f"{prefix}/NEW-B", [])], request_id="while-suspended"),
    ]
    for attempt in writes:
        err = rpc_error(attempt)
        assert err.code is grpc.StatusCode.PERMISSION_DENIED, err
        assert err.reason == "ENTERPRISE_SUSPENDED"
    unkeyed = c.batch_create([(f"{prefix}/NEW-C", [])])
    assert unkeyed[0].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]

    # its identifiers keep resolving, unchanged; other enterprises are unaffected
    assert anon_client.resolve(f"{prefix}/keep") == record
    assert anon_client.batch_resolve([f"{prefix}/DEL"])[0].WhichOneof("result") == "record"
    other.create(f"{other_prefix}/FINE", [])
    assert admin_client.stats().identifier_count_by_enterprise[prefix] == 2

    admin_client.resume_enterprise(prefix)
    c.create(f"{prefix}/NEW", [])
    updated = c.update(f"{prefix}/KEEP", [value(1, "URL", "https://changed")], etag=record.etag)
    c.delete(f"{prefix}/DEL")
    assert anon_client.resolve(f"{prefix}/KEEP") == updated
    assert c.batch_create([(f"{prefix}/NEW-B", [])], request_id="while-suspended")[0].etag
    assert admin_client.stats().identifier_count_by_enterprise[prefix] == 3


# ------------------------------------------------------------------------------ admin only


@pytest.mark.parametrize(("method", "request_"), ADMIN_CALLS, ids=[m for m, _ in ADMIN_CALLS])
def test_enterprise_credential_cannot_administer(
    make_enterprise: MakeEnterprise, admin_client: IdnodeClient, method: str, request_: object
) -> None:
    _, c = make_enterprise("8")
    err = rpc_error(lambda: call(c, "admin", method, request_))
    assert err.code is grpc.StatusCode.PERMISSION_DENIED
    assert err.reason == "ADMIN_ONLY"
    assert admin_client.stats().enterprise_count == 1
    assert admin_client.get_enterprise("88.118.8").state == admin_pb2.Enterprise.ACTIVE


# ------------------------------------------------------------------------------ secrecy of issued keys


def _key_fragments(private_key_pem: str) -> list[bytes]:
    """Byte strings any stored copy of the key would contain: PEM body lines, the whole base64
    body, the DER encoding and the raw private scalar."""
    lines = [ln for ln in private_key_pem.strip().splitlines() if not ln.startswith("-----")]
    body = "".join(lines)
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    fragments = [body.encode(), base64.b64decode(body), scalar]
    fragments += [ln.encode() for ln in lines if len(ln) >= 40]
    return fragments


def _files_containing(root: Path, fragments: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}" for frag in fragments if frag in data]
    return found


def test_enterprise_private_key_is_not_stored(
    node: NodeServer, node_dir: DataDir, admin_client: IdnodeClient, tmp_path: Path
) -> None:
    responses = [admin_client.create_enterprise(code, f"E{code}") for code in ("8", "9", "")]
    for r in responses:
        with IdnodeClient(
            management_target(node), credentials=save_credential(tmp_path / r.enterprise.prefix, r.credential)
        ) as c:
            c.create(f"{r.enterprise.prefix}/X", [value(1, "URL", "https://x")])
    fragments = [f for r in responses for f in _key_fragments(r.credential.private_key_pem)]
    # sanity: the search does find a key the node does keep (its admin credential)
    admin_key = node_dir.admin.key.read_text()
    assert _files_containing(node_dir.root, _key_fragments(admin_key))

    assert _files_containing(node_dir.root, fragments) == []
    node.stop(0)  # flushed and closed: still nowhere
    assert _files_containing(node_dir.root, fragments) == []


def test_enterprise_private_key_is_not_logged(
    node_dir: DataDir, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    server = NodeServer(node_config(node_dir.root, access_log=True))
    server.start()
    try:
        with IdnodeClient(management_target(server), credentials=node_dir.admin.directory) as admin:
            response = admin.create_enterprise("8", "Demo", "ops@demo")
            admin.get_enterprise("88.118.8")
            admin.list_enterprises()
            rpc_error(lambda: admin.create_enterprise("8", "again"))
            creds = save_credential(tmp_path / "ent", response.credential)
        with IdnodeClient(management_target(server), credentials=creds) as c:
            c.create("88.118.8/X", [])
            rpc_error(lambda: c.stats())
        with IdnodeClient(public_target(server)) as anon:
            anon.resolve("88.118.8/X")
    finally:
        server.stop(0)
    assert any(r.name == "idnode.access" for r in caplog.records)  # logging was captured
    assert any(r.name == "idnode.server" for r in caplog.records)
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    out, err = capfd.readouterr()
    for fragment in _key_fragments(response.credential.private_key_pem)[:1] + [
        ln.encode() for ln in response.credential.private_key_pem.splitlines() if not ln.startswith("-----")
    ]:
        text = fragment.decode()
        assert text not in logged
        assert text not in out
        assert text not in err
    assert "PRIVATE KEY" not in logged


# ------------------------------------------------------------------------------ concurrent writers


def test_concurrent_creates_of_one_identifier(
    node: NodeServer, make_enterprise: MakeEnterprise, credentials_root: Path, admin_client: IdnodeClient
) -> None:
    prefix, _ = make_enterprise("8")
    spellings = [f"{prefix}/RACE-1", f"{prefix}/race-1", f"{prefix}/Race-1", f"{prefix}/rACE-1"] * 2
    clients = [IdnodeClient(management_target(node), credentials=credentials_root / prefix) for _ in range(8)]
    try:
        for c in clients:  # connect first, so the race is between the creates
            c.batch_resolve([])
        results = run_together(
            8, lambda i: clients[i].create(spellings[i], [value(1, "URL", f"https://{i}")])
        )
    finally:
        for c in clients:
            c.close()
    winners = [r for r in results if isinstance(r, record_pb2.Record)]
    losers = [r for r in results if isinstance(r, IdnodeRpcError)]
    assert len(winners) == 1
    assert len(losers) == 7
    assert all(e.code is grpc.StatusCode.ALREADY_EXISTS for e in losers)
    assert admin_client.get(f"{prefix}/RACE-1") == winners[0]
    assert admin_client.stats().identifier_count == 1


def test_concurrent_conditional_updates(
    node: NodeServer, make_enterprise: MakeEnterprise, credentials_root: Path
) -> None:
    prefix, c = make_enterprise("8")
    created = c.create(f"{prefix}/CAS", [value(1, "URL", "https://0")])
    clients = [IdnodeClient(management_target(node), credentials=credentials_root / prefix) for _ in range(8)]
    try:
        for other in clients:
            other.batch_resolve([])
        results = run_together(
            8,
            lambda i: clients[i].update(
                f"{prefix}/CAS", [value(1, "URL", f"https://{i}")], etag=created.etag
            ),
        )
    finally:
        for other in clients:
            other.close()
    winners = [r for r in results if isinstance(r, record_pb2.Record)]
    losers = [r for r in results if isinstance(r, IdnodeRpcError)]
    assert len(winners) == 1
    assert len(losers) == 7
    assert all(e.code is grpc.StatusCode.ABORTED for e in losers)
    assert c.get(f"{prefix}/CAS") == winners[0]


def test_concurrent_overlapping_batches(
    node: NodeServer, make_enterprise: MakeEnterprise, credentials_root: Path, admin_client: IdnodeClient
) -> None:
    prefix, _ = make_enterprise("8")
    clients = [IdnodeClient(management_target(node), credentials=credentials_root / prefix) for _ in range(4)]
    # thread i creates items i*25 .. i*25+49: each item is wanted by one or two threads
    batches = [[(f"{prefix}/O-{j:03d}", []) for j in range(i * 25, i * 25 + 50)] for i in range(4)]
    try:
        for other in clients:
            other.batch_resolve([])
        results = run_together(4, lambda i: clients[i].batch_create(batches[i]))
    finally:
        for other in clients:
            other.close()
    created: dict[str, int] = {}
    for answer in results:
        assert isinstance(answer, list)
        for r in answer:
            if r.WhichOneof("result") == "etag":
                created[r.identifier] = created.get(r.identifier, 0) + 1
            else:
                assert r.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert sorted(created) == [f"{prefix}/O-{j:03d}" for j in range(125)]
    assert set(created.values()) == {1}
    assert admin_client.stats().identifier_count == 125
