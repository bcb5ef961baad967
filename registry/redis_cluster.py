"""The Redis Cluster backend: :class:`RedisClusterStore`, for several stateless front ends.

Layout. Every Redis key starts with a hash tag ``{tag}`` naming a *shard*; all the keys of one
shard live in one hash slot, so one Lua script can touch them atomically:

- ``RECORDS`` is spread over ``buckets`` shards (default 1024): an identifier's bucket is
  ``crc32(whole case-folded identifier) % buckets``, so one enterprise's codes spread over every
  bucket; bucket ``b``'s tag is chosen to land on slot ``b * 16384 // buckets`` (evenly spread);
- every other table (ENTERPRISES, REQUESTS, META, ...) is one shard of its own: small, but for
  AUDIT (one entry per audited write, never pruned) and CHANGES (pruned to its retention window);
- commit journals live in one shard of their own.

In a shard ``{tag}NS`` (``NS``: the optional namespace), with ``f`` = table letter + key:

- ``{tag}NSd<f>``: the value (a string);
- ``{tag}NSi<table letter>``: a sorted set of the table's keys in the shard (score 0, ordered by
  bytes: ``ZRANGEBYLEX`` serves :meth:`scan`);
- ``{tag}NSc``: a hash of counter *shares*: a counter's value is the sum of its field over every
  shard, so a commit adds its counter deltas to a shard it already writes, atomically with them;
- ``{tag}NSl``: a hash of per-key locks (``f`` -> commit id) held by multi-shard commits;
- ``{tag}NSa<commit id>``: "this commit was applied here" markers (expire after a day).

Commits. A commit whose keys all fall in one shard (a record with its index entry and counter
shares, which share the bucket, when nothing else is written) is one Lua script: check that no key
is locked, check every Expect, apply. A commit spanning shards runs a journaled two-phase
protocol. Since the audit trail, every audited :class:`~registry.service.Registry` write (a
single create, update or delete included) also writes AUDIT, CHANGES and the chain head in META:
four shards, so it takes the journaled path; the single-shard script serves unaudited commits
(the conformance suite's, plain META writes):

1. write the journal ``{j}NSj<cid>`` = PENDING, a lease deadline (the journal master's clock) and
   the whole commit (so that any front end can finish it);
2. lock every key it reads or writes, shard by shard, and read its Expects under the locks; a key
   locked by another commit means: finish that commit if its journal says COMMITTED, abort it if
   its lease ran out (or its journal is gone), else wait for it (bounded) — nobody waits while
   holding locks (a conflict releases ours and retries), so there is no deadlock;
3. a failed Expect releases the locks: ConditionFailed, nothing changed;
4. the commit point: one script flips the journal PENDING -> COMMITTED (fails if someone aborted
   it after its lease ran out: then release and retry);
5. apply every shard (idempotent: a marker per shard), which releases that shard's locks; delete
   the journal.

A front end killed between 4 and 5 leaves locks pointing at a COMMITTED journal: the next commit
that meets one of those locks, or the recovery sweep every front end runs (:meth:`recover`, at
start and every ``lease_ms``), rolls it forward. Killed before 4, its journal is aborted once its
lease runs out and its locks are released. So every commit is all-or-nothing once recovered.
Readers take no locks: a reader may see a multi-shard commit half-applied *while* step 5 runs
(read-committed per key, never a value that is later rolled back); once ``commit`` returns, every
read sees all of it.

Durability: each step that must survive a failover (the single-shard script, the locks, the
commit point, an abort by another front end, each apply) is followed, on the same connection and
in the same round trip, by ``WAIT wait_replicas wait_timeout_ms``; ``commit`` returns only when
every WAIT reached ``wait_replicas``. Otherwise it raises :class:`StoreUnavailable` (the outcome
is then unknown: a retry sees the write or not; a multi-shard commit is finished or aborted by
recovery, never left half-done).

Errors: an unreachable node, CLUSTERDOWN, TRYAGAIN, MOVED during a failover, NOREPLICAS, LOADING
are retried (with a fresh slot map) for up to ``retry_seconds`` when nothing can have been
executed; then, or when a reply was lost mid-request, :class:`StoreUnavailable`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import random
import secrets
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from registry.store import ConditionFailed, Delete, Expect, Put, StoreFull, StoreUnavailable, Table, Txn

log = logging.getLogger("idnode.redis")

SLOTS = 16384
DEFAULT_BUCKETS = 1024
_LETTERS = {Table.RECORDS: b"r", Table.ENTERPRISES: b"e", Table.REQUESTS: b"q", Table.META: b"m"}
_TABLE_LETTER = {t: _LETTERS.get(t, b"x") for t in Table}
"""A table's letter in its keys. Every table but RECORDS has a shard of its own, so "x" (for
tables added later) cannot collide."""
_SMALL_TAGS = {t: b"idn-" + (_LETTERS.get(t) or t.value.encode()) for t in Table if t is not Table.RECORDS}
_JOURNAL_TAG = b"idn-j"
_MARKER_TTL_MS = 86_400_000

_SHARD_SCRIPT = r"""
local p = KEYS[1]
local mode = ARGV[1]
local cid = ARGV[2]
local locks = p .. 'l'
local i = 3
local ne = tonumber(ARGV[i]); i = i + 1
local ef, ep, ev, ex = {}, {}, {}, {}
for n = 1, ne do
  ef[n] = ARGV[i]; ep[n] = ARGV[i + 1]; ev[n] = ARGV[i + 2]; ex[n] = tonumber(ARGV[i + 3]); i = i + 4
