"""The Handle.Net v9 compatible REST API, against a real node (RocksDB, both Handle listeners on
port 0), and pyhandle's RESTHandleClient (from PyPI) as a real third-party client.

Contract: /work/shared/research/handle-rest-and-identifiers.md (paths, JSON keys, status pairs).
"""

from __future__ import annotations

import base64
import socket
import ssl
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.handleexceptions import HandleAlreadyExistsException, HandleAuthenticationError

from registry import codec as record_codec
from registry import errors as domain
from registry.identifier import fold
from registry.model import EnterpriseState, Principal, Role, Value
from registry.store import Put, Table, Txn
from resolver import pki
from resolver.errors import STATUS_OF
from resolver.handle_rest import codec
from resolver.handle_rest.app import HandleApp, Request
from resolver.handle_rest.errors import PAIR_OF, InvalidHandle, pair_of
from resolver.handle_rest.protocol import BODY_MAX_BYTES
from tests.handle_fixtures import PASSWORD, RestEnterprise, RestNode

ADMIN_ENTRY = {
    "index": 100,
    "type": "HS_ADMIN",
    "data": {
        "format": "admin",
        "value": {"handle": "0.NA/88.118.8", "index": "200", "permissions": "011111110011"},
    },
}


def put(node: RestNode, ent: RestEnterprise, handle: str, values: list[Any], query: str = "") -> Any:
    target = f"/api/handles/{quote(handle, safe='/')}{query}"
    return node.request("PUT", target, {"values": values}, auth=ent.basic)


def url_record(node: RestNode, ent: RestEnterprise, suffix: str = "p1") -> str:
    handle = f"{ent.prefix}/{suffix}"
    reply = put(
        node,
        ent,
        handle,
        [
            {"index": 1, "type": "URL", "data": "https://example.com/p/1"},
            {"index": 2, "type": "product.batch", "data": {"format": "string", "value": "B7"}},
            ADMIN_ENTRY,
        ],
    )
    assert reply.pair == (201, 1), reply.body
    return handle


