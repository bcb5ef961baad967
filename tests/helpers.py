"""Constants and small helpers shared by the tests (no fixtures, no asserts: importable from
``conftest.py`` and plugins alike); the gRPC-level helpers are in :mod:`tests.node_fixtures`."""

from __future__ import annotations

from registry.model import Value

NODE_PREFIX = "88.118"
"""The prefix every test node (and the core ``registry`` fixture) is initialised for."""
TEST_BLOCK_CACHE_BYTES = 8 << 20
"""RocksDB block cache of a test store: small, so that many tests can run side by side."""


def url(n: int | str = 1) -> list[Value]:
    """One URL value (index 1) naming ``n``: the smallest valid record's values."""
    return [Value(1, "URL", f"https://example.com/{n}")]
