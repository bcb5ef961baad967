"""Durability of acknowledged writes: a node in its own process, killed with SIGKILL right after
the writes were acknowledged (fsync off), restarted on the same data directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from registry.pb import record_pb2
from resolver.client import IdnodeClient, value
from resolver.datadir import DataDir
from tests.node_fixtures import NODE_PREFIX, save_credential

REPO_ROOT = Path(__file__).resolve().parents[1]
N = 200


class NodeProcess:
    """A node started with ``python -m tests.serve_subprocess``; ports read from its first line."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.serve_subprocess", str(data_dir)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            self._log_file.close()
            raise RuntimeError(f"node exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
        ports = json.loads(line)
        self.public = f"127.0.0.1:{ports['public']}"
        self.management = f"localhost:{ports['management']}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()
        return self.proc.returncode


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[[Path], NodeProcess]]:
    started: list[NodeProcess] = []

    def start(data_dir: Path) -> NodeProcess:
        p = NodeProcess(data_dir, tmp_path / f"node-{len(started)}.log")
        started.append(p)
        return p

    yield start
    for p in started:
        p.terminate()


def numbered_values(i: int, version: int = 1) -> list[record_pb2.Value]:
    return [value(1, "URL", f"https://example.com/{i}/v{version}"), value(2, "SEQ", str(i))]


def test_acknowledged_writes_survive_sigkill(
    tmp_path: Path, start_node: Callable[[Path], NodeProcess]
) -> None:
    data = tmp_path / "node"
    first = start_node(data)
    admin_creds = DataDir(data).admin.directory
    with IdnodeClient(first.management, credentials=admin_creds) as admin:
        response = admin.create_enterprise("8", "Demo", "ops@demo")
    prefix = response.enterprise.prefix
    creds = save_credential(tmp_path / "ent", response.credential)

    ids = [f"{prefix}/DUR-{i:04d}" for i in range(N)]
    with IdnodeClient(first.management, credentials=creds) as c:
        etags = [c.create(ident, numbered_values(i)).etag for i, ident in enumerate(ids)]
        updated = c.update(ids[0], numbered_values(0, version=2), etag=etags[0])
        c.create(f"{prefix}/DOOMED", [])
        c.delete(f"{prefix}/DOOMED")
        batch = c.batch_create([(f"{prefix}/BATCH-{i}", []) for i in range(10)], request_id="durable-batch")
        first.kill()  # right after the last acknowledgement
    assert first.proc.returncode == -signal.SIGKILL

    second = start_node(data)
    with IdnodeClient(second.public) as anon:
        results = anon.batch_resolve(ids)
        assert [r.WhichOneof("result") for r in results] == ["record"] * N
        for i, r in enumerate(results):
            assert r.record.identifier == ids[i]
            assert r.record.values[1].text == str(i)
        assert results[0].record == updated
        assert [r.record.etag for r in results[1:]] == etags[1:]
        gone = anon.batch_resolve([f"{prefix}/DOOMED"])[0]
        assert gone.error.code == grpc.StatusCode.NOT_FOUND.value[0]

    with IdnodeClient(second.management, credentials=admin_creds) as admin:
        stats = admin.stats()
        assert stats.identifier_count == N + 10
        assert dict(stats.identifier_count_by_enterprise) == {prefix: N + 10}
        assert (
            admin.get_enterprise(prefix).credential_fingerprints
            == response.enterprise.credential_fingerprints
        )

    with IdnodeClient(second.management, credentials=creds) as c:
        # the enterprise and its credential survived; so did the batch's idempotency record
        assert (
            c.batch_create([(f"{prefix}/BATCH-{i}", []) for i in range(10)], request_id="durable-batch")
            == batch
        )
        err_results = c.batch_create([(ids[5], [])])
        assert err_results[0].error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
        assert c.create(f"{prefix}/AFTER-RESTART", []).owner == prefix
    assert second.terminate() == 0


def test_graceful_stop_and_restart(tmp_path: Path, start_node: Callable[[Path], NodeProcess]) -> None:
    data = tmp_path / "node"
    first = start_node(data)
    with IdnodeClient(first.management, credentials=DataDir(data).admin.directory) as admin:
        admin.create_enterprise("8")
        admin.create(f"{NODE_PREFIX}.8/GRACEFUL", numbered_values(1))
    assert first.terminate() == 0

    second = start_node(data)
    with IdnodeClient(second.public) as anon:
        assert anon.resolve(f"{NODE_PREFIX}.8/graceful").values[0].text == "https://example.com/1/v1"


def test_second_process_cannot_open_a_data_dir_in_use(
    tmp_path: Path, start_node: Callable[[Path], NodeProcess]
) -> None:
    data = tmp_path / "node"
    running = start_node(data)
    with pytest.raises(RuntimeError, match=r"(?s)exited with 1.*LOCK"):
        start_node(data)
    # the running node is unaffected
    with IdnodeClient(running.public) as anon:
        err_code = anon.batch_resolve([f"{NODE_PREFIX}.8/X"])[0].error.code
        assert err_code == grpc.StatusCode.NOT_FOUND.value[0]