end
local nw = tonumber(ARGV[i]); i = i + 1
local wo, wf, wv = {}, {}, {}
for n = 1, nw do wo[n] = ARGV[i]; wf[n] = ARGV[i + 1]; wv[n] = ARGV[i + 2]; i = i + 3 end
local na = tonumber(ARGV[i]); i = i + 1
local an, ad = {}, {}
for n = 1, na do an[n] = ARGV[i]; ad[n] = ARGV[i + 1]; i = i + 2 end

local function fields()
  local seen, out = {}, {}
  for n = 1, ne do if not seen[ef[n]] then seen[ef[n]] = true; out[#out + 1] = ef[n] end end
  for n = 1, nw do if not seen[wf[n]] then seen[wf[n]] = true; out[#out + 1] = wf[n] end end
  return out
end
local function first_failure()
  for n = 1, ne do
    local cur = redis.call('GET', p .. 'd' .. ef[n])
    if ep[n] == '1' then
      if cur == false or cur ~= ev[n] then return ex[n] end
    elseif cur ~= false then
      return ex[n]
    end
  end
  return -1
end
local function apply()
  for n = 1, nw do
    local f = wf[n]
    local ik = p .. 'i' .. string.sub(f, 1, 1)
    if wo[n] == 'p' then
      redis.call('SET', p .. 'd' .. f, wv[n])
      redis.call('ZADD', ik, 0, string.sub(f, 2))
    else
      redis.call('DEL', p .. 'd' .. f)
      redis.call('ZREM', ik, string.sub(f, 2))
    end
  end
  for n = 1, na do redis.call('HINCRBY', p .. 'c', an[n], ad[n]) end
end
local function release(fs)
  for _, f in ipairs(fs) do
    if redis.call('HGET', locks, f) == cid then redis.call('HDEL', locks, f) end
  end
end

if mode == 'one' then
  local fs = fields()
  for _, f in ipairs(fs) do
    local h = redis.call('HGET', locks, f)
    if h then return {'L', h} end
  end
  local fi = first_failure()
  if fi >= 0 then return {'F', fi} end
  apply()
  return {'O'}
elseif mode == 'lock' then
  local fs = fields()
  for _, f in ipairs(fs) do
    local h = redis.call('HGET', locks, f)
    if h and h ~= cid then return {'L', h} end
  end
  for _, f in ipairs(fs) do redis.call('HSET', locks, f, cid) end
  return {'O', first_failure()}
elseif mode == 'apply' then
  local mk = p .. 'a' .. cid
  if redis.call('EXISTS', mk) == 0 then
    apply()
    redis.call('SET', mk, '1', 'PX', ARGV[#ARGV])
  end
  release(fields())
  return {'O'}
elseif mode == 'release' then
  release(fields())
  return {'O'}
elseif mode == 'purge' then
  local all = redis.call('HGETALL', locks)
  for n = 1, #all, 2 do
    if all[n + 1] == cid then redis.call('HDEL', locks, all[n]) end
  end
  return {'O'}
end
return redis.error_reply('unknown mode')
"""

_JOURNAL_SCRIPT = r"""
local p = KEYS[1]
local mode = ARGV[1]
local cid = ARGV[2]
local jk = p .. 'j' .. cid
local jl = p .. 'J'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if mode == 'begin' then
  local dl = now + tonumber(ARGV[3])
  redis.call('HSET', jk, 's', 'P', 'd', dl, 'x', ARGV[4])
  redis.call('ZADD', jl, dl, cid)
  return {'O'}
elseif mode == 'commit' then
  local s = redis.call('HGET', jk, 's')
  if s == 'P' then redis.call('HSET', jk, 's', 'C'); return {'O'} end
  return {s or 'X'}
elseif mode == 'abort' then
  local s = redis.call('HGET', jk, 's')
  if s == 'P' then redis.call('HSET', jk, 's', 'A'); return {'A'} end
  return {s or 'X'}
elseif mode == 'check' then
  local v = redis.call('HMGET', jk, 's', 'd', 'x')
  local s = v[1]
  if not s then return {'X'} end
  if s == 'P' then
    if now > tonumber(v[2]) then
      redis.call('HSET', jk, 's', 'A')
      return {'A', v[3]}
    end
    return {'P', tostring(tonumber(v[2]) - now)}
  end
  return {s, v[3]}
elseif mode == 'delete' then
  redis.call('DEL', jk)
  redis.call('ZREM', jl, cid)
  return {'O'}
elseif mode == 'due' then
  return redis.call('ZRANGEBYSCORE', jl, '-inf', now, 'LIMIT', 0, 100)
end
return redis.error_reply('unknown mode')
"""

_LOAD_SCRIPT = r"""
local p = KEYS[1]
local letter = ARGV[1]
local n = tonumber(ARGV[2])
local locks = p .. 'l'
local i = 3
local skipped = {}
for k = 1, n do
  local key, val, nc = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local f = letter .. key
  if redis.call('HEXISTS', locks, f) == 1 or redis.call('EXISTS', p .. 'd' .. f) == 1 then
    skipped[#skipped + 1] = k
  else
    redis.call('SET', p .. 'd' .. f, val)
    redis.call('ZADD', p .. 'i' .. letter, 0, key)
    for c = 1, nc do redis.call('HINCRBY', p .. 'c', ARGV[i + c - 1], 1) end
  end
  i = i + nc
end
return skipped
"""

_SCRIPTS: list[str] = [_SHARD_SCRIPT, _JOURNAL_SCRIPT, _LOAD_SCRIPT]
"""Loaded (SCRIPT LOAD) on a node that answers NOSCRIPT; :func:`register_script` adds to it."""


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


_SHARD_SHA = _sha1(_SHARD_SCRIPT)
_JOURNAL_SHA = _sha1(_JOURNAL_SCRIPT)
_LOAD_SHA = _sha1(_LOAD_SCRIPT)


def register_script(script: str) -> str:
    """Add ``script`` to the scripts a node is given when it lacks one (NOSCRIPT), and return its
    SHA-1 for :meth:`RedisClusterStore.run_script`."""
    if script not in _SCRIPTS:
        _SCRIPTS.append(script)
    return _sha1(script)


_RETRYABLE_REPLIES = (
    MovedError,
    AskError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    BusyLoadingError,
    ReadOnlyError,
)
"""Error replies after which the server did not execute the command."""


def _bucket_tags(buckets: int) -> list[bytes]:
    """For each bucket ``b`` a short tag whose key slot is ``b * SLOTS // buckets``."""
    wanted = {b * SLOTS // buckets: b for b in range(buckets)}
    tags: list[bytes | None] = [None] * buckets
    missing = buckets
    n = 0
    while missing:
        tag = b"idn-r%x" % n
        b = wanted.get(key_slot(tag))
        if b is not None and tags[b] is None:
            tags[b] = tag
            missing -= 1
        n += 1
    return [t for t in tags if t is not None]


_TAGS_CACHE: dict[int, list[bytes]] = {}


@dataclass
class _ShardOps:
    """One shard's part of a commit, in the order of the commit."""

    expects: list[tuple[bytes, Expect, int]] = field(default_factory=list)
    writes: list[tuple[bytes, Put | Delete]] = field(default_factory=list)
    adds: dict[bytes, int] = field(default_factory=dict)

    def argv(self, mode: str, cid: str) -> list[bytes | str | int]:
        out: list[bytes | str | int] = [mode, cid, len(self.expects)]
        for f, e, index in self.expects:
            out += [f, b"1" if e.value is not None else b"0", e.value or b"", index]
        out.append(len(self.writes))
        for f, w in self.writes:
            out += [b"p", f, w.value] if isinstance(w, Put) else [b"d", f, b""]
        adds = [(k, v) for k, v in self.adds.items() if v]
        out.append(len(adds))
        for name, delta in adds:
            out += [name, delta]
        if mode == "apply":
            out.append(_MARKER_TTL_MS)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "e": [[_b64(f), e.table.value, _b64(e.key), None if e.value is None else _b64(e.value), i]
                  for f, e, i in self.expects],
            "w": [[_b64(f), w.table.value, _b64(w.key), _b64(w.value) if isinstance(w, Put) else None]
                  for f, w in self.writes],
            "a": [[_b64(k), v] for k, v in self.adds.items()],
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> _ShardOps:
        ops = cls()
        for f, t, k, v, i in doc["e"]:
            ops.expects.append((_unb64(f), Expect(Table(t), _unb64(k), None if v is None else _unb64(v)), i))
        for f, t, k, v in doc["w"]:
            w: Put | Delete = (
                Delete(Table(t), _unb64(k)) if v is None else Put(Table(t), _unb64(k), _unb64(v))
            )
            ops.writes.append((_unb64(f), w))
        for k, v in doc["a"]:
            ops.adds[_unb64(k)] = v
        return ops


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


class _NotSent(Exception):
    """Nothing reached the server (the connection could not be made): safe to retry."""


class _Lost(Exception):
    """The connection failed after the request was sent: its outcome is unknown."""


class _Conflict(Exception):
    """A key is locked by commit ``holder`` (b"": we were aborted) in shard ``where``."""

    def __init__(self, holder: bytes, where: bytes) -> None:
        self.holder = holder
        self.where = where


class RedisClusterStore:
    """:class:`~registry.store.Store` on a Redis Cluster.

    ``shared`` (True): several front ends commit to one namespace, so nothing a process
    remembers of its own commits (the audit chain head) is the store's current state.

    ``nodes``: some ``host:port`` of the cluster (comma-separated string or sequence);
    ``namespace``: a prefix that keeps several stores apart on one cluster (ASCII letters,
    digits, ``-_:``); ``wait_replicas``: replicas every commit waits for (``WAIT``; 0 with a
    cluster without replicas, e.g. a laptop); ``lease_ms``: how long a multi-shard commit may hold
    its locks before another front end may abort it; ``recovery``: run the background recovery
    sweep (every ``lease_ms``).
    """

    shared = True

    def __init__(
        self,
        nodes: str | Sequence[str],
        *,
        namespace: str = "",
        buckets: int = DEFAULT_BUCKETS,
        wait_replicas: int = 1,
        wait_timeout_ms: int = 1000,
        retry_seconds: float = 2.0,
        lease_ms: int = 5000,
        socket_timeout: float = 5.0,
        recovery: bool = True,
    ) -> None:
        if isinstance(nodes, str):
            nodes = [n.strip() for n in nodes.split(",") if n.strip()]
        if not nodes:
            raise ValueError("no Redis Cluster node given")
        if not all(c.isalnum() or c in "-_:" for c in namespace):
            raise ValueError(f"namespace {namespace!r}: use ASCII letters, digits, '-', '_', ':'")
        if not 1 <= buckets <= SLOTS:
            raise ValueError("buckets must be between 1 and 16384")
        self.nodes = list(nodes)
        self.namespace = namespace
        self.buckets = buckets
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.retry_seconds = retry_seconds
        self.lease_ms = lease_ms
        self._closed = False
        self.commit_hooks: list[Callable[[Txn, bool], None]] = []
        """Called after every commit, before it returns (cross-front-end cache invalidation)."""
        self._topology_lock = threading.Lock()
        self._refreshed = 0.0
        ns = namespace.encode()
        if buckets not in _TAGS_CACHE:
            _TAGS_CACHE[buckets] = _bucket_tags(buckets)
        self._bucket_prefixes = [b"{" + t + b"}" + ns for t in _TAGS_CACHE[buckets]]
        self._small_prefixes = {t: b"{" + tag + b"}" + ns for t, tag in _SMALL_TAGS.items()}
        self._journal_prefix = b"{" + _JOURNAL_TAG + b"}" + ns
        self._all_prefixes = [*self._bucket_prefixes, *self._small_prefixes.values()]
        self._slot_of = {p: key_slot(p) for p in [*self._all_prefixes, self._journal_prefix]}
        startup = []
        for n in self.nodes:
            host, _, port = n.rpartition(":")
            startup.append(ClusterNode(host or "127.0.0.1", int(port)))
        try:
            self._rc = RedisCluster(
                startup_nodes=startup,
                socket_timeout=socket_timeout,
                socket_connect_timeout=min(socket_timeout, 1.0),
                require_full_coverage=False,
            )
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(
                f"cannot reach the Redis Cluster at {','.join(self.nodes)}: {exc}"
            ) from exc
        self._check_layout()
        self._stop = threading.Event()
        self._recovery_thread: threading.Thread | None = None
        if recovery:
            self._recovery_thread = threading.Thread(
                target=self._recovery_loop, name="idnode-redis-recovery", daemon=True
            )
            self._recovery_thread.start()

    # ------------------------------------------------------------------ routing and round trips
    def _client(self, slot: int) -> redis.Redis:
        node = self._rc.nodes_manager.get_node_from_slot(slot)
        client = node.redis_connection or self._rc.get_redis_connection(node)
        return client

    def _refresh(self) -> None:
        with self._topology_lock:
            if time.monotonic() - self._refreshed < 0.05:
                return
            try:
                self._rc.nodes_manager.initialize()
            except (RedisError, RedisClusterException, OSError) as exc:
                log.debug("topology refresh failed: %s", exc)
            self._refreshed = time.monotonic()

    def _roundtrip(self, slot: int, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` to the master of ``slot`` on one connection in one write; the replies
        (an error reply as its exception object). Raises _NotSent or _Lost."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        try:
            pool = self._client(slot).connection_pool
            conn = pool.get_connection()  # connects (or checks the connection): nothing sent yet
        except (RedisError, RedisClusterException, OSError) as exc:
            raise _NotSent(exc) from exc
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            out: list[Any] = []
            for _ in commands:
                try:
                    out.append(conn.read_response())
                except ResponseError as exc:
                    out.append(exc)
            return out
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            conn.disconnect()
            raise _Lost(exc) from exc
        finally:
            pool.release(conn)

    def _multi(
        self,
        calls: Sequence[tuple[int, Sequence[Any]]],
        *,
        write: bool = False,
        idempotent: bool = True,
        retry_seconds: float | None = None,
    ) -> list[Any]:
        """Run one command per ``(slot, command)``, pipelined per master (with one ``WAIT`` per
        master when ``write``); the replies in order.

        Retries, with a fresh slot map, the commands that met a retryable error reply or an
        unsent request, and those whose reply was lost if ``idempotent``, for up to
        ``retry_seconds``; then raises :class:`StoreUnavailable`. Also raises it when a WAIT saw
        fewer than ``wait_replicas`` replicas (the writes happened on the master, unconfirmed)."""
        self._check_open()
        out: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        deadline = time.monotonic() + (self.retry_seconds if retry_seconds is None else retry_seconds)
        delay = 0.01
        load_scripts = False
        wait = (
            [("WAIT", self.wait_replicas, self.wait_timeout_ms)] if write and self.wait_replicas > 0 else []
        )
        while True:
            groups: dict[str, list[int]] = defaultdict(list)
            for i in pending:
                groups[self._owner(calls[i][0])].append(i)
            retry: list[int] = []
            problem: BaseException | None = None
            for idxs in groups.values():
                head = [("SCRIPT", "LOAD", script) for script in _SCRIPTS] if load_scripts else []
                commands = [*head, *(calls[i][1] for i in idxs), *wait]
                try:
                    replies = self._roundtrip(calls[idxs[0]][0], commands)
                except _NotSent as exc:
                    retry += idxs
                    problem = exc
                    continue
                except _Lost as exc:
                    if not idempotent:
                        raise StoreUnavailable(
                            f"lost the connection to Redis mid-request (outcome unknown): {exc}"
                        ) from exc
                    retry += idxs
                    problem = exc
                    continue
                replies = replies[len(head) :]
                acked = replies.pop() if wait else None
                done = 0
                for i, r in zip(idxs, replies, strict=True):
                    if isinstance(r, NoScriptError):
                        load_scripts = True
                        retry.append(i)
                        problem = r
                    elif isinstance(r, _RETRYABLE_REPLIES) or (
                        isinstance(r, ResponseError) and "NOREPLICAS" in str(r)
                    ):
                        retry.append(i)
                        problem = r
                    elif isinstance(r, OutOfMemoryError):  # a master at its maxmemory
                        raise StoreFull(f"the Redis Cluster is out of memory: {r}")
                    elif isinstance(r, ResponseError):
                        raise StoreUnavailable(f"Redis refused a request: {r}")
                    else:
                        out[i] = r
                        done += 1
                if acked is not None and done and int(acked) < self.wait_replicas:
                    raise StoreUnavailable(
                        f"a write reached {acked} of {self.wait_replicas} replicas in time (outcome unknown)"
                    )
            if not retry:
                return out
            if not isinstance(problem, NoScriptError):
                self._refresh()
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(f"the Redis Cluster is unavailable: {problem}")
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            pending = retry

    def _read(self, slot: int, command: Sequence[Any]) -> Any:
        return self._multi([(slot, command)])[0]

    def _write(self, slot: int, command: Sequence[Any], *, idempotent: bool = False) -> Any:
        return self._multi([(slot, command)], write=True, idempotent=idempotent)[0]

    def _owner(self, slot: int) -> str:
        try:
            return self._rc.nodes_manager.get_node_from_slot(slot).name
        except (RedisError, RedisClusterException):
            return f"slot-{slot}"

    # ------------------------------------------------------------------ layout
    def _check_layout(self) -> None:
        key = self._small_prefixes[Table.META] + b"layout"
        slot = self._slot_of[self._small_prefixes[Table.META]]
        want = f"buckets={self.buckets}".encode()
        self._write(slot, ("SET", key, want, "NX"), idempotent=True)
        found = self._read(slot, ("GET", key))
        if found != want:
            raise StoreUnavailable(
                f"this Redis namespace was created with {found!r}, not {want!r}: use the same buckets"
            )

    def _prefix(self, table: Table, key: bytes) -> bytes:
        if table is Table.RECORDS:
            return self._bucket_prefixes[zlib.crc32(key) % self.buckets]
        return self._small_prefixes[table]

    def _prefixes(self, table: Table) -> list[bytes]:
        return self._bucket_prefixes if table is Table.RECORDS else [self._small_prefixes[table]]

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("store is closed")

    # ------------------------------------------------------------------ reads
    def get(self, table: Table, key: bytes) -> bytes | None:
        p = self._prefix(table, key)
        return self._read(self._slot_of[p], ("GET", p + b"d" + _TABLE_LETTER[table] + key))

    def get_many(self, table: Table, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        by_prefix: dict[bytes, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            by_prefix[self._prefix(table, k)].append(i)
        letter = _TABLE_LETTER[table]
        prefixes = list(by_prefix)
        calls = [
            (self._slot_of[p], ("MGET", *(p + b"d" + letter + keys[i] for i in by_prefix[p])))
            for p in prefixes
        ]
        out: list[bytes | None] = [None] * len(keys)
        for p, values in zip(prefixes, self._multi(calls), strict=True):
            for i, v in zip(by_prefix[p], values, strict=True):
                out[i] = v
        return out

    def scan(self, table: Table, lower: bytes, upper: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """A merge of every shard's sorted index (``ZRANGEBYLEX``), then the values (``MGET``).

        Cost for RECORDS: one ZRANGEBYLEX per bucket per round (``buckets`` commands pipelined per
        node), each returning about ``2 * limit / buckets + 8`` keys; a bucket that runs dry before
        the merge is done is fetched again with a bigger page."""
        if limit <= 0 or lower >= upper:
            return []
        letter = _TABLE_LETTER[table]
        prefixes = self._prefixes(table)
        per = 2 * limit // len(prefixes) + 8
        hi = b"(" + upper
        starts = {p: b"[" + lower for p in prefixes}
        buffers: dict[bytes, list[bytes]] = {}
        exhausted: set[bytes] = set()
        pages = dict.fromkeys(prefixes, per)
        out: list[tuple[bytes, bytes]] = []

        def fetch(ps: list[bytes]) -> None:
            calls = [
                (self._slot_of[p], ("ZRANGEBYLEX", p + b"i" + letter, starts[p], hi, "LIMIT", 0, pages[p]))
                for p in ps
            ]
            for p, keys in zip(ps, self._multi(calls), strict=True):
                buffers[p] = list(keys)
                if len(keys) < pages[p]:
                    exhausted.add(p)
                elif keys:
                    starts[p] = b"(" + keys[-1]
                pages[p] = min(pages[p] * 4, 10_000)

        fetch(prefixes)
        while len(out) < limit:
            # The next `limit - len(out)` keys in order, as far as every bucket's buffer allows.
            chosen: list[tuple[bytes, bytes]] = []
            heads = {p: 0 for p, b in buffers.items() if b}
            want = limit - len(out)
            refill: list[bytes] = []
            while len(chosen) < want and heads:
                p = min(heads, key=lambda q: buffers[q][heads[q]])
                chosen.append((p, buffers[p][heads[p]]))
                heads[p] += 1
                if heads[p] == len(buffers[p]):
                    del heads[p]
                    if p not in exhausted:
                        refill.append(p)
                        break  # its next key may come before the other heads
            for p in buffers:
                taken = sum(1 for q, _ in chosen if q == p)
                buffers[p] = buffers[p][taken:]
            if chosen:
                values = self.get_many(table, [k for _, k in chosen])
                out += [(k, v) for (_, k), v in zip(chosen, values, strict=True) if v is not None]
            if refill:
                fetch(refill)
            elif not chosen:
                break
        return out[:limit]

    def counter(self, name: bytes) -> int:
        """The sum of the counter's shares: one HGET per shard, pipelined per node."""
        replies = self._multi([(self._slot_of[p], ("HGET", p + b"c", name)) for p in self._all_prefixes])
        return sum(int(r) for r in replies if r is not None)

    def counters(self, prefix: bytes) -> dict[bytes, int]:
        replies = self._multi([(self._slot_of[p], ("HGETALL", p + b"c")) for p in self._all_prefixes])
        out: dict[bytes, int] = {}
        for shares in replies:
            items = (
                shares.items() if isinstance(shares, dict) else zip(shares[::2], shares[1::2], strict=True)
            )
            for name, value in items:
                if name.startswith(prefix):
                    out[name] = out.get(name, 0) + int(value)
        return out

    # ------------------------------------------------------------------ commits
    def _split(self, txn: Txn) -> dict[bytes, _ShardOps]:
        shards: dict[bytes, _ShardOps] = {}
        for i, e in enumerate(txn.expects):
            p = self._prefix(e.table, e.key)
            shards.setdefault(p, _ShardOps()).expects.append((_TABLE_LETTER[e.table] + e.key, e, i))
        for w in txn.writes:
            p = self._prefix(w.table, w.key)
            shards.setdefault(p, _ShardOps()).writes.append((_TABLE_LETTER[w.table] + w.key, w))
        totals: dict[bytes, int] = {}
        for add in txn.adds:
            totals[add.counter] = totals.get(add.counter, 0) + add.delta
        totals = {k: v for k, v in totals.items() if v}
        if totals:
            home = next(iter(shards), self._small_prefixes[Table.META])
            shards.setdefault(home, _ShardOps()).adds.update(totals)
        return shards

    def commit(self, txn: Txn) -> None:
        """Commit ``txn``, then call every :attr:`commit_hooks` with ``(txn, True)`` before
        returning. A commit whose outcome is unknown (StoreUnavailable) calls them with
        ``(txn, False)``, errors ignored, before raising."""
        self._check_open()
        shards = self._split(txn)
        if not shards:
            return
        deadline = time.monotonic() + max(self.retry_seconds, 2 * self.lease_ms / 1000)
        while True:
            try:
                if len(shards) == 1:
                    self._commit_one(*next(iter(shards.items())))
                else:
                    self._commit_many(shards)
                break
            except _Conflict as conflict:
                self._settle(conflict, deadline)
            except StoreUnavailable:
                for hook in self.commit_hooks:
                    with contextlib.suppress(Exception):
                        hook(txn, False)
                raise
        for hook in self.commit_hooks:
            hook(txn, True)

    def _eval(self, prefix: bytes, argv: list[bytes | str | int]) -> tuple[str, ...]:
        return ("EVALSHA", _SHARD_SHA, 1, prefix, *argv)  # type: ignore[return-value]

    def _commit_one(self, prefix: bytes, ops: _ShardOps) -> None:
        reply = self._write(self._slot_of[prefix], self._eval(prefix, ops.argv("one", "")))
        if reply[0] == b"L":
            raise _Conflict(reply[1], prefix)
        if reply[0] == b"F":
            index = int(reply[1])
            raise ConditionFailed(index, next(e for _, e, i in ops.expects if i == index))

    def _journal(
        self, mode: str, cid: bytes, *extra: Any, wait: bool = False, idempotent: bool = False
    ) -> list[Any]:
        cmd = ("EVALSHA", _JOURNAL_SHA, 1, self._journal_prefix, mode, cid, *extra)
        slot = self._slot_of[self._journal_prefix]
        if wait:
            return self._write(slot, cmd, idempotent=idempotent)
        return self._multi([(slot, cmd)], idempotent=idempotent)[0]

    def _shard_calls(self, shards: dict[bytes, _ShardOps], mode: str, cid: str) -> dict[bytes, Any]:
        """Run the (idempotent) ``mode`` on every shard, pipelined per master, WAITing."""
        prefixes = list(shards)
        calls = [(self._slot_of[p], self._eval(p, shards[p].argv(mode, cid))) for p in prefixes]
        return dict(zip(prefixes, self._multi(calls, write=True), strict=True))

    def _commit_many(self, shards: dict[bytes, _ShardOps]) -> None:
        cid = secrets.token_hex(12)
        payload = json.dumps({p.decode("latin-1"): ops.to_json() for p, ops in shards.items()})
        self._journal("begin", cid.encode(), self.lease_ms, payload)
        try:
            replies = self._shard_calls(shards, "lock", cid)
        except StoreUnavailable:
            self._abandon(cid, shards)
            raise
        holders = [(r[1], p) for p, r in replies.items() if r[0] == b"L"]
        if holders:
            self._abandon(cid, shards)
            raise _Conflict(*holders[0])
        failed = [int(r[1]) for r in replies.values() if int(r[1]) >= 0]
        if failed:
            self._abandon(cid, shards)
            index = min(failed)
            expect = next(e for ops in shards.values() for _, e, i in ops.expects if i == index)
            raise ConditionFailed(index, expect)
        state = self._journal("commit", cid.encode(), wait=True, idempotent=True)[0]
        if state not in (b"O", b"C"):  # C: our own earlier attempt whose reply was lost
            # Aborted by another front end after our lease ran out: nothing was applied.
            self._abandon(cid, shards)
            raise _Conflict(b"", b"")
        self._roll_forward(cid, shards)

    def _roll_forward(self, cid: str, shards: dict[bytes, _ShardOps]) -> None:
        self._shard_calls(shards, "apply", cid)
        self._journal("delete", cid.encode(), idempotent=True)

    def _abandon(self, cid: str, shards: dict[bytes, _ShardOps]) -> None:
        """Abort our own journal (if still PENDING), release our locks, delete the journal."""
        try:
            state = self._journal("abort", cid.encode(), wait=True, idempotent=True)[0]
            if state == b"C":  # cannot happen: only we commit our journal
                return
            self._shard_calls(shards, "release", cid)
            self._journal("delete", cid.encode(), idempotent=True)
        except StoreUnavailable as exc:
            log.warning("could not release commit %s (recovery will): %s", cid, exc)

    def _settle(self, conflict: _Conflict, deadline: float) -> None:
        """Deal with a lock held by another commit: finish it, abort it, or wait for it."""
        if conflict.holder:
            state = self._resolve(conflict.holder.decode(), conflict.where)
            if state != "P":
                return
        if time.monotonic() > deadline:
            raise StoreUnavailable("a key stayed locked by another commit for too long")
        time.sleep(random.uniform(0.002, 0.02))

    def _resolve(self, cid: str, where: bytes = b"") -> str:
        """Settle journal ``cid``: roll a COMMITTED one forward, clean an ABORTED or expired one up
        (a missing one: drop its locks in shard ``where``). Returns the state found: "C", "A",
        "X" (gone) or "P" (still running)."""
        reply = self._journal("check", cid.encode(), wait=True, idempotent=True)
        state = reply[0].decode()
        if state == "P":
            return state
        if state == "X":
            # No journal: its owner finished (or abandoned) it since, or its journal was lost
            # before it could commit (so it never will: its commit step finds no journal).
            if where:
                self._shard_calls({where: _ShardOps()}, "purge", cid)
            return state
        doc = json.loads(reply[1])
        shards = {p.encode("latin-1"): _ShardOps.from_json(ops) for p, ops in doc.items()}
        if state == "C":
            self._roll_forward(cid, shards)
        else:
            self._shard_calls(shards, "release", cid)
            self._journal("delete", cid.encode(), idempotent=True)
        return state

    # ------------------------------------------------------------------ bulk loading
    def bulk_create(self, table: Table, items: Sequence[tuple[bytes, bytes, Sequence[bytes]]]) -> list[bytes]:
        """Create many keys fast: ``items`` are (key, value, counters to add 1 to). Keys that
        exist (or are locked by a commit in flight) are skipped and returned.

        Pipelined: one Lua script per shard (the keys of a shard with their counter shares,
        atomically), one round trip and one WAIT per master. Not one transaction: a failure
        (StoreUnavailable) can leave some shards loaded and others not, but each shard's keys and
        its counter shares are always consistent, and calling again with the same items loads
        the rest (what is there is skipped). Calls the commit hooks for the created keys."""
        self._check_open()
        letter = _TABLE_LETTER[table]
        by_prefix: dict[bytes, list[int]] = defaultdict(list)
        for n, (key, _, _) in enumerate(items):
            by_prefix[self._prefix(table, key)].append(n)
        prefixes = list(by_prefix)
        calls = []
        for p in prefixes:
            argv: list[bytes | int] = [letter, len(by_prefix[p])]
            for n in by_prefix[p]:
                key, value, counters = items[n]
                argv += [key, value, len(counters), *counters]
            calls.append((self._slot_of[p], ("EVALSHA", _LOAD_SHA, 1, p, *argv)))
        skipped: list[bytes] = []
        for p, reply in zip(prefixes, self._multi(calls, write=True), strict=True):
            skipped += [items[by_prefix[p][k - 1]][0] for k in reply]
        if self.commit_hooks:
            gone = set(skipped)
            txn = Txn(writes=tuple(Put(table, k, v) for k, v, _ in items if k not in gone))
            for hook in self.commit_hooks:
                hook(txn, True)
        return skipped

    # ------------------------------------------------------------------ recovery
    def recover(self) -> int:
        """Finish or abort every multi-shard commit whose lease ran out (a front end died in the
        middle of it). Returns how many were settled."""
        self._check_open()
        settled = 0
        while True:
            due = self._journal("due", b"", idempotent=True)
            due = [c for c in due if self._resolve(c.decode()) != "P"]
            settled += len(due)
            if not due:
                return settled

    def _recovery_loop(self) -> None:
        while not self._stop.wait(self.lease_ms / 1000):
            try:
                self.recover()
            except StoreUnavailable as exc:
                log.info("recovery sweep skipped: %s", exc)
            except Exception:
                log.exception("recovery sweep failed")

    # ------------------------------------------------------------------ helpers for front ends
    def run_script(self, key: bytes, sha: str, *args: bytes | str | int, wait: bool = False) -> Any:
        """EVALSHA the script ``sha`` (from :func:`register_script`) on the master of ``key``'s
        slot (retried while the cluster heals: the script must be idempotent), with a WAIT for the
        replicas if ``wait``."""
        cmd = ("EVALSHA", sha, 1, key, *args)
        return self._multi([(key_slot(key), cmd)], write=wait)[0]

    def publish(self, channel: bytes, message: bytes, *, retry: bool = True) -> None:
        """PUBLISH (cluster-wide) through the master of ``channel``'s slot; one try unless
        ``retry``."""
        self._multi(
            [(key_slot(channel), ("PUBLISH", channel, message))], retry_seconds=None if retry else 0.0
        )

    def node_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every known node, masters first."""
        nodes = sorted(self._rc.get_nodes(), key=lambda n: n.server_type != "primary")
        return [(n.host, int(n.port)) for n in nodes]

    # ------------------------------------------------------------------ introspection
    def slot_of(self, table: Table, key: bytes) -> int:
        """The hash slot holding ``key`` of ``table``."""
        return self._slot_of[self._prefix(table, key)]

    def used_memory(self) -> int:
        """The sum of ``used_memory`` over the cluster's masters."""
        total = 0
        for node in self._rc.get_primaries():
            total += int(self._rc.get_redis_connection(node).info("memory")["used_memory"])
        return total

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with contextlib.suppress(RedisError):
            self._rc.close()

    def __enter__(self) -> RedisClusterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