# --------------------------------------------------------------------------------------- resolve
def test_get_returns_handle_json_shape_with_timestamps(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    handle = url_record(rest_node, rest_enterprise)
    for tls in (False, True):
        reply = rest_node.get(f"/api/handles/{handle}", tls=tls)
        assert reply.status == 200
        assert reply.headers["content-type"] == "application/json"
        doc = reply.json
        assert set(doc) == {"responseCode", "handle", "values"}
        assert doc["responseCode"] == 1 and doc["handle"] == handle
        assert [v["index"] for v in doc["values"]] == [1, 2, 100]
        for v in doc["values"]:
            assert set(v) == {"index", "type", "data", "ttl", "timestamp"}
            assert set(v["data"]) == {"format", "value"}
            assert isinstance(v["index"], int) and v["ttl"] == 86400
            assert len(v["timestamp"]) == 20 and v["timestamp"].endswith("Z")
        assert doc["values"][0]["data"] == {"format": "string", "value": "https://example.com/p/1"}
        admin = doc["values"][2]
        assert admin["type"] == "HS_ADMIN"
        assert admin["data"] == {
            "format": "admin",
            "value": {"handle": "0.NA/88.118.8", "index": 200, "permissions": "011111110011"},
        }


def test_handle_is_echoed_exactly_as_requested(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    url_record(rest_node, rest_enterprise, "MixedCase-a")
    for spelling in ("88.118.8/mixedcase-A", "88.118.8/MIXEDCASE-A", "88.118.8/MixedCase-a"):
        for _ in range(2):  # the second is answered from the pre-encoded response
            reply = rest_node.get(f"/api/handles/{spelling}", tls=False)
            assert reply.pair == (200, 1)
            assert reply.json["handle"] == spelling


def test_percent_encoded_handle_is_decoded_and_echoed(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    handle = f"{rest_enterprise.prefix}/零件 7"
    assert (
        put(rest_node, rest_enterprise, handle, [{"index": 1, "type": "URL", "data": "https://e.com"}]).status
        == 201
    )
    reply = rest_node.get("/api/handles/88.118.8/%E9%9B%B6%E4%BB%B6%207", tls=False)
    assert reply.pair == (200, 1)
    assert reply.json["handle"] == handle


def test_index_and_type_filters_are_repeatable(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    handle = url_record(rest_node, rest_enterprise)
    by_index = rest_node.get(f"/api/handles/{handle}?index=1&index=100", tls=False).json
    assert [v["index"] for v in by_index["values"]] == [1, 100]
    by_type = rest_node.get(f"/api/handles/{handle}?type=URL&type=product.batch", tls=False).json
    assert [v["type"] for v in by_type["values"]] == ["URL", "product.batch"]
    both = rest_node.get(f"/api/handles/{handle}?type=URL&index=2", tls=False)
    assert both.pair == (200, 200)
    assert both.json == {"responseCode": 200, "handle": handle, "values": []}
    assert rest_node.get(f"/api/handles/{handle}?index=x", tls=False).pair == (400, 202)


@pytest.mark.parametrize(
    ("target", "pair", "handle"),
    [
        ("/api/handles/88.118.8/none", (404, 100), "88.118.8/none"),
        # outside the node prefix: REST answers local records only (no hierarchy routing)
        ("/api/handles/88.119.5/elsewhere", (404, 100), "88.119.5/elsewhere"),
        ("/api/handles/88.118.8", (400, 102), "88.118.8"),
        ("/api/handles/bad prefix!/x", (400, 102), "bad prefix!/x"),
        ("/api/handles/88.118.8/%FF", (400, 102), "88.118.8/%FF"),
    ],
)
def test_errors_have_handle_pairs_and_handle(
    rest_node: RestNode, target: str, pair: tuple[int, int], handle: str
) -> None:
    reply = rest_node.get(target.replace(" ", "%20"), tls=False)
    assert reply.pair == pair
    assert reply.json["handle"] == handle
    assert reply.json["message"]


def test_writes_through_grpc_side_are_seen_at_once(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    handle = url_record(rest_node, rest_enterprise)
    assert rest_node.get(f"/api/handles/{handle}", tls=False).pair == (200, 1)  # now pre-encoded
    registry = rest_node.server.registry
    registry.update(Principal.admin(), handle, [Value(1, "URL", "https://example.com/new")])
    values = rest_node.get(f"/api/handles/{handle}", tls=False).json["values"]
    assert [v["data"]["value"] for v in values] == ["https://example.com/new"]
    registry.delete(Principal.admin(), handle)
    assert rest_node.get(f"/api/handles/{handle}", tls=False).pair == (404, 100)


# --------------------------------------------------------------------------------------- PUT
def test_put_accepts_bare_string_format_value_string_index_and_base64(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    handle = f"{rest_enterprise.prefix}/forms"
    values = [
        {"index": "1", "type": "URL", "data": "https://example.com/a"},
        {"index": 2, "type": "NOTE", "data": {"format": "string", "value": "hello"}, "ttl": "60"},
        {
            "index": 3,
            "type": "BLOB",
            "data": {"format": "base64", "value": base64.b64encode(b"\x00\xff").decode()},
        },
        {"index": 4, "type": "HEX", "data": {"format": "hex", "value": "00ff"}},
    ]
    reply = put(rest_node, rest_enterprise, handle, values)
    assert reply.pair == (201, 1)
    assert reply.json["handle"] == handle
    got = rest_node.get(f"/api/handles/{handle}").json["values"]
    assert [(v["index"], v["data"]) for v in got] == [
        (1, {"format": "string", "value": "https://example.com/a"}),
        (2, {"format": "string", "value": "hello"}),
        (3, {"format": "base64", "value": "AP8="}),
        (4, {"format": "base64", "value": "AP8="}),
    ]
    assert got[1]["ttl"] == 60


def test_an_admin_value_nested_too_deeply_is_served_as_text(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    """An HS_ADMIN value is shown as an admin object only in its canonical form; stored text that
    looks like one but is nested past the JSON parser's depth is shown as text, not a 500."""
    handle = f"{rest_enterprise.prefix}/deep-admin"
    text = '{"handle":' + "[" * 2_000 + "]" * 2_000 + "}"
    values = [{"index": 100, "type": "HS_ADMIN", "data": {"format": "string", "value": text}}]
    assert put(rest_node, rest_enterprise, handle, values).pair == (201, 1)
    reply = rest_node.get(f"/api/handles/{handle}")
    assert reply.pair == (200, 1)
    assert [v["data"] for v in reply.json["values"]] == [{"format": "string", "value": text}]


def test_put_overwrite_false_conflicts_and_overwrite_true_replaces(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    handle = url_record(rest_node, rest_enterprise)
    new = [{"index": 5, "type": "URL", "data": "https://example.com/other"}]
    conflict = put(rest_node, rest_enterprise, handle, new, "?overwrite=false")
    assert conflict.pair == (409, 101) and conflict.json["handle"] == handle
    replaced = put(rest_node, rest_enterprise, handle.upper(), new, "?overwrite=true")
    assert replaced.pair == (200, 1) and replaced.json["handle"] == handle.upper()
    values = rest_node.get(f"/api/handles/{handle}").json["values"]
    assert [(v["index"], v["data"]["value"]) for v in values] == [(5, "https://example.com/other")]


def test_put_with_index_adds_and_replaces_only_those_values(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    handle = url_record(rest_node, rest_enterprise)
    changed = [
        {"index": 2, "type": "product.batch", "data": "B8"},
        {"index": 3, "type": "CHECKSUM", "data": "abc"},
    ]
    assert put(rest_node, rest_enterprise, handle, changed, "?index=2&index=3&overwrite=true").pair == (
        200,
        1,
    )
    values = {v["index"]: v["data"]["value"] for v in rest_node.get(f"/api/handles/{handle}").json["values"]}
    assert values[1] == "https://example.com/p/1" and values[2] == "B8" and values[3] == "abc"
    exists = put(rest_node, rest_enterprise, handle, changed[:1], "?index=2&overwrite=false")
    assert exists.pair == (409, 201)
    stray = put(rest_node, rest_enterprise, handle, changed, "?index=2")
    assert stray.pair == (400, 202)


def test_put_rejects_bad_values_with_every_violation(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    handle = f"{rest_enterprise.prefix}/bad"
    bad = [
        {"index": "x", "type": "URL", "data": "a"},
        {"index": 2, "type": "T", "data": {"format": "vlist", "value": []}},
        {"index": 3, "type": "has space", "data": "a"},
    ]
    reply = put(rest_node, rest_enterprise, handle, bad)
    assert reply.pair == (400, 202)
    fields = [v["field"] for v in reply.json["violations"]]
    assert "values[0].index" in fields and "values[1].data.format" in fields
    for body in (b"{not json", b'{"values": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        assert rest_node.request("PUT", f"/api/handles/{handle}", body, auth=rest_enterprise.basic).pair == (
            400,
            202,
        )
    assert rest_node.get(f"/api/handles/{handle}").pair == (404, 100)


# --------------------------------------------------------------------------------------- DELETE
def test_delete_values_then_whole_handle(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    handle = url_record(rest_node, rest_enterprise)
    auth = rest_enterprise.basic
    reply = rest_node.request("DELETE", f"/api/handles/{handle}?index=2&index=9", auth=auth)
    assert reply.pair == (200, 1) and reply.json["handle"] == handle
    assert [v["index"] for v in rest_node.get(f"/api/handles/{handle}").json["values"]] == [1, 100]
    assert rest_node.request("DELETE", f"/api/handles/{handle}?index=9", auth=auth).pair == (400, 200)
    assert rest_node.request("DELETE", f"/api/handles/{handle}", auth=auth).pair == (200, 1)
    assert rest_node.get(f"/api/handles/{handle}").pair == (404, 100)
    gone = rest_node.request("DELETE", f"/api/handles/{handle}", auth=auth)
    assert gone.pair == (404, 100) and gone.json["handle"] == handle


# --------------------------------------------------------------------------------------- listing
def test_list_prefix_with_pagination(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    for i in range(5):
        put(
            rest_node,
            rest_enterprise,
            f"{rest_enterprise.prefix}/item{i}",
            [{"index": 1, "type": "T", "data": "x"}],
        )
    expected = sorted([f"88.118.8/item{i}" for i in range(5)] + ["88.118.8/admin"], key=lambda h: fold(h))
    pages = []
    for page in range(4):
        reply = rest_node.get(
            f"/api/handles?prefix=88.118.8&page={page}&pageSize=2", auth=rest_enterprise.basic
        )
        assert reply.pair == (200, 1)
        assert reply.json["totalCount"] == "6" and reply.json["pageSize"] == 2 and "handle" in reply.json
        pages.append(reply.json["handles"])
    assert [len(p) for p in pages] == [2, 2, 2, 0]
    assert [h for p in pages for h in p] == expected
    everything = rest_node.get("/api/handles?prefix=0.NA/88.118.8", cert=rest_node.data_dir.admin).json
    assert everything["handles"] == expected and everything["prefix"] == "0.NA/88.118.8"
    anonymous = rest_node.get("/api/handles?prefix=88.118.8", tls=False)
    assert anonymous.pair == (401, 402) and "handle" in anonymous.json


def test_listing_paths_run_off_the_event_loop(rest_node: RestNode) -> None:
    app = HandleApp(rest_node.server.registry)
    for target in (b"/api/handles?prefix=88.118.8", b"/api/handles/?prefix=88.118.8", b"/api/handles"):
        assert app.is_slow(Request("GET", target)), target
    assert not app.is_slow(Request("GET", b"/api/handles/88.118.8/x?prefix=1"))
    assert not app.is_slow(Request("GET", b"/88.118.8/x"))


def test_oversized_body_is_413_with_handle(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    handle = f"{rest_enterprise.prefix}/big"
    body = b'{"values": [' + b" " * BODY_MAX_BYTES + b"]}"
    reply = rest_node.request("PUT", f"/api/handles/{handle}", body, auth=rest_enterprise.basic)
    assert reply.pair == (413, 2), reply.body
    assert reply.json["handle"] == handle and reply.json["reason"] == "BODY_TOO_LARGE"


# --------------------------------------------------------------------------------------- auth
def test_writes_need_credentials(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    handle = f"{rest_enterprise.prefix}/auth"
    body = {"values": [{"index": 1, "type": "URL", "data": "https://e.com"}]}
    none = rest_node.request("PUT", f"/api/handles/{handle}", body)
    assert none.pair == (401, 402) and none.json["handle"] == handle
    wrong = RestEnterprise(rest_enterprise.prefix, rest_enterprise.credential, "wrong password")
    assert rest_node.request("PUT", f"/api/handles/{handle}", body, auth=wrong.basic).pair == (401, 403)
    bad_user = "Basic " + base64.b64encode(f"300%3A88.118.8/other:{PASSWORD}".encode()).decode()
    assert rest_node.request("PUT", f"/api/handles/{handle}", body, auth=bad_user).pair == (401, 403)
    assert rest_node.request("DELETE", f"/api/handles/{handle}").pair == (401, 402)
    plain = rest_node.request("PUT", f"/api/handles/{handle}", body, tls=False, auth=rest_enterprise.basic)
    assert plain.pair == (405, 5)
    assert rest_node.get(f"/api/handles/{handle}").pair == (404, 100)


def test_client_certificate_authenticates_like_grpc(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    handle = f"{rest_enterprise.prefix}/cert"
    body = {"values": [{"index": 1, "type": "URL", "data": "https://e.com"}]}
    headers = {"Authorization": 'Handle clientCert="true"'}
    reply = rest_node.request(
        "PUT", f"/api/handles/{handle}", body, cert=rest_enterprise.credential, headers=headers
    )
    assert reply.pair == (201, 1)
    assert rest_node.request("DELETE", f"/api/handles/{handle}", cert=rest_enterprise.credential).pair == (
        200,
        1,
    )
    # A re-issued credential replaces the old one: the old certificate no longer authenticates.
    registry = rest_node.server.registry
    newer = pki.issue_client_cert(rest_node.data_dir.ca(), Role.ENTERPRISE, rest_enterprise.prefix)
    old = registry.enterprise(rest_enterprise.prefix)
    assert old is not None
    registry.store.commit(
        Txn(
            writes=(
                Put(
                    Table.ENTERPRISES,
                    fold(old.prefix),
                    record_codec.encode_enterprise(
                        replace(old, fingerprints=(pki.fingerprint(newer.cert_pem),))
                    ),
                ),
            )
        )
    )
    registry.forget_enterprise(old.prefix)
    revoked = rest_node.request("PUT", f"/api/handles/{handle}", body, cert=rest_enterprise.credential)
    assert revoked.pair == (401, 403)


def test_other_enterprise_prefix_is_forbidden(
    rest_node: RestNode, rest_enterprise: RestEnterprise, make_rest_enterprise: Any
) -> None:
    other = make_rest_enterprise("9")
    target = url_record(rest_node, rest_enterprise, "mine")
    body = {"values": [{"index": 1, "type": "URL", "data": "https://evil.example"}]}
    for reply in (
        rest_node.request("PUT", f"/api/handles/{target}", body, auth=other.basic),
        rest_node.request("PUT", "/api/handles/88.118.8/new", body, auth=other.basic),
        rest_node.request("DELETE", f"/api/handles/{target}", auth=other.basic),
        rest_node.request("DELETE", f"/api/handles/{target}?index=1", cert=other.credential),
    ):
        assert reply.pair == (403, 401), reply.body
        assert reply.json["reason"] == "PREFIX_NOT_OWNED"
    password = rest_node.request(
        "PUT", "/idnode/v1/passwords/88.118.8", {"password": "hijacked!!"}, auth=other.basic
    )
    assert password.pair == (403, 401)


def test_suspended_enterprise_cannot_write(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    handle = url_record(rest_node, rest_enterprise)
    rest_node.server.registry.set_enterprise_state(
        Principal.admin(), rest_enterprise.prefix, EnterpriseState.SUSPENDED
    )
    reply = put(rest_node, rest_enterprise, handle, [{"index": 1, "type": "URL", "data": "https://x"}])
    assert reply.pair == (403, 401) and reply.json["reason"] == "ENTERPRISE_SUSPENDED"
    assert rest_node.get(f"/api/handles/{handle}").pair == (200, 1)  # still resolves


def test_password_is_stored_only_as_a_salted_scrypt_hash(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    stored = rest_node.server.registry.store.get(Table.META, b"rest_password:" + fold(rest_enterprise.prefix))
    assert stored is not None
    assert stored.startswith(b"scrypt$16384$8$1$") and PASSWORD.encode() not in stored
    short = rest_node.request(
        "PUT",
        f"/idnode/v1/passwords/{rest_enterprise.prefix}",
        {"password": "short"},
        cert=rest_node.data_dir.admin,
    )
    assert short.pair == (400, 202)
    deep = rest_node.request(
        "PUT",
        f"/idnode/v1/passwords/{rest_enterprise.prefix}",
        b"[" * 100_000 + b"]" * 100_000,
        cert=rest_node.data_dir.admin,
    )
    assert deep.pair == (400, 202)
    anonymous = rest_node.request(
        "PUT", f"/idnode/v1/passwords/{rest_enterprise.prefix}", {"password": "x" * 12}
    )
    assert anonymous.pair == (401, 402)
    # The enterprise may change its own password; the old one stops working at once.
    changed = rest_node.request(
        "PUT",
        f"/idnode/v1/passwords/{rest_enterprise.prefix}",
        {"password": "new password"},
        auth=rest_enterprise.basic,
    )
    assert changed.pair == (200, 1)
    body = {"values": [{"index": 1, "type": "URL", "data": "https://e.com"}]}
    assert rest_node.request("PUT", "/api/handles/88.118.8/pw", body, auth=rest_enterprise.basic).pair == (
        401,
        403,
    )
    renewed = RestEnterprise(rest_enterprise.prefix, rest_enterprise.credential, "new password")
    assert rest_node.request("PUT", "/api/handles/88.118.8/pw", body, auth=renewed.basic).pair == (201, 1)


# --------------------------------------------------------------------------------------- scan-to-web
def test_scan_to_web_redirects_to_the_url_value(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    handle = url_record(rest_node, rest_enterprise)
    headers = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "Mozilla/5.0"}
    for tls in (False, True):
        for _ in range(2):
            reply = rest_node.get(f"/{handle.upper()}", tls=tls, headers=headers)
            assert reply.status == 302
            assert reply.headers["location"] == "https://example.com/p/1"
    page = rest_node.get(f"/{handle}?noredirect", tls=False)
    assert page.status == 200 and b"product.batch" in page.body


def test_scan_to_web_404_page(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    missing = rest_node.get("/88.118.8/nothing%3Cb%3E", tls=False)
    assert missing.status == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert b"not registered" in missing.body and b"<b>" not in missing.body
    put(rest_node, rest_enterprise, "88.118.8/nourl", [{"index": 1, "type": "NOTE", "data": "no link"}])
    no_url = rest_node.get("/88.118.8/nourl", tls=False)
    assert no_url.status == 404 and b"no URL" in no_url.body and b"no link" in no_url.body


def test_https_uses_the_node_certificate(rest_node: RestNode) -> None:
    ctx = ssl.create_default_context(cafile=str(rest_node.data_dir.ca_cert))
    with (
        socket.create_connection(("localhost", rest_node.server.https_port)) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cert = tls.getpeercert()
    assert cert is not None
    assert dict(x[0] for x in cert["subject"])["commonName"] == "idnode"
    assert rest_node.get("/api/handles/88.118.8/none").pair == (404, 100)


# --------------------------------------------------------------------------------------- pyhandle
def test_pyhandle_round_trip_with_basic_auth(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    ca = str(rest_node.data_dir.ca_cert)
    client = RESTHandleClient.instantiate_with_username_and_password(
        rest_node.https_url, rest_enterprise.username, PASSWORD, HTTPS_verify=ca
    )
    handle = f"{rest_enterprise.prefix}/pyhandle-1"
    assert client.register_handle(handle, "https://example.com/a", checksum="sha256:00") == handle
    record = client.retrieve_handle_record(handle)
    assert record is not None
    assert record["URL"] == "https://example.com/a" and record["CHECKSUM"] == "sha256:00"
    assert "HS_ADMIN" in record
    with pytest.raises(HandleAlreadyExistsException):
        client.register_handle(handle, "https://example.com/b")
    assert client.modify_handle_value(handle, URL="https://example.com/b", EXTRA="x") == handle
    assert client.get_value_from_handle(handle, "URL") == "https://example.com/b"
    assert client.get_value_from_handle(handle, "EXTRA") == "x"
    assert client.delete_handle_value(handle, "EXTRA") == handle
    assert client.get_value_from_handle(handle, "EXTRA") is None
    assert client.register_handle_kv(f"{rest_enterprise.prefix}/pyhandle-2", URL="https://example.com/c")
    reader = RESTHandleClient.instantiate_for_read_access(rest_node.https_url, HTTPS_verify=ca)
    assert (
        reader.get_value_from_handle(f"{rest_enterprise.prefix}/PYHANDLE-2", "URL") == "https://example.com/c"
    )
    assert client.delete_handle(handle) == handle
    assert reader.retrieve_handle_record_json(handle) is None


def test_pyhandle_with_client_certificate(rest_node: RestNode, rest_enterprise: RestEnterprise) -> None:
    cred = rest_enterprise.credential
    client = RESTHandleClient(
        rest_node.https_url,
        HTTPS_verify=str(rest_node.data_dir.ca_cert),
        certificate_only=str(cred.cert),
        private_key=str(cred.key),
    )
    handle = f"{rest_enterprise.prefix}/cert-1"
    assert client.register_handle_kv(handle, URL="https://example.com/cert") == handle
    assert client.modify_handle_value(handle, URL="https://example.com/cert2") == handle
    assert client.get_value_from_handle(handle, "URL") == "https://example.com/cert2"
    assert client.delete_handle(handle) == handle


def test_pyhandle_wrong_password_is_an_authentication_error(
    rest_node: RestNode, rest_enterprise: RestEnterprise
) -> None:
    client = RESTHandleClient.instantiate_with_username_and_password(
        rest_node.https_url,
        rest_enterprise.username,
        "not the password",
        HTTPS_verify=str(rest_node.data_dir.ca_cert),
    )
    with pytest.raises(HandleAuthenticationError):
        client.register_handle_kv(f"{rest_enterprise.prefix}/denied", URL="https://example.com")


# --------------------------------------------------------------------------------------- codec and table
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_types = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
_plain_values = st.builds(
    Value,
    index=st.integers(1, 2**32 - 1),
    type=_types,
    data=st.one_of(_text, st.binary(max_size=40)),
    ttl=st.integers(0, 2**32 - 1),
)
_admin_values = st.builds(
    lambda index, handle, admin_index, perms: Value(
        index, codec.ADMIN_TYPE, codec.admin_text(handle, admin_index, perms)
    ),
    st.integers(100, 199),
    _text.filter(bool),
    st.integers(0, 2**31),
    st.text("01", max_size=12),
)


@given(st.one_of(_plain_values, _admin_values))
def test_codec_round_trip(value: Value) -> None:
    doc = codec.value_to_json(value)
    assert doc["timestamp"] == "1970-01-01T00:00:00Z"
    problems: list[domain.FieldViolation] = []
    back = codec.value_from_json(doc, "v", problems)
    assert problems == []
    assert back == value
    if value.type == codec.ADMIN_TYPE:
        assert doc["data"]["format"] == "admin"


@given(st.lists(_plain_values, max_size=5))
def test_codec_body_round_trip(values: list[Value]) -> None:
    body = codec.dumps({"values": [codec.value_to_json(v) for v in values]})
    assert codec.values_from_body(body) == values


def test_every_domain_error_has_a_status_pair() -> None:
    assert pair_of(domain.EnterpriseSuspended("x")) == (403, 401)
    assert pair_of(InvalidHandle.single("handle", "bad")) == (400, 102)
    assert pair_of(domain.InvalidArgument.single("values", "bad")) == (400, 202)
    assert pair_of(RuntimeError("boom")) == (500, 2)
    for cls in STATUS_OF:  # every class gRPC maps has its own Handle pair
        assert cls in PAIR_OF, cls
