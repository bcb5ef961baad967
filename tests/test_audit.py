"""The audit trail: every write recorded atomically with it, filters and pagination, and the hash
chain's verification catching altered and removed entries."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from registry.audit import HEAD_KEY, AuditEntry, Change, Operation, seq_key
from registry.errors import AlreadyExists, PermissionDenied
from registry.model import EnterpriseState, Principal, Value
from registry.rocks import RocksStore
from registry.service import Registry, init_node
from registry.store import Delete, Put, Table, Txn
from registry.templates import Template, TemplateField
from resolver.cli import cli
from resolver.client import IdnodeClient, value
from resolver.datadir import DataDir
from resolver.server import NodeServer
from tests.node_fixtures import MakeEnterprise, management_target, rpc_error

ADMIN = Principal.admin("a" * 64)
URL = [Value(1, "URL", "https://acme.example/p")]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RocksStore]:
    s = RocksStore(tmp_path / "db", fsync=False, block_cache_bytes=8 << 20)
    init_node(s, "88.118")
    yield s
    s.close()


def _all(registry: Registry, **filters: object) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    token = ""
    while True:
        page, token = registry.audit.list(ADMIN, size=2, token=token, **filters)  # type: ignore[arg-type]
        out.extend(page)
        if not token:
            return out


def _history(store: RocksStore) -> tuple[Registry, Principal]:
    registry = Registry(store)
    e = registry.create_enterprise(ADMIN, "8", "Acme", "", lambda prefix: "e" * 64, origin="cli:test")
    acme = Principal.enterprise(e.prefix, "e" * 64)
    first = registry.create(acme, "88.118.8/P-1", URL, origin="ipv4:10.0.0.5:5000")
    registry.update(acme, "88.118.8/p-1", [Value(1, "URL", "https://acme.example/q")], first.etag)
    registry.batch_create(acme, [("88.118.8/P-2", URL), ("88.118.8/P-3", URL)])
    registry.delete(acme, "88.118.8/P-2")
    registry.set_enterprise_state(ADMIN, e.prefix, EnterpriseState.SUSPENDED)
    registry.templates.create(ADMIN, Template("t", "1", (TemplateField("x", 2),)))
    return registry, acme


def test_every_write_is_recorded_with_who_what_when_where(store: RocksStore) -> None:
    registry, _ = _history(store)
    entries = _all(registry)
    assert [e.sequence for e in entries] == list(range(1, 9))
    assert [e.operation for e in entries] == [
        Operation.ENTERPRISE_CREATE,
        Operation.CREATE,
        Operation.UPDATE,
        Operation.CREATE,
        Operation.CREATE,
        Operation.DELETE,
        Operation.ENTERPRISE_UPDATE,
        Operation.TEMPLATE_CREATE,
    ]
    create, update = entries[1], entries[2]
    assert (create.actor_role, create.actor_prefix, create.actor_fingerprint) == (
        "enterprise",
        "88.118.8",
        "e" * 64,
    )
    assert create.origin == "ipv4:10.0.0.5:5000" and create.identifier == "88.118.8/P-1"
    assert create.etag_before == "" and create.etag_after
    assert update.etag_before == create.etag_after and update.etag_after not in ("", create.etag_after)
    assert entries[0].actor_role == "admin" and entries[0].origin == "cli:test"
    assert entries[6].detail == {"state": "SUSPENDED"} and entries[7].detail == {"template": "t@1"}
    assert all(e.time_ns > 0 for e in entries)
    assert entries[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))


def test_filters_by_identifier_enterprise_and_time(store: RocksStore) -> None:
    registry, _ = _history(store)
    p1 = _all(registry, identifier="88.118.8/p-1")
    assert [e.operation for e in p1] == [Operation.CREATE, Operation.UPDATE]
    assert len(_all(registry, enterprise="88.118.8")) == 7  # all but the template
    assert _all(registry, enterprise="88.118.9") == []
    everything = _all(registry)
    middle = everything[3].time_ns
    since, until = _all(registry, since_ns=middle), _all(registry, until_ns=middle)
    assert since and until  # each filter keeps something (separate commits, distinct clock readings)
    assert all(e.time_ns >= middle for e in since) and all(e.time_ns < middle for e in until)
    assert until + since == everything  # together, exactly the whole log
    with pytest.raises(PermissionDenied):
        registry.audit.list(Principal.enterprise("88.118.8"))


def test_a_failed_write_records_nothing(store: RocksStore) -> None:
    registry, _ = _history(store)
    before = registry.audit.last_sequence()
    with pytest.raises(AlreadyExists):
        registry.create(ADMIN, "88.118.8/P-1", URL)
    assert registry.audit.last_sequence() == before
    assert registry.audit.verify().ok


def test_verify_passes_on_an_intact_chain(store: RocksStore) -> None:
    registry, _ = _history(store)
    report = registry.audit.verify()
    assert report.ok and report.entries == report.head_sequence == 8
    assert report.head_hash == _all(registry)[-1].hash


def test_verify_catches_an_altered_entry(store: RocksStore) -> None:
    registry, _ = _history(store)
    raw = json.loads(store.get(Table.AUDIT, seq_key(3)) or b"")
    raw["actor_prefix"] = "88.118.9"  # blame someone else
    store.commit(Txn(writes=(Put(Table.AUDIT, seq_key(3), json.dumps(raw).encode()),)))
    report = registry.audit.verify()
    assert not report.ok and report.sequence == 3 and "altered" in report.problem


def test_verify_catches_an_altered_entry_whose_hash_was_recomputed(store: RocksStore) -> None:
    registry, _ = _history(store)
    entry = AuditEntry.decode(store.get(Table.AUDIT, seq_key(4)) or b"")
    forged = replace(entry, identifier="88.118.8/OTHER")
    forged = replace(forged, hash=forged.compute_hash())
    store.commit(Txn(writes=(Put(Table.AUDIT, seq_key(4), forged.encode()),)))
    report = registry.audit.verify()
    assert not report.ok and report.sequence == 5  # the next entry no longer chains to it


@pytest.mark.parametrize("removed", [1, 5, 8])
def test_verify_catches_a_removed_entry(store: RocksStore, removed: int) -> None:
    registry, _ = _history(store)
    store.commit(Txn(writes=(Delete(Table.AUDIT, seq_key(removed)),)))
    report = registry.audit.verify()
    assert not report.ok and report.sequence == removed and "removed" in report.problem


def test_a_foreign_writer_cannot_fork_the_chain(store: RocksStore) -> None:
    registry, _ = _history(store)
    other = Registry(store)  # another writer on the same store, with its own lock and cached head
    other.create(ADMIN, "88.118.8/P-10", URL)
    registry.create(ADMIN, "88.118.8/P-11", URL)  # its cached head is stale: the commit retries
    other.create(ADMIN, "88.118.8/P-12", URL)
    report = registry.audit.verify()
    assert report.ok and report.entries == 11
    assert [e.identifier for e in _all(registry)[-3:]] == ["88.118.8/P-10", "88.118.8/P-11", "88.118.8/P-12"]
    assert store.get(Table.META, HEAD_KEY) is not None


# ---------------------------------------------------------------- over gRPC and the CLI


def test_grpc_audit_listing_and_verification(
    admin_client: IdnodeClient, make_enterprise: MakeEnterprise
) -> None:
    prefix, acme = make_enterprise("8")
    acme.create(f"{prefix}/P-1", [value(1, "URL", "https://acme.example")])
    acme.delete(f"{prefix}/P-1")
    page = admin_client.list_audit(identifier=f"{prefix}/p-1")
    assert [e.operation for e in page.entries] == ["CREATE", "DELETE"]
    create = page.entries[0]
    assert create.actor_role == "enterprise" and create.actor_prefix == prefix
    assert len(create.actor_fingerprint) == 64
    assert create.origin.startswith(("ipv4:127.0.0.1:", "ipv6:"))
    first = admin_client.list_audit(page_size=1)
    assert len(first.entries) == 1 and first.next_page_token
    second = admin_client.list_audit(page_size=1, page_token=first.next_page_token)
    assert second.entries[0].sequence == first.entries[0].sequence + 1
    verified = admin_client.verify_audit()
    assert verified.ok and verified.entry_count == 3 and len(verified.head_hash) == 64
    assert rpc_error(lambda: acme.list_audit()).code is grpc.StatusCode.PERMISSION_DENIED
    assert rpc_error(lambda: acme.verify_audit()).code is grpc.StatusCode.PERMISSION_DENIED


def _cli(node: NodeServer, node_dir: DataDir, *args: str) -> tuple[int, str]:
    base = ["--data-dir", str(node_dir.root), "--management", management_target(node)]
    result = CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_audit_and_verify(
    node: NodeServer, node_dir: DataDir, admin_client: IdnodeClient, make_enterprise: MakeEnterprise
) -> None:
    prefix, acme = make_enterprise("8")
    acme.create(f"{prefix}/P-1", [value(1, "URL", "https://acme.example")])
    code, out = _cli(node, node_dir, "audit", "--identifier", f"{prefix}/P-1", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["operation"] for r in rows] == ["CREATE"]
    code, out = _cli(node, node_dir, "audit", "--enterprise", prefix, "--since", "2000-01-01")
    assert code == 0 and "ENTERPRISE_CREATE" in out and "CREATE" in out
    code, out = _cli(node, node_dir, "audit", "verify")
    assert code == 0 and "ok: 2 entries" in out

    # Tamper with the stored trail underneath the running node: verify reports it and fails.
    raw = json.loads(node.store.get(Table.AUDIT, seq_key(2)) or b"")
    raw["origin"] = "ipv4:192.0.2.1:1"
    node.store.commit(Txn(writes=(Put(Table.AUDIT, seq_key(2), json.dumps(raw).encode()),)))
    code, out = _cli(node, node_dir, "audit", "verify")
    assert code != 0 and "sequence 2" in out


def test_entry_and_change_documents_are_asdicts_json() -> None:
    """Stored entries and changes are the sorted compact JSON of every field (the hash covers all
    but ``hash``), as ``dataclasses.asdict`` gives them: the hashes of existing chains must still
    verify."""
    entry = AuditEntry(
        sequence=7, time_ns=1_764_000_000_123_456_789, operation="CREATE", actor_role="enterprise",
        actor_prefix="88.118.8", actor_fingerprint="ab" * 32, origin="grpc 10.0.0.1",
        identifier="88.118.8/产品-1", enterprise="88.118.8", etag_before="", etag_after="0f" * 8,
        detail={"z": "1", "a": "é"}, prev_hash="00" * 32, hash="12" * 32,
    )  # fmt: skip

    def compact(doc: dict[str, object]) -> bytes:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    body = dataclasses.asdict(entry)
    assert entry.encode() == compact(body)
    odd = dataclasses.replace(entry, hash='q"\\é')  # a decoded entry may hold any hash text
    assert odd.encode() == compact(dataclasses.asdict(odd))
    del body["hash"]
    assert entry.canonical() == compact(body)
    assert entry.compute_hash() == hashlib.sha256(bytes(32) + compact(body)).hexdigest()
    for detail in ({}, {"identifier": "x", "a": 'q"uote'}, {"zz": ',"identifier":"y"'}):
        unsealed = dataclasses.replace(entry, hash="", detail=detail, etag_before='e"\\')
        digest, encoded = unsealed.seal()
        assert digest == unsealed.compute_hash()
        assert encoded == dataclasses.replace(unsealed, hash=digest).encode()
    for record in (b"\x00\xffrecord", None):
        change = Change(7, 1, "CREATE", "88.118.8/产品-1", "88.118.8", "", "0f" * 8, {"b": "2"}, record)
        doc = dataclasses.asdict(change)
        doc["record"] = base64.b64encode(record).decode() if record is not None else None
        assert change.encode() == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        assert Change.decode(change.encode()) == change
