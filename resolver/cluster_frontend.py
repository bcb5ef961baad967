"""A stateless front end on a Redis Cluster (``store = "redis-cluster"`` in ServerConfig).

:func:`open_cluster_store` opens the store and, the first time a front end meets an empty
namespace, adopts the node identity of its data directory (the node prefix and the administrator's
certificate fingerprint that ``idnode init`` wrote to the local RocksDB): every front end must run
with a copy of the same data directory (``tls/`` and ``credentials/admin``), since the node CA
signs every credential. :func:`attach_coherence` wires cross-front-end cache invalidation.
"""

from __future__ import annotations

import logging
from typing import Any

from registry.redis_cluster import RedisClusterStore
from registry.rocks import RocksStore
from registry.service import META_ADMIN_FINGERPRINTS, META_NODE_PREFIX, init_node, set_admin_fingerprints
from registry.store import StoreUnavailable, Table
from resolver.coherence import ClusterCoherence, attach
from resolver.datadir import DataDir

log = logging.getLogger("idnode.cluster")


def open_cluster_store(config: Any, data_dir: DataDir) -> RedisClusterStore:
    """The Redis Cluster store of ``config`` (``redis_nodes``, ``redis_namespace``,
    ``redis_wait_replicas``), initialised from ``data_dir`` if the namespace is new."""
    if not config.redis_nodes:
        raise StoreUnavailable('store = "redis-cluster" needs redis_nodes = "host:port,..."')
    store = RedisClusterStore(
        config.redis_nodes, namespace=config.redis_namespace, wait_replicas=config.redis_wait_replicas
    )
    try:
        if store.get(Table.META, META_NODE_PREFIX) is None:
            with RocksStore(data_dir.db, block_cache_bytes=1 << 20) as local:
                prefix = local.get(Table.META, META_NODE_PREFIX)
                admins = local.get(Table.META, META_ADMIN_FINGERPRINTS) or b""
            if prefix is None:
                raise StoreUnavailable(f"{data_dir.root} is not initialised: run `idnode init` first")
            init_node(store, prefix.decode())
            if store.get(Table.META, META_ADMIN_FINGERPRINTS) is None and admins:
                set_admin_fingerprints(store, admins.decode().split(","))
            log.info(
                "initialised the cluster namespace %r for node prefix %s", config.redis_namespace, prefix
            )
    except BaseException:
        store.close()
        raise
    return store


def attach_coherence(store: RedisClusterStore, registry: Any, cache: Any, lease_ms: int) -> ClusterCoherence:
    """:func:`resolver.coherence.attach` with the server's one setting (kept as the server's
    single import point for the cluster front end)."""
    return attach(store, registry, cache, lease_ms=lease_ms)
