"""Run a node for the benchmark in a process of its own and report its pids and ports.

``python -m bench.node_proc DATA_DIR WORKERS CACHE_BYTES METRICS_PORT [PIN]`` prints one JSON line
(``pids``, ``public_port``, ``management_port``, ``metrics_ports``) when serving, then serves until
SIGTERM. One worker: a :class:`resolver.server.NodeServer` in this process; more: a
:class:`resolver.workers.WorkerPool` (this process only supervises), its workers pinned to a CPU
each unless PIN is 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from resolver.server import NodeServer, ServerConfig, tune_gc_for_serving
from resolver.shutdown import stop_on_signals


def main() -> None:
    data_dir, workers, cache_bytes, metrics_port = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    config = ServerConfig(
        data_dir=Path(data_dir),
        public_address="127.0.0.1:0",
        management_address="127.0.0.1:0",
        cache_bytes=cache_bytes,
        fsync=False,
        metrics_address=f"127.0.0.1:{metrics_port}" if metrics_port else "",
        pin_workers=sys.argv[5:6] != ["0"],
    )
    stop = stop_on_signals()
    has_metrics = bool(metrics_port)
    if workers == 1:
        server = NodeServer(config)
        server.start()
        tune_gc_for_serving()
        info = {
            "pids": [os.getpid()],
            "public_port": server.public_port,
            "management_port": server.management_port,
            "metrics_ports": [metrics_port] if has_metrics else [],
        }
        print(json.dumps(info), flush=True)
        stop.wait()
        server.stop(1)
        return
    from resolver.workers import WorkerPool

    pool = WorkerPool(config, workers)
    pool.start()
    assert pool.writer is not None
    info = {
        "pids": [pool.writer.pid, *(p.pid for p in pool.readers.values())],
        "public_port": pool.public_port,
        "management_port": pool.management_port,
        "metrics_ports": [metrics_port + i for i in range(workers)] if has_metrics else [],
    }
    print(json.dumps(info), flush=True)
    stop.wait()
    pool.stop()


if __name__ == "__main__":
    main()
