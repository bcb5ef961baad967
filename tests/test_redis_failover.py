"""kill -9 of a Redis Cluster master under write load, through a real idnode front end.

Every write the front end acknowledged (WAIT: a replica had it) is there after the replica took
over; every request that failed meanwhile failed UNAVAILABLE (retryable), none with another error
and none silently; the identifier counter equals the identifiers present (each audited create
commits the record, its counter shares, its audit and feed entries and the chain head in one
journaled multi-shard commit: all or nothing, even across the failover). The killed node comes
back as a replica at the end, so the session's cluster is healthy again for later tests.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc

from registry.redis_cluster import RedisClusterStore
from registry.service import COUNT_TOTAL
from registry.store import Table
from resolver.client import IdnodeClient, IdnodeRpcError, value
from resolver.datadir import DataDir
from resolver.server import NodeServer
from tests.node_fixtures import NODE_PREFIX, management_target, node_config, public_target, save_credential
from tests.redis_cluster import RedisClusterProcesses

WRITERS = 4


def test_kill_9_of_a_master_under_load_loses_no_acknowledged_write(
    redis_cluster: RedisClusterProcesses, redis_namespace: str, tmp_path: Path
) -> None:
    node_dir = DataDir(tmp_path / "node")
    node_dir.init(NODE_PREFIX)
    config = node_config(
        node_dir.root, store="redis-cluster", redis_nodes=redis_cluster.nodes, redis_namespace=redis_namespace
    )
    server = NodeServer(config)
    server.start()
    clients: list[IdnodeClient] = []
    try:
        admin = IdnodeClient(management_target(server), credentials=node_dir.admin.directory)
        clients.append(admin)
        created = admin.create_enterprise("9", "Acme", "o@a.example")
        cred = save_credential(tmp_path / "acme", created.credential)

        acked: list[str] = []
        failures: list[IdnodeRpcError] = []
        stop = threading.Event()
        lock = threading.Lock()

        def writer(w: int) -> None:
            client = IdnodeClient(management_target(server), credentials=cred, retries=False, timeout=20)
            public = IdnodeClient(public_target(server), retries=False, timeout=20)
            clients.extend([client, public])
            n = 0
            while not stop.is_set():
                ident = f"88.118.9/W{w}-{n}"
                n += 1
                try:
                    client.create(ident, [value(1, "URL", f"https://acme.example/{ident}")])
                    with lock:
                        acked.append(ident)
                    public.resolve(ident)  # reads during the failover: a value or UNAVAILABLE
                except IdnodeRpcError as err:
                    with lock:
                        failures.append(err)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        while len(acked) < 200:
            time.sleep(0.01)

        victim = redis_cluster.masters()[0]
        redis_cluster.kill(victim)
        acked_at_kill = len(acked)
        # Wait (under load) until the victim's replica serves its slots, then bring the victim back
        # (as a replica: the new master accepts writes again once it has one).
        deadline = time.monotonic() + 30
        while victim in _slot_owners(redis_cluster):
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.05)
        redis_cluster.start_node(victim)
        redis_cluster.wait_healthy()
        settled = len(acked)
        while len(acked) < settled + 200:  # writes flow again everywhere
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()

        assert acked_at_kill >= 200
        assert failures, "the failover was not noticed at all: did the kill hit a master?"
        assert {f.code for f in failures} == {grpc.StatusCode.UNAVAILABLE}, [str(f) for f in failures[:5]]
        # Every acknowledged write survived the failover, read back through a fresh store.
        with RedisClusterStore(redis_cluster.nodes, namespace=redis_namespace, recovery=False) as check:
            keys = [a.upper().encode() for a in acked]
            found = check.get_many(Table.RECORDS, keys)
            lost = [a for a, f in zip(acked, found, strict=True) if f is None]
            assert lost == []
            present = check.scan(Table.RECORDS, b"88.118.9/", b"88.118.90", 1_000_000)
            assert len(present) >= len(acked)
            assert check.counter(COUNT_TOTAL) == len(present)
    finally:
        for c in clients:
            c.close()
        server.stop(0)
        redis_cluster.wait_healthy()


def _slot_owners(cluster: RedisClusterProcesses) -> set[int]:
    owners: set[int] = set()
    for port in list(cluster.procs):
        try:
            for _start, _end, master, *_ in cluster.client(port).execute_command("CLUSTER", "SLOTS"):
                owners.add(int(master[1]))
            return owners
        except Exception:
            continue
    return owners
