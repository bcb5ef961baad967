"""A real Redis Cluster for the tests: 3 masters and 3 replicas, redis-server processes on loopback.

Registered as a pytest plugin (tests/conftest.py): the session fixture ``redis_cluster`` starts
it once (about 3 s) and stops it at the end of the session. It is started lazily: only sessions
that run a test needing it pay for it. A missing ``redis-server`` fails those tests (CI installs
it: .ci/run, scripts/setup.sh).

Each node: ``cluster-enabled yes``, ``appendonly yes`` with ``appendfsync everysec`` and
``min-replicas-to-write 1``. Why everysec and not always: the store acknowledges a write only
after ``WAIT 1`` says a replica has it, and the failure the tests (and the README's guarantee)
cover is the loss of a master *process* (kill -9) followed by failover: the replica's copy is what
survives. ``everysec`` still writes the AOF to the kernel on every event loop turn, before the
reply, so a kill -9 of a process loses nothing of its own either; fsync only matters for
power loss of master and replica together (then up to one second of writes), which ``always``
would close at a large cost in write latency. ``min-replicas-to-write 1`` makes a master without a
replica (a freshly promoted one) refuse writes up front (NOREPLICAS: UNAVAILABLE) instead of
applying them and failing the WAIT.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

NODE_TIMEOUT_MS = 1000
"""cluster-node-timeout: how long a master may be unreachable before its replica takes over."""


def _free_ports(count: int) -> list[int]:
    """``count`` free ports on 127.0.0.1 whose cluster bus ports (+10000) are free too, no two of
    the 2 x ``count`` the same: picked one by one, a node's port could be another's bus port (a CI
    run failed so: "Could not create server TCP listening socket 127.0.0.1:46857" for the node on
    36857, whose neighbour listened on 46857)."""
    taken: set[int] = set()
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or {port, port + 10000} & taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        taken |= {port, port + 10000}
        ports.append(port)
    return ports


@dataclass
class RedisClusterProcesses:
    """The running cluster: ``ports`` of its nodes, ``nodes`` as "127.0.0.1:port,..."."""

    root: Path
    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def nodes(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def start_node(self, port: int) -> None:
        d = self.root / str(port)
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "redis.conf"
        if not conf.exists():
            conf.write_text(
                "\n".join(
                    [
                        f"port {port}",
                        "bind 127.0.0.1",
                        f"dir {d}",
                        "cluster-enabled yes",
                        "cluster-config-file nodes.conf",
                        f"cluster-node-timeout {NODE_TIMEOUT_MS}",
                        "cluster-require-full-coverage no",
                        "appendonly yes",
                        "appendfsync everysec",
                        'save ""',
                        "min-replicas-to-write 1",
                        "min-replicas-max-lag 10",
                        "daemonize no",
                        "loglevel warning",
                        f"logfile {d / 'redis.log'}",
                    ]
                )
                + "\n"
            )
        self.procs[port] = subprocess.Popen(["redis-server", str(conf)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client(port).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.procs[port].poll() is not None:
                    raise RuntimeError(
                        f"redis-server on port {port} did not start; see {d}/redis.log"
                    ) from None
                time.sleep(0.05)

    def kill(self, port: int) -> None:
        """kill -9 the node on ``port``."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def info(self, port: int) -> dict[str, str]:
        raw = self.client(port).execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def role(self, port: int) -> str:
        return self.client(port).info("replication")["role"]

    def masters(self) -> list[int]:
        return [p for p in self.procs if self.role(p) == "master"]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok, every master has a connected replica, and
        every node agrees who the masters are."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._healthy():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become healthy")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        for port in self.procs:
            if self.info(port).get("cluster_state") != "ok":
                return False
        masters = self.masters()
        if len(masters) * 2 != len(self.procs):
            return False
        for port in masters:
            rep = self.client(port).info("replication")
            if int(rep.get("connected_slaves", 0)) < 1:
                return False
            if any(v.get("state") != "online" for k, v in rep.items() if k.startswith("slave")):
                return False
        return True

    def stop(self) -> None:
        for port in list(self.procs):
            proc = self.procs.pop(port)
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_cluster(root: Path, size: int = 6) -> RedisClusterProcesses:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail(
            "redis-server/redis-cli not found: the Redis Cluster tests need them "
            "(apt-get install -y redis-server; scripts/setup.sh does it when run as root)"
        )
    cluster = RedisClusterProcesses(root, _free_ports(size))
    try:
        for port in cluster.ports:
            cluster.start_node(port)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in cluster.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        cluster.wait_healthy()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """A healthy 3+3 Redis Cluster on loopback for the whole session."""
    root = Path(tempfile.mkdtemp(prefix="idnode-redis-"))
    cluster = start_cluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()
        if not os.environ.get("IDNODE_KEEP_REDIS"):
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_namespace(request: pytest.FixtureRequest) -> str:
    """A namespace of its own for one test (the session's cluster is shared)."""
    return "t" + os.urandom(6).hex()
