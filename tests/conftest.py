"""Shared fixtures for the core tests: a real RocksDB store, an initialised registry, principals.

Server fixtures (gRPC, TLS) belong in their own clearly named functions below these.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cache.record_cache import RecordCache
from registry.model import Principal
from registry.rocks import RocksStore
from registry.service import Registry, init_node
from tests.helpers import NODE_PREFIX, TEST_BLOCK_CACHE_BYTES

pytest_plugins = ["tests.node_fixtures", "tests.redis_cluster", "tests.handle_fixtures"]

ENTERPRISE_CODE = "8"
ENTERPRISE_PREFIX = f"{NODE_PREFIX}.{ENTERPRISE_CODE}"
ENTERPRISE_FINGERPRINT = "fp-8"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RocksStore]:
    """A real RocksStore in a fresh directory, closed at teardown."""
    s = RocksStore(tmp_path / "db", block_cache_bytes=TEST_BLOCK_CACHE_BYTES)
    yield s
    s.close()


@pytest.fixture
def registry(store: RocksStore) -> Registry:
    """A registry for node prefix 88.118 on ``store``, with a 1 MiB record cache."""
    init_node(store, NODE_PREFIX)
    return Registry(store, cache=RecordCache(1 << 20))


@pytest.fixture
def admin() -> Principal:
    return Principal.admin()


@pytest.fixture
def enterprise(registry: Registry, admin: Principal) -> Principal:
    """Enterprise 88.118.8 ("Demo"), authenticated with its credential fingerprint."""
    registry.create_enterprise(
        admin, ENTERPRISE_CODE, "Demo", "ops@example.com", lambda prefix: ENTERPRISE_FINGERPRINT
    )
    return registry.authenticate_enterprise(ENTERPRISE_PREFIX, ENTERPRISE_FINGERPRINT)
