"""Cache coherence between front ends sharing one Redis Cluster: invalidate everywhere before ack.

Each front end runs a :class:`ClusterCoherence`. It is

- a **member**: it holds a *lease* in the membership hash ``{idn-coh}NSmembers`` (renewed every
  ``lease_ms / 3`` by a Lua script, the deadline on the Redis master's clock, WAITed to a replica),
  and is subscribed (classic cluster-wide pub/sub) to ``idn:NS:inv`` and its own ack channel. On an
  invalidation it drops the keys from its record cache (and the enterprise cache of its
  Registry), then publishes an ack. Its caches serve **only while its local lease is valid and
  its subscription is up**; the local lease ends ``margin`` before the server's deadline.
- a **writer**: a hook on :attr:`RedisClusterStore.commit_hooks` runs after every commit of
  records or enterprises and before the commit returns (so before the write is acknowledged): it
  reads the live members, publishes the changed keys and waits up to ``ack_timeout`` for every
  other member's ack. A member that does not ack is *evicted* (removed from the hash, so it cannot
  renew) and the writer then waits until that member's lease deadline has passed (at most
  ``lease_ms``): by then the member has stopped serving from its caches, and when it notices the
  eviction it clears them before joining again.

The guarantee: once a write is acknowledged, no front end answers from a cache entry older than
it. Its cost: one membership read, one PUBLISH and the acks' round trip per write (its latency
has not been measured); a stuck front end delays writes by at most ``ack_timeout + lease_ms``
(then it is out until it rejoins). It relies on clocks running at the same *rate* (not on synchronized
clocks); ``margin`` absorbs drift.

A member joins by: subscribe, join (lease), clear its caches; it fills its cache only from reads
that began after that, so nothing read before it was known to writers is ever cached. After a lost
subscription or an eviction it stops serving from its caches, clears them and joins again.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from registry.redis_cluster import RedisClusterStore, register_script
from registry.store import StoreUnavailable, Table, Txn

log = logging.getLogger("idnode.coherence")

_MEMBERS_SCRIPT = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[1]
if mode == 'join' then
  redis.call('HSET', KEYS[1], ARGV[2], now + tonumber(ARGV[3]))
  return 1
elseif mode == 'renew' then
  if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
  redis.call('HSET', KEYS[1], ARGV[2], now + tonumber(ARGV[3]))
  return 1
elseif mode == 'evict' then
  local d = redis.call('HGET', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[1], ARGV[2])
  if not d then return 0 end
  return math.max(0, tonumber(d) - now)
elseif mode == 'members' then
  local all = redis.call('HGETALL', KEYS[1])
  local out = {}
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) > now then out[#out + 1] = all[i] else redis.call('HDEL', KEYS[1], all[i]) end
  end
  return out
elseif mode == 'leave' then
  redis.call('HDEL', KEYS[1], ARGV[2])
  return 1
end
return redis.error_reply('unknown mode')
"""
_MEMBERS_SHA = register_script(_MEMBERS_SCRIPT)

_KINDS = {Table.RECORDS: b"r", Table.ENTERPRISES: b"e"}


class CoherentCache:
    """The record cache as a front end sees it: serves and fills only while the coherence
    member is live (lease valid, subscribed); otherwise every lookup goes to the store."""

    def __init__(self, inner: Any, serving: Callable[[], bool]) -> None:
        self.inner = inner
        self._serving = serving

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key) if self._serving() else None

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.inner.get_many(keys) if self._serving() else [None] * len(keys)

    def epoch(self) -> int:
        return self.inner.epoch()

    def fill(self, key: bytes, value: bytes | None, epoch: int) -> None:
        if self._serving():
            self.inner.fill(key, value, epoch)

    def invalidate(self, key: bytes) -> None:
        self.inner.invalidate(key)

    def clear(self) -> None:
        self.inner.clear()

    def stats(self) -> Any:
        return self.inner.stats()


