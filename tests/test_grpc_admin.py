"""AdminService against a real node: enterprises, their credentials, node statistics."""

from __future__ import annotations

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from registry import limits
from registry.pb import admin_pb2
from resolver import pki
from resolver.client import IdnodeClient, value
from resolver.datadir import DataDir
from tests.node_fixtures import NODE_PREFIX, MakeEnterprise, assert_invalid, rpc_error

ACTIVE = admin_pb2.Enterprise.ACTIVE
SUSPENDED = admin_pb2.Enterprise.SUSPENDED


def test_create_enterprise_with_code(admin_client: IdnodeClient, node_dir: DataDir) -> None:
    r = admin_client.create_enterprise("ACME7", "Acme Corp", "ops@acme.example")
    e = r.enterprise
    assert e.prefix == f"{NODE_PREFIX}.ACME7"
    assert (e.display_name, e.contact) == ("Acme Corp", "ops@acme.example")
    assert e.state == ACTIVE
    assert e.create_time.seconds > 0
    assert e.update_time == e.create_time
    assert e.identifier_count == 0

    cert = x509.load_pem_x509_certificate(r.credential.certificate_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == e.prefix
    assert list(e.credential_fingerprints) == [pki.fingerprint(r.credential.certificate_pem.encode())]
    assert r.credential.ca_certificate_pem.encode() == node_dir.ca_cert.read_bytes()
    key = serialization.load_pem_private_key(r.credential.private_key_pem.encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert admin_client.get_enterprise(e.prefix) == e


def test_create_enterprise_with_automatic_code(admin_client: IdnodeClient) -> None:
    first = admin_client.create_enterprise("", "First").enterprise
    assert first.prefix == f"{NODE_PREFIX}.1"
    admin_client.create_enterprise("3", "Explicit three")
    assert admin_client.create_enterprise().enterprise.prefix == f"{NODE_PREFIX}.2"
    # the next free number skips codes taken explicitly
    assert admin_client.create_enterprise().enterprise.prefix == f"{NODE_PREFIX}.4"
    assert admin_client.stats().enterprise_count == 4


def test_create_enterprise_duplicate_code(admin_client: IdnodeClient) -> None:
    admin_client.create_enterprise("abc", "First")
    for code in ("abc", "ABC", "aBc"):
        err = rpc_error(lambda c=code: admin_client.create_enterprise(c, "Second"))
        assert err.code is grpc.StatusCode.ALREADY_EXISTS
    assert admin_client.get_enterprise(f"{NODE_PREFIX}.ABC").display_name == "First"
    assert admin_client.stats().enterprise_count == 1


@pytest.mark.parametrize("code", ["a-b", "8.1", "x" * 33, " 8", "é", "a/b"])
def test_create_enterprise_bad_code(admin_client: IdnodeClient, code: str) -> None:
    err = rpc_error(lambda: admin_client.create_enterprise(code, "Bad"))
    assert_invalid(err, "code")
    assert list(admin_client.list_enterprises().enterprises) == []


def test_create_enterprise_long_name_and_contact(admin_client: IdnodeClient) -> None:
    too_long = "n" * (limits.DISPLAY_NAME_MAX_CHARS + 1)
    err = rpc_error(
        lambda: admin_client.create_enterprise("9", too_long, "c" * (limits.CONTACT_MAX_CHARS + 1))
    )
    assert_invalid(err, "display_name")
    assert_invalid(err, "contact")


def test_get_enterprise(admin_client: IdnodeClient, make_enterprise: MakeEnterprise) -> None:
    prefix, c = make_enterprise("8", "Demo", "ops@demo")
    c.create(f"{prefix}/A", [value(1, "URL", "https://a")])
    c.create(f"{prefix}/B", [value(1, "URL", "https://b")])
    e = admin_client.get_enterprise(prefix)
    assert (e.prefix, e.display_name, e.contact, e.state) == (prefix, "Demo", "ops@demo", ACTIVE)
    assert e.identifier_count == 2
    assert len(e.credential_fingerprints) == 1


def test_get_enterprise_not_found_and_bad_prefix(admin_client: IdnodeClient) -> None:
    err = rpc_error(lambda: admin_client.get_enterprise(f"{NODE_PREFIX}.77"))
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert err.reason == "ENTERPRISE_NOT_FOUND"
    assert_invalid(rpc_error(lambda: admin_client.get_enterprise("not a prefix")), "prefix")
    assert_invalid(rpc_error(lambda: admin_client.get_enterprise("")), "prefix")


def test_list_enterprises_pagination(admin_client: IdnodeClient) -> None:
    codes = ["1", "2", "3", "10", "Z", "a", "B"]
    for code in codes:
        admin_client.create_enterprise(code, f"Enterprise {code}")
    pages, token = [], ""
    while True:
        page = admin_client.list_enterprises(page_size=3, page_token=token)
        assert len(page.enterprises) <= 3
        pages.append([e.prefix for e in page.enterprises])
        token = page.next_page_token
        if not token:
            break
    listed = [p for page in pages for p in page]
    assert len(pages) == 3
    assert sorted(listed) == sorted(f"{NODE_PREFIX}.{c}" for c in codes)
    assert len(set(listed)) == len(codes)
    assert listed == sorted(listed, key=str.upper)  # case-folded order
    everything = admin_client.list_enterprises(page_size=100)
    assert [e.prefix for e in everything.enterprises] == listed
    assert everything.next_page_token == ""
    assert all(e.display_name.startswith("Enterprise ") for e in everything.enterprises)


def test_list_enterprises_bad_arguments(admin_client: IdnodeClient) -> None:
    assert_invalid(rpc_error(lambda: admin_client.list_enterprises(page_size=-5)), "page_size")
    assert_invalid(rpc_error(lambda: admin_client.list_enterprises(page_token="!!")), "page_token")


def test_suspend_and_resume(admin_client: IdnodeClient, make_enterprise: MakeEnterprise) -> None:
    prefix, _ = make_enterprise("8")
    before = admin_client.get_enterprise(prefix)
    suspended = admin_client.suspend_enterprise(prefix)
    assert suspended.state == SUSPENDED
    assert suspended.prefix == prefix
    assert admin_client.get_enterprise(prefix).state == SUSPENDED
    # idempotent
    assert admin_client.suspend_enterprise(prefix).state == SUSPENDED
    resumed = admin_client.resume_enterprise(prefix.lower())
    assert resumed.state == ACTIVE
    assert resumed.create_time == before.create_time
    assert admin_client.get_enterprise(prefix).state == ACTIVE


def test_suspend_resume_unknown_or_bad(admin_client: IdnodeClient) -> None:
    for call in (admin_client.suspend_enterprise, admin_client.resume_enterprise):
        err = rpc_error(lambda c=call: c(f"{NODE_PREFIX}.404"))
        assert err.code is grpc.StatusCode.NOT_FOUND
        assert err.reason == "ENTERPRISE_NOT_FOUND"
        assert_invalid(rpc_error(lambda c=call: c("88..1")), "prefix")


def test_node_stats_counts(admin_client: IdnodeClient, make_enterprise: MakeEnterprise) -> None:
    empty = admin_client.stats()
    assert empty.node_prefix == NODE_PREFIX
    assert empty.identifier_count == 0
    assert empty.enterprise_count == 0
    assert dict(empty.identifier_count_by_enterprise) == {}

    a_prefix, a = make_enterprise("8")
    b_prefix, b = make_enterprise("9")
    for i in range(5):
        a.create(f"{a_prefix}/A-{i}", [value(1, "URL", f"https://a/{i}")])
    a.batch_create([(f"{a_prefix}/A-{i}", []) for i in range(5, 8)])
    b.create(f"{b_prefix}/B-0", [])
    b.create(f"{b_prefix}.2/B-1", [])  # a sub-prefix counts for its enterprise
    # the administrator writing under an enterprise's prefix counts for that enterprise
    admin_client.create(f"{b_prefix}/BY-ADMIN", [])

    stats = admin_client.stats()
    assert stats.identifier_count == 11
    assert dict(stats.identifier_count_by_enterprise) == {a_prefix: 8, b_prefix: 3}
    assert stats.enterprise_count == 2

    a.delete(f"{a_prefix}/A-0")
    a.delete(f"{a_prefix}/a-1")
    b.delete(f"{b_prefix}.2/B-1")
    rpc_error(lambda: a.delete(f"{a_prefix}/A-0"))  # a failed delete changes nothing
    a.update(f"{a_prefix}/A-2", [])  # nor does an update
    stats = admin_client.stats()
    assert stats.identifier_count == 8
    assert dict(stats.identifier_count_by_enterprise) == {a_prefix: 6, b_prefix: 2}
    assert admin_client.get_enterprise(a_prefix).identifier_count == 6
    assert admin_client.get_enterprise(b_prefix).identifier_count == 2


def test_node_stats_uptime(admin_client: IdnodeClient) -> None:
    uptime = admin_client.stats().uptime
    assert uptime.ToNanoseconds() > 0


def test_admin_writes_need_an_existing_enterprise(admin_client: IdnodeClient) -> None:
    err = rpc_error(lambda: admin_client.create(f"{NODE_PREFIX}.55/X", []))
    assert err.code is grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == "ENTERPRISE_NOT_FOUND"
    assert admin_client.stats().identifier_count == 0


def test_admin_reads_and_lists_across_enterprises(
    admin_client: IdnodeClient, make_enterprise: MakeEnterprise
) -> None:
    a_prefix, a = make_enterprise("8")
    b_prefix, b = make_enterprise("9")
    a.create(f"{a_prefix}/A", [])
    b.create(f"{b_prefix}/B", [])
    assert admin_client.get(f"{b_prefix}/b").owner == b_prefix
    listed = [r.identifier for r in admin_client.list(NODE_PREFIX).records]
    assert listed == [f"{a_prefix}/A", f"{b_prefix}/B"]
    assert [r.identifier for r in admin_client.list(b_prefix).records] == [f"{b_prefix}/B"]
    # and may update and delete there, for the owning enterprise
    assert admin_client.update(f"{a_prefix}/A", [value(1, "URL", "https://by-admin")]).owner == a_prefix
    admin_client.delete(f"{b_prefix}/B")
    assert dict(admin_client.stats().identifier_count_by_enterprise) == {a_prefix: 1, b_prefix: 0}
