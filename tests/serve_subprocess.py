"""Run a node in a process of its own, for tests that kill it.

Usage: ``python -m tests.serve_subprocess DATA_DIR`` (from the repository root). Initialises the
data directory if needed, starts a node on 127.0.0.1 with both listeners on port 0 and fsync off
(a killed process loses no acknowledged write: the WAL is written before a call returns), prints
``{"public": PORT, "management": PORT}`` as one JSON line on stdout and serves until SIGTERM or
SIGINT (graceful stop) or SIGKILL.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from resolver.datadir import DataDir
from resolver.server import NodeServer, ServerConfig

NODE_PREFIX = "88.118"


def main(argv: list[str]) -> int:
    data_dir = DataDir(Path(argv[1]))
    if not data_dir.initialised():
        data_dir.init(NODE_PREFIX)
    server = NodeServer(
        ServerConfig(
            data_dir=data_dir.root,
            public_address="127.0.0.1:0",
            management_address="127.0.0.1:0",
            fsync=False,
            block_cache_bytes=8 << 20,
            cache_bytes=8 << 20,
            threads=8,
            grace_seconds=1.0,
        )
    )
    server.start()
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"public": server.public_port, "management": server.management_port}), flush=True)
    while not stopping.wait(0.1):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