class ClusterCoherence:
    """One front end's member + writer; see the module docstring. ``cache`` is the record cache
    (it must have ``invalidate`` and ``clear``); ``forget_enterprise(prefix)`` and
    ``forget_all_enterprises()`` drop enterprise cache entries. :meth:`start` joins; :meth:`close`
    leaves."""

    def __init__(
        self,
        store: RedisClusterStore,
        cache: Any,
        *,
        forget_enterprise: Callable[[str], None] = lambda prefix: None,
        forget_all_enterprises: Callable[[], None] = lambda: None,
        lease_ms: int = 3000,
        ack_timeout: float = 1.0,
        margin_ms: int = 300,
    ) -> None:
        self.store = store
        self.cache = cache
        self.forget_enterprise = forget_enterprise
        self.forget_all_enterprises = forget_all_enterprises
        self.lease_ms = lease_ms
        self.ack_timeout = ack_timeout
        self.margin_ms = margin_ms
        self.member_id = secrets.token_hex(8).encode()
        ns = store.namespace
        self.members_key = b"{idn-coh}" + ns.encode() + b"members"
        self.inv_channel = f"idn:{ns}:inv".encode()
        self.ack_prefix = f"idn:{ns}:ack:".encode()
        self.ack_channel = self.ack_prefix + self.member_id
        self._valid_until = 0.0
        self._subscribed = False
        self._lock = threading.Lock()
        self._seq = 0
        self._waiting: dict[int, tuple[set[bytes], threading.Event]] = {}
        self._stop = threading.Event()
        self._pubsub: Any = None
        self._threads: list[threading.Thread] = []
        self.evictions = 0
        """Members this front end evicted for not acknowledging in time."""
        self._rejoin = threading.Event()

    # ------------------------------------------------------------------ membership
    def serving(self) -> bool:
        """True while caches may answer: subscribed and within the local lease."""
        return self._subscribed and time.monotonic() < self._valid_until

    def _members(self, mode: str) -> Any:
        return self.store.run_script(
            self.members_key, _MEMBERS_SHA, mode, self.member_id, self.lease_ms, wait=mode != "members"
        )

    def _lease(self, mode: str) -> bool:
        started = time.monotonic()
        ok = bool(self._members(mode))
        if ok:
            self._valid_until = started + (self.lease_ms - self.margin_ms) / 1000
        return ok

    def start(self) -> None:
        self._connect()
        self._join()
        self._threads = [
            threading.Thread(target=self._listen, name="idnode-coherence-listen", daemon=True),
            threading.Thread(target=self._renew_loop, name="idnode-coherence-lease", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _join(self) -> None:
        self._lease("join")
        # Clear after joining: fills from reads that began before writers knew us are voided.
        self._clear_caches()

    def _clear_caches(self) -> None:
        self.cache.clear()
        self.forget_all_enterprises()

    def _connect(self) -> None:
        """Subscribe (to any reachable node: PUBLISH reaches every node of the cluster)."""
        last: BaseException | None = None
        for host, port in self.store.node_addresses():
            try:
                client = redis.Redis(host=host, port=port, socket_timeout=None, socket_connect_timeout=1.0)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.inv_channel, self.ack_channel)
                # Wait for both confirmations: from then on, no message to us is missed.
                confirmed = 0
                deadline = time.monotonic() + 2.0
                while confirmed < 2 and time.monotonic() < deadline:
                    msg = pubsub.parse_response(block=False, timeout=0.1)
                    if msg and msg[0] in (b"subscribe", "subscribe"):
                        confirmed += 1
                if confirmed < 2:
                    raise redis.ConnectionError("no subscribe confirmation")
                self._pubsub = pubsub
                self._subscribed = True
                return
            except (redis.RedisError, OSError) as exc:
                last = exc
        raise StoreUnavailable(f"cannot subscribe to the Redis Cluster: {last}")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_ms / 3000):
            try:
                if self._rejoin.is_set() or not self._lease("renew"):
                    self._rejoin.clear()
                    log.warning("this front end was evicted (or lost its lease): clearing caches, rejoining")
                    self._join()
            except (StoreUnavailable, redis.RedisError) as exc:
                log.warning("cannot renew the coherence lease (caches stop serving at its end): %s", exc)

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = self._pubsub
            try:
                msg = pubsub.get_message(timeout=1.0) if pubsub is not None else None
            except (redis.RedisError, OSError, ValueError, AttributeError):
                msg = None
                if self._stop.is_set():
                    return
                self._lost()
                continue
            if msg is None or msg.get("type") != "message":
                continue
            channel, data = msg["channel"], msg["data"]
            if channel == self.inv_channel:
                self._on_invalidation(data)
            elif channel == self.ack_channel:
                self._on_ack(data)

    def _lost(self) -> None:
        """The subscription broke: messages may have been missed. Stop serving, resubscribe, clear,
        join again."""
        self._subscribed = False
        log.warning("lost the invalidation subscription: caches stop serving until resubscribed")
        with contextlib.suppress(Exception):
            self._pubsub.close()
        self._pubsub = None
        while not self._stop.is_set():
            try:
                self._connect()
                self._join()
                return
            except (StoreUnavailable, redis.RedisError) as exc:
                log.info("resubscribing failed: %s", exc)
                self._stop.wait(0.2)

    # ------------------------------------------------------------------ messages
    def _on_invalidation(self, data: bytes) -> None:
        writer, seq, *items = data.split(b"\n")
        for item in items:
            kind, key = item[:1], item[1:]
            if kind == b"r":
                self.cache.invalidate(key)
            elif kind == b"e":
                self.forget_enterprise(key.decode())
        if writer != self.member_id:
            ack = self.ack_prefix + writer
            try:
                self.store.publish(ack, self.member_id + b" " + seq)
            except StoreUnavailable as exc:
                log.warning("cannot acknowledge an invalidation: %s", exc)

    def _on_ack(self, data: bytes) -> None:
        member, seq = data.split(b" ")
        with self._lock:
            waiting = self._waiting.get(int(seq))
            if waiting is not None:
                waiting[0].discard(member)
                if not waiting[0]:
                    waiting[1].set()

    # ------------------------------------------------------------------ writer side
    def on_commit(self, txn: Txn, acknowledged: bool) -> None:
        """The store's commit hook: invalidate the changed records and enterprises everywhere and
        wait for it. For a commit whose outcome is unknown (it is not acknowledged), publish once
        without waiting: best effort, the caller already gets UNAVAILABLE."""
        items = [_KINDS[w.table] + w.key for w in txn.writes if w.table in _KINDS]
        if not items:
            return
        if acknowledged:
            self.invalidate(items)
        else:
            message = b"\n".join([self.member_id, b"0", *items])
            self.store.publish(self.inv_channel, message, retry=False)

    def invalidate(self, items: list[bytes]) -> None:
        """Publish ``items`` (kind letter + key) and wait until every other live member dropped
        them, or was evicted and its lease ran out."""
        others = {m for m in self._members("members") if m != self.member_id}
        with self._lock:
            self._seq += 1
            seq = self._seq
            done = threading.Event()
            self._waiting[seq] = (set(others), done)
            if not others:
                done.set()
        try:
            message = b"\n".join([self.member_id, str(seq).encode(), *items])
            self.store.publish(self.inv_channel, message)
            if done.wait(self.ack_timeout):
                return
            with self._lock:
                silent = set(self._waiting[seq][0])
            longest = 0
            for member in silent:
                remaining = int(self.store.run_script(
                    self.members_key, _MEMBERS_SHA, "evict", member, 0, wait=True
                ))  # fmt: skip
                self.evictions += 1
                log.warning("front end %s did not confirm an invalidation: evicted", member.decode())
                longest = max(longest, remaining)
            if longest:
                time.sleep((longest + self.margin_ms) / 1000)
        finally:
            with self._lock:
                self._waiting.pop(seq, None)

    def close(self) -> None:
        self._stop.set()
        self._subscribed = False
        with contextlib.suppress(Exception):
            self._members("leave")
        with contextlib.suppress(Exception):
            self._pubsub.close()
        for t in self._threads:
            t.join(timeout=2)


def attach(store: RedisClusterStore, registry: Any, cache: Any, **kw: Any) -> ClusterCoherence:
    """Wire a :class:`ClusterCoherence` into a front end: gate ``registry.cache`` by it, hook the
    store's commits, join. Returns it (``close()`` it before closing the store)."""

    coherence = ClusterCoherence(
        store,
        cache,
        forget_enterprise=registry.forget_enterprise,
        forget_all_enterprises=registry.forget_all_enterprises,
        **kw,
    )
    registry.cache = CoherentCache(cache, coherence.serving)
    store.commit_hooks.append(coherence.on_commit)
    coherence.start()
    return coherence


__all__ = ["ClusterCoherence", "CoherentCache", "attach"]
