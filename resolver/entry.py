"""The ``idnode`` command's entry point, which imports the CLI only when it runs.

Worker processes started by ``multiprocessing`` (bulk import) re-import the main script before
their task; through this module that costs nothing, where importing :mod:`resolver.cli` (grpc,
click, cryptography, the server) took each worker ~0.16 s of CPU (bench/README.md, "Session 8").
"""

from __future__ import annotations


def main() -> None:
    from resolver.cli import main as cli_main

    cli_main()
